"""scikit-learn's handwritten digits as a TFDS builder ("digits"): the zoo's offline image data.

`sklearn.datasets.load_digits` ships 1797 grey-scale 8×8 images (UCI "Optical Recognition of Handwritten
Digits", pixel counts 0..16) with their labels 0..9 inside the pip package, so this dataset needs no network.

Features: `image` (8, 8, 1) float32 in [0, 1] (the counts divided by 16), `label` int64 in 0..9.
Splits: a stratified 80/20 split that is a function of the data only: for each class, its examples (in
scikit-learn's order) are permuted by `numpy.random.RandomState(0)` (the legacy generator, whose stream numpy
keeps fixed) and the first round(20%) go to `test`; each split keeps scikit-learn's order. That gives
1438 train and 359 test examples, every class's share equal in both splits to within one example.

    import zoo.data
    train = zoo.data.load("digits", "train")    # {"image": (1438, 8, 8, 1) float32, "label": (1438,) int64}
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8, 1)
TEST_FRACTION = 0.2
SEED = 0


def arrays() -> tuple[np.ndarray, np.ndarray]:
  """All 1797 examples in scikit-learn's order: images (1797, 8, 8, 1) float32 in [0, 1], labels (1797,) int64."""
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

  bunch = load_digits()
  images = (np.asarray(bunch.images, np.float64) / 16.0).astype(np.float32)[..., None]
  return images, np.asarray(bunch.target, np.int64)


def split_indices(labels: np.ndarray, test_fraction: float = TEST_FRACTION,
                  seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
  """Deterministic stratified split of `labels: (n,)`: returns sorted (train_indices, test_indices)."""
  rng = np.random.RandomState(seed)
  test = []
  for c in range(int(labels.max()) + 1):
    members = np.flatnonzero(labels == c)
    test.extend(members[rng.permutation(len(members))[: int(round(test_fraction * len(members)))]])
  test = np.sort(np.asarray(test, np.int64))
  train = np.setdiff1d(np.arange(len(labels)), test)
  return train, test


class Builder(tfds.core.GeneratorBasedBuilder):
  """scikit-learn digits (8×8×1 in [0, 1], 10 classes), stratified 80/20 split."""

  name = "digits"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "load_digits scaled to [0, 1]; stratified 80/20 split, RandomState(0)."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }),
        supervised_keys=("image", "label"),
        disable_shuffling=True,  # keep the documented order (TFDS would otherwise shuffle by key hash)
        homepage="https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html",
        citation="Alpaydin, Kaynak. Optical Recognition of Handwritten Digits. UCI Machine Learning Repository, "
                 "1998. doi:10.24432/C50P49",
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    images, labels = arrays()
    train, test = split_indices(labels)
    return {"train": self._generate_examples(images, labels, train),
            "test": self._generate_examples(images, labels, test)}

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {"image": images[i], "label": labels[i]}
