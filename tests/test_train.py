"""The generic trainer: one-step smoke run to an export, exact resume after kill -9, data parallelism."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from zoo import checkpoint

from tests.conftest import ROOT

SMOKE = "configs/massnet.py:sir,smoke"


def _train(workdir, *flags, env=None, wait=True):
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
  _train(tmp_path / "run")
  leaves, manifest = _export_leaves(tmp_path / "run")
  assert manifest["name"] == "massnet-sir" and manifest["config"]["smoke"] is True
  assert manifest["checks"] and all(c["passed"] for c in manifest["checks"])
  assert {"test_mse", "mass_drift_max"} <= set(manifest["metrics"])
  assert (tmp_path / "run" / "export" / "README.md").read_text().startswith("---")


def test_init_from_starts_at_the_shipped_weights(tmp_path):
  import jax
  from flax import nnx

  import zoo
  _train(tmp_path / "run", "--config.init_from=massnet-sir", "--config.optimizer.lr=0.0")
  leaves, _ = _export_leaves(tmp_path / "run")  # lr 0: the export is the starting point
  shipped = [np.asarray(x) for x in jax.tree.leaves(nnx.state(zoo.load("massnet-sir")).to_pure_dict())]
  assert len(leaves) == len(shipped)
  for a, b in zip(leaves, shipped):
    np.testing.assert_array_equal(a, b)


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path):
  flags = ["--config.epochs=3", "--config.max_train_examples=900", "--config.checkpoint_every_steps=2"]
  _train(tmp_path / "straight", *flags)
  victim = tmp_path / "killed"
  proc = _train(victim, *flags, wait=False)
  deadline = time.time() + 300
  while time.time() < deadline:
    log = victim / "metrics.jsonl"
    if log.exists() and len(log.read_text().splitlines()) >= 40:
      break
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
  assert not (victim / "export").exists()
  resumed = _train(victim, *flags)
  assert "Resumed massnet-sir from step" in resumed.stderr
  a, _ = _export_leaves(tmp_path / "straight")
  b, _ = _export_leaves(victim)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)


def test_two_devices_give_the_same_losses(tmp_path):
  flags = ["--config.epochs=2", "--config.max_train_examples=256", "--config.export=False"]
  _train(tmp_path / "one", *flags)
  _train(tmp_path / "two", *flags, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
  assert one.keys() == two.keys() and len(one) == 32
  np.testing.assert_allclose([two[k] for k in sorted(two)], [one[k] for k in sorted(one)], rtol=1e-9)


def test_trainer_sees_both_devices():
  from tests.conftest import run_python
  out = run_python(
      "import jax; from train.trainer import _Run; print(len(jax.devices()))",
      env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert out.stdout.strip() == "2", out.stderr
