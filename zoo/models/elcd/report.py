"""The LASA task for ELCD: the training loss, evaluation by rollouts, the streamline plot and `zoo run`'s demo.

Two integrators (both dt 0.01, stop when ‖Δx‖ < 1e-5): the paper's data-space RK4 `ELCD.rollout_rk4_data` gives the
paper's metrics under their usual names (comparable with the official code and older cards); the guaranteed
`ELCD.rollout` (linearly implicit latent step) gives the same metrics with the suffix `_latent`. Each at the official
1000-step cut and "until converged" (≤ 10,000 steps, suffix `_converged`). Trajectory metrics are `zoo.metrics`'.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from zoo import plotting
from zoo.models.elcd.model import ELCD


def loss(model: ELCD, batch) -> tuple[jax.Array, dict]:
  """MSE between predicted and demonstrated velocities (mean over batch and coordinates, torch's MSELoss)."""
  mse = jnp.mean((model(batch["x"]) - batch["v"]) ** 2)
  return mse, {"mse": mse}


def demo_rollouts(model: ELCD, data, steps: int = 1000, dt: float = 0.01, tol: float = 1e-5,
                  integrator: str = "rollout_rk4_data", chunk: int = 1000):
  """Rollouts from each demonstration's first point until ‖Δx‖ < tol or `steps` steps, cut where they stopped (the
  official evaluation); run in calls of `chunk` steps, each continuing from the last state (one compiled shape;
  for `rollout` a continuation re-encodes z = φ(φ⁻¹(z)), a float32 round-off).

  Arguments:
    data: a LASA split (`x`, `v`, `demo`, `t`, see `zoo.data.lasa`).
    integrator: "rollout_rk4_data" (the paper's, default) or "rollout" (the guaranteed latent step).
  Returns:
    (list of rollouts (n_k + 1, d), demonstrated positions (K, T, d), velocities (K, T, d), demo ids (K,)).
  """
  from zoo.data import lasa  # pylint: disable=import-outside-toplevel

  pos, vel, ids = lasa.trajectories_from_examples(data)
  run = getattr(model, integrator)
  x = np.asarray(pos[:, 0], np.float32)
  paths, going, done_steps = [x[:, None].astype(np.float64)], np.ones(len(x), bool), 0
  while going.any() and done_steps < steps:
    n = min(chunk, steps - done_steps)
    xs, taken = run(jnp.asarray(x), steps=n if n == chunk else chunk, dt=dt, tol=tol, return_steps=True)
    xs, taken = np.asarray(xs)[:, :n + 1], np.minimum(np.asarray(taken), n)
    stopped = (taken < n) | (np.linalg.norm(xs[:, n] - xs[:, n - 1], axis=-1) < tol)
    paths.append(np.where(going[:, None, None], xs[:, 1:], np.nan).astype(np.float64))
    going &= ~stopped
    done_steps += n
    x = xs[:, -1]
  full = np.concatenate(paths, axis=1)  # (K, done_steps + 1, d), NaN after a trajectory stopped in an earlier call
  out = []
  for k in range(len(full)):
    moved = np.linalg.norm(np.diff(full[k], axis=0), axis=-1)
    hit = np.flatnonzero(moved < tol)
    last = hit[0] + 1 if hit.size else full.shape[1] - 1
    out.append(full[k, :last + 1])
  return out, pos, vel, ids


def far_starts(target, radius: float = 100.0, count: int = 8, seed: int = 0) -> np.ndarray:
  """x* + radius·u, u uniform on the sphere: (count, d)."""
  target = np.asarray(target, np.float64)
  u = np.random.default_rng(seed).normal(size=(count, target.size))
  return target + radius * u / np.linalg.norm(u, axis=1, keepdims=True)


def perturbed_starts(pos: np.ndarray, scale: float = 0.3, seed: int = 0) -> np.ndarray:
  """Each demonstration's first point plus Gaussian noise of `scale` × the per-coordinate spread of the
  demonstrations: pos (K, T, d) -> (K, d)."""
  spread = pos.reshape(-1, pos.shape[-1]).std(0)
  return pos[:, 0] + scale * spread * np.random.default_rng(seed).normal(size=pos[:, 0].shape)


CUT, CONVERGE_STEPS = 1000, 10_000


def evaluate(model: ELCD, data) -> dict[str, float]:
  """Velocity MSE on every (x, v) pair, and rollouts from each test demonstration's start vs the demonstration.

  The paper's integrator (`rollout_rk4_data`: RK4 in data space, dt 0.01, ≤ 1000 steps, stop when ‖Δx‖ < 1e-5), as
  the official evaluation: trajectory metrics (`zoo.metrics`, mean over demonstrations) `mean_nearest_distance` (the
  paper's "DTW", official `utils.dtwd_np`), true `dtw`, discrete `frechet`, `swept_error_area`; `final_distance` the
  mean ‖x_end − x*‖, `rollout_steps` the mean steps taken, `perturbed_final_distance` the mean ‖x_end − x*‖ from
  starts perturbed by 0.3 × the demonstrations' spread (robustness).
  The same keys + `_latent`: the guaranteed `rollout` (latent implicit step) with the same dt, cut and tol.
  "Until converged" (≤ 10,000 steps, the official `forward_step_until_converge` with a cap):
  `{mean_nearest_distance, final_distance, rollout_steps}_converged` (paper's RK4) and `..._latent_converged`.
  """
  from zoo import metrics as zm  # pylint: disable=import-outside-toplevel

  x = np.asarray(data["x"], np.float32)
  pred = np.concatenate([np.asarray(model.velocity(jnp.asarray(x[i:i + 4096]))) for i in range(0, len(x), 4096)])
  mse = float(np.mean((pred.astype(np.float64) - np.asarray(data["v"], np.float64)) ** 2))
  out = {"loss": mse, "velocity_mse": mse}
  if "demo" in data and "t" in data:
    target = np.asarray(model.target)
    for integrator, suffix in (("rollout_rk4_data", ""), ("rollout", "_latent")):
      rollouts, pos, _, _ = demo_rollouts(model, data, steps=CONVERGE_STEPS, integrator=integrator)
      cut = [r[:CUT + 1] for r in rollouts]  # a rollout's first 1000 steps are the 1000-step rollout
      out.update({k + suffix: v for k, v in zm.trajectory_metrics(cut, list(pos)).items()})
      out["final_distance" + suffix] = float(np.mean([np.linalg.norm(r[-1] - target) for r in cut]))
      out["rollout_steps" + suffix] = float(np.mean([len(r) - 1 for r in cut]))
      perturbed = np.asarray(getattr(model, integrator)(jnp.asarray(perturbed_starts(pos), jnp.float32), steps=CUT))
      out["perturbed_final_distance" + suffix] = float(np.mean(np.linalg.norm(perturbed[:, -1] - target, axis=1)))
      out["mean_nearest_distance" + suffix + "_converged"] = float(np.mean(
          [zm.mean_nearest_distance(r, p) for r, p in zip(rollouts, pos)]))
      out["final_distance" + suffix + "_converged"] = float(np.mean([np.linalg.norm(r[-1] - target)
                                                                     for r in rollouts]))
      out["rollout_steps" + suffix + "_converged"] = float(np.mean([len(r) - 1 for r in rollouts]))
  return out


# --- plots and the demo ------------------------------------------------------------------------------------


FAR_RADIUS, FAR_COUNT, FAR_STEPS, FAR_DT = 100.0, 8, 10_000, 0.1  # T = 1000: some fields contract at ≈ ε far out
PLOT_FILES = ("elcd_streamlines.png", "elcd_far_starts.png")
UNITS = "normalised units"  # LASA positions / the training demonstrations' per-coordinate std (zoo.data.lasa)


def plot(model: ELCD, data, outdir) -> list[pathlib.Path]:
  """Two PNGs, every line from the public `model.rollout`:

  elcd_streamlines.png: streamlines of the learned field, the test demonstrations, the rollouts from their starts
    and from perturbed starts (0.3 × the demonstrations' spread), dt 0.01; for d > 2 one panel per coordinate pair
    (0, 1), (2, 3), ... with the other coordinates at x*.
  elcd_far_starts.png: rollouts from 8 starts at ‖x0 − x*‖ = 100 (dt 0.1, 10,000 steps): ‖x(t) − x*‖ against t,
    and coordinates (0, 1) against each other.
  """
  plt = plotting.pyplot()

  rollouts, pos, _, _ = demo_rollouts(model, data, integrator="rollout")
  starts = perturbed_starts(pos)
  perturbed = np.asarray(model.rollout(jnp.asarray(starts, jnp.float32)))
  target = np.asarray(model.target)
  pairs = model.dim // 2
  fig, axes = plt.subplots(1, pairs, figsize=(5.2 * pairs, 5), squeeze=False)
  for p, ax in enumerate(axes[0]):
    i, j = 2 * p, 2 * p + 1
    pts = np.concatenate([pos[..., [i, j]].reshape(-1, 2), perturbed[..., [i, j]].reshape(-1, 2)])
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.15 * (hi - lo) + 1e-3
    gx, gy = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], 40),
                         np.linspace(lo[1] - pad[1], hi[1] + pad[1], 40))
    grid = np.tile(target, (gx.size, 1))
    grid[:, i], grid[:, j] = gx.ravel(), gy.ravel()
    vel = np.asarray(model.velocity(jnp.asarray(grid, jnp.float32)))
    ax.streamplot(gx, gy, vel[:, i].reshape(gx.shape), vel[:, j].reshape(gx.shape), color="0.7", density=1.2,
                  linewidth=0.7)
    ax.plot([], [], color="0.7", lw=0.7, label="streamlines of model.velocity (grey)")
    for k in range(len(pos)):
      first = k == 0
      ax.plot(pos[k, :, i], pos[k, :, j], "k", lw=2, alpha=0.6, label="test demonstration" if first else None)
      ax.plot(rollouts[k][:, i], rollouts[k][:, j], "C3", lw=1.5,
              label="model.rollout from the demonstration's start" if first else None)
      ax.plot(perturbed[k, :, i], perturbed[k, :, j], "C0--", lw=1,
              label="model.rollout from a perturbed start (dashed)" if first else None)
      ax.plot(pos[k, 0, i], pos[k, 0, j], "ko", ms=5, label="demonstration start" if first else None)
      ax.plot(starts[k, i], starts[k, j], "C0x", ms=7, mew=2, label="perturbed start (0.3 × spread)" if first else None)
    ax.plot(target[i], target[j], "k*", ms=12, label="target x*")
    ax.set(xlabel=f"x{i} ({UNITS})", ylabel=f"x{j} ({UNITS})",
           title=f"coordinates ({i}, {j})" + (", others at x*" if pairs > 1 else ""))
    ax.legend(loc="best", fontsize=6)
  path = plotting.save(fig, outdir, PLOT_FILES[0], dpi=100)
  return [path, plot_far_starts(model, pos, outdir)]


