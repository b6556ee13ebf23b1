"""SIR epidemic time-1 flow map, simulated deterministically (TFDS builder "sir").

    S' = −R0·S·I,   I' = R0·S·I − I,   R' = I        (R0 = 1; the total S + I + R is conserved)

As the official mass-preserving experiment (davidemurari/StructuredNeuralNetworks, "Mass Preserving Networks"):
1000 initial states drawn uniformly in [0, 1]^3 (numpy seed 0) and normalised to sum 1, integrated with
RK45 at rtol = atol = 1e-11 to t = 1; the first 90% train, the rest test. Features (float64):
`x` (3,) the state at t = 0, `y` (3,) the state at t = 1. The pairs are bit-identical to the official
`generateData.generate(1000, 2, 1, 0.9)` (checked by benchmarks/massnet_official.py); `zoo.data.load` returns
each split in TFDS's stored order, a permutation of the official one (`states()` keeps the official order).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from zoo.data import _state_pairs

R0 = 1.0
NUM_STATES = 1000
TRAIN_FRACTION = 0.9


def sir_field(_, y: np.ndarray) -> np.ndarray:
  s, i, _r = y
  return np.array([-R0 * s * i, R0 * s * i - i, i])


def flow(x0: np.ndarray, t: float = 1.0) -> np.ndarray:
  """The exact (rtol 1e-11) SIR flow of each row of `x0: (n, 3)` over time `t`; returns (n, 3)."""
  import scipy.integrate  # pylint: disable=import-outside-toplevel

  return np.stack([
      scipy.integrate.solve_ivp(sir_field, (0.0, t), x, method="RK45", t_eval=[t], rtol=1e-11,
                                atol=1e-11).y[:, -1] for x in np.asarray(x0, np.float64)])


def states() -> tuple[np.ndarray, np.ndarray]:
  """All 1000 pairs (x, y = flow(x)) in the official order."""
  rng = np.random.RandomState(0)
  x = rng.rand(NUM_STATES, 3)
  x = x / x.sum(axis=1, keepdims=True)
  return x, flow(x)


class Builder(_state_pairs.PairSplits, tfds.core.GeneratorBasedBuilder):
  """SIR time-1 flow-map pairs."""

  name = "sir"
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Official settings: R0 = 1, 1000 states on the simplex, 90/10 split.",
                   "1.1.0": "float64 stored as raw bytes (the default encoding rounds to float32)."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "x": tfds.features.Tensor(shape=(3,), dtype=np.float64, encoding=tfds.features.Encoding.BYTES),
            "y": tfds.features.Tensor(shape=(3,), dtype=np.float64, encoding=tfds.features.Encoding.BYTES),
        }),
        homepage="https://github.com/davidemurari/StructuredNeuralNetworks",
    )

  train_fraction = TRAIN_FRACTION

  def pairs(self):
    return states()
