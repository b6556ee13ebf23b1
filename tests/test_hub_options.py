"""zoo.load's Hub options (revision, cache_dir, token, force_download, local_files_only), help(zoo.load), download
progress, and what a pip install (no embedded checkpoints) gets offline — against tests/hub_server.py."""

import inspect
import os
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

import zoo
from zoo import errors

from tests.conftest import ROOT, run_python

REPO = "nnx-zoo/massnet-sir"


def _same(a, b):
  return all(np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(jax.tree.leaves(nnx.state(a).to_pure_dict()), jax.tree.leaves(nnx.state(b).to_pure_dict())))


@pytest.fixture()
def no_embedded(tmp_path, monkeypatch):
  monkeypatch.setenv("ZOO_CHECKPOINTS", str(tmp_path / "no-checkpoints"))


def test_help_lists_every_source_form_with_examples_and_every_option():
  doc = inspect.getdoc(zoo.load)
  for form in ("NAME", "hf://ORG/REPO", "hf://ORG/REPO@REV", "local-dir:PATH"):
    assert form in doc
  for example in ('zoo.load("massnet-sir")', 'zoo.load("hf://nnx-zoo/massnet-sir@v1")',
                  'zoo.load("local-dir:runs/massnet-sir/export")'):
    assert example in doc
  params = inspect.signature(zoo.load).parameters
  for option in ("revision", "cache_dir", "token", "force_download", "local_files_only"):
    assert params[option].kind is inspect.Parameter.KEYWORD_ONLY
    assert f"{option}=" in doc


def test_revision_and_cache_dir_and_force_download(hub, tmp_path):
  a, b = zoo.create("massnet-sir", seed=1), zoo.create("massnet-sir", seed=2)
  first = zoo.push_to_hub(a, repo_id="me/sir")
  zoo.push_to_hub(b, repo_id="me/sir")
  old = first.rstrip("/").split("/")[-1]
  cache = tmp_path / "my-cache"
  assert _same(zoo.load("hf://me/sir", revision=old, cache_dir=cache), a)
  assert (cache / "models--me--sir").is_dir()  # the given cache, not HF_HOME's
  assert not (pathlib.Path(os.environ["HF_HOME"]) / "hub" / "models--me--sir").exists()
  assert _same(zoo.load("hf://me/sir@main", revision="main", cache_dir=cache), b)
  with pytest.raises(errors.InvalidSourceError, match="give one"):
    zoo.load(f"hf://me/sir@{old}", revision="main")
  hub.reset_counts()
  zoo.load("hf://me/sir", cache_dir=cache)
  cached_requests = hub.count("resolve")
  hub.reset_counts()
  zoo.load("hf://me/sir", cache_dir=cache, force_download=True)
  assert hub.count("resolve", "GET") > cached_requests  # every file fetched again
  hub.reset_counts()
  assert _same(zoo.load("hf://me/sir", cache_dir=cache, local_files_only=True), b)
  assert hub.count() == 0


def test_token_is_sent(hub):
  zoo.push_to_hub(zoo.create("massnet-sir"), repo_id="me/tok")
  hub.reset_counts()
  zoo.load("hf://me/tok", token="hf_given", force_download=True)
  assert {r.token for r in hub.requests if r.route == "resolve"} == {"hf_given"}


def test_local_dir_rejects_hub_options():
  with pytest.raises(errors.InvalidSourceError, match="Hub sources only"):
    zoo.load(f"local-dir:{ROOT / 'checkpoints' / 'massnet-sir'}", revision="main")


def test_a_registered_name_at_another_revision_comes_from_the_hub(hub):
  """revision= on a registered name skips the embedded copy (it is the pinned revision only)."""
  zoo.push_to_hub(zoo.create("massnet-sir", seed=3), repo_id=REPO)
  hub.store.create_ref(REPO, "tags", "v-random")
  model = zoo.load("massnet-sir", revision="v-random")
  assert _same(model, zoo.create("massnet-sir", seed=3))
  assert "hf://" in zoo.provenance(model).source


def test_pip_install_offline_error_says_where_checkpoints_come_from(no_embedded, hub):
  with pytest.raises(errors.HubUnavailableError, match="ZOO_CHECKPOINTS") as e:
    zoo.load("massnet-sir", local_files_only=True)
  assert "pip install" in str(e.value) and "zoo download nnx-zoo/massnet-sir" in str(e.value)
  assert hub.count() == 0


def test_download_shows_progress(hub):
  """huggingface_hub's own progress bar (tqdm, on stderr) for each file: not disabled by the zoo. (In a terminal it
  shows by itself; TQDM_POSITION=-1 is huggingface_hub's switch that shows it on a pipe too.)"""
  zoo.push_to_hub(zoo.create("massnet-sir"), repo_id="me/progress")
  env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_PROGRESS_BARS": "0", "TQDM_POSITION": "-1"}
  out = run_python("import zoo\nzoo.load('hf://me/progress')", env=env, timeout=240)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "manifest.json" in out.stderr and "100%" in out.stderr
