"""What the TFDS builders of simulated systems (`pendulum`, `sir`) share: (state, next state) pairs split in order."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np


class PairSplits:
  """Mixin for a `tfds.core.GeneratorBasedBuilder` (list it first) whose examples are {"x": x_i, "y": y_i}:
  "train" holds the first ⌊train_fraction·n⌋ pairs of `pairs()` (x, y: (n, dim)), "test" the rest."""

  train_fraction: float

  def pairs(self) -> tuple[np.ndarray, np.ndarray]:
    raise NotImplementedError

  def _split_generators(self, dl_manager):
    del dl_manager
    x, y = self.pairs()
    n = int(self.train_fraction * len(x))
    return {"train": self._generate_examples(x[:n], y[:n]), "test": self._generate_examples(x[n:], y[n:])}

  def _generate_examples(self, x: np.ndarray, y: np.ndarray) -> Iterator[tuple[int, dict[str, Any]]]:
    for i, (a, b) in enumerate(zip(x, y)):
      yield i, {"x": a, "y": b}
