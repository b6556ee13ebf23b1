"""The WaveMix modules: the MLP, the level-L WaveMix block and the classifier (float or rotation-quantized).

Guarantee (checked by `verify.py`): the 2D Haar DWT in every block is orthogonal (lossless token mixing);
eval-mode predictions are per-example; the residual stream is written and read only by linear layers
(`WaveMix.rotation_plan`), so rotations folded into them leave the function unchanged. Quantized
(`quantized=True`): every layer inside the blocks computes with ≤ 2^w_bits distinct weights per output channel on
≤ 2^a_bits distinct input values per token.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.nn import wavelets
from zoo.quant import rotate as zrot
from zoo.registry import check_input

BN = dict(momentum=0.9, epsilon=1e-5)  # torch BatchNorm2d defaults
ROTATE_RTN4 = dict(method=zrot.METHOD, w_bits=4, a_bits=4, seed=0, clip=True)


def conv(cin: int, cout: int, size: int, stride: int, rngs: nnx.Rngs, pad: int | None = None) -> nnx.Conv:
  """A size×size convolution with bias; torch-style symmetric padding (size − 1) // 2 unless `pad` is given."""
  pad = (size - 1) // 2 if pad is None else pad  # torch-style symmetric padding
  return nnx.Conv(cin, cout, (size, size), strides=(stride, stride), padding=((pad, pad), (pad, pad)), rngs=rngs)


