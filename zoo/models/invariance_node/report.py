"""Training loss, evaluation, plots and the `zoo run` demo of the spiral experiment.

`evaluate` measures what the card reports: the L1 error of the rollout from y0 = [2, 0], min_t b_i(y(t)) for the
paper's obstacles (deployed, without the CBF, with the CBF imposed at inference) and the violation rate over 1000
rollouts from safe states.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from zoo import plotting
from zoo.models.invariance_node.model import DEFAULT, InvariantNeuralODE
from zoo.models.invariance_node.obstacles import moved_obstacles, paper_obstacles
from zoo.models.invariance_node.verify import VERIFY_BOUND, VERIFY_HORIZON, safe_initial_states, safety_rollouts
from zoo.nn.cbf import Obstacles, UnsafeStateError
from zoo.nn.precision import float64_scope

EVAL_VIOLATION = 1e-4  # evaluate(): a trajectory violates when some b_i < -1e-4 (solver at the training tolerance)


def loss(model: InvariantNeuralODE, batch: dict[str, jax.Array]):
  """L1 between rollouts from each window's first state and the window (the official training loss)."""
  l1 = model.trajectory_loss(batch["y"], batch["t"])
  return l1, {"l1": l1}


def _l1_and_margins(model, y_true, t, obs, measure):
  # tight tolerances: the card's min_t b is then the model's, not the solver's (rtol 1e-7 dips ~1e-8 below 0)
  ys = model.rollout(y_true[:1], t, obstacles=obs, check_safe=False, rtol=1e-10, atol=1e-10)[0]
  l1 = float(jnp.mean(jnp.abs(ys - y_true)))
  b = np.asarray(jax.vmap(measure.barrier)(ys))  # (T, m)
  return l1, b.min(axis=0), ys


def evaluate(model: InvariantNeuralODE, data: dict[str, np.ndarray]) -> dict[str, float]:
  """L1 trajectory error, min_t b_i(y(t)) for the paper's obstacles, violation rate over 1000 safe states.

  `data`: the `spiral` test split (the full trajectory). The violation rate counts rollouts (t in [0, 10], the
  model's solver tolerances, b at every accepted step and every 0.005 in t) that enter an obstacle by more than
  1e-4 in b; `verify` bounds the depth at 1e-6 with a tight solver. "loss" is the model as deployed (its obstacles);
  "*_unconstrained" integrates θ_ref alone, "*_with_cbf" imposes the paper's obstacles at inference (the
  paper's procedure for a plainly trained net).
  """
  y_true = jnp.asarray(data["y"][0])
  t = jnp.asarray(data["t"][0])
  paper = paper_obstacles()
  own = model.default_obstacles
  out: dict[str, float] = {}
  l1, margins, _ = _l1_and_margins(model, y_true, t, DEFAULT, paper)
  out["loss"] = out["l1_trajectory"] = l1
  for i, mb in enumerate(margins):
    out[f"min_b_obstacle{i + 1}"] = float(mb)
  for tag, obs in (("unconstrained", None), ("with_cbf", paper)):
    if (obs is None and own is None) or (obs is paper and own is not None):
      continue  # same as the deployed numbers above
    l1_x, margins_x, _ = _l1_and_margins(model, y_true, t, obs, paper)
    out[f"l1_trajectory_{tag}"] = l1_x
    for i, mb in enumerate(margins_x):
      out[f"min_b_obstacle{i + 1}_{tag}"] = float(mb)
  y0 = safe_initial_states(paper)
  res = safety_rollouts(model, y0, VERIFY_HORIZON, own, paper, model.rtol, model.atol)
  worst = np.min(np.asarray(res.min_b), axis=1)  # numpy: no float32 truncation outside float64_scope
  status = np.asarray(res.status)
  out["violation_rate"] = float(np.mean(worst < -EVAL_VIOLATION))
  out["min_b_safe_states"] = float(worst.min())
  out["escaped_rate"] = float(np.mean(status == 1))
  out["failed_solves"] = float(np.mean(status == 2))
  return out


def _draw_obstacles(ax, obs: Obstacles, color="tab:red", label="obstacle (unsafe set, b < 0)"):
  """Fills each obstacle's unsafe set {Σ_j (y_j - c_j)^q < r^q} on a matplotlib axis (one legend entry)."""
  th = np.linspace(0, 2 * np.pi, 200)
  for k, (c, r, q) in enumerate(zip(np.asarray(obs.centers), np.asarray(obs.radii), np.asarray(obs.powers))):
    e = 2.0 / q
    x = r * np.sign(np.cos(th)) * np.abs(np.cos(th)) ** e + c[0]
    y = r * np.sign(np.sin(th)) * np.abs(np.sin(th)) ** e + c[1]
    ax.fill(x, y, color=color, alpha=0.6, lw=0, label=label if k == 0 else None)


# The spiral's state and time are nondimensional (ẏ = (y∘y∘y) A, zoo.data.spiral).
Y1, Y2, TIME = "$y_1$ (state units)", "$y_2$ (state units)", "t (time units)"
PLOT_FILES = ("spiral_rollouts_and_barrier_values.png", "rollouts_from_40_safe_states.png")


