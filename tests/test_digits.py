"""digits: the offline TFDS builder over scikit-learn's load_digits (8×8×1 in [0, 1], stratified split)."""

import hashlib

import numpy as np
import pytest

import zoo.data
from zoo.data import digits


@pytest.fixture(scope="module")
def splits():
  return zoo.data.load("digits", "train"), zoo.data.load("digits", "test")


def test_features_shapes_dtypes_and_range(splits):
  train, test = splits
  assert set(train) == {"image", "label"}
  assert train["image"].shape == (1438, 8, 8, 1) and test["image"].shape == (359, 8, 8, 1)
  assert train["image"].dtype == np.float32 and train["label"].dtype == np.int64
  for split in splits:
    assert split["image"].min() == 0.0 and split["image"].max() == 1.0
    np.testing.assert_array_equal(split["image"] * 16, np.round(split["image"] * 16))  # counts 0..16 / 16
    assert set(np.unique(split["label"])) == set(range(10))


def test_split_is_a_stratified_partition_of_all_examples(splits):
  train, test = splits
  images, labels = digits.arrays()
  tr, te = digits.split_indices(labels)
  assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(labels) == 1797
  np.testing.assert_array_equal(train["image"], images[tr])  # the builder keeps the documented order
  np.testing.assert_array_equal(test["label"], labels[te])
  total, in_test = np.bincount(labels), np.bincount(test["label"])
  assert np.all(np.abs(in_test - digits.TEST_FRACTION * total) <= 0.5)


def test_split_is_deterministic_and_pinned():
  _, labels = digits.arrays()
  a, b = digits.split_indices(labels), digits.split_indices(labels)
  np.testing.assert_array_equal(a[1], b[1])
  # Pinned: a change in the split (numpy's legacy stream, scikit-learn's order) changes every reported metric.
  assert hashlib.sha256(a[1].tobytes()).hexdigest()[:16] == PINNED_TEST_INDICES
  assert not np.array_equal(digits.split_indices(labels, seed=1)[1], a[1])


def test_builder_metadata():
  info = zoo.data.builder("digits").info
  assert info.features["label"].num_classes == 10
  assert info.supervised_keys == ("image", "label")
  assert info.splits["train"].num_examples == 1438


PINNED_TEST_INDICES = "3530be80b9605f4c"
