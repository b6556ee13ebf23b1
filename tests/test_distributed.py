"""The trainer as several processes (jax.distributed on 127.0.0.1, gloo collectives, free ports, every wait bounded):
the same losses as one process on the same global batches, an export that is the same kind of checkpoint, checkpoints
that resume across topologies, and a killed process that ends the others (non-zero, in bounded time) and a relaunch
that resumes exactly. One fast test runs by default; the rest are `-m slow`."""

import json
import pathlib
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.test_train import _config, _export_leaves, _losses
from train.trainer import train_and_evaluate

MASSNET = "configs/massnet.py:sir,smoke"
DIGITS = "configs/nonexpansive.py:digits,smoke"
TIMEOUT = 900  # seconds for one launch of every process (2 shared cores: compiles dominate)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _flags(settings: dict) -> list[str]:
  return [f"--config.{k}={v}" for k, v in settings.items()]


def _start(workdir, processes: int, devices: int, *flags, config=MASSNET, heartbeat=10):
  """Starts `processes` trainer processes with `devices` CPU devices each; returns them (stdout/stderr in files
  beside WORKDIR: NAME.pI.out, NAME.pI.err)."""
  port = _free_port()
  procs = []
  for i in range(processes):
    cmd = [sys.executable, "-m", "train", f"--config={config}", f"--workdir={workdir}", *flags]
    if processes > 1:
      cmd += [f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={processes}", f"--process_id={i}",
              f"--heartbeat_timeout={heartbeat}"]
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(devices), "PYTHONPATH": str(ROOT)}
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f)
    out = open(f"{workdir}.p{i}.out", "w")  # pylint: disable=consider-using-with
    err = open(f"{workdir}.p{i}.err", "w")  # pylint: disable=consider-using-with
    procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err))
  return procs


def _wait(procs, timeout=TIMEOUT) -> list[int]:
  """Return codes; every process still running after `timeout` seconds is killed and the test fails."""
  deadline = time.time() + timeout
  for p in procs:
    try:
      p.wait(timeout=max(1, deadline - time.time()))
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail(f"the processes did not finish within {timeout} s")
  return [p.returncode for p in procs]


def _train(workdir, processes: int, devices: int, *flags, config=MASSNET) -> dict:
  """Runs to the end; returns the run's result (WORKDIR/result.json, written by process 0 alone)."""
  codes = _wait(_start(workdir, processes, devices, *flags, config=config))
  errs = [open(f"{workdir}.p{i}.err").read()[-3000:] for i in range(processes)]
  assert codes == [0] * processes, f"return codes {codes}:\n" + "\n---\n".join(errs)
  out = open(f"{workdir}.p0.out").read()
  assert out.count("done:") == 1 and "{" not in out  # the result once, for people
  for i in range(1, processes):  # the result is printed once, by process 0
    assert "done:" not in open(f"{workdir}.p{i}.out").read()
  return json.loads((pathlib.Path(workdir) / "result.json").read_text())


def test_two_processes_train_like_one_and_export_the_same_kind_of_checkpoint(tmp_path):
  """2 processes x 2 CPU devices vs this process (1 device): the same global batches give the same losses, only
  process 0 writes, and the export loads with zoo.load and has the single-process export's files and manifest."""
  import zoo
  from zoo import checkpoint

  settings = {"epochs": 1, "max_train_examples": 128}
  one = train_and_evaluate(_config(**settings), tmp_path / "one")
  two = _train(tmp_path / "two", 2, 2, *_flags(settings))
  assert one["devices"] == 1 and two["devices"] == 4 and two["processes"] == 2
  a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
  assert a.keys() == b.keys() and len(a) == 8
  np.testing.assert_allclose([b[k] for k in sorted(b)], [a[k] for k in sorted(a)], rtol=1e-6, atol=1e-9)
  assert "\"steps\"" not in open(f"{tmp_path / 'two'}.p1.out").read(), "process 1 printed a result"

  model = zoo.load(f"local-dir:{tmp_path / 'two' / 'export'}")
  x, y = _export_leaves(tmp_path / "one")[0], _export_leaves(tmp_path / "two")[0]
  for u, v in zip(x, y):
    np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-12)
  m1 = checkpoint.read_manifest(tmp_path / "one" / "export")
  m2 = checkpoint.read_manifest(tmp_path / "two" / "export")
  assert m1.keys() == m2.keys() and m1["format"] == m2["format"] and m1["model_kwargs"] == m2["model_kwargs"]
  top = lambda files: sorted({f if not f.startswith("state/") else "/".join(f.split("/")[:2]) for f in files})
  assert top(m1["files"]) == top(m2["files"])  # state/ holds the same orbax files (data chunks named at random)
  assert model is not None


