"""The contract every registered model keeps, checked over `zoo.list_models()`: it builds abstractly, runs a
forward pass on `zoo.info(name)["input_shape"]`, rejects a wrong shape with `InputShapeError`, has a row in
MODEL_CARDS.md; every shipped one is embedded, matches its pin and loads with its provenance."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

import zoo
from zoo import checkpoint, errors, hub, pins, registry

from tests.conftest import ROOT

ALL = zoo.list_models()
SHIPPED = zoo.list_models(pretrained=True)


def _filled(spec: registry.ModelSpec) -> nnx.Module:
  """The variant with small random weights drawn on the host (no compiled initialisers): abstract build, fill."""
  graphdef, state = nnx.split(spec.abstract())
  rng = np.random.default_rng(0)

  def fill(path, x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(np.zeros(jax.eval_shape(jax.random.key_data, x).shape, np.uint32),
                                      impl=jax.random.key_impl(jax.random.key(0)))
    if np.issubdtype(x.dtype, np.floating):
      if "var" in jax.tree_util.keystr(path):  # BatchNorm variances must be positive
        return np.ones(x.shape, x.dtype)
      return np.asarray(rng.normal(0.0, 0.05, x.shape), x.dtype)
    return np.zeros(x.shape, x.dtype)

  with spec.family.precision():
    model = nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))
  model.eval()
  return model


def _model(name: str) -> nnx.Module:
  return zoo.load(name) if name in SHIPPED else _filled(zoo.get_spec(name))


def test_every_family_registers_and_every_name_is_unique():
  assert len(ALL) == len(set(ALL)) >= 30
  assert {s.family.name for s in registry.specs()} >= {"elcd", "invariance_node", "massnet", "nonexpansive", "resnet",
                                                       "volume", "wavemix"}


@pytest.mark.parametrize("name", ALL)
def test_builds_runs_and_rejects_a_wrong_shape(name):
  spec = zoo.get_spec(name)
  info = zoo.info(name)
  shape = tuple(info["input_shape"])
  assert shape == spec.input_shape and all(isinstance(d, int) and d > 0 for d in shape)
  abstract = spec.abstract()
  assert jax.tree.leaves(nnx.state(abstract)), f"{name} has no state"
  model = _model(name)
  x = np.random.default_rng(1).random((2, *shape)).astype(np.float32)
  with spec.family.precision():
    y = np.asarray(model(x))
  assert y.shape[0] == 2 and np.all(np.isfinite(y)), f"{name}: output {y.shape}, finite {np.isfinite(y).all()}"
  for bad in (x[0], np.zeros((2, *shape[:-1], shape[-1] + 1), np.float32)):
    with pytest.raises(errors.InputShapeError):
      model(bad)


@pytest.mark.parametrize("name", ALL)
def test_has_a_row_in_model_cards(name):
  assert f"| `{name}` |" in (ROOT / "MODEL_CARDS.md").read_text()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_is_embedded_pinned_and_loads(name):
  pin = zoo.get_spec(name).pretrained
  directory = hub.checkpoints_dir() / name
  manifest = checkpoint.read_manifest(directory, pin.sha256)  # the pin matches the embedded manifest
  checkpoint.verify_files(directory, manifest)
  assert manifest["name"] == name and pin.repo_id.endswith(name)
  assert manifest["checks"] and all(c["passed"] for c in manifest["checks"]), manifest["checks"]
  model = zoo.load(name)
  origin = zoo.provenance(model)
  assert origin.name == name and origin.manifest == manifest and str(directory) in origin.source


def test_pins_and_embedded_checkpoints_agree():
  pinned = set(pins.read())
  embedded = {p.name for p in hub.checkpoints_dir().iterdir() if (p / checkpoint.MANIFEST).is_file()}
  assert pinned == embedded == set(SHIPPED)
