"""volnet-pendulum: det J = 1 and the closed-form inverse on random and shipped weights; float64 scoped."""

import jax
import numpy as np
import pytest

import zoo
import zoo.data
from zoo import errors, hub
from zoo.data import pendulum
from zoo.models import volume
from zoo.models.volume import report as volume_report

SHIPPED = (hub.checkpoints_dir() / "volnet-pendulum" / "manifest.json").is_file()


def test_random_weights_preserve_volume_and_invert():
  model = zoo.create("volnet-pendulum", seed=3)
  checks = zoo.verify(model, "volnet-pendulum")
  assert checks and all(c.passed for c in checks), checks


def test_slides_form_and_wider_states_preserve_volume():
  """The slides' X = [σ(Av + a), σ(Bx + b)] (no read-out) and a 6-D state: det J = 1 to round-off."""
  for kwargs in (dict(hidden=None), dict(dim=6, hidden=8, layers=3)):
    model = zoo.create("volnet-pendulum", seed=1, **kwargs)
    z = np.random.default_rng(0).normal(size=(200, model.dim)) * 3
    assert np.max(np.abs(np.asarray(model.log_abs_det_jacobian(z)))) < 1e-13
    np.testing.assert_allclose(np.asarray(model.inverse(model(z))), z, atol=1e-12)
    np.testing.assert_allclose(np.asarray(model(model.inverse(z))), z, atol=1e-12)


def test_verify_fails_without_the_shear_structure():
  model = zoo.create("volnet-pendulum", seed=3, preserving=False)
  checks = volume.verify(model, num_points=500)
  assert not any(c.passed for c in checks), checks


def test_float64_outside_any_x64_context():
  model = zoo.create("volnet-pendulum")
  z = np.random.default_rng(0).random((4, 2))
  out = model(z)
  assert out.dtype == np.float64 and model.inverse(out).dtype == np.float64
  np.testing.assert_allclose(np.asarray(model.inverse(out)), z, atol=1e-14)
  assert not jax.config.jax_enable_x64  # scoped to the model, not global


def test_jitted_entry_points_match_the_methods():
  """`apply` (one jit, the method name static) and the scanned `rollout` give what the module's methods give."""
  model = zoo.create("volnet-pendulum", seed=2)
  z = np.random.default_rng(1).normal(size=(16, 2))
  for method in volume.model.METHODS:
    np.testing.assert_allclose(volume.apply(model, method, z), np.asarray(getattr(model, method)(z)), atol=1e-13)
  np.testing.assert_allclose(volume.rollout(model, z, 5), np.asarray(model.rollout(z, 5)), atol=1e-13)
  with pytest.raises(ValueError, match="method"):
    volume.apply(model, "rollout", z)


def test_config_picks_the_variant():
  from configs import volume as cfg  # pylint: disable=import-outside-toplevel

  c = cfg.get_config("pendulum")
  assert (c.model, c.dataset, c.best_metric) == ("volnet-pendulum", "pendulum", "test_mse")
  assert cfg.get_config("pendulum,smoke").smoke
  with pytest.raises(errors.UnknownVariantError, match="pendulum"):
    cfg.get_config("pendelum")


def test_odd_dimension_is_rejected():
  with pytest.raises(ValueError, match="even"):
    zoo.create("volnet-pendulum", dim=3)


def test_pendulum_data_is_the_flow_map():
  train = zoo.data.load("pendulum", "train")
  assert train["x"].shape == (1600, 2) and train["x"].dtype == np.float64
  np.testing.assert_allclose(pendulum.energy(train["y"]), pendulum.energy(train["x"]), atol=1e-10)
  np.testing.assert_allclose(pendulum.flow(train["x"][:5], pendulum.STEP), train["y"][:5], atol=1e-12)
  # small-angle limit: the flow is close to the harmonic oscillator's rotation
  z = np.array([[1e-3, 0.0]])
  np.testing.assert_allclose(pendulum.flow(z, 0.5)[0], [1e-3 * np.cos(0.5), -1e-3 * np.sin(0.5)], rtol=1e-6)


@pytest.mark.skipif(not SHIPPED, reason="volnet-pendulum is not embedded")
def test_shipped_weights_keep_the_guarantee_and_the_card_numbers():
  model = zoo.load("volnet-pendulum")
  checks = zoo.verify(model)
  assert checks and all(c.passed for c in checks), checks
  info = zoo.info("volnet-pendulum")
  metrics = volume.evaluate(model, zoo.data.load("pendulum", "test"))  # float64 by itself, outside any x64 context
  assert metrics["test_mse"] == pytest.approx(info["metrics"]["test_mse"], rel=1e-6)
  assert metrics["test_mse"] < 1e-4
  assert metrics["max_abs_log_det"] < 1e-13 and metrics["max_inverse_error"] < 1e-12
  assert metrics["rollout_energy_drift_max"] < 0.05
  # the long rollout against the true flow (200 steps, t = 100): the card's numbers, a bounded error
  assert metrics["rollout_error_final"] == pytest.approx(info["metrics"]["rollout_error_final"], rel=1e-6)
  assert metrics["rollout_error_max"] < 1.0
  card = (hub.checkpoints_dir() / "volnet-pendulum" / "README.md").read_text()
  assert "## Long rollout against the true flow" in card and "## Data: the pendulum, and why" in card
  plot_file = volume_report.PLOT_FILE
  assert plot_file in card and (hub.checkpoints_dir() / "volnet-pendulum" / plot_file).is_file()
