"""WaveMix: the Haar DWT against PyWavelets, the blocks and variants as in the official code, the shipped model."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt
from flax import nnx

import zoo
import zoo.data
from zoo import errors
from zoo.models import wavemix
from zoo.nn import wavelets

ROOT = pathlib.Path(__file__).resolve().parent.parent


def config(arg):
  spec = importlib.util.spec_from_file_location("wavemix_config", ROOT / "configs" / "wavemix.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.mark.parametrize("shape", [(2, 8, 8, 1), (3, 6, 10, 4), (1, 32, 16, 3)])
def test_haar_dwt_equals_pywavelets_and_reconstructs_exactly(shape):
  x = np.random.default_rng(0).normal(size=shape)
  with jax.enable_x64(True):
    ll, highs = wavelets.haar_dwt2(jnp.asarray(x))
    ca, details = pywt.dwt2(x, "haar", axes=(1, 2))
    for ours, ref in zip((ll, *highs), (ca, *details)):
      np.testing.assert_allclose(np.asarray(ours), ref, rtol=0, atol=1e-13)
    rec = np.asarray(wavelets.haar_idwt2(ll, highs))
    np.testing.assert_allclose(rec, x, rtol=0, atol=1e-13)
    np.testing.assert_allclose(rec, pywt.idwt2((ca, details), "haar", axes=(1, 2)), rtol=0, atol=1e-13)
    energy = sum(float(np.sum(np.asarray(b) ** 2)) for b in (ll, *highs))
    assert energy == pytest.approx(float(np.sum(x ** 2)), rel=1e-12)  # orthogonal: lossless


def test_multilevel_haar_equals_pywavelets_wavedec2():
  x = np.random.default_rng(1).normal(size=(2, 16, 16, 3))
  with jax.enable_x64(True):
    ours = wavelets.haar_wavedec2(jnp.asarray(x), 3)
  ref = pywt.wavedec2(x, "haar", level=3, axes=(1, 2))
  np.testing.assert_allclose(np.asarray(ours[0]), ref[0], atol=1e-12)
  for a, b in zip(ours[1:], ref[1:]):
    for u, v in zip(a, b):
      np.testing.assert_allclose(np.asarray(u), v, atol=1e-12)


def test_subbands_follow_the_official_channel_order():
  """torch.cat((Y1, Yh.reshape(b, 3C, h, w))): C low-band channels, then LH, HL, HH of each channel in turn."""
  x = np.random.default_rng(2).normal(size=(1, 4, 4, 3)).astype(np.float32)
  f = np.asarray(wavelets.subbands(jnp.asarray(x)))
  ca, (ch, cv, cd) = pywt.dwt2(x, "haar", axes=(1, 2))
  np.testing.assert_allclose(f[..., :3], ca, atol=1e-6)
  for c in range(3):
    for k, band in enumerate((ch, cv, cd)):
      np.testing.assert_allclose(f[..., 3 + 3 * c + k], band[..., c], atol=1e-6)


def test_odd_sizes_get_a_clear_error():
  with pytest.raises(errors.InputShapeError, match="divisible by 2"):
    wavelets.haar_dwt2(jnp.zeros((1, 7, 8, 2)))
  with pytest.raises(errors.InputShapeError, match="divisible by 8"):
    wavelets.haar_wavedec2(jnp.zeros((1, 12, 12, 2)), 3)
  with pytest.raises(ValueError, match="divisible by 8"):
    wavemix.WaveMix(image_size=12, level=3, rngs=nnx.Rngs(0))


def test_readme_lite_8_10_has_3566_parameters():
  """The official README: WaveMix Lite-8/10 reaches 99% on MNIST with 3,566 parameters (nearest upsampling)."""
  model = nnx.eval_shape(lambda: zoo.create("wavemix-lite-mnist"))
  assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param))) == 3566


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_multilevel_blocks_keep_the_resolution(level):
  block = wavemix.WaveBlock(16, 2, 16, 0.0, level, "transposed", rngs=nnx.Rngs(0))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 16)), jnp.float32)
  y = block(x)
  assert y.shape == x.shape and bool(jnp.all(jnp.isfinite(y)))
  assert len(block.mlps) == level
  assert block.mlps[0].expand.in_features == (16 if level == 1 else 24)  # finer levels see the coarse output too


def test_transposed_conv_matches_torch_output_size_and_wrong_inputs_are_refused():
  mlp = wavemix.MLP(8, 16, 8, 8, 0.0, "transposed", rngs=nnx.Rngs(0))
  assert mlp(jnp.zeros((1, 5, 7, 8))).shape == (1, 10, 14, 8)  # ConvTranspose2d(4, stride 2, padding 1): ×2
  model = zoo.create("wavemix-lite-digits")
  with pytest.raises(errors.InputShapeError, match=r"\(batch, 8, 8, 1\)"):
    model(jnp.zeros((8, 8, 1)))
  with pytest.raises(ValueError, match="ff_channel"):
    wavemix.MLP(8, 16, 4, 8, 0.0, "nearest", rngs=nnx.Rngs(0))


def test_one_training_step_lowers_the_loss():
  model = zoo.create("wavemix-lite-digits")
  data = zoo.data.load("digits", "train")
  batch = {"image": jnp.asarray(data["image"][:64]), "label": jnp.asarray(data["label"][:64])}
  from train.trainer import make_train_step  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
  step = make_train_step(wavemix.loss)
  first, _ = step(optimizer, model, batch)
  for _ in range(5):
    last, _ = step(optimizer, model, batch)
  assert float(last) < float(first)


def test_configs_name_registered_models():
  names = set(zoo.list_models("wavemix-*"))
  for arg in ("digits", "digits-rotate-rtn4", "mnist", "cifar10"):
    assert config(arg).model in names
  quantize = config("digits-rotate-rtn4,smoke")
  assert quantize.init_from == "wavemix-lite-digits" and quantize.model_overrides.quantized is False
  with pytest.raises(errors.UnknownVariantError, match="digits-rotate-rtn4"):  # close matches named
    config("digits-rotate")
  for arg in ("fashion-mnist", "fashion-mnist-rotate-rtn4"):
    c = config(arg)
    assert c.model in names and c.dataset == "fashion_mnist" == zoo.get_spec(c.model).dataset and c.epochs >= 1
  # the float model's patchify stem cannot be rotated: the rotated variant trains its own strided float form
  rotated = config("fashion-mnist-rotate-rtn4")
  assert rotated.init_from == "" and rotated.model_overrides.quantized is False
  assert zoo.get_spec(rotated.model).kwargs["stem"] == "strided"
  assert zoo.get_spec("wavemix-lite-fashion-mnist").kwargs["stem"] == "patchify"


def test_real_datasets_need_the_download(monkeypatch):
  monkeypatch.setattr(zoo.data, "_download_host_reachable", lambda *a, **k: False)
  for name in ("wavemix-lite-mnist", "wavemix-cifar10"):
    with pytest.raises(errors.DataUnavailableError):
      zoo.data.load(zoo.get_spec(name).dataset, "train")
  with pytest.raises(errors.CheckpointNotFoundError):
    zoo.load("wavemix-cifar10")


def test_plot_writes_its_own_confusion_png(tmp_path):
  data = zoo.data.load("digits", "test")
  model = zoo.load("wavemix-lite-digits")
  assert wavemix.plot(model, {k: v[:64] for k, v in data.items()}, tmp_path) == [tmp_path / "confusion.png"]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png"]


def test_shipped_wavemix_lite_digits_matches_its_card_and_verifies():
  model = zoo.load("wavemix-lite-digits")
  info = zoo.info("wavemix-lite-digits")
  metrics = wavemix.evaluate(model, zoo.data.load("digits", "test"))
  assert metrics["accuracy"] == pytest.approx(info["metrics"]["accuracy"], abs=1e-9)
  assert metrics["accuracy"] >= 0.97
  checks = zoo.verify(model)
  assert all(c.passed for c in checks), [str(c) for c in checks]
  assert any("invariance" in c.name for c in checks) and any("reconstruction" in c.name for c in checks)
