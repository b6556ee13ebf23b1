"""The task of `volnet-pendulum`, the time-0.5 flow map of the pendulum: loss, evaluation (one step and a long
rollout against the true flow), the card's plot and sections."""

from __future__ import annotations

import pathlib
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from zoo import plotting
from zoo.models.volume.model import VolumeNet, apply, model_time, rollout
from zoo.registry import Batch, Check, Split

ROLLOUT_STEPS = 200  # 100 time units of the pendulum (h = 0.5): ≈ 15 periods of a small oscillation
TIME_LABEL = "t (nondimensional time; one map step = 0.5)"


def loss(model: VolumeNet, batch: Batch) -> tuple[jax.Array, dict]:
  """Mean squared error of one batch {"x": (batch, dim), "y": (batch, dim)}."""
  mse = jnp.mean((model(batch["x"]) - batch["y"]) ** 2)
  return mse, {"mse": mse}


def rollout_states(n: int = 8, seed: int = 0) -> np.ndarray:
  """Initial states of energy H ≤ 0.5 (inside the training box), fixed by `seed`: (n, 2)."""
  from zoo.data import pendulum  # pylint: disable=import-outside-toplevel

  rng = np.random.RandomState(seed)
  out = []
  while len(out) < n:
    z = np.array([rng.uniform(-2.1, 2.1), rng.uniform(-1.8, 1.8)])
    if pendulum.energy(z) <= 0.5:
      out.append(z)
  return np.stack(out)


def rollout_errors(model: VolumeNet, steps: int = ROLLOUT_STEPS) -> dict[str, float]:
  """Iterates the learned map `steps` times from 8 oscillating states against the true flow (DOP853 1e-12)."""
  from zoo.data import pendulum  # pylint: disable=import-outside-toplevel

  z0 = rollout_states()
  learned = rollout(model, z0, steps)
  true = pendulum.flow(z0, model_time(model) * np.arange(steps + 1))
  err = np.linalg.norm(learned - true, axis=2)
  energy_drift = np.abs(pendulum.energy(learned) - pendulum.energy(z0)[:, None])
  return {"rollout_error_final": float(err[:, -1].mean()), "rollout_error_max": float(err.max()),
          "rollout_energy_drift_max": float(energy_drift.max())}


def evaluate(model: VolumeNet, data: Split) -> dict[str, float]:
  """Test MSE of the flow map; max |log|det J||, max inverse error on the split; long-rollout error vs the true
  flow (mean final error, max error, max energy drift over 200 steps from 8 oscillating states)."""
  x, y = np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64)
  pred = apply(model, "__call__", x)
  back = apply(model, "inverse", pred)
  logdet = apply(model, "log_abs_det_jacobian", x)
  mse = float(np.mean((pred - y) ** 2))
  return {"test_mse": mse, "max_abs_log_det": float(np.max(np.abs(logdet))),
          "max_inverse_error": float(np.max(np.abs(back - x))), **rollout_errors(model)}


PLOT_FILE = "pendulum_rollouts_energy_and_volume.png"


