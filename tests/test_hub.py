"""zoo.load / zoo.push_to_hub against a real Hub-compatible HTTP server on 127.0.0.1 (tests/hub_server.py).

The huggingface_hub client is not mocked: it talks HTTP to the server, which stores repos with real commits.
"""

import concurrent.futures
import json
import os
import pathlib
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import nnx

import zoo
from zoo import checkpoint, cli, errors, hub

from tests.conftest import ROOT, run_python

REPO = "nnx-zoo/massnet-sir"  # the registry's pretrained repo for massnet-sir


def _leaves(model):
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model).to_pure_dict())]


def _same(a, b):
  return all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b)))


@pytest.fixture()
def no_embedded(tmp_path, monkeypatch):
  """Hides checkpoints/ so that zoo.load must use the cache or the Hub."""
  monkeypatch.setenv("ZOO_CHECKPOINTS", str(tmp_path / "no-checkpoints"))


@pytest.fixture()
def published(hub, no_embedded):
  """The shipped massnet-sir pushed to the local Hub under the registry's repo id."""
  url = zoo.push_to_hub(ROOT / "checkpoints" / "massnet-sir", repo_id=REPO)
  assert url.startswith(hub.url) and "/commit/" in url
  return hub


def test_push_then_cold_load_is_bit_identical(published):
  embedded, _ = checkpoint.restore(ROOT / "checkpoints" / "massnet-sir")
  assert not pathlib.Path(os.environ["HF_HOME"], "hub").exists()  # the cache starts empty
  model = zoo.load("massnet-sir")  # registry name -> not embedded -> not cached -> the Hub, pin checked
  assert _same(model, embedded)
  assert published.count("resolve") > 0
  published.reset_counts()
  assert _same(zoo.load("massnet-sir"), embedded)  # second load: from the cache, no request at all
  assert published.count() == 0


def test_load_a_pinned_older_revision(hub):
  a, b = zoo.create("massnet-sir", seed=1), zoo.create("massnet-sir", seed=2)
  first = zoo.push_to_hub(a, repo_id="me/sir")
  zoo.push_to_hub(b, repo_id="me/sir")
  old_commit = first.rstrip("/").split("/")[-1]
  assert len(old_commit) == 40
  assert _same(zoo.load(f"hf://me/sir@{old_commit}"), a)
  assert _same(zoo.load("hf://me/sir"), b)
  assert _same(zoo.load("hf://me/sir@main"), b)


def test_offline_mode_reads_the_cache_without_any_request(published):
  zoo.load("massnet-sir")  # fills the cache
  published.reset_counts()
  code = ("import zoo, numpy as np\nm = zoo.load('massnet-sir')\n"
          "print(np.asarray(m(np.ones((1, 3)) / 3)).sum())")
  out = run_python(code, env={"HF_HUB_OFFLINE": "1"})
  assert out.returncode == 0, out.stderr[-2000:]
  assert float(out.stdout.strip()) == pytest.approx(1.0, abs=1e-12)
  assert published.count() == 0
  # Offline with nothing cached: a clear error, not a hang.
  out = run_python("import zoo\nzoo.load('hf://me/never-cached')",
                   env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(pathlib.Path(os.environ["HF_HOME"]) / "empty")})
  assert out.returncode != 0 and "HubUnavailableError" in out.stderr and "HF_HUB_OFFLINE" in out.stderr


def test_tampered_file_on_the_server_is_caught_and_not_cached(published):
  manifest = json.loads((ROOT / "checkpoints" / "massnet-sir" / "manifest.json").read_text())
  victim = next(f for f in manifest["files"] if f.startswith("state/ocdbt.process_0/d/"))
  original = published.tamper(REPO, victim)
  with pytest.raises(errors.CheckpointCorruptError, match="removed from the cache"):
    zoo.load("massnet-sir")
  cached = list(pathlib.Path(os.environ["HF_HOME"], "hub").rglob(pathlib.Path(victim).name))
  assert not [p for p in cached if p.exists()], "the corrupt file stayed in the cache"
  published.tamper(REPO, victim, original)  # the server is repaired: the next load succeeds
  model = zoo.load("massnet-sir")
  assert all(c.passed for c in zoo.verify(model))


def test_tampered_manifest_fails_the_registry_pin(published):
  published.tamper(REPO, "manifest.json")
  with pytest.raises(errors.CheckpointCorruptError):
    zoo.load("massnet-sir")


@pytest.mark.slow  # 8 cold loads at once: the concurrency check of the slow run
def test_eight_concurrent_cold_loads(published):
  code = ("import zoo, numpy as np\nm = zoo.load('massnet-sir')\n"
          "print(float(np.asarray(m(np.ones((1, 3)) / 3)).sum()))")
  env = {**os.environ}

  def one(_):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)

  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    results = list(pool.map(one, range(8)))
  for r in results:
    assert r.returncode == 0, r.stderr[-2000:]
    assert float(r.stdout.strip()) == pytest.approx(1.0, abs=1e-12)


def test_no_network_fails_fast_with_a_clear_error(no_embedded, monkeypatch, tmp_path):
  monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
  monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
  start = time.perf_counter()
  with pytest.raises(errors.HubUnavailableError, match="network|reach"):
    zoo.load("massnet-sir")
  assert time.perf_counter() - start < 30


def test_missing_repo_and_bad_prefix(hub):
  with pytest.raises(errors.CheckpointNotFoundError, match="No Hub repo"):
    zoo.load("hf://me/does-not-exist")
  with pytest.raises(ValueError, match="hf://ORG/REPO"):
    zoo.load("hf:/me/typo")
  with pytest.raises(ValueError, match="hf://ORG/REPO"):
    zoo.load("hf://just-a-name")


def test_cli_push_and_download(hub, capsys):
  assert cli.main(["push", "massnet-sir", "--repo-id", "me/cli-sir"]) == 0
  assert "/commit/" in capsys.readouterr().out
  assert cli.main(["download", "me/cli-sir"]) == 0
  snapshot = pathlib.Path(capsys.readouterr().out.strip())
  assert (snapshot / "manifest.json").is_file()
  model, _ = checkpoint.restore(snapshot)
  assert _same(model, zoo.load("massnet-sir"))


def test_a_corrupt_checkpoint_is_never_pushed(hub, tmp_path):
  import shutil
  shutil.copytree(ROOT / "checkpoints" / "massnet-sir", tmp_path / "bad")
  (tmp_path / "bad" / "config.json").write_text("{}")
  with pytest.raises(errors.CheckpointCorruptError):
    zoo.push_to_hub(tmp_path / "bad", repo_id="me/bad")
  assert hub.count("commit") == 0
