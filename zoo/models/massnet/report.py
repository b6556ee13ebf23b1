"""The task of `massnet-sir`, the time-1 flow map of SIR: loss, evaluation and the card's plot."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from zoo import plotting
from zoo.models.massnet.model import MassNet, predict
from zoo.registry import Batch, Split

PLOT_FILE = "massnet_sir_rollout_and_mass_drift.png"
TIME_LABEL = "t (SIR time units; one map step = 1)"


def loss(model: MassNet, batch: Batch) -> tuple[jax.Array, dict]:
  """Mean squared error of one batch {"x": (batch, dim), "y": (batch, dim)}."""
  mse = jnp.mean((model(batch["x"]) - batch["y"]) ** 2)
  return mse, {"mse": mse}


def evaluate(model: MassNet, data: Split) -> dict[str, float]:
  """Test MSE of the flow map, and the largest total-mass drift |Σ N(x) − Σ x| over the split."""
  pred = predict(model, data["x"])
  return {
      "test_mse": float(np.mean((pred - data["y"]) ** 2)),
      "mass_drift_max": float(np.max(np.abs(pred.sum(1) - data["x"].sum(1)))),
  }


def plot(model: MassNet, data: Split, outdir: pathlib.Path) -> list[pathlib.Path]:
  """`massnet_sir_rollout_and_mass_drift.png`: the learned time-1 map iterated 10 times from 3 test states against
  the exact SIR flow (S, I, R as fractions of the population), and each rollout's drift of the total from its start
  (float64 round-off)."""
  plt = plotting.pyplot()

  from zoo.data import sir  # pylint: disable=import-outside-toplevel

  x0 = np.asarray(data["x"][:3], np.float64)
  learned, exact = [x0], [x0]
  for _ in range(10):
    learned.append(predict(model, learned[-1]))
    exact.append(sir.flow(exact[-1]))
  learned, exact = np.stack(learned, 1), np.stack(exact, 1)
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for k, label in enumerate("SIR"):
    for j in range(x0.shape[0]):
      first = j == 0
      axes[0].plot(exact[j, :, k], color=f"C{k}", alpha=0.5, label=f"{label}: exact SIR flow" if first else None)
      axes[0].plot(learned[j, :, k], "o", color=f"C{k}", ms=3, label=f"{label}: learned map" if first else None)
  axes[0].set(xlabel=TIME_LABEL, ylabel="compartment (fraction of the population)",
              title=f"learned map vs exact flow from {x0.shape[0]} test states")
  axes[0].legend(fontsize=7, ncol=3)
  for j in range(x0.shape[0]):
    axes[1].semilogy(np.abs(learned[j].sum(1) - x0[j].sum()) + 1e-18, label=f"test state {j}")
  axes[1].set(xlabel=TIME_LABEL, ylabel="|S + I + R − initial total| (fraction)",
              title="drift of the total (float64; 1e-18 added for the log scale)")
  axes[1].legend(fontsize=7)
  path = plotting.save(fig, outdir, PLOT_FILE)
  return [path]