def far_rollouts(model: ELCD, radius: float = FAR_RADIUS, count: int = FAR_COUNT, steps: int = FAR_STEPS,
                 dt: float = FAR_DT):
  """`model.rollout` from `far_starts`: (starts (count, d), states (count, steps + 1, d), steps taken)."""
  starts = far_starts(model.target, radius, count)
  xs, taken = model.rollout(jnp.asarray(starts, jnp.float32), steps=steps, dt=dt, return_steps=True)
  return starts, np.asarray(xs, np.float64), np.asarray(taken)


def plot_far_starts(model: ELCD, pos: np.ndarray, outdir) -> pathlib.Path:
  """elcd_far_starts.png (see `plot`)."""
  plt = plotting.pyplot()

  starts, xs, _ = far_rollouts(model)
  target = np.asarray(model.target)
  dist = np.linalg.norm(xs - target, axis=-1)
  t = np.arange(xs.shape[1]) * FAR_DT
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6))
  for k in range(len(xs)):
    left.semilogy(t, np.maximum(dist[k], 1e-12), lw=1, label="model.rollout from ‖x0 − x*‖ = 100" if k == 0 else None)
    right.plot(xs[k, :, 0], xs[k, :, 1], lw=1, label="model.rollout from ‖x0 − x*‖ = 100" if k == 0 else None)
    right.plot(starts[k, 0], starts[k, 1], "kx", ms=6, label="far start" if k == 0 else None)
  box = pos.reshape(-1, pos.shape[-1])
  left.axhline(np.max(np.linalg.norm(box - target, axis=1)), color="0.5", ls=":", label="farthest demonstration point")
  left.set_xscale("symlog", linthresh=1.0)
  left.set(xlabel=f"t (time units of the learned field; dt = {FAR_DT:g} per step; linear to 1, then log)",
           ylabel=f"‖x(t) − x*‖ ({UNITS})",
           xlim=(0, t[-1]),
           title=f"{len(xs)} starts at distance {FAR_RADIUS:g} converge (flat: stopped, ‖Δx‖ < 1e-5)")
  right.plot(box[:, 0], box[:, 1], ".", color="0.3", ms=1, label="test demonstrations")
  right.plot(target[0], target[1], "k*", ms=12, label="target x*")
  right.set(xlabel=f"x0 ({UNITS})", ylabel=f"x1 ({UNITS})", title="coordinates (0, 1)", aspect="equal")
  left.legend(fontsize=7)
  right.legend(fontsize=7, loc="best")
  return plotting.save(fig, outdir, PLOT_FILES[1], dpi=100)


