"""Datasets: offline TFDS builders without TensorFlow; catalogue data offline fails at once."""

import time

import numpy as np
import pytest

import zoo.data
from zoo import errors


def test_sir_builder_matches_the_simulation():
  from zoo.data import sir
  train, test = zoo.data.load("sir", "train"), zoo.data.load("sir", "test")
  assert train["x"].shape == (900, 3) and test["x"].shape == (100, 3) and train["x"].dtype == np.float64
  np.testing.assert_allclose(train["x"].sum(1), 1.0, atol=1e-12)
  np.testing.assert_allclose(train["y"].sum(1), 1.0, atol=1e-9)  # the ODE conserves the total too
  np.testing.assert_allclose(sir.flow(test["x"][:3]), test["y"][:3], rtol=1e-9)
  assert not set(map(tuple, train["x"])) & set(map(tuple, test["x"]))


def test_download_dataset_offline_fails_fast_and_clearly():
  start = time.perf_counter()
  with pytest.raises(errors.DataUnavailableError, match="ZOO_DATA_DIR"):
    zoo.data.load("cifar10", "train")
  assert time.perf_counter() - start < 30


def test_unknown_dataset_and_split():
  with pytest.raises(errors.DataUnavailableError):
    zoo.data.load("no_such_dataset_xyz", "train")
  with pytest.raises(errors.DataUnavailableError, match="split"):
    zoo.data.load("sir", "validation")
