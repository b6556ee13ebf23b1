"""ResNet18 family: float and quantized variants, the shipped checkpoints, the export hook, configs."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import zoo
import zoo.data
from zoo import checkpoint, errors, hub, quant
from zoo.models import resnet
from zoo.tasks import classification

ROOT = pathlib.Path(__file__).resolve().parent.parent
QUANTIZED = [f"resnet18-digits-idkm-b{b}" for b in resnet.BITS] + ["resnet18-digits-dkm-b2", "resnet18-digits-jfb-b2"]
SHIPPED = [n for n in ["resnet18-digits", *QUANTIZED] if (hub.checkpoints_dir() / n / "manifest.json").is_file()]
X = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
B2 = "resnet18-digits-idkm-b2"
needs_b2 = pytest.mark.skipif(B2 not in SHIPPED, reason=f"{B2} is not shipped")


def config(arg):
  spec = importlib.util.spec_from_file_location("resnet_config", ROOT / "configs" / "resnet.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.fixture(scope="module")
def packed():
  """The shipped 2-bit IDKM model (export form: packed indices + codebooks)."""
  return zoo.load(B2)


@needs_b2
def test_forward_shape_and_input_check(packed):
  assert classification.predict(packed, X).shape == (4, 10)
  with pytest.raises(errors.InputShapeError):
    packed(X[:, :, :4])


@needs_b2
def test_packed_variant_state_is_indices_and_codebooks(packed):
  layers = quant.clustered_layers(packed)
  assert len(layers) == 18  # kernels with ≥ 2048 weights; the stem (144), stage 2's shortcut (512) and the
  # classifier (1280) stay float
  assert all(isinstance(w, quant.PackedLayer) and w.bits == 2 for _, w in layers)
  flat = nnx.to_flat_state(nnx.state(packed))
  kernels = sorted("/".join(map(str, p)) for p, _ in flat if p[-1] == "kernel")
  assert kernels == ["head/kernel", "stages/1/0/shortcut_conv/kernel", "stem/kernel"]
  indices = [v.get_value() for p, v in flat if p[-1] == "indices"]
  assert all(x.dtype == jnp.uint8 for x in indices)
  assert sum(x.size for x in indices) == sum(-(-2 * int(np.prod(w.shape)) // 8) for _, w in layers)
  sizes = quant.storage_bytes(packed)
  assert sizes["float32"] / sizes["state"] > 10


@needs_b2
def test_verify_checks_distinct_weights_and_batch_independence(packed):
  checks = zoo.verify(packed, B2)
  assert len(checks) == 2 and all(c.passed for c in checks), checks
  assert checks[1].value == 1.0  # 4 distinct values in the worst layer: all of the codebook in use


@needs_b2
def test_verify_fails_when_batchnorm_uses_batch_statistics(packed):
  packed.train()
  try:
    checks = zoo.verify(packed, B2)
  finally:
    packed.eval()
  assert not checks[0].passed


@needs_b2
def test_verify_fails_once_the_clustering_is_gone():
  model, _ = checkpoint.restore(hub.checkpoints_dir() / B2)
  quant.materialize(model)  # plain float kernels holding the snapped values: still 4 per layer ...
  kernel = model.stages[0][0].conv1.kernel
  assert len(np.unique(np.asarray(kernel[...]))) == 4
  kernel[...] = kernel[...].at[0, 0, 0, 0].add(1e-3)  # ... until one weight moves off the codebook
  assert len(np.unique(np.asarray(kernel[...]))) == 5
  check = quant.check_distinct(model)
  assert not check.passed


@needs_b2
def test_plot_writes_the_confusion_matrix_and_codebook_histogram_only(packed, tmp_path):
  data = zoo.data.load("digits", "test")
  assert resnet.plot(packed, {k: v[:64] for k, v in data.items()}, tmp_path) == [tmp_path / "confusion_and_weight_values.png"]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion_and_weight_values.png"]


@needs_b2
def test_packed_checkpoint_round_trip_is_exact(packed, tmp_path):
  directory = checkpoint.save(packed, tmp_path / "ckpt", name=B2)
  restored, manifest = checkpoint.restore(directory)
  assert manifest["model_kwargs"]["packed"] is True
  a, b = nnx.to_pure_dict(nnx.state(packed)), nnx.to_pure_dict(nnx.state(restored))
  for (pa, va), (pb, vb) in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)):
    assert pa == pb and va.dtype == vb.dtype
    np.testing.assert_array_equal(np.asarray(va), np.asarray(vb))
  np.testing.assert_array_equal(classification.predict(restored, X), classification.predict(packed, X))
  state_bytes = sum(f.stat().st_size for f in (directory / "state").rglob("*") if f.is_file())
  assert state_bytes < 300_000  # 0.70M weights at 2 bits + float BN, stem and classifier


def test_export_hook_packs_the_training_form_exactly():
  # built abstractly and filled with numpy draws: eager initialisation compiles every op (~25 s of CPU)
  abstract = nnx.eval_shape(lambda: resnet.ResNet18(num_classes=10, in_channels=1, image_size=8, width=8,
                                                    quant=dict(method="idkm-jfb", bits=1, tau=1e-4), rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(0)
  state = jax.tree.map(lambda x: jnp.asarray(rng.normal(0, 0.1, x.shape).astype(x.dtype) if jnp.issubdtype(
      x.dtype, jnp.floating) else np.zeros(x.shape, x.dtype)), state)
  model = nnx.merge(graphdef, state)
  layers = quant.clustered_layers(model)
  assert layers and all(isinstance(w, quant.ClusteredLayer) for _, w in layers)
  for _, w in layers:  # a clustering without running k-means: two centroids
    w.codebook[...] = jnp.asarray(np.sort(rng.normal(0, 0.05, (2, 1)), axis=0), jnp.float32)
    w.ready[...] = jnp.asarray(True)
  snapped = {p: np.asarray(quant.effective_kernel(w)) for p, w in layers}
  out, kwargs = resnet.export(model, {"width": 8, "quant": {"bits": 1}, "packed": False})
  assert out is model and kwargs["packed"] is True and kwargs["width"] == 8
  for p, w in quant.clustered_layers(model):
    assert isinstance(w, quant.PackedLayer)
    np.testing.assert_array_equal(np.asarray(quant.effective_kernel(w)), snapped[p])
  assert resnet.export(model, {"packed": True}) == (model, {"packed": True})  # already packed: unchanged
  sections = resnet.card_sections(model, {}, [], {})
  assert list(sections) == ["Storage"]  # benchmark tables reach cards through `zoo ship --section`
  assert "1-bit packed indices" in sections["Storage"] and "compression vs float32" in sections["Storage"]


def test_configs_name_registered_models():
  names = set(zoo.list_models("resnet18-*"))
  expected = {"digits-idkm-b2": B2, "digits-dkm-b2": "resnet18-digits-dkm-b2",
              "digits-jfb-b2": "resnet18-digits-jfb-b2", "digits-dkm-b4": "resnet18-digits-idkm-b4",
              "cifar10-idkm-b4": "resnet18-cifar10-idkm-b4", "digits": "resnet18-digits", "cifar10": "resnet18-cifar10"}
  for arg, name in expected.items():
    c = config(arg)
    assert c.model == name and name in names
    if "-" in arg:
      q = c.model_overrides.quant
      assert q.method == {"idkm": "idkm", "dkm": "dkm", "jfb": "idkm-jfb"}[arg.split("-")[1]]
      assert c.model_overrides.packed is False and c.init_from == f"resnet18-{arg.split('-')[0]}"
  for arg, name in (("fashion-mnist", "resnet18-fashion-mnist"), ("fashion-mnist-idkm-b2", "resnet18-fashion-mnist-idkm-b2"),
                    ("fashion-mnist-jfb-b2", "resnet18-fashion-mnist-idkm-b2")):
    c = config(arg)
    assert c.model == name and name in names and c.dataset == "fashion_mnist" == zoo.get_spec(name).dataset
  assert config("fashion-mnist-jfb-b2").model_overrides.quant.method == "idkm-jfb"
  assert config("fashion-mnist-idkm-b2").init_from == "resnet18-fashion-mnist"
  assert zoo.get_spec("resnet18-fashion-mnist").kwargs["width"] == 16
  smoke = config("digits-idkm-b2,smoke")
  assert smoke.smoke and smoke.epochs == 1
  with pytest.raises(errors.UnknownVariantError, match="digits-dkm-b2"):  # close matches named
    config("digits-kmeans-b2")


def test_cifar10_offline_raises_data_unavailable(monkeypatch):
  monkeypatch.setattr(zoo.data, "_download_host_reachable", lambda *a, **k: False)
  with pytest.raises(errors.DataUnavailableError, match="cifar10"):
    zoo.data.load(config("cifar10-idkm-b2").dataset, "train")


@pytest.mark.slow
def test_smoke_training_of_a_quantized_variant(tmp_path):
  from train.trainer import train_and_evaluate

  result = train_and_evaluate(config("digits-jfb-b1,smoke"), tmp_path / "run")
  assert result["steps"] == 4
  model, manifest = checkpoint.restore(result["export"])
  assert manifest["model_kwargs"]["quant"]["method"] == "idkm-jfb"
  assert manifest["model_kwargs"]["packed"] is True  # the family's export hook packed it
  assert all(isinstance(w, quant.PackedLayer) for _, w in quant.clustered_layers(model))
  assert all(c["passed"] for c in manifest["checks"])
  assert "Storage" in manifest["card_sections"]


@pytest.mark.parametrize("name", [n for n in SHIPPED if n in QUANTIZED])
def test_shipped_quantized_weights_have_at_most_2b_values_per_layer(name):
  model = zoo.load(name)
  bits = zoo.info(name)["model_kwargs"]["quant"]["bits"]
  layers = quant.clustered_layers(model)
  assert len(layers) == 18
  for path, wrapper in layers:
    assert isinstance(wrapper, quant.PackedLayer) and wrapper.indices.get_value().dtype == jnp.uint8
    assert wrapper.bits == bits
    assert quant.distinct_vectors(wrapper) <= 2 ** wrapper.bits, path
  check = quant.check_distinct(model)
  assert check.passed and check.value <= 1.0
  size = sum(f.stat().st_size for f in (hub.checkpoints_dir() / name).rglob("*") if f.is_file())
  assert size < 500_000  # packed: ~0.2-0.4 MB with the card's plots, against 2.8 MB of float32 weights


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in ("resnet18-digits", B2) else pytest.mark.slow)
                                  for n in SHIPPED])
def test_shipped_weights_reproduce_the_card(name):
  model = zoo.load(name)
  checks = zoo.verify(model)
  assert checks and all(c.passed for c in checks), checks
  info = zoo.info(name)
  metrics = resnet.evaluate(model, zoo.data.load("digits", "test"))
  assert metrics["accuracy"] == pytest.approx(info["metrics"]["accuracy"], abs=1e-9)
  assert metrics["accuracy"] > 0.9
  size = sum(f.stat().st_size for f in (hub.checkpoints_dir() / name).rglob("*") if f.is_file())
  assert size < 3.5e6  # the float model ~2.8 MB, quantized ones a fraction of it