def demo(model: ELCD, outdir, dataset: str) -> str:
  """`zoo run`: `model.rollout` from each test demonstration's start, from a perturbed start (0.3 × the
  demonstrations' spread) and from far-away starts (‖x0 − x*‖ = 100), distances to the target over time, plots."""
  import zoo.data  # pylint: disable=import-outside-toplevel
  from zoo import metrics as zm  # pylint: disable=import-outside-toplevel

  data = zoo.data.load(dataset, "test")
  rollouts, pos, _, _ = demo_rollouts(model, data, integrator="rollout")
  starts = perturbed_starts(pos)
  perturbed = np.asarray(model.rollout(jnp.asarray(starts, jnp.float32), steps=1000))
  target = np.asarray(model.target)
  times = (0, 100, 250, 500, 1000)
  lines = [
      f"{len(pos)} test demonstrations of {dataset} ({model.dim}D). Units: positions in normalised units (LASA "
      "positions / the training demonstrations' per-coordinate std; the target x* is the origin); t in the learned "
      "field's time units.",
      f"Integrator: model.rollout, a linearly implicit step in latent space z = φ(x): ‖z_(k+1) − z*‖ ≤ "
      f"‖z_k − z*‖/(1 + ε·dt), ε = {model.eps:g}, for any start and any dt (here 0.01 in 1, {FAR_DT:g} in 2).",
      "",
      "1) Near the data. perturbed start = demonstration start + 0.3 × spread × N(0, I).",
      "   demo: test demonstration index; ‖Δstart‖: distance of the perturbed start from the demonstration's start; "
      "t = ...: ‖x(t) − x*‖ of the rollout from the perturbed start at that time; nearest-dist: mean nearest-point "
      "distance between the rollout from the demonstration's own start and the demonstration (the paper's \"DTW\"); "
      "all distances in normalised units.",
      "demo | ‖Δstart‖ | " + " | ".join(f"t = {k / 100:g}" for k in times) + " | nearest-dist (own start)"]
  for k in range(len(pos)):
    dist = np.linalg.norm(perturbed[k] - target, axis=1)
    nearest = zm.mean_nearest_distance(rollouts[k], pos[k])
    lines.append(f"{k:4d} | {np.linalg.norm(starts[k] - pos[k, 0]):8.3f} | "
                 + " | ".join(f"{dist[i]:.3g}" for i in times) + f" | {nearest:.3f}")
  far, xs, taken = far_rollouts(model)
  far_times = (0, 10, 100, 1000, FAR_STEPS)
  lines += [
      "",
      f"2) Far away: {len(far)} starts at ‖x0 − x*‖ = {FAR_RADIUS:g} in random directions (the data lie within "
      f"{np.max(np.linalg.norm(pos.reshape(-1, model.dim) - target, axis=1)):.2g} of x*), model.rollout with "
      f"dt {FAR_DT:g} (safe for any dt; some fields contract only at ≈ ε far out), ≤ {FAR_STEPS} steps.",
      "   start: index; t = ...: ‖x(t) − x*‖ (normalised units; the last column is the final state); "
      "steps: steps taken before ‖x_(k+1) − x_k‖ < 1e-5 (the official stopping rule; then the state is kept).",
      "start | " + " | ".join(f"t = {k * FAR_DT:g}" for k in far_times) + " | steps"]
  for k in range(len(far)):
    dist = np.linalg.norm(xs[k] - target, axis=1)
    lines.append(f"{k:5d} | " + " | ".join(f"{dist[i]:.3g}" for i in far_times) + f" | {taken[k]}")
  lines.append("(the paper's data-space RK4, model.rollout_rk4_data, diverges or stalls from such starts: "
               "benchmarks/results/elcd_far_starts.md)")
  vel = np.asarray(model.velocity(jnp.asarray(starts[:1], jnp.float32)))[0]
  lines.append("velocity ẋ = model.velocity(x) at the first perturbed start (normalised units per time unit): "
               f"{np.array2string(vel, precision=3, max_line_width=200)}")
  lines += [f"plot: {p}" for p in plot(model, data, outdir)]
  return "\n".join(lines)
