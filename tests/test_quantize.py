"""zoo.quantize on any NNX model: module surgery, soft/snapped/packed forms, storage round trips."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import zoo
from zoo import quant
from zoo.quant import packing


class Small(nnx.Module):
  """Conv -> relu -> mean-pool -> Linear; both kernels large enough to cluster with min_size=16."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(2, 4, (3, 3), rngs=rngs)
    self.blocks = nnx.List([nnx.Linear(4, 6, rngs=rngs)])
    self.tiny = nnx.Linear(6, 2, use_bias=False, rngs=rngs)  # 12 weights: below min_size

  def __call__(self, x):
    h = jnp.mean(jax.nn.relu(self.conv(x)), axis=(1, 2))
    return self.tiny(self.blocks[0](h))


X = jnp.asarray(np.random.default_rng(0).normal(size=(5, 6, 6, 2)), jnp.float32)


def small(**kwargs):
  model = Small(rngs=nnx.Rngs(0))
  return quant.quantize(model, **{"min_size": 16, "tau": 1e-3, **kwargs})


# --- packed storage --------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(1, 2))
def _round_trip(idx, count, bits):
  packed = packing.pack(idx, bits)
  return packed, packing.unpack(packed, count, bits)


@pytest.mark.parametrize("bits,count", [(b, 1001) for b in range(1, 9)] + [(3, 1), (3, 7), (3, 9), (8, 1)])
def test_pack_round_trip_is_exact(bits, count):
  idx = np.random.default_rng(bits * 1000 + count).integers(0, 2 ** bits, count)
  idx[-1] = 2 ** bits - 1  # the largest index too
  packed, unpacked = _round_trip(idx, count, bits)
  assert packed.dtype == jnp.uint8 and packed.shape == (math.ceil(count * bits / 8),)
  np.testing.assert_array_equal(np.asarray(unpacked), idx)
  if (bits, count) == (3, 1001):  # eagerly on numpy input too
    np.testing.assert_array_equal(np.asarray(packing.pack(idx, bits)), np.asarray(packed))


def test_pack_layout_is_little_endian_lsb_first():
  assert np.asarray(packing.pack(np.array([1, 0, 1, 1]), 1)).tolist() == [0b1101]
  assert np.asarray(packing.pack(np.array([3, 0, 2, 1, 1]), 2)).tolist() == [0b01100011, 0b01]
  assert np.asarray(packing.pack(np.array([5, 6]), 3)).tolist() == [0b110101]


def test_unpack_refuses_wrong_sizes_and_bits():
  with pytest.raises(ValueError, match="uint8 of shape"):
    packing.unpack(jnp.zeros((3,), jnp.uint8), 30, 1)
  with pytest.raises(ValueError, match="bits"):
    packing.pack(np.zeros(4, int), 9)


def test_encode_decode_is_the_snap():
  rng = np.random.default_rng(1)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 4, 6)), jnp.float32)
  codebook = jnp.asarray(rng.normal(size=(8, 2)), jnp.float32)
  packed = packing.encode(kernel, codebook, 3)
  decoded = packing.decode(packed, codebook, kernel.shape, 3)
  expected = quant.kmeans.snap(codebook, kernel.reshape(-1, 2)).reshape(kernel.shape)
  np.testing.assert_array_equal(np.asarray(decoded), np.asarray(expected))


# --- the three forms -------------------------------------------------------------------------------


def test_quantize_wraps_the_chosen_layers():
  model = small()
  names = [p for p, _ in quant.clustered_layers(model)]
  assert names == ["blocks/0", "conv"]
  assert not isinstance(model.tiny, quant.ClusteredLayer)
  patterned = quant.quantize(Small(rngs=nnx.Rngs(0)), layers=["conv"])
  assert [p for p, _ in quant.clustered_layers(patterned)] == ["conv"]
  with pytest.raises(ValueError, match="no layer"):
    quant.quantize(Small(rngs=nnx.Rngs(0)), layers=["nothing*"])


def test_zoo_quantize_is_the_same_entry_point():
  model = zoo.quantize(Small(rngs=nnx.Rngs(0)), method="dkm", bits=2, min_size=16)
  assert all(w.spec.method == "dkm" and w.spec.bits == 2 for _, w in quant.clustered_layers(model))


