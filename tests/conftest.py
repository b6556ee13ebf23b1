"""Shared fixtures: an isolated data dir and HF cache per session, and a local Hub-compatible server."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Tests compile far more than they compute, so the default run asks XLA's CPU backend for LLVM -O0: compilation
# takes about half the CPU time (tests/test_rotate.py + test_wavemix.py: 121 s -> 63 s CPU). Results differ from
# the default level only in float rounding, as between two CPU models (max |diff| 5e-7 on resnet18-digits logits,
# 2e-5 on a 200-step float32 elcd-lasa8d rollout). Set before any JAX backend starts; subprocesses inherit it.
# `make test-slow` runs at XLA's default level (ZOO_TEST_XLA_DEFAULT=1), so the optimised path is tested too.
if os.environ.get("ZOO_TEST_XLA_DEFAULT") != "1" and "xla_backend_optimization_level" not in os.environ.get(
    "XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()


def require_rl(what: str) -> None:
  """At a test module's top: skips the module, with the install command, where the optional extra rl (crax-bench,
  MuJoCo-MJX) is absent; where ZOO_REQUIRE_RL is set (CI installs the extra) its absence fails the run instead."""
  if os.environ.get("ZOO_REQUIRE_RL"):
    import crax  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  else:
    pytest.importorskip("crax", reason=f"{what} needs the optional extra rl: pip install -e '.[rl]' (or make rl)")


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory):
  """Keeps tests away from the user's caches and the repo's pins: HF cache under tmp, a copy of
  checkpoints/pins.json (what `zoo ship` in a test writes); data prepared once per session."""
  base = tmp_path_factory.mktemp("env")
  old = {k: os.environ.get(k) for k in ("HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT", "HF_HUB_OFFLINE", "ZOO_DATA_DIR",
                                        "ZOO_PINS", "ZOO_CACHE_DIR", "ZOO_INIT_CACHE")}
  shutil.copyfile(ROOT / "checkpoints" / "pins.json", base / "pins.json")
  os.environ["ZOO_PINS"] = str(base / "pins.json")
  os.environ["HF_HOME"] = str(base / "hf")
  os.environ.pop("HF_HUB_CACHE", None)
  os.environ.pop("HF_HUB_OFFLINE", None)
  os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens: any stray Hub call fails fast
  os.environ.setdefault("ZOO_DATA_DIR", str(base / "data"))
  os.environ["ZOO_CACHE_DIR"] = str(base / "zoo-cache")  # registry index + compilation cache of this session
  os.environ["ZOO_INIT_CACHE"] = "0"  # tests test the build; tests/test_init_cache.py turns the cache on
  yield
  for k, v in old.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v


@pytest.fixture(autouse=True)
def _own_pins(tmp_path_factory, monkeypatch):
  """Each test gets its own copy of checkpoints/pins.json: a test that ships cannot re-pin a model for others."""
  path = tmp_path_factory.mktemp("pins") / "pins.json"
  shutil.copyfile(ROOT / "checkpoints" / "pins.json", path)
  monkeypatch.setenv("ZOO_PINS", str(path))


@pytest.fixture()
def hub(tmp_path, monkeypatch):
  """A Hub-compatible HTTP server on 127.0.0.1 storing repos under tmp; HF_ENDPOINT points at it and the HF
  cache is empty. Yields the server handle (see tests/hub_server.py)."""
  from tests import hub_server

  monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
  with hub_server.serve(tmp_path / "hub") as server:
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server


def run_python(code: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
  """Runs `code` in a fresh interpreter (environment read at import, e.g. HF_HUB_OFFLINE or XLA_FLAGS)."""
  full_env = {**os.environ, **(env or {})}
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True,
                        timeout=timeout)


def load_config(path: str, arg: str, **overrides):
  """`get_config(arg)` of configs file `path` (relative to the repository), with `overrides` given as dotted keys
  (`**{"env.steps": 16}`), as the command line's --config.KEY=VALUE would set them."""
  import importlib.util  # pylint: disable=import-outside-toplevel

  spec = importlib.util.spec_from_file_location(f"config_{pathlib.Path(path).stem}", ROOT / path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  from zoo import training  # pylint: disable=import-outside-toplevel

  return training.override(module.get_config(arg), overrides)


def kill_after_records(proc: subprocess.Popen, log: pathlib.Path, records: int, timeout: float = 300) -> None:
  """SIGKILLs `proc` as soon as `log` (a metrics.jsonl) holds `records` lines (or after `timeout` seconds, or once
  it has ended), waits for it and asserts it died of the signal (not by finishing first)."""
  import signal  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel

  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if log.exists() and len(log.read_text().splitlines()) >= records:
      break
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
