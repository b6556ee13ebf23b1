"""The guarantee of a `MassNet` on given weights: the total Σᵢxᵢ is conserved, checked through `predict`."""

from __future__ import annotations

import numpy as np

from zoo.models.massnet.model import MassNet, predict
from zoo.registry import Check


def verify(model: MassNet, num_states: int = 20_000, seed: int = 0) -> list[Check]:
  """|Σ N(x) − Σ x| relative to the total, on random states of very different totals and signs."""
  rng = np.random.default_rng(seed)
  scale = 10.0 ** rng.uniform(-3, 3, (num_states, 1))
  x = rng.uniform(-1, 1, (num_states, model.dim)) * scale
  x[: num_states // 2] = np.abs(x[: num_states // 2])  # half physical (non-negative) states
  pred = predict(model, x)
  drift = np.abs(pred.sum(1) - x.sum(1)) / np.maximum(np.abs(x).sum(1), np.abs(pred).sum(1))
  bound = 1e-11  # float64 eps ≈ 2.2e-16 times the ~10² additions and the size of the cancelling terms
  worst = float(drift.max())
  return [Check("mass conservation |ΣN(x) − Σx| / Σ|x|", worst <= bound, worst, bound,
                f"over {num_states} random states with totals from 1e-3 to 1e3 (float64 round-off)")]