def plot(model: InvariantNeuralODE, data: dict[str, np.ndarray], outdir) -> list[pathlib.Path]:
  """Phase portraits (unconstrained vs invariant), satisfaction b(t), causal manipulation, many rollouts."""
  plt = plotting.pyplot()

  outdir = pathlib.Path(outdir)
  outdir.mkdir(parents=True, exist_ok=True)
  y_true = jnp.asarray(data["y"][0])
  t = jnp.asarray(data["t"][0])
  paper = paper_obstacles()
  own = model.default_obstacles
  imposed = own if own is not None else paper
  y0 = y_true[:1]
  plain = np.asarray(model.rollout(y0, t, None)[0])
  inv = np.asarray(model.rollout(y0, t, imposed)[0])
  moved = moved_obstacles()
  manip = np.asarray(model.rollout(y0, t, moved)[0])
  yt = np.asarray(y_true)

  fig, axes = plt.subplots(1, 4, figsize=(18, 4.6))
  for ax, ys, title in ((axes[0], plain, "(a) neural ODE (θ_ref, no CBF)"),
                        (axes[1], inv, "(b) with invariance (CBF-QP)")):
    _draw_obstacles(ax, imposed)
    ax.plot(yt[:, 0], yt[:, 1], "g-", lw=1, label="ground truth")
    ax.plot(ys[:, 0], ys[:, 1], "b--", lw=1.2, label="model.rollout")
    ax.set(title=title, xlim=(-2, 2.2), ylim=(-2, 2.4), xlabel=Y1, ylabel=Y2, aspect="equal")
    ax.legend(loc="upper left", fontsize=7)
  bp = np.min(np.asarray(jax.vmap(imposed.barrier)(jnp.asarray(plain))), axis=1)
  bi = np.min(np.asarray(jax.vmap(imposed.barrier)(jnp.asarray(inv))), axis=1)
  axes[2].plot(np.asarray(t), bp, color="tab:orange", label="neural ODE (θ_ref, no CBF)")
  axes[2].plot(np.asarray(t), bi, "b-", label="with invariance")
  axes[2].axhline(0, color="k", ls="--", lw=1, label="boundary b = 0")
  axes[2].set(title="(c) satisfaction: min_i b_i(y(t))", xlabel=TIME,
              ylabel="min_i b_i(y(t)) (barrier value, (state units)^q)", xlim=(0, 10), ylim=(-0.1, 0.5))
  axes[2].legend(fontsize=7)
  _draw_obstacles(axes[3], moved, label="moved obstacle (unsafe set)")
  axes[3].plot(yt[:, 0], yt[:, 1], "g-", lw=1, label="ground truth")
  axes[3].plot(manip[:, 0], manip[:, 1], "b--", lw=1.2, label="model.rollout, moved obstacles")
  axes[3].set(title="(d) moved obstacles at inference (no retraining)", xlim=(-2, 2.2), ylim=(-2, 2.4),
              xlabel=Y1, ylabel=Y2, aspect="equal")
  axes[3].legend(loc="upper left", fontsize=7)
  p1 = plotting.save(fig, outdir, PLOT_FILES[0])

  starts = safe_initial_states(imposed, 40, seed=1)
  ts = jnp.linspace(0.0, VERIFY_HORIZON, 400, dtype=y_true.dtype)
  fig, axes = plt.subplots(1, 2, figsize=(10, 5.2))
  for ax, obs, title in ((axes[0], None, "neural ODE from 40 safe states"),
                         (axes[1], imposed, "with invariance from the same states")):
    ys = np.asarray(model.rollout(starts, ts, obs))
    _draw_obstacles(ax, imposed)
    for k, tr in enumerate(ys):
      ax.plot(tr[:, 0], tr[:, 1], lw=0.6, label="model.rollout, one colour per start" if k == 0 else None)
    ax.plot(np.asarray(starts)[:, 0], np.asarray(starts)[:, 1], "k.", ms=3, label="safe start")
    ax.set(title=title, xlim=(-2.2, 2.2), ylim=(-2.2, 2.2), aspect="equal", xlabel=Y1, ylabel=Y2)
    ax.legend(loc="lower left", fontsize=7)
  p2 = plotting.save(fig, outdir, PLOT_FILES[1])
  return [p1, p2]


def demo(model: InvariantNeuralODE, outdir, dataset: str = "spiral") -> str:
  """`zoo run`: the spiral from y0 = [2, 0] without the CBF, with its obstacles, and with moved obstacles
  (causal manipulation, no retraining); an unsafe initial state; the card's plots."""
  import zoo.data  # pylint: disable=import-outside-toplevel

  data = zoo.data.load(dataset, "test")
  with float64_scope():
    y_true = jnp.asarray(data["y"][0])
    t = jnp.asarray(data["t"][0])
    own = model.default_obstacles
    imposed = own if own is not None else paper_obstacles()
    lines = []
    for label, obs in (("no CBF (θ_ref alone)", None), ("CBF, the paper's obstacles", imposed),
                       ("CBF, moved superellipse obstacles", moved_obstacles())):
      ys = model.rollout(y_true[:1], t, obs, rtol=1e-10, atol=1e-10)[0]
      measure = imposed if obs is None else obs
      b = np.asarray(jax.vmap(measure.barrier)(ys)).min(axis=0)
      lines.append(f"  {label:<36} L1 to the ground truth {float(jnp.mean(jnp.abs(ys - y_true))):.4f}; "
                   f"min_t b_i = {', '.join(f'{v:+.3g}' for v in b)} "
                   f"({'avoided' if b.min() >= -VERIFY_BOUND else 'ENTERED'})")
    try:
      model.rollout(jnp.asarray(imposed.centers[:1]), t[:10], imposed)
      lines.append("  unsafe initial state: accepted (unexpected)")
    except UnsafeStateError as e:
      lines.append(f"  y0 at an obstacle's centre -> {type(e).__name__}: {str(e)[:110]}...")
  paths = plot(model, data, outdir)
  return "\n".join([f"Rollouts from y0 = [2, 0] over t in [0, 25], Dopri5 rtol = atol = 1e-10 "
                    f"(min_t b_i >= -{VERIFY_BOUND:g}: obstacle i avoided, up to solver rounding):", *lines,
                    *[f"plot: {p}" for p in paths]])
