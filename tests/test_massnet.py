"""massnet-sir: the conservation law holds on the shipped weights; the card's numbers are reproducible."""

import jax
import numpy as np
import pytest

import zoo
import zoo.data
from zoo import hub
from zoo.models import massnet

SHIPPED = (hub.checkpoints_dir() / "massnet-sir" / "manifest.json").is_file()


def test_random_weights_conserve_the_total():
  model = zoo.create("massnet-sir", seed=5)
  checks = zoo.verify(model, "massnet-sir")
  assert all(c.passed for c in checks), checks


def test_verify_fails_without_antisymmetry():
  """The ablation drops S − Sᵀ: verify must catch the drift (so the check can fail)."""
  model = zoo.create("massnet-sir", conserve=False)
  checks = zoo.verify(model, "massnet-sir")
  assert not all(c.passed for c in checks)


def test_float64_outside_any_x64_context():
  model = zoo.create("massnet-sir")
  x = np.random.default_rng(0).random((4, 3))
  y = model(x)
  assert y.dtype == np.float64
  assert np.max(np.abs(np.asarray(y).sum(1) - x.sum(1))) < 1e-12
  assert not jax.config.jax_enable_x64  # scoped to the model, not global


@pytest.mark.skipif(not SHIPPED, reason="massnet-sir is not embedded")
def test_shipped_weights_keep_the_guarantee_and_the_card_numbers():
  model = zoo.load("massnet-sir")
  checks = zoo.verify(model)
  assert checks and all(c.passed for c in checks), checks
  info = zoo.info("massnet-sir")
  with jax.enable_x64(True):
    metrics = massnet.evaluate(model, zoo.data.load("sir", "test"))
  assert metrics["test_mse"] == pytest.approx(info["metrics"]["test_mse"], rel=1e-6)
  assert metrics["test_mse"] < 1e-4
  assert metrics["mass_drift_max"] < 1e-12
