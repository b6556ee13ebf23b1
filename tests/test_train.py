"""The generic trainer: a smoke run to an export (in-process), fine-tuning from shipped weights, exact resume after
kill -9, and data parallelism over two devices (the one subprocess that has to be: XLA fixes the device count at
start)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from zoo import checkpoint

from tests.conftest import ROOT, kill_after_records, load_config
from train.trainer import train_and_evaluate

SMOKE = "configs/massnet.py:sir,smoke"


def _config(**overrides):
  """configs/massnet.py:sir,smoke with `overrides` (dotted keys as on the command line)."""
  return load_config("configs/massnet.py", "sir,smoke", **overrides)


def _subprocess_train(workdir, *flags, env=None, wait=True):
  cmd = [sys.executable, "-m", "train", f"--config={SMOKE}", f"--workdir={workdir}", *flags]
  full_env = {**os.environ, **(env or {})}
  if not wait:
    return subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _losses(workdir):
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {r["step"]: r["loss"] for r in rows}


def _export_leaves(workdir):
  import jax
  from flax import nnx
  model, manifest = checkpoint.restore(workdir / "export")
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model).to_pure_dict())], manifest


def test_smoke_run_exports_a_verified_checkpoint(tmp_path):
  result = train_and_evaluate(_config(), tmp_path / "run")
  leaves, manifest = _export_leaves(tmp_path / "run")
  assert result["export"] == str(tmp_path / "run" / "export") and result["devices"] == 1
  assert manifest["name"] == "massnet-sir" and manifest["config"]["smoke"] is True
  assert manifest["checks"] and all(c["passed"] for c in manifest["checks"])
  assert {"test_mse", "mass_drift_max"} <= set(manifest["metrics"])
  assert (tmp_path / "run" / "export" / "README.md").read_text().startswith("---")


def test_init_from_starts_at_the_shipped_weights(tmp_path):
  import jax
  from flax import nnx

  import zoo
  train_and_evaluate(_config(init_from="massnet-sir", **{"optimizer.lr": 0.0}), tmp_path / "run")
  leaves, _ = _export_leaves(tmp_path / "run")  # lr 0: the export is the starting point
  shipped = [np.asarray(x) for x in jax.tree.leaves(nnx.state(zoo.load("massnet-sir")).to_pure_dict())]
  assert len(leaves) == len(shipped)
  for a, b in zip(leaves, shipped):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # heavy: `make test-slow` (issue 13: the default run stays under 8 minutes)
def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path):
  settings = {"epochs": 3, "max_train_examples": 480, "checkpoint_every_steps": 5}
  train_and_evaluate(_config(**{**settings, "checkpoint_every_steps": 1000}), tmp_path / "straight")  # saves change nothing
  victim = tmp_path / "killed"
  proc = _subprocess_train(victim, *(f"--config.{k}={v}" for k, v in settings.items()), wait=False)
  kill_after_records(proc, victim / "metrics.jsonl", 37)
  assert not (victim / "export").exists()
  logged = len((victim / "metrics.jsonl").read_text().splitlines())
  result = train_and_evaluate(_config(**settings), victim)  # resumes in this process
  steps = [json.loads(l)["step"] for l in (victim / "metrics.jsonl").read_text().splitlines()]
  assert 1 < steps[logged] <= steps[logged - 1] + 1, "did not resume from the last checkpoint"
  assert result["steps"] == max(_losses(tmp_path / "straight"))
  a, _ = _export_leaves(tmp_path / "straight")
  b, _ = _export_leaves(victim)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow  # the default run keeps test_distributed's 2 processes x 2 devices against one device
def test_two_devices_shard_the_batch_and_give_the_same_losses(tmp_path):
  settings = {"epochs": 2, "max_train_examples": 256, "export": False}
  one = train_and_evaluate(_config(**settings), tmp_path / "one")
  proc = _subprocess_train(tmp_path / "two", *(f"--config.{k}={v}" for k, v in settings.items()),
                           env={"XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"})
  two = json.loads((tmp_path / "two" / "result.json").read_text())
  assert proc.stdout.count("done:") == 1 and "{" not in proc.stdout  # the result once, for people
  assert one["devices"] == 1 and two["devices"] == 2  # the trainer's mesh spans both devices
  a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
  assert a.keys() == b.keys() and len(a) == 32
  np.testing.assert_allclose([b[k] for k in sorted(b)], [a[k] for k in sorted(a)], rtol=1e-9)


def test_metric_names_probe_is_remembered_per_evaluate_source(tmp_path, monkeypatch):
  """The best_metric probe evaluates once; a second run of the same config reads its keys from the zoo's cache, and
  an edited evaluate (another source) or another model probes again."""
  import types  # pylint: disable=import-outside-toplevel

  from train import trainer  # pylint: disable=import-outside-toplevel

  monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
  calls = []
  module = tmp_path / "fake_eval.py"
  module.write_text("def evaluate(model, data):\n  return {'loss': 1.0, 'b': 2.0}\n")
  namespace: dict = {}
  exec(compile(module.read_text(), str(module), "exec"), namespace)  # pylint: disable=exec-used

  def evaluate(model, data):
    calls.append(len(data["x"]))
    return namespace["evaluate"](model, data)

  evaluate.__code__ = evaluate.__code__.replace(co_filename=str(module))  # its source file: fake_eval.py
  family = types.SimpleNamespace(name="fake", evaluate=evaluate)
  model = types.SimpleNamespace(eval=lambda: None)
  run = types.SimpleNamespace(eval_data={"x": np.zeros((10, 2))}, local_models=lambda: [model])
  config = _config(batch_size=4)
  assert trainer.metric_names(config, family, run) == ["b", "loss"]
  assert trainer.metric_names(config, family, run) == ["b", "loss"]
  assert calls == [4]  # the second run did not evaluate
  module.write_text(module.read_text() + "# edited\n")
  assert trainer.metric_names(config, family, run) == ["b", "loss"]
  assert calls == [4, 4]
  config.model = "another"
  trainer.metric_names(config, family, run)
  assert calls == [4, 4, 4]