@pytest.mark.parametrize("bits,dim", [(2, 2), *(pytest.param(b, d, marks=pytest.mark.slow) for b, d in [(1, 1), (3, 1)])])
def test_training_eval_export_materialize_agree(bits, dim):
  model = small(bits=bits, dim=dim)
  float_out = Small(rngs=nnx.Rngs(0))(X)
  model.train()
  soft = model(X)
  assert all(bool(w.ready[...]) for _, w in quant.clustered_layers(model))  # clustered at first use
  assert not np.allclose(np.asarray(soft), np.asarray(float_out))
  model.eval()
  snapped = np.asarray(model(X))
  for _, wrapper in quant.clustered_layers(model):
    assert quant.distinct_vectors(wrapper) <= 2 ** bits
  quant.export(model)
  assert all(isinstance(w, quant.PackedLayer) for _, w in quant.clustered_layers(model))
  np.testing.assert_array_equal(np.asarray(model(X)), snapped)
  check = quant.check_distinct(model)
  assert check.passed and check.value <= 1.0
  quant.materialize(model)
  assert isinstance(model.conv, nnx.Conv) and not quant.clustered_layers(model)
  np.testing.assert_array_equal(np.asarray(model(X)), snapped)
  rows = np.asarray(model.conv.kernel[...]).reshape(-1, dim)
  assert len(np.unique(rows, axis=0)) <= 2 ** bits


def test_export_state_is_packed_uint8_and_codebooks():
  model = quant.export(small(bits=2))
  state = nnx.to_pure_dict(nnx.state(model))
  assert "kernel" not in state["conv"]["layer"]
  assert state["conv"]["indices"].dtype == jnp.uint8
  assert state["conv"]["indices"].shape == (math.ceil(3 * 3 * 2 * 4 * 2 / 8),)
  assert state["conv"]["codebook"].shape == (4, 1)
  sizes = quant.storage_bytes(model)
  assert sizes["state"] < sizes["float32"]
  # the compact state restores into a model built the same way from other weights: same outputs
  other = quant.export(quant.quantize(Small(rngs=nnx.Rngs(1)), min_size=16, tau=1e-3, bits=2))
  nnx.update(other, nnx.state(model))
  np.testing.assert_array_equal(np.asarray(other(X)), np.asarray(model(X)))


def test_check_distinct_fails_without_clustered_layers():
  assert not quant.check_distinct(Small(rngs=nnx.Rngs(0))).passed


@pytest.mark.parametrize("method", ["idkm", *(pytest.param(m, marks=pytest.mark.slow) for m in ("dkm", "idkm-jfb"))])
def test_training_step_updates_kernels_not_codebooks(method):
  model = small(method=method, bits=2)
  model.train()
  model(X)  # initialise the codebooks
  optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(X) ** 2))(model)
    optimizer.update(model, grads)
    return loss, grads

  before = np.asarray(model.conv.layer.kernel[...])
  book = np.asarray(model.conv.codebook[...])
  _, grads = step(model, optimizer)
  g = nnx.to_pure_dict(grads)
  assert "codebook" not in g["conv"]
  assert float(jnp.max(jnp.abs(g["conv"]["layer"]["kernel"]))) > 0
  assert not np.array_equal(np.asarray(model.conv.layer.kernel[...]), before)
  # the forward pass wrote the new clustering (warm start), the optimizer did not touch it
  assert model.conv.codebook[...].shape == book.shape


def test_soft_weights_approach_the_snap_as_tau_shrinks():
  gaps = []
  for tau in (1e-1, 1e-3, 1e-6):
    model = small(tau=tau, bits=2)
    model.train()
    soft = np.asarray(model(X))
    model.eval()
    gaps.append(float(np.max(np.abs(soft - np.asarray(model(X))))))
  assert gaps[0] > gaps[1] > gaps[2]
  assert gaps[2] < 1e-4


def test_transfer_copies_float_weights_and_resets_codebooks():
  source = Small(rngs=nnx.Rngs(7))
  target = small(bits=2)
  target.train()
  target(X)
  copied = quant.transfer(source, target)
  assert "conv/kernel" in copied and "tiny/kernel" in copied
  np.testing.assert_array_equal(np.asarray(target.conv.layer.kernel[...]), np.asarray(source.conv.kernel[...]))
  assert not any(bool(w.ready[...]) for _, w in quant.clustered_layers(target))


def test_exported_model_builds_abstractly():
  """Restoring builds the export form under nnx.eval_shape: packing must trace without data."""
  abstract = nnx.eval_shape(lambda: quant.export(small(bits=3)))
  state = nnx.to_pure_dict(nnx.state(abstract))
  assert state["conv"]["indices"].dtype == jnp.uint8
  assert state["blocks"][0]["codebook"].shape == (8, 1)
