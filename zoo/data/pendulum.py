"""The time-h flow map of the pendulum, simulated deterministically (TFDS builder "pendulum").

    q' = p,   p' = −sin q          (H(q, p) = p²/2 − cos q; the flow preserves H and phase-space area)

A Hamiltonian, hence volume-preserving, system with a nonlinear (non-monotone) force, oscillations and a
separatrix: the demonstration system of the volume-preserving network (`zoo.models.volume`). 2000 initial states
drawn uniformly (numpy `RandomState(0)`, the legacy generator whose stream numpy keeps fixed) in the box
q ∈ [−2.1, 2.1], p ∈ [−1.8, 1.8], which contains every orbit of energy H ≤ 0.5 (|q| ≤ 2.094, |p| ≤ 1.732);
each is integrated over h = 0.5 with DOP853 at rtol = atol = 1e-12 (the reference "true flow"; the energy
error is below 1e-11). The first 80% train, the rest test. Features (float64): `x` (2,) = (q, p) at t = 0,
`y` (2,) = (q, p) at t = h.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from zoo.data import _state_pairs

STEP = 0.5
NUM_STATES = 2000
TRAIN_FRACTION = 0.8
BOX = ((-2.1, 2.1), (-1.8, 1.8))
RTOL = ATOL = 1e-12


def energy(x: np.ndarray) -> np.ndarray:
  """H(q, p) = p²/2 − cos q for x: (..., 2)."""
  x = np.asarray(x, np.float64)
  return 0.5 * x[..., 1] ** 2 - np.cos(x[..., 0])


def _field(_, y: np.ndarray) -> np.ndarray:
  q, p = y[0::2], y[1::2]
  out = np.empty_like(y)
  out[0::2], out[1::2] = p, -np.sin(q)
  return out


def flow(x0: np.ndarray, t: float | np.ndarray = STEP) -> np.ndarray:
  """The pendulum flow of each row of `x0: (n, 2)` (DOP853, rtol = atol = 1e-12).

  `t` a float: returns (n, 2), the states at time t. `t` an increasing array of times (from 0): returns
  (n, len(t), 2). All rows are integrated as one system (the step control covers every row)."""
  import scipy.integrate  # pylint: disable=import-outside-toplevel

  x0 = np.asarray(x0, np.float64)
  times = np.atleast_1d(np.asarray(t, np.float64))
  sol = scipy.integrate.solve_ivp(_field, (0.0, float(times[-1])), x0.reshape(-1), method="DOP853",
                                  t_eval=times, rtol=RTOL, atol=ATOL)
  out = sol.y.T.reshape(len(times), -1, 2).transpose(1, 0, 2)  # (n, times, 2)
  return out[:, -1] if np.ndim(t) == 0 else out


def states() -> tuple[np.ndarray, np.ndarray]:
  """All pairs (x, y = Φ_h(x)) in the builder's order: (2000, 2) each."""
  rng = np.random.RandomState(0)
  lo = np.array([b[0] for b in BOX])
  hi = np.array([b[1] for b in BOX])
  x = lo + (hi - lo) * rng.rand(NUM_STATES, 2)
  return x, flow(x, STEP)


class Builder(_state_pairs.PairSplits, tfds.core.GeneratorBasedBuilder):
  """Pendulum time-0.5 flow-map pairs (float64)."""

  name = "pendulum"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "h = 0.5, 2000 states uniform in [−2.1, 2.1]×[−1.8, 1.8], DOP853 1e-12, 80/20."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            # raw bytes: TFDS's default tensor encoding rounds float64 to float32
            "x": tfds.features.Tensor(shape=(2,), dtype=np.float64, encoding=tfds.features.Encoding.BYTES),
            "y": tfds.features.Tensor(shape=(2,), dtype=np.float64, encoding=tfds.features.Encoding.BYTES),
        }),
        supervised_keys=("x", "y"),
        disable_shuffling=True,
    )

  train_fraction = TRAIN_FRACTION

  def pairs(self):
    return states()