@pytest.mark.slow
@pytest.mark.parametrize("config", [MASSNET, DIGITS], ids=["massnet", "nonexpansive-digits"])
def test_two_processes_of_two_devices_equal_one_process_of_four(tmp_path, config):
  settings = {"export": False, "max_train_examples": 128} if config == MASSNET else {"export": False}
  _train(tmp_path / "one", 1, 4, *_flags(settings), config=config)
  _train(tmp_path / "two", 2, 2, *_flags(settings), config=config)
  a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
  assert a.keys() == b.keys() and len(a) >= 4
  np.testing.assert_allclose([b[k] for k in sorted(b)], [a[k] for k in sorted(a)], rtol=1e-6, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("first,then", [(2, 1), (1, 2)], ids=["2-processes-then-1", "1-process-then-2"])
def test_a_checkpoint_resumes_on_another_topology(tmp_path, first, then):
  """Epoch 1 on one topology (2 processes x 2 devices, or 1 process x 4), epoch 2 resumed from its checkpoint on
  the other: the losses and the exported weights equal an uninterrupted one-device run."""
  settings = {"max_train_examples": 128}
  straight = tmp_path / "straight"
  train_and_evaluate(_config(epochs=2, **settings), straight)
  run = tmp_path / "run"
  _train(run, first, 4 // first, *_flags({**settings, "epochs": 1, "export": False}))
  result = _train(run, then, 4 // then, *_flags({**settings, "epochs": 2}))
  assert result["processes"] == then and result["steps"] == 16
  a, b = _losses(straight), _losses(run)
  assert a.keys() == b.keys()
  np.testing.assert_allclose([b[k] for k in sorted(b)], [a[k] for k in sorted(a)], rtol=1e-9, atol=1e-12)
  for u, v in zip(_export_leaves(straight)[0], _export_leaves(run)[0]):
    np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """An uninterrupted 2-process run of the kill test's settings (its export is the reference)."""
  run = tmp_path_factory.mktemp("uninterrupted") / "run"
  _train(run, 2, 2, *_flags(KILL_SETTINGS))
  return run


KILL_SETTINGS = {"epochs": 3, "max_train_examples": 480, "checkpoint_every_steps": 5}


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0], ids=["kill-process-1", "kill-process-0-the-coordinator"])
def test_kill_one_process_ends_the_others_and_a_relaunch_resumes_exactly(tmp_path, uninterrupted, victim):
  heartbeat = 10
  run = tmp_path / "run"
  procs = _start(run, 2, 2, *_flags(KILL_SETTINGS), heartbeat=heartbeat)
  log = run / "metrics.jsonl"
  deadline = time.time() + TIMEOUT
  while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 37):
    assert all(p.poll() is None for p in procs), "a process ended before the kill"
    time.sleep(0.05)
  procs[victim].send_signal(signal.SIGKILL)
  killed = time.time()
  survivor = procs[1 - victim]
  try:
    survivor.wait(timeout=heartbeat + 60)
  except subprocess.TimeoutExpired:
    for p in procs:
      p.kill()
    pytest.fail(f"process {1 - victim} still runs {heartbeat + 60} s after process {victim} was killed")
  waited = time.time() - killed
  procs[victim].wait()
  assert procs[victim].returncode == -signal.SIGKILL, "the run finished before it could be killed"
  assert survivor.returncode != 0
  err = open(f"{run}.p{1 - victim}.err").read()
  assert ("relaunch every process" in err or "another task died" in err or "detected fatal errors" in err), err[-3000:]
  assert not (run / "export").exists()
  print(f"process {1 - victim} exited with {survivor.returncode} {waited:.1f} s after process {victim} was killed")

  result = _train(run, 2, 2, *_flags(KILL_SETTINGS))  # relaunch both: resumes from the latest checkpoint
  assert result["steps"] == 90
  steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
  assert steps == list(range(1, 91)), "the log should hold each step once after the resume"
  for u, v in zip(_export_leaves(uninterrupted)[0], _export_leaves(run)[0]):
    np.testing.assert_array_equal(u, v)


def test_float64_families_fail_clearly_on_a_backend_without_float64(monkeypatch):
  import jax

  import zoo
  from zoo import errors

  monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
  with pytest.raises(errors.Float64UnavailableError, match="no native float64"):
    zoo.create("massnet-sir")


def test_scan_epoch_trains_like_one_step_at_a_time(tmp_path):
  """--config.scan_epoch (each epoch one compiled scan, state donated) gives the per-step run's losses and weights."""
  settings = {"epochs": 2, "max_train_examples": 128, "checkpoint_every_steps": 5}
  train_and_evaluate(_config(**settings), tmp_path / "step")
  train_and_evaluate(_config(scan_epoch=True, **settings), tmp_path / "scan")
  a, b = _losses(tmp_path / "step"), _losses(tmp_path / "scan")
  assert a.keys() == b.keys() and len(a) == 16
  np.testing.assert_allclose([b[k] for k in sorted(b)], [a[k] for k in sorted(a)], rtol=1e-12)
  for u, v in zip(_export_leaves(tmp_path / "step")[0], _export_leaves(tmp_path / "scan")[0]):
    np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-15)


@pytest.mark.slow
def test_scan_epoch_on_two_processes_resumes_and_matches(tmp_path):
  """scan_epoch over 2 processes x 2 devices, stopped after epoch 1 and resumed: the per-step one-device losses."""
  settings = {"max_train_examples": 128}
  train_and_evaluate(_config(epochs=2, **settings), tmp_path / "step")
  run = tmp_path / "scan"
  _train(run, 2, 2, *_flags({**settings, "epochs": 1, "scan_epoch": True, "export": False}))
  _train(run, 2, 2, *_flags({**settings, "epochs": 2, "scan_epoch": True}))
  a, b = _losses(tmp_path / "step"), _losses(run)
  assert a.keys() == b.keys()
  np.testing.assert_allclose([b[k] for k in sorted(b)], [a[k] for k in sorted(a)], rtol=1e-9, atol=1e-12)
