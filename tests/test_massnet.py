"""massnet-sir: the conservation law holds on the shipped weights; the card's numbers are reproducible."""

import jax
import numpy as np
import pytest

import zoo
import zoo.data
from zoo import errors, hub
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


def test_config_picks_the_variant_and_a_metric_that_evaluate_reports():
  from configs import massnet as cfg  # pylint: disable=import-outside-toplevel

  c = cfg.get_config("sir")
  assert (c.model, c.dataset, c.best_metric) == ("massnet-sir", "sir", "test_mse") and cfg.get_config("sir,smoke").smoke
  metrics = massnet.evaluate(zoo.create(c.model), zoo.data.load(c.dataset, c.eval_split))
  assert set(metrics) == {"test_mse", "mass_drift_max"}  # best_metric among them, no duplicate "loss"
  assert metrics["mass_drift_max"] < 1e-12
  with pytest.raises(errors.UnknownVariantError, match=r"no variant 'sri'\. Did you mean: sir"):
    cfg.get_config("sri")


@pytest.mark.skipif(not SHIPPED, reason="massnet-sir is not embedded")
def test_shipped_weights_keep_the_guarantee_and_the_card_numbers():
  model = zoo.load("massnet-sir")
  checks = zoo.verify(model)
  assert checks and all(c.passed for c in checks), checks
  info = zoo.info("massnet-sir")
  metrics = massnet.evaluate(model, zoo.data.load("sir", "test"))  # float64 by itself, outside any x64 context
  assert metrics["test_mse"] == pytest.approx(info["metrics"]["test_mse"], rel=1e-6)
  assert metrics["test_mse"] < 1e-4
  assert metrics["mass_drift_max"] < 1e-12


@pytest.mark.slow  # heavy: `make test-slow` (issue 13: the default run stays under 8 minutes)
def test_benchmark_epoch_equals_the_trainer_step():
  """benchmarks/massnet_official.py trains with a scanned epoch: it must be the trainer's step, batch for batch."""
  from flax import nnx  # pylint: disable=import-outside-toplevel

  from benchmarks import massnet_official as bench  # pylint: disable=import-outside-toplevel
  from configs import massnet as cfg  # pylint: disable=import-outside-toplevel
  from train.trainer import batch_order, make_optimizer, make_train_step  # pylint: disable=import-outside-toplevel

  data = {k: v[:96] for k, v in zoo.data.load("sir", "train").items()}
  test = zoo.data.load("sir", "test")
  scanned = bench.train_jax(data, test, seed=3, epochs=1, record_steps=3)
  c = cfg.get_config("sir")
  spec = zoo.registry.get_spec(c.model)
  with spec.family.precision():
    model = spec.build(3)
    optimizer = nnx.Optimizer(model, make_optimizer(c.optimizer, 3, 3), wrt=nnx.Param)
    step = make_train_step(spec.family.loss)
    losses = [float(step(optimizer, model, {k: v[idx] for k, v in data.items()})[0])
              for idx in batch_order(3, 0, 96, c.batch_size)]
    expected = float(np.mean((np.asarray(model(test["x"])) - test["y"]) ** 2))
  np.testing.assert_allclose(scanned["losses"], losses, rtol=1e-12)
  assert scanned["test_mse"] == pytest.approx(expected, rel=1e-10)


def test_benchmark_batches_and_missing_torch_message():
  import importlib.util  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel

  from benchmarks import massnet_official as bench  # pylint: disable=import-outside-toplevel

  order = np.arange(900)
  assert [g.shape for g in bench.epoch_batches(order, drop_last=True)] == [(28, 32)]
  kept = bench.epoch_batches(order, drop_last=False)
  assert [g.shape for g in kept] == [(28, 32), (1, 4)] and kept[1][0].tolist() == [896, 897, 898, 899]
  if importlib.util.find_spec("torch") is None:
    with pytest.raises(SystemExit, match="PyTorch is not importable"):
      bench.check_torch(sys.executable)
