"""The WaveMix guarantee, checked through what users call (predictions, the blocks' own activations)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.models.wavemix.model import WaveMix
from zoo.nn import wavelets
from zoo.quant import rotate as zrot
from zoo.registry import Check
from zoo.tasks import classification


def verify(model: WaveMix, seed: int = 0) -> list[Check]:
  """Float: the DWT of the model's own reduced activations is lossless (inverse DWT reconstructs them), and the
  model is computationally invariant (a random Hadamard rotation folded into a copy leaves its logits unchanged).
  Quantized: each quantized layer computes with ≤ 2^w_bits distinct weights per output channel and ≤ 2^a_bits
  distinct input values per token. Both: eval-mode predictions are per-example."""
  checks = [classification.batch_independence(model, model.input_shape, seed)]
  x = np.random.default_rng(seed).random((16, *model.input_shape), dtype=np.float32)  # batch_independence's images
  if model.quantized:
    return checks + quantized_checks(model, x)
  return checks + float_checks(model, x, seed)


def quantized_checks(model: WaveMix, x: np.ndarray) -> list[Check]:
  """Distinct weights per output channel (worst quantized layer) and distinct input values per token on the
  inputs that `x` (batch, *input_shape) gives each quantized layer (64 tokens per layer)."""
  layers = zrot.quantized_layers(model)
  worst_w = max(max(len(np.unique(k[..., o])) for o in range(k.shape[-1]))
                for k in (np.asarray(l.kernel()) for _, l in layers if l.codes is not None))
  wb = max(l.w_bits for _, l in layers)
  checks = [Check(f"distinct weights per output channel, worst of {len(layers)} quantized layers",
                  worst_w <= 2 ** wb, float(worst_w), float(2 ** wb), f"{wb}-bit symmetric round-to-nearest")]
  zrot.record_inputs(model)
  _ = model(jnp.asarray(x))
  zrot.record_inputs(model, False)
  inputs = nnx.pop(model, nnx.Intermediate)
  ab = max(l.a_bits for _, l in layers)
  worst_a = 0
  for leaf in jax.tree.leaves(inputs):
    q = np.asarray(zrot.fake_quant_per_token(leaf, ab)).reshape(-1, leaf.shape[-1])
    worst_a = max(worst_a, max(len(np.unique(row)) for row in q[:64]))
  checks.append(Check("distinct input values per token (64 tokens per layer), worst layer", worst_a <= 2 ** ab,
                      float(worst_a), float(2 ** ab), f"{ab}-bit symmetric per-token activations"))
  return checks


def float_checks(model: WaveMix, x: np.ndarray, seed: int = 0) -> list[Check]:
  """Perfect reconstruction of block 0's DWT on the reduced activations of `x` (batch, *input_shape); with the
  strided stem, computational invariance of the logits under random Hadamard rotations (seeded by `seed`)."""
  block = model.blocks[0]
  stream = x
  for layer in model.stem:
    stream = layer(stream)
  reduced = block.reduce(stream)
  ll, highs = wavelets.haar_dwt2(reduced)
  rec = classification.relative_gap(np.asarray(reduced), np.asarray(wavelets.haar_idwt2(ll, highs)))
  checks = [Check("DWT perfect reconstruction max|idwt(dwt(r)) − r| / max|r| (block 0 activations)",
                  rec <= 1e-6, rec, 1e-6, "the Haar DWT is orthogonal: lossless token mixing")]
  if model.stem_kind == "strided":
    twin = zrot.rotate(nnx.clone(model), seed)
    gap = classification.relative_gap(classification.predict(model, x), classification.predict(twin, x))
    checks.append(Check("computational invariance max|f_rotated(x) − f(x)| / max|f| (random Hadamard rotations)",
                        gap <= 1e-4, gap, 1e-4, "rotations folded into the stream's writers and readers, BN folded"))
  return checks