class MLP(nnx.Module):
  """The block's feed-forward: conv1×1 → GELU → dropout → conv1×1 → ×2 upsampling → BatchNorm.
  x: (batch, h, w, cin) -> (batch, 2h, 2w, cout)."""

  def __init__(self, cin: int, hidden: int, ff_channel: int, cout: int, dropout: float, upsample: str, *,
               rngs: nnx.Rngs):
    self.expand = conv(cin, hidden, 1, 1, rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.project = conv(hidden, ff_channel, 1, 1, rngs)
    if upsample == "transposed":  # torch ConvTranspose2d(k=4, stride=2, padding=1): pad k − 1 − 1 = 2 each side
      self.up = nnx.ConvTranspose(ff_channel, cout, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)), rngs=rngs)
    elif upsample == "nearest":
      if ff_channel != cout:
        raise ValueError(f"upsample='nearest' has no layer to change channels: ff_channel ({ff_channel}) must equal "
                         f"the block's output channels ({cout}).")
      self.up = None
    else:
      raise ValueError(f"upsample must be 'transposed' or 'nearest', got {upsample!r}.")
    self.norm = nnx.BatchNorm(cout, **BN, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = self.dropout(jax.nn.gelu(self.expand(x), approximate=False))  # torch nn.GELU: the exact erf form
    h = self.project(h)
    h = self.up(h) if self.up is not None else jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
    return self.norm(h)


class WaveBlock(nnx.Module):
  """A level-L WaveMix block (without the residual add). x: (batch, H, W, dim) -> (batch, H, W, dim), with H, W
  divisible by 2^L."""

  def __init__(self, dim: int, mult: int, ff_channel: int, dropout: float, level: int, upsample: str, *,
               rngs: nnx.Rngs):
    if dim % 4:
      raise ValueError(f"dim must be divisible by 4 (the reduction to dim/4 channels), got {dim}.")
    self.level, self.dim = level, dim
    self.reduce = conv(dim, dim // 4, 1, 1, rngs)
    self.mlps = nnx.List([
        MLP(dim if j == level else dim + dim // 2, dim * mult, ff_channel, dim if j == 1 else dim // 2, dropout,
            upsample, rngs=rngs)
        for j in range(1, level + 1)])  # mlps[j − 1] works at level j

  def __call__(self, x: jax.Array) -> jax.Array:
    low = self.reduce(x)
    feats = []
    for _ in range(self.level):
      feats.append(wavelets.subbands(low))
      low = feats[-1][..., : self.dim // 4]
    y = self.mlps[-1](feats[-1])
    for j in range(self.level - 2, -1, -1):
      y = self.mlps[j](jnp.concatenate([feats[j], y], axis=-1))
    return y


class WaveMix(nnx.Module):
  """WaveMix image classifier (WaveMix-Lite with level=1, stem="strided").

  Arguments:
    num_classes: logits. in_channels: C. image_size: H = W of the input.
    dim: channels of the residual stream (`final_dim`). depth: blocks. mult: MLP expansion. ff_channel: MLP output
      channels. dropout: in each MLP. level: DWT levels per block (1..4).
    stem: "strided" (conv3×3 C → dim/2, conv3×3 dim/2 → dim, both with `stride`; WaveMix-Lite) or "patchify"
      (conv3×3 C → dim/4, conv3×3 → dim/2, conv patch×patch stride patch → dim, GELU, BN).
    upsample: "transposed" (the paper's 4×4 stride-2 transposed conv) or "nearest" (the README's Lite).
    quant: None, or the rotation quantization recipe (`ROTATE_RTN4`: method, w_bits, a_bits, seed, clip).
    quantized: with `quant`, build the quantized form (rotated, BN folded, packed 4-bit weights + scales; what
      checkpoints store). False: the float form that carries the recipe (the family's `export` applies it).
  Call: x: (batch, image_size, image_size, in_channels) in [0, 1] -> logits (batch, num_classes).
  """

  def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, dim: int = 16,
               depth: int = 4, mult: int = 2, ff_channel: int = 16, dropout: float = 0.0, level: int = 1,
               stem: str = "strided", stride: int = 1, patch_size: int = 4, upsample: str = "transposed",
               quant: Mapping[str, Any] | None = None, quantized: bool = False, *, rngs: nnx.Rngs):
    if not 1 <= level <= 4:
      raise ValueError(f"level must be in 1..4 (the official blocks), got {level}.")
    self.input_shape = (image_size, image_size, in_channels)
    self.num_classes, self.dim, self.depth, self.level, self.stem_kind = num_classes, dim, depth, level, stem
    self.stride, self.patch_size = stride, patch_size
    self.hidden, self.ff_channel = dim * mult, ff_channel
    if stem == "strided":
      self.stem = nnx.List([conv(in_channels, dim // 2, 3, stride, rngs), conv(dim // 2, dim, 3, stride, rngs)])
      size = image_size
      for _ in range(2):
        size = (size - 1) // stride + 1  # 3×3, padding 1
      self.stem_norm = None
    elif stem == "patchify":
      self.stem = nnx.List([conv(in_channels, dim // 4, 3, 1, rngs), conv(dim // 4, dim // 2, 3, 1, rngs),
                            conv(dim // 2, dim, patch_size, patch_size, rngs, pad=0)])
      size = image_size // patch_size
      self.stem_norm = nnx.BatchNorm(dim, **BN, rngs=rngs)
    else:
      raise ValueError(f"stem must be 'strided' or 'patchify', got {stem!r}.")
    if size % 2 ** level:
      raise ValueError(f"the blocks see {size}×{size} feature maps, which {level} DWT level(s) cannot halve "
                       f"{level} time(s); choose image_size/stride/patch_size so that it is divisible by {2 ** level}.")
    self.blocks = nnx.List([WaveBlock(dim, mult, ff_channel, dropout, level, upsample, rngs=rngs)
                            for _ in range(depth)])
    self.head = nnx.Linear(dim, num_classes, rngs=rngs)
    self.quant = dict(quant) if quant else None
    self.quantized = False
    if quantized:
      if not quant:
        raise ValueError("quantized=True needs quant=dict(method='rotate-rtn4', ...): the recipe to apply.")
      apply_quant(self, self.quant, structure_only=True)  # a checkpoint's state fills the codes and scales

  def features(self, x: jax.Array) -> jax.Array:
    """The residual stream after the last block: (batch, h, w, dim)."""
    for conv in self.stem:
      x = conv(x)
    if self.stem_norm is not None:
      x = self.stem_norm(jax.nn.gelu(x, approximate=False))
    for block in self.blocks:
      x = x + block(x)
    return x

  def __call__(self, x: jax.Array) -> jax.Array:
    check_input(x, self.input_shape)
    return self.head(jnp.mean(self.features(jnp.asarray(x, jnp.float32)), axis=(1, 2)))

  def rotation_plan(self) -> zrot.Plan:
    """Where rotations fold (see `zoo.quant.rotate`): the residual stream (stem's last conv and each block's last
    layer write it; each reduction and the classifier read it), each block's reduced channels (read by every
    level's MLP once per sub-band), each MLP's ff_channel activation (project → transposed conv), the coarser
    levels' outputs, and an online Hadamard rotation of each MLP's hidden activation (after GELU). BatchNorms fold
    into the layer before them. Quantized: every layer inside the blocks; stem and classifier stay float."""
    if self.stem_kind != "strided":
      raise ValueError("rotation needs the 'strided' stem: the 'patchify' stem ends in GELU + BatchNorm, so no "
                       "linear layer writes the residual stream.")
    d, q = self.dim, self.dim // 4
    groups = [tuple(range(q))] + [tuple(q + 3 * c + k for c in range(q)) for k in range(3)]  # LL, LH, HL, HH
    last = lambda mlp: "up" if mlp.up is not None else "project"  # noqa: E731  the layer before the BatchNorm
    folds, rotations, quantize = [], [], []
    stream_writers, stream_readers = [f"stem/{len(self.stem) - 1}"], []
    for b, block in enumerate(self.blocks):
      pre = f"blocks/{b}"
      stream_readers.append((f"{pre}/reduce", tuple(range(d))))
      quantize.append(f"{pre}/reduce")
      readers = []
      for j, mlp in enumerate(block.mlps):
        m = f"{pre}/mlps/{j}"
        folds.append((f"{m}/{last(mlp)}", f"{m}/norm"))
        readers += [(f"{m}/expand", g) for g in groups]
        rotations.append(zrot.Rotation(self.hidden, readers=((f"{m}/project", tuple(range(self.hidden))),),
                                       online=True))
        if mlp.up is not None:
          rotations.append(zrot.Rotation(self.ff_channel, writers=(f"{m}/project",),
                                         readers=((f"{m}/up", tuple(range(self.ff_channel))),)))
        if j > 0:  # the coarser output feeds the finer MLP after its d sub-band channels
          rotations.append(zrot.Rotation(d // 2, writers=(f"{m}/{last(mlp)}",),
                                         readers=((f"{pre}/mlps/{j - 1}/expand", tuple(range(d, d + d // 2))),)))
        quantize += [f"{m}/expand", f"{m}/project"] + ([f"{m}/up"] if mlp.up is not None else [])
      rotations.append(zrot.Rotation(q, writers=(f"{pre}/reduce",), readers=tuple(readers)))
      stream_writers.append(f"{pre}/mlps/0/{last(block.mlps[0])}")
    stream_readers.append(("head", tuple(range(d))))
    rotations.insert(0, zrot.Rotation(d, writers=tuple(stream_writers), readers=tuple(stream_readers)))
    return zrot.Plan(folds=tuple(folds), rotations=tuple(rotations), quantize=tuple(quantize))


def apply_quant(model: WaveMix, recipe: Mapping[str, Any], calibration: Any = None,
                structure_only: bool = False) -> WaveMix:
  """Applies a quantization recipe (`ROTATE_RTN4`-like: method, w_bits, a_bits, seed, clip, optionally
  weight_quantizer "rtn" | "gptq") to a float WaveMix in place; records it (`model.quant`, `model.quantized =
  True`). GPTQ needs `calibration` images (n, *input_shape) unless `structure_only` (see
  `zoo.quant.rotate.quantize_model`)."""
  recipe = dict(recipe)
  return zrot.quantize_model(model, recipe.pop("method", zrot.METHOD), calibration=calibration,
                             structure_only=structure_only, **recipe)
