"""The LASA task for ELCD: the training loss, evaluation by rollouts, the streamline plot and `zoo run`'s demo.

Rollouts are the model's own `ELCD.rollout` (RK4, dt 0.01, ≤ 1000 steps, stop when ‖Δx‖ < 1e-5) from each test
demonstration's start and from perturbed starts; trajectory metrics are `zoo.metrics`'.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from zoo.models.elcd.model import ELCD


def loss(model: ELCD, batch) -> tuple[jax.Array, dict]:
  """MSE between predicted and demonstrated velocities (mean over batch and coordinates, torch's MSELoss)."""
  mse = jnp.mean((model(batch["x"]) - batch["v"]) ** 2)
  return mse, {"mse": mse}


def demo_rollouts(model: ELCD, data, steps: int = 1000, dt: float = 0.01, tol: float = 1e-5):
  """Rollouts from each demonstration's first point, cut where they stopped (as the official evaluation).

  Arguments:
    data: a LASA split (`x`, `v`, `demo`, `t`, see `zoo.data.lasa`).
  Returns:
    (list of rollouts (n_k + 1, d), demonstrated positions (K, T, d), velocities (K, T, d), demo ids (K,)).
  """
  from zoo.data import lasa  # pylint: disable=import-outside-toplevel

  pos, vel, ids = lasa.trajectories_from_examples(data)
  xs, taken = model.rollout(jnp.asarray(pos[:, 0], jnp.float32), steps=steps, dt=dt, tol=tol, return_steps=True)
  xs, taken = np.asarray(xs, np.float64), np.asarray(taken)
  return [xs[k, :taken[k] + 1] for k in range(len(xs))], pos, vel, ids


def perturbed_starts(pos: np.ndarray, scale: float = 0.3, seed: int = 0) -> np.ndarray:
  """Each demonstration's first point plus Gaussian noise of `scale` × the per-coordinate spread of the
  demonstrations: pos (K, T, d) -> (K, d)."""
  spread = pos.reshape(-1, pos.shape[-1]).std(0)
  return pos[:, 0] + scale * spread * np.random.default_rng(seed).normal(size=pos[:, 0].shape)


def evaluate(model: ELCD, data) -> dict[str, float]:
  """Velocity MSE on every (x, v) pair, and rollouts from each test demonstration's start vs the demonstration.

  Trajectory metrics (`zoo.metrics`, mean over demonstrations): `mean_nearest_distance` (the paper's "DTW",
  official `utils.dtwd_np`), true `dtw`, discrete `frechet`, `swept_error_area`; `final_distance` is the mean
  ‖x_end − x*‖ of the rollouts (RK4, dt 0.01, ≤ 1000 steps, stop when ‖Δx‖ < 1e-5) and
  `perturbed_final_distance` the same from starts perturbed by 0.3 × the demonstrations' spread (robustness).
  """
  from zoo import metrics as zm  # pylint: disable=import-outside-toplevel

  x = np.asarray(data["x"], np.float32)
  pred = np.concatenate([np.asarray(model.velocity(jnp.asarray(x[i:i + 4096]))) for i in range(0, len(x), 4096)])
  mse = float(np.mean((pred.astype(np.float64) - np.asarray(data["v"], np.float64)) ** 2))
  out = {"loss": mse, "velocity_mse": mse}
  if "demo" in data and "t" in data:
    rollouts, pos, _, _ = demo_rollouts(model, data)
    out.update(zm.trajectory_metrics(rollouts, list(pos)))
    target = np.asarray(model.target)
    out["final_distance"] = float(np.mean([np.linalg.norm(r[-1] - target) for r in rollouts]))
    out["rollout_steps"] = float(np.mean([len(r) - 1 for r in rollouts]))
    perturbed = np.asarray(model.rollout(jnp.asarray(perturbed_starts(pos), jnp.float32)))
    out["perturbed_final_distance"] = float(np.mean(np.linalg.norm(perturbed[:, -1] - target, axis=1)))
  return out


# --- plots and the demo ------------------------------------------------------------------------------------


def plot(model: ELCD, data, outdir) -> list[pathlib.Path]:
  """Streamlines of the learned field with the test demonstrations, rollouts from their starts and from perturbed
  starts; for d > 2 one panel per coordinate pair (0, 1), (2, 3), ... with the other coordinates at x*."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  rollouts, pos, _, _ = demo_rollouts(model, data)
  perturbed = np.asarray(model.rollout(jnp.asarray(perturbed_starts(pos), jnp.float32)))
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
    for k in range(len(pos)):
      ax.plot(pos[k, :, i], pos[k, :, j], "k", lw=2, alpha=0.6, label="test demonstration" if k == 0 else None)
      ax.plot(rollouts[k][:, i], rollouts[k][:, j], "C3", lw=1.5, label="rollout from its start" if k == 0 else None)
      ax.plot(perturbed[k, :, i], perturbed[k, :, j], "C0--", lw=1, label="perturbed start" if k == 0 else None)
    ax.plot(target[i], target[j], "k*", ms=12)
    ax.set(xlabel=f"x{i}", ylabel=f"x{j}", title=f"coordinates ({i}, {j})" + (", others at x*" if pairs > 1 else ""))
  axes[0, 0].legend(loc="best", fontsize=8)
  fig.tight_layout()
  path = pathlib.Path(outdir) / "elcd_streamlines.png"
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return [path]


def demo(model: ELCD, outdir, dataset: str) -> str:
  """`zoo run`: rollouts from each test demonstration's start and from a perturbed start (0.3 × the
  demonstrations' spread), their distance to the target over time, and the streamline plot."""
  import zoo.data  # pylint: disable=import-outside-toplevel
  from zoo import metrics as zm  # pylint: disable=import-outside-toplevel

  data = zoo.data.load(dataset, "test")
  rollouts, pos, _, _ = demo_rollouts(model, data)
  starts = perturbed_starts(pos)
  perturbed = np.asarray(model.rollout(jnp.asarray(starts, jnp.float32), steps=1000))
  target = np.asarray(model.target)
  times = (0, 100, 250, 500, 1000)
  lines = [f"{len(pos)} test demonstrations of {dataset} ({model.dim}D, normalised units); RK4 dt 0.01.",
           "perturbed start: demonstration start + 0.3 × spread × N(0, I); ‖x(t) − x*‖ at t =",
           "demo | ‖Δstart‖ | " + " | ".join(f"{k / 100:g}" for k in times) + " | nearest-dist to demo (own start)"]
  for k in range(len(pos)):
    dist = np.linalg.norm(perturbed[k] - target, axis=1)
    nearest = zm.mean_nearest_distance(rollouts[k], pos[k])
    lines.append(f"{k:4d} | {np.linalg.norm(starts[k] - pos[k, 0]):8.3f} | "
                 + " | ".join(f"{dist[i]:.3g}" for i in times) + f" | {nearest:.3f}")
  lines.append("velocity at the perturbed starts: model.velocity(x) -> "
               f"{np.array2string(np.asarray(model.velocity(jnp.asarray(starts[:1], jnp.float32)))[0], precision=3)}")
  lines += [f"plot: {p}" for p in plot(model, data, outdir)]
  return "\n".join(lines)