def plot(model: VolumeNet, data: Split, outdir: pathlib.Path) -> list[pathlib.Path]:
  """`pendulum_rollouts_energy_and_volume.png`: the learned map iterated from 8 oscillating states against the true
  pendulum flow (phase portrait, error and energy drift over time), and |log|det J|| over the phase plane."""
  plt = plotting.pyplot()

  from zoo.data import pendulum  # pylint: disable=import-outside-toplevel

  del data
  z0 = rollout_states()
  steps = ROLLOUT_STEPS
  t = model_time(model) * np.arange(steps + 1)
  learned = rollout(model, z0, steps)
  true = pendulum.flow(z0, t)
  fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
  for j in range(len(z0)):
    first = j == 0
    axes[0].plot(true[j, :, 0], true[j, :, 1], color="0.6", lw=1, label="true flow (8 starts)" if first else None)
    axes[0].plot(learned[j, :, 0], learned[j, :, 1], ".", ms=2, color=f"C{j}",
                 label="learned map, one colour per start" if first else None)
  axes[0].set(xlabel="q (angle, rad)", ylabel="p = dq/dt (rad per time unit)",
              title=f"{steps} steps of the learned map vs the true flow")
  axes[0].legend(fontsize=7, loc="upper right")
  err = np.linalg.norm(learned - true, axis=2)
  drift = np.abs(pendulum.energy(learned) - pendulum.energy(z0)[:, None])
  for j in range(len(z0)):
    axes[1].semilogy(t[1:], err[j, 1:], color=f"C{j}", lw=1, label=f"start {j}")
    axes[2].semilogy(t[1:], drift[j, 1:], color=f"C{j}", lw=1, label=f"start {j}")
  axes[1].set(xlabel=TIME_LABEL, ylabel="‖learned − true‖ (phase-space units)", title="rollout error")
  axes[2].set(xlabel=TIME_LABEL, ylabel="|H − H(0)| (nondimensional energy)", title="energy drift (not enforced)")
  axes[1].legend(fontsize=6, ncol=2)
  axes[2].legend(fontsize=6, ncol=2)
  q, p = np.meshgrid(np.linspace(-3, 3, 61), np.linspace(-3, 3, 61))
  grid = np.stack([q.ravel(), p.ravel()], 1)
  logdet = np.abs(apply(model, "log_abs_det_jacobian", grid)).reshape(q.shape)
  im = axes[3].pcolormesh(q, p, np.log10(logdet + 1e-18), shading="auto")
  fig.colorbar(im, ax=axes[3], label="log10 |log|det J|| (dimensionless; 1e-18 added)")
  axes[3].set(xlabel="q (angle, rad)", ylabel="p = dq/dt (rad per time unit)",
              title="volume preservation (float64)")
  path = plotting.save(fig, outdir, PLOT_FILE)
  return [path]


def card_sections(model: VolumeNet, metrics: Mapping[str, float], checks: Sequence[Check],
                  siblings: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
  """Card sections: the system learned and why, and the long rollout against the true flow."""
  del model, checks, siblings
  system = (
      "The pendulum q' = p, p' = −sin q (H = p²/2 − cos q), time-0.5 flow map, data from `zoo.data.pendulum` (2000 "
      "states in [−2.1, 2.1]×[−1.8, 1.8], DOP853 at 1e-12). Why: it is Hamiltonian, so its flow preserves "
      "phase-space area exactly — the structure this network enforces — while being nonlinear (a non-monotone "
      "force, oscillations of amplitude-dependent period, a separatrix), and its true flow is computable to "
      "round-off for any horizon, so long rollouts can be compared against it.")
  rollout_text = (
      f"Iterating the learned map {ROLLOUT_STEPS} times (t = 0 … {ROLLOUT_STEPS * 0.5:g}, ≈ 15 periods) from 8 "
      f"oscillating states (H ≤ 0.5) and comparing with the true flow: mean final error "
      f"{metrics.get('rollout_error_final', float('nan')):.3g}, max error "
      f"{metrics.get('rollout_error_max', float('nan')):.3g} (mostly phase error: the error grows linearly, the "
      f"orbits stay closed), max energy drift {metrics.get('rollout_energy_drift_max', float('nan')):.3g} "
      f"(energy is not enforced, only volume). One-step test MSE {metrics.get('test_mse', float('nan')):.3g}; "
      f"max |log|det J|| {metrics.get('max_abs_log_det', float('nan')):.2g} and max inverse error "
      f"{metrics.get('max_inverse_error', float('nan')):.2g} on the test states (float64). The figure below: phase "
      "portrait, error and energy drift over time, and |log|det J|| over the phase plane.")
  return {"Data: the pendulum, and why": system, "Long rollout against the true flow": rollout_text}
