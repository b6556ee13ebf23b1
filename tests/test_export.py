"""`zoo export NAME --format safetensors`: the weights read back with the safetensors library (no JAX), equal to
the checkpoint's state, with config.json and manifest.json beside them."""

import hashlib
import json

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import load_file

import zoo
from zoo import checkpoint, cli, errors, export

from tests.conftest import ROOT


def _expected(model):
  return export.flat_state(checkpoint.model_state(model))


def test_cli_export_safetensors_reads_back(tmp_path, capsys):
  out = tmp_path / "sir"
  assert cli.main(["export", "massnet-sir", "--format", "safetensors", "--out", str(out)]) == 0
  assert "model.safetensors" in capsys.readouterr().out
  weights = load_file(str(out / "model.safetensors"))
  model = zoo.load("massnet-sir")
  expected = _expected(model)
  assert set(weights) == set(expected) and len(weights) == len(jax.tree.leaves(nnx.state(model)))
  for k, v in expected.items():
    np.testing.assert_array_equal(weights[k], v)
    assert weights[k].dtype == v.dtype
  with safe_open(str(out / "model.safetensors"), "np") as f:
    meta = f.metadata()
  assert meta["name"] == "massnet-sir" and json.loads(meta["model_kwargs"]) == zoo.provenance(model).kwargs
  assert (out / "config.json").read_bytes() == (ROOT / "checkpoints/massnet-sir/config.json").read_bytes()
  assert json.loads((out / "manifest.json").read_text())["name"] == "massnet-sir"
  sha = (out / "model.safetensors.sha256").read_text().split()[0]
  assert sha == hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()


def test_rebuild_from_safetensors_gives_the_same_outputs(tmp_path):
  """A reader with the zoo can rebuild the module from the export alone (create + update)."""
  created = zoo.create("massnet-sir", seed=4, hidden=20)
  export.export(created, tmp_path / "x")
  weights = load_file(str(tmp_path / "x" / "model.safetensors"))
  config = json.loads((tmp_path / "x" / "config.json").read_text())
  assert config["hidden"] == 20 and config["model"] == "massnet-sir"
  fresh = zoo.create("massnet-sir", seed=0, hidden=20)
  state = nnx.state(fresh)
  flat = {".".join(map(str, k)): v for k, v in state.flat_state()}
  assert set(flat) == set(weights)
  nnx.update(fresh, nnx.State.from_flat_path(
      {k: v.replace(weights[".".join(map(str, k))]) for k, v in state.flat_state()}))
  x = np.full((2, 3), 1 / 3, np.float32)
  np.testing.assert_array_equal(np.asarray(fresh(x)), np.asarray(created(x)))


def test_export_of_a_quantized_model_keeps_its_packed_codes(tmp_path):
  path = export.export("resnet18-digits-idkm-b2", tmp_path / "q")
  weights = load_file(str(path))
  assert any(v.dtype == np.uint8 for v in weights.values())  # packed b-bit indices, not floats


def test_unknown_format_is_a_usage_error(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["export", "massnet-sir", "--format", "onnx"])
  assert e.value.code == 2 and "safetensors" in capsys.readouterr().err
  with pytest.raises(errors.InvalidSourceError, match="safetensors"):
    export.export("massnet-sir", tmp_path / "o", "onnx")
