"""WaveMix and WaveMix-Lite: token mixing by the 2D Haar wavelet transform; float or W4A4 rotation-quantized.

Jeevan, Viswanathan, Anandhu, Sethi, "WaveMix: A Resource-efficient Neural Network for Image Analysis",
arXiv:2205.14375 (official code `pranavphoenix/WaveMix`). A stem maps the image to `dim` channels; a stack of
resolution-preserving WaveMix blocks, each added to the residual stream x ← x + block(x); global average pooling
and a linear classifier. A level-L block:

    r = conv1×1(x): dim → dim/4                   (reduction)
    f_j = [LL_j, LH_j, HL_j, HH_j] of r, j = 1..L  (Haar DWT of the previous low band: dim channels, H/2^j)
    y_L = MLP_L(f_L);  y_j = MLP_j([f_j, y_(j+1)])   MLP = conv1×1 (→ mult·dim), GELU, dropout, conv1×1
                                                     (→ ff_channel), transposed conv 4×4 stride 2 (×2 size), BN

MLP_1 returns dim channels, the coarser ones dim/2. WaveMix-Lite is the level-1 block with the "strided" stem
(two 3×3 convs). `upsample="nearest"` swaps the transposed conv for nearest-neighbour upsampling, the README's
parameter-efficient Lite (WaveMix Lite-8/10: 3,566 parameters, 99% on MNIST).

The residual stream is written only by linear layers (the stem's last conv, each block's BN-folded transposed
conv) and read only by linear layers (each reduction, the classifier): `rotation_plan` names them, so
`zoo.quantize(model, method="rotate-rtn4")` can fold Hadamard rotations into them exactly (`zoo.quant.rotate`).
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from zoo.models import resnet
from zoo.nn import wavelets
from zoo.quant import rotate as zrot
from zoo.registry import Check, Family, check_input, register

BN = dict(momentum=0.9, epsilon=1e-5)  # torch BatchNorm2d defaults
ROTATE_RTN4 = dict(method=zrot.METHOD, w_bits=4, a_bits=4, seed=0, clip=True)


def _conv(cin: int, cout: int, size: int, stride: int, rngs: nnx.Rngs, pad: int | None = None) -> nnx.Conv:
  pad = (size - 1) // 2 if pad is None else pad  # torch-style symmetric padding
  return nnx.Conv(cin, cout, (size, size), strides=(stride, stride), padding=((pad, pad), (pad, pad)), rngs=rngs)


class MLP(nnx.Module):
  """The block's feed-forward: conv1×1 → GELU → dropout → conv1×1 → ×2 upsampling → BatchNorm.
  x: (batch, h, w, cin) -> (batch, 2h, 2w, cout)."""

  def __init__(self, cin: int, hidden: int, ff_channel: int, cout: int, dropout: float, upsample: str, *,
               rngs: nnx.Rngs):
    self.expand = _conv(cin, hidden, 1, 1, rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.project = _conv(hidden, ff_channel, 1, 1, rngs)
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
    self.reduce = _conv(dim, dim // 4, 1, 1, rngs)
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
    self.hidden, self.ff_channel = dim * mult, ff_channel
    if stem == "strided":
      self.stem = nnx.List([_conv(in_channels, dim // 2, 3, stride, rngs), _conv(dim // 2, dim, 3, stride, rngs)])
      size = image_size
      for _ in range(2):
        size = (size - 1) // stride + 1  # 3×3, padding 1
      self.stem_norm = None
    elif stem == "patchify":
      self.stem = nnx.List([_conv(in_channels, dim // 4, 3, 1, rngs), _conv(dim // 4, dim // 2, 3, 1, rngs),
                            _conv(dim // 2, dim, patch_size, patch_size, rngs, pad=0)])
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
      apply_quant(self, self.quant)

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


def apply_quant(model: WaveMix, recipe: Mapping[str, Any]) -> WaveMix:
  """Applies a quantization recipe (`ROTATE_RTN4`-like: method, w_bits, a_bits, seed, clip) to a float WaveMix in
  place; records it (`model.quant`, `model.quantized = True`)."""
  recipe = dict(recipe)
  return zrot.quantize_model(model, recipe.pop("method", zrot.METHOD), **recipe)


# --- task: image classification (shared with the ResNets) ------------------------------------------

loss = resnet.loss
predict = resnet.predict


def _state_bytes(model: nnx.Module) -> int:
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(nnx.state(model))
             if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key))


def evaluate(model: WaveMix, data) -> dict[str, float]:
  """Top-1 accuracy, cross-entropy and the bytes of the state arrays; quantized models: the compression against
  the same WaveMix in float32."""
  logits = predict(model, data["image"])
  labels = np.asarray(data["label"])
  out = {"accuracy": float(np.mean(logits.argmax(-1) == labels)),
         "loss": float(np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))),
         "state_bytes": float(_state_bytes(model))}
  if model.quantized:
    layers = zrot.quantized_layers(model)
    kwargs = dict(num_classes=model.num_classes, in_channels=model.input_shape[-1], image_size=model.input_shape[0],
                  dim=model.dim, depth=model.depth, mult=model.hidden // model.dim, ff_channel=model.ff_channel,
                  level=model.level, stem=model.stem_kind, upsample="transposed" if model.blocks[0].mlps[0].up
                  is not None else "nearest")
    twin = nnx.eval_shape(lambda: WaveMix(**kwargs, rngs=nnx.Rngs(0)))
    out["compression_vs_float32"] = _state_bytes(twin) / out["state_bytes"]
    out["quantized_weight_bytes"] = float(sum(int(l.codes.get_value().size) + 4 * int(l.scales.get_value().size)
                                              for _, l in layers))
  return out


def _relative_gap(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12))


def verify(model: WaveMix, seed: int = 0) -> list[Check]:
  """Float: the DWT of the model's own reduced activations is lossless (inverse DWT reconstructs them), and the
  model is computationally invariant (a random Hadamard rotation folded into a copy leaves its logits unchanged).
  Quantized: each quantized layer computes with ≤ 2^w_bits distinct weights per output channel and ≤ 2^a_bits
  distinct input values per token. Both: eval-mode predictions are per-example."""
  rng = np.random.default_rng(seed)
  x = rng.random((16, *model.input_shape), dtype=np.float32)
  logits = predict(model, x)
  alone = np.concatenate([predict(model, x[i:i + 1]) for i in range(4)])
  checks = [Check("eval-mode batch independence max|f(x in batch) − f(x alone)| / max|f|",
                  _relative_gap(logits[:4], alone) <= 1e-4, _relative_gap(logits[:4], alone), 1e-4,
                  "BatchNorm must use its running averages (model.eval())")]
  if model.quantized:
    layers = zrot.quantized_layers(model)
    worst_w = max(max(len(np.unique(k[..., o])) for o in range(k.shape[-1]))
                  for k in (np.asarray(l.kernel()) for _, l in layers if l.codes is not None))
    wb = max(l.w_bits for _, l in layers)
    checks.append(Check(f"distinct weights per output channel, worst of {len(layers)} quantized layers",
                        worst_w <= 2 ** wb, float(worst_w), float(2 ** wb), f"{wb}-bit symmetric round-to-nearest"))
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
  block = model.blocks[0]
  stream = x
  for conv in model.stem:
    stream = conv(stream)
  reduced = block.reduce(stream)
  ll, highs = wavelets.haar_dwt2(reduced)
  rec = _relative_gap(np.asarray(reduced), np.asarray(wavelets.haar_idwt2(ll, highs)))
  checks.append(Check("DWT perfect reconstruction max|idwt(dwt(r)) − r| / max|r| (block 0 activations)",
                      rec <= 1e-6, rec, 1e-6, "the Haar DWT is orthogonal: lossless token mixing"))
  if model.stem_kind == "strided":
    twin = zrot.rotate(nnx.clone(model), seed)
    gap = _relative_gap(logits, predict(twin, x))
    checks.append(Check("computational invariance max|f_rotated(x) − f(x)| / max|f| (random Hadamard rotations)",
                        gap <= 1e-4, gap, 1e-4, "rotations folded into the stream's writers and readers, BN folded"))
  return checks


def plot(model: WaveMix, data, outdir) -> list[pathlib.Path]:
  """Confusion matrix on the split."""
  return resnet.plot(model, data, outdir)[:1]


# --- the shipped form and its card -----------------------------------------------------------------

RESULTS = resnet.RESULTS


def export(model: WaveMix, kwargs: dict) -> tuple[WaveMix, dict]:
  """A float model carrying a quantization recipe (`quant` set, `quantized=False`) is rotated and quantized in
  place, and its kwargs say `quantized=True` so that `zoo.load` rebuilds the quantized form."""
  if model.quant and not model.quantized:
    apply_quant(model, model.quant)
    kwargs = {**kwargs, "quantized": True}
  return model, kwargs


def card_sections(model: WaveMix, metrics: Mapping[str, float]) -> dict[str, str]:
  """From a source checkout: the WaveMix-vs-ResNet and the rotation-quantization benchmark tables."""
  del model, metrics
  section = resnet._result_section  # pylint: disable=protected-access
  return {**section("wavemix_vs_resnet.md", "WaveMix vs ResNet on this machine (benchmarks/wavemix_vs_resnet.py)"),
          **section("rotate_rtn4.md", "W4A4 round-to-nearest with and without rotation (benchmarks/rotate_rtn4.py)")}


FAMILY = Family(
    name="wavemix", module=WaveMix, loss=loss, evaluate=evaluate, verify=verify, plot=plot, export=export,
    card_sections=card_sections,
    paper="Jeevan, Viswanathan, Anandhu, Sethi. WaveMix: A Resource-efficient Neural Network for Image Analysis. "
          "arXiv:2205.14375 (2022); rotation: Ashkboos et al. QuaRot: Outlier-Free 4-Bit Inference in Rotated "
          "LLMs. NeurIPS 2024.")

# --- variants --------------------------------------------------------------------------------------



DIGITS = dict(num_classes=10, in_channels=1, image_size=8, dim=16, depth=4, mult=2, ff_channel=16, dropout=0.0,
              level=1, stem="strided", stride=1, upsample="transposed")
_FLOAT_GUARANTEE = ("Lossless token mixing: the 2D Haar DWT in every block is orthogonal (perfect reconstruction); "
                    "eval-mode predictions are per-example; computationally invariant under rotations of its "
                    "residual stream (what rotation quantization relies on).")
_DIGITS_DEVIATION = ("The 8×8 scikit-learn digits stand in for MNIST (offline); flax default initialisation instead "
                     "of torch's; Adam with cosine decay, no augmentation (short CPU training).")


@register("wavemix-lite-digits", FAMILY, dataset="digits", input_shape=(8, 8, 1), guarantee=_FLOAT_GUARANTEE,
          tags=("wavemix", "image-classification", "digits"),
          deviations=_DIGITS_DEVIATION)
def wavemix_lite_digits():
  """WaveMix-Lite-16/4 (level-1 blocks, transposed-conv upsampling) on the 8×8 scikit-learn digits."""
  return dict(DIGITS)


@register("wavemix-lite-digits-rotate-rtn4", FAMILY, dataset="digits", input_shape=(8, 8, 1),
          guarantee="Every layer inside the blocks computes with 4-bit weights (≤ 16 distinct values per output "
                    "channel, stored packed with a float32 scale per channel) on 4-bit per-token inputs, after "
                    "randomised Hadamard rotations that leave the float network's function unchanged.",
          tags=("wavemix", "image-classification", "digits", "quantized", "quarot"),
          deviations=_DIGITS_DEVIATION + " Post-training W4A4 of `wavemix-lite-digits` as QuaRot's RTN path "
                     "(`--rotate --w_rtn --w_clip --w_bits 4 --a_bits 4`): fake quantization in float32; stem and "
                     "classifier stay float (QuaRot keeps embeddings and lm_head in 16 bits); QuaRot rotates a "
                     "transformer's RMSNorm'd stream, here the stream of a conv net with BatchNorm folded.")
def wavemix_lite_digits_rotate_rtn4():
  """`wavemix-lite-digits` with Hadamard rotations folded in and W4A4 round-to-nearest quantization."""
  return dict(DIGITS, quant=dict(ROTATE_RTN4), quantized=True)


@register("wavemix-lite-mnist", FAMILY, dataset="mnist", input_shape=(28, 28, 1), guarantee=_FLOAT_GUARANTEE,
          tags=("wavemix", "image-classification", "mnist"),
          reference={"accuracy": "99% with 3,566 parameters (official README, WaveMix Lite-8/10)"},
          deviations="The README's WaveMix Lite-8/10 (dim 8, depth 10, nearest-neighbour upsampling: 3,566 "
                     "parameters). Needs the TFDS mnist download: offline it raises DataUnavailableError.")
def wavemix_lite_mnist():
  """WaveMix Lite-8/10 (3,566 parameters) for MNIST, as in the official README."""
  return dict(num_classes=10, in_channels=1, image_size=28, dim=8, depth=10, mult=2, ff_channel=8, dropout=0.0,
              level=1, stem="strided", stride=1, upsample="nearest")


@register("wavemix-cifar10", FAMILY, dataset="cifar10", input_shape=(32, 32, 3), guarantee=_FLOAT_GUARANTEE,
          tags=("wavemix", "image-classification", "cifar10"),
          reference={"accuracy": "95.37% (official saved weights `wavemix_cifar10_95.37`)"},
          deviations="The official CIFAR-10 configuration (depth 8, dim 320, level 1, strided stem stride 1, "
                     "dropout 0.5). Needs the TFDS cifar10 download: offline it raises DataUnavailableError; the "
                     "generic trainer has no TrivialAugment/flip augmentation.")
def wavemix_cifar10():
  """WaveMix (level 1, dim 320, depth 8) for CIFAR-10: the official 95.37% configuration."""
  return dict(num_classes=10, in_channels=3, image_size=32, dim=320, depth=8, mult=2, ff_channel=320, dropout=0.5,
              level=1, stem="strided", stride=1, upsample="transposed")
