"""The guarantee of a `VolumeNet` on given weights: det J = 1 and the closed-form inverse, checked through the
jitted `apply` (what evaluation and users run)."""

from __future__ import annotations

import numpy as np

from zoo.models.volume.model import VolumeNet, apply
from zoo.registry import Check

DET_TOL = 1e-12      # |log|det J|| in float64: ~1e-16 per shear × a few dozen operations
INVERSE_TOL = 1e-12  # |N⁻¹(N(z)) − z| / (1 + |z|)


def verify(model: VolumeNet, num_points: int = 10_000, seed: int = 0) -> list[Check]:
  """det J = 1 (|log|det J|| ≤ 1e-12 by jax.jacfwd, float64) and N⁻¹(N(z)) = z on random states spanning
  scales 1e-2 to 1e2 (half inside the data box), and |log|det J|| of the inverse too."""
  rng = np.random.default_rng(seed)
  scale = 10.0 ** rng.uniform(-2, 2, (num_points, 1))
  z = rng.uniform(-1, 1, (num_points, model.dim)) * scale
  z[: num_points // 2] = rng.uniform(-2.1, 2.1, (num_points // 2, model.dim))
  logdet = np.abs(apply(model, "log_abs_det_jacobian", z))
  forward = apply(model, "__call__", z)
  checks = [Check("|log|det ∂N/∂z|| (volume preservation)", float(logdet.max()) <= DET_TOL, float(logdet.max()),
                  DET_TOL, f"jax.jacfwd at {num_points} states, |z| from 1e-2 to 1e2, float64")]
  try:
    back = apply(model, "inverse", forward)
  except ValueError as e:
    checks.append(Check("N⁻¹(N(z)) = z (closed-form inverse)", False, float("inf"), INVERSE_TOL, str(e)))
    return checks
  rel = np.max(np.abs(back - z) / (1 + np.abs(z)))
  checks.append(Check("N⁻¹(N(z)) = z (closed-form inverse)", float(rel) <= INVERSE_TOL, float(rel), INVERSE_TOL,
                      "max |N⁻¹(N(z)) − z| / (1 + |z|) over the same states"))
  return checks
