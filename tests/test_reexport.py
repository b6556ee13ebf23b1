"""`python -m train.reexport`: re-evaluating shipped weights with the current code, without training."""

import json

import jax
from flax import nnx
import numpy as np
import pytest

import zoo
from zoo import errors, hub, registry
from train.reexport import reexport


def test_reexport_keeps_the_weights_and_remeasures(tmp_path):
  name = "massnet-sir"
  result = reexport(name, tmp_path)
  assert result["checks_passed"]
  fresh, shipped = zoo.load(f"local-dir:{result['export']}"), zoo.load(name)
  for a, b in zip(jax.tree.leaves(nnx.state(fresh)), jax.tree.leaves(nnx.state(shipped))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  old = json.loads((hub.checkpoints_dir() / name / "manifest.json").read_text())
  new = json.loads((tmp_path / "export" / "manifest.json").read_text())
  # the same weights on the same data: the family's evaluate gives the shipped numbers again; bookkeeping carried
  for key, value in old["metrics"].items():
    assert new["metrics"][key] == pytest.approx(value, rel=1e-6), key
  assert new["config"] == old["config"] and new["model_kwargs"] == old["model_kwargs"]


def test_reexport_of_a_model_without_checkpoint_says_what_to_do(tmp_path):
  unshipped = [s.name for s in registry.specs() if s.pretrained is None]
  assert unshipped
  with pytest.raises(errors.CheckpointNotFoundError, match="train it"):
    reexport(unshipped[0], tmp_path)
  with pytest.raises(errors.UnknownModelError):
    reexport("massnet-sri", tmp_path)
