"""The cubic spiral of the neural-ODE demos, simulated deterministically (no download).

Ground truth ẏ = (y∘y∘y) A with A = [[-0.1, 2], [-2, -0.1]] (row vector y), y(0) = [2, 0], sampled at 1000
equally spaced times on [0, 25] (Chen et al. 2018's demo, used by Xiao et al., ICML 2023, "On the Forward
Invariance of Neural ODEs", spiral experiment; official code `Weixy21/InvarianceNODE`, spiral/test.py).
Integrated with scipy's DOP853 at rtol = atol = 1e-12 in float64.

Splits:
  train: every training window of the paper's `batch_time` = 10 consecutive samples (start s = 0..989, as
    the official `get_batch` draws from); features y0: (2,), t: (10,) absolute times, y: (10, 2) with y[0] = y0.
  test: the whole trajectory as one example; y0: (2,), t: (1000,), y: (1000, 2).

    import zoo.data
    windows = zoo.data.load("spiral", "train")   # {"y0": (990, 2), "t": (990, 10), "y": (990, 10, 2)}
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
Y0 = np.array([2.0, 0.0])
T_END = 25.0
DATA_SIZE = 1000
BATCH_TIME = 10


def vector_field(t: float, y: np.ndarray) -> np.ndarray:
  """ẏ = (y∘y∘y) A for y: (2,)."""
  del t
  return (y ** 3) @ A


def trajectory(y0: np.ndarray = Y0, data_size: int = DATA_SIZE, t_end: float = T_END):
  """The ground-truth samples: t: (data_size,), y: (data_size, 2), float64."""
  from scipy.integrate import solve_ivp  # pylint: disable=import-outside-toplevel

  t = np.linspace(0.0, t_end, data_size)
  sol = solve_ivp(vector_field, (0.0, t_end), np.asarray(y0, float), method="DOP853", t_eval=t,
                  rtol=1e-12, atol=1e-12)
  if not sol.success:
    raise RuntimeError(f"spiral simulation failed: {sol.message}")
  return t, sol.y.T.copy()


class Builder(tfds.core.GeneratorBasedBuilder):
  """Cubic spiral: training windows of 10 samples and the full trajectory for evaluation."""

  name = "spiral"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Windows of 10 samples (train), full 1000-sample trajectory (test)."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "y0": tfds.features.Tensor(shape=(2,), dtype=np.float64),
            "t": tfds.features.Tensor(shape=(None,), dtype=np.float64),
            "y": tfds.features.Tensor(shape=(None, 2), dtype=np.float64),
        }),
        homepage="https://github.com/Weixy21/InvarianceNODE",
        citation="Xiao et al., On the Forward Invariance of Neural ODEs, ICML 2023.",
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples("train"), "test": self._generate_examples("test")}

  def _generate_examples(self, split: str):
    t, y = trajectory()
    if split == "test":
      yield 0, {"y0": y[0], "t": t, "y": y}
      return
    for s in range(DATA_SIZE - BATCH_TIME):
      yield s, {"y0": y[s], "t": t[s:s + BATCH_TIME], "y": y[s:s + BATCH_TIME]}
