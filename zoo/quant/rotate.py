"""QuaRot-style rotation quantization: fold randomised Hadamard rotations into a model, then W4A4 round-to-nearest.

Ashkboos et al., "QuaRot: Outlier-Free 4-Bit Inference in Rotated LLMs", NeurIPS 2024 (official code
`spcl/QuaRot`). Computational invariance: if an activation x (channels last) is only ever written by linear
layers (kernel W_w, bias b_w) and read by linear layers (kernel W_r), then for any orthogonal Q

    x·Q = (h·W_w + b_w)·Q = h·(W_w Q) + b_w Q         and         x·W_r = (x·Q)·(Qᵀ W_r),

so replacing W_w ← W_w Q, b_w ← b_w Q, W_r ← Qᵀ W_r leaves the network's output unchanged (to float round-off)
while the stored activation becomes x·Q. A norm with per-channel scales is folded into the layer before it first
(an eval-mode BatchNorm is the affine map z ↦ z·s + t). Where the writer is not linear (after GELU), the reader
rotates its input at run time by a fixed Hadamard matrix ("online" rotation, as QuaRot does before the
down-projection). With Q = diag(±1)·H/√n (a randomised Hadamard matrix) the rotated activations spread every
channel's outliers over all channels: per-token kurtosis falls to ≈ 3 and 4-bit grids waste less range.

Then every chosen layer is quantized round-to-nearest (`RTNLayer`): weights symmetric per output channel to
b_w bits (QuaRot's `--w_rtn --w_clip`: the clip ratio per channel minimising ‖Q(w) − w‖_2.4 over 80 ratios in
(0.2, 1]), stored packed (two 4-bit codes per byte) with one float32 scale per output channel; the input
activation symmetric per token (per pixel: across channels) to b_a bits at run time (clip ratio 1.0).
`weight_quantizer="gptq"` (QuaRot's default weight path) replaces round-to-nearest of the weights by GPTQ on the
same grid and scales (`zoo.quant.gptq`): layer by layer in plan order, the Hessian of each layer's input from
calibration images run through the model with the earlier layers already quantized (activations in float
during calibration, as QuaRot's `gptq_fwrd`).

A model opts in by a method `rotation_plan() -> Plan` naming its norm folds, rotations and quantized layers:

    model = zoo.load("wavemix-lite-digits")
    zoo.quantize(model, method="rotate-rtn4")      # = rotate(model); rtn(model, w_bits=4, a_bits=4)

Weights and activations are quantized in simulation ("fake quantization", float32 arithmetic on the 4-bit grid
values), as QuaRot's `fake_quant` evaluation does; there is no int4 kernel here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import zoo.quant as zq
from zoo.nn import init as init_lib
from zoo.quant import gptq as zgptq
from zoo.quant import packing

__all__ = ["Rotation", "Plan", "Identity", "RTNLayer", "hadamard", "random_hadamard", "rotate", "rtn", "quantize",
           "quantized_layers", "fake_quant_per_token", "fold_norm", "change_basis", "fold_norms", "quantize_model", "rebuild_kwargs",
           "record_inputs", "WEIGHT_QUANTIZERS", "CALIBRATION_BATCH"]

METHOD = "rotate-rtn4"
W_CLIP_GRID, W_CLIP_MAXSHRINK, W_CLIP_NORM = 100, 0.8, 2.4  # QuaRot's WeightQuantizer(mse=True) search
WEIGHT_QUANTIZERS = ("rtn", "gptq")
CALIBRATION_BATCH = 64  # images per calibration forward pass (GPTQ's Hessians are accumulated over batches)


# --- Hadamard matrices -----------------------------------------------------------------------------


def _is_prime(q: int) -> bool:
  return q >= 2 and all(q % p for p in range(2, int(math.isqrt(q)) + 1))


def _paley(q: int) -> np.ndarray:
  """Paley construction I: a Hadamard matrix of order q + 1 for a prime q ≡ 3 (mod 4)."""
  residues = {(i * i) % q for i in range(1, q)}
  chi = np.array([0] + [1 if i in residues else -1 for i in range(1, q)])
  core = chi[(np.arange(q)[None, :] - np.arange(q)[:, None]) % q]  # Jacobsthal matrix, skew-symmetric
  s = np.zeros((q + 1, q + 1), np.int64)
  s[0, 1:], s[1:, 0], s[1:, 1:] = 1, -1, core
  return s + np.eye(q + 1, dtype=np.int64)


@functools.lru_cache(maxsize=None)
def _hadamard(n: int) -> np.ndarray | None:
  if n == 1:
    return np.ones((1, 1), np.int64)
  if n % 2 == 0 and (h := _hadamard(n // 2)) is not None:  # Sylvester
    return np.block([[h, h], [h, -h]])
  if n % 4 == 0 and _is_prime(n - 1) and (n - 1) % 4 == 3:
    return _paley(n - 1)
  for a in range(2, math.isqrt(n) + 1):  # Kronecker product of two constructible orders (e.g. 144 = 12·12)
    if n % a == 0 and (ha := _hadamard(a)) is not None and (hb := _hadamard(n // a)) is not None:
      return np.kron(ha, hb)
  return None


def hadamard(n: int) -> np.ndarray:
  """A Hadamard matrix of order n: entries ±1, H Hᵀ = n·I. Built by Sylvester doubling, Paley's construction
  (order q + 1, q prime ≡ 3 mod 4: 4, 8, 12, 20, 24, 32, 44, 48, 60, 68, ...) and Kronecker products; orders
  outside those (e.g. 36, 92) raise ValueError. Returns (n, n) int64."""
  h = _hadamard(int(n))
  if h is None:
    raise ValueError(f"no Hadamard matrix of order {n} from Sylvester/Paley/Kronecker constructions; a rotated "
                     f"activation needs 1, 2 or a multiple of 4 channels such as 2^k·12 or 2^k·20.")
  return h


def random_hadamard(n: int, key: jax.Array) -> jax.Array:
  """Q = diag(s)·H/√n with random signs s ∈ {±1}ⁿ: orthogonal (QᵀQ = I). Returns (n, n) float32."""
  signs = jax.random.rademacher(key, (n,), jnp.float32)
  return signs[:, None] * jnp.asarray(hadamard(n), jnp.float32) / np.sqrt(n)


# --- the plan a model provides ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rotation:
  """One change of basis x ↦ x·Q of a `dim`-channel activation.

  Attributes:
    dim: channels of the activation.
    writers: paths of the linear layers whose outputs (kernel's last axis, bias) are the activation.
    readers: (path, input channel indices) of the linear layers that read it: the `dim` indices, in the
      activation's channel order, of the reader's input axis (kernel axis −2) that carry it. A reader that sees
      the activation several times (e.g. once per wavelet sub-band) appears once per copy.
    online: no writer can absorb Q (a nonlinearity produces the activation): the single reader applies the
      fixed Hadamard rotation H/√dim to its input at run time.
  """

  dim: int
  writers: tuple[str, ...] = ()
  readers: tuple[tuple[str, tuple[int, ...]], ...] = ()
  online: bool = False


@dataclasses.dataclass(frozen=True)
class Plan:
  """What `rotate` and `rtn` do to a model: `folds` (layer path, norm path) pairs, an eval-mode norm after the
  layer folded into it (the norm becomes `Identity`), then `rotations`; `quantize`: the paths `rtn` quantizes
  (QuaRot keeps the first and last layers, embedding and lm_head, in 16 bits)."""

  folds: tuple[tuple[str, str], ...]
  rotations: tuple[Rotation, ...]
  quantize: tuple[str, ...]


def _path(path: str) -> tuple[Any, ...]:
  return tuple(int(p) if p.isdigit() else p for p in path.split("/"))


def _get(root: Any, path: str) -> Any:
  return zq.get_path(root, _path(path))


def _set(root: Any, path: str, value: Any) -> None:
  zq.set_path(root, _path(path), value)


def _base(module: nnx.Module) -> nnx.Module:
  """The linear layer itself (inside an `RTNLayer`)."""
  return module.layer if isinstance(module, RTNLayer) else module


def _plan(model: nnx.Module) -> Plan:
  if not hasattr(model, "rotation_plan"):
    raise TypeError(f"{type(model).__name__} has no rotation_plan(): rotation quantization needs the model to name "
                    f"its residual-stream writers and readers (see zoo.quant.rotate.Plan).")
  return model.rotation_plan()


# --- rotation --------------------------------------------------------------------------------------


class Identity(nnx.Module):
  """x ↦ x: what a norm folded into the layer before it becomes."""

  def __call__(self, x: jax.Array, **_: Any) -> jax.Array:
    return x


def fold_norm(layer: nnx.Module, norm: nnx.BatchNorm) -> None:
  """Folds an eval-mode BatchNorm that follows `layer` into it (in place): y = z·s + t with
  s = γ/√(σ² + ε), t = β − μ·s becomes the layer's kernel·s and bias·s + t."""
  if layer.bias is None:
    raise ValueError("fold_norm needs a layer with a bias to absorb the norm's shift.")
  if init_lib.shapes_only():  # an abstract build: values do not matter
    return
  s = norm.scale[...] / jnp.sqrt(norm.var[...] + norm.epsilon)
  t = norm.bias[...] - norm.mean[...] * s
  layer.kernel[...] = layer.kernel[...] * s
  layer.bias[...] = layer.bias[...] * s + t


def _rotate_out(layer: nnx.Module, q: jax.Array) -> None:
  if init_lib.shapes_only():  # an abstract build: values do not matter
    return
  layer.kernel[...] = layer.kernel[...] @ q
  if layer.bias is not None:
    layer.bias[...] = layer.bias[...] @ q


def _rotate_in(layer: nnx.Module, left: jax.Array, index: Sequence[int]) -> None:
  if init_lib.shapes_only():  # an abstract build: values do not matter
    return
  kernel = layer.kernel[...]
  idx = jnp.asarray(index)
  rows = jnp.take(kernel, idx, axis=-2)                          # (..., dim, out)
  rows = jnp.einsum("ij,...jo->...io", left, rows)               # M⁻¹ W on the input axis (Qᵀ W for a rotation)
  layer.kernel[...] = kernel.at[..., idx, :].set(rows)


def change_basis(model: nnx.Module, rotation: Rotation, matrix: jax.Array) -> None:
  """x ↦ x·M on one activation, for any invertible M (dim, dim): writers W ← W M, b ← b M; readers W ← M⁻¹ W
  (in place; the function is unchanged). `rotate` uses orthogonal M; a diagonal M rescales channels, e.g. to
  give a stream the outlier channels that trained large models have."""
  inverse = jnp.linalg.inv(matrix)
  for path in rotation.writers:
    _rotate_out(_base(_get(model, path)), matrix)
  for path, index in rotation.readers:
    if len(index) != rotation.dim:
      raise ValueError(f"reader {path} of a {rotation.dim}-channel rotation names {len(index)} channels.")
    _rotate_in(_base(_get(model, path)), inverse, index)


def fold_norms(model: nnx.Module) -> Plan:
  """Folds every norm of the plan into the layer before it (in place; idempotent: folded norms are `Identity`).
  Returns the plan."""
  plan = _plan(model)
  for layer, norm in plan.folds:
    if not isinstance(_get(model, norm), Identity):
      fold_norm(_base(_get(model, layer)), _get(model, norm))
      _set(model, norm, Identity())
  return plan


def rotate(model: nnx.Module, seed: int = 0) -> nnx.Module:
  """Folds the plan's norms and randomised Hadamard rotations into `model` (in place); the output is unchanged
  to float round-off. Online rotations wrap their reader in an `RTNLayer` with 16-bit weights and activations
  (no quantization yet). Returns `model`."""
  plan = fold_norms(model)
  keys = jax.random.split(jax.random.key(seed), max(1, len(plan.rotations)))
  for key, rot in zip(keys, plan.rotations):
    if rot.online:
      if rot.writers or len(rot.readers) != 1 or len(rot.readers[0][1]) != rot.dim:
        raise ValueError(f"an online rotation has one reader of all its {rot.dim} channels and no writer: {rot}")
      path, _ = rot.readers[0]
      module = _get(model, path)
      if not isinstance(module, RTNLayer):
        module = RTNLayer(module)
        _set(model, path, module)
      h = jnp.asarray(hadamard(rot.dim), jnp.float32) / np.sqrt(rot.dim)
      _rotate_in(module.layer, h.T, range(rot.dim))
      module.online = rot.dim
      continue
    q = None if init_lib.shapes_only() else random_hadamard(rot.dim, key)  # unused by an abstract build
    for path in rot.writers:
      _rotate_out(_base(_get(model, path)), q)
    for path, index in rot.readers:
      if len(index) != rot.dim:
        raise ValueError(f"reader {path} of a {rot.dim}-channel rotation names {len(index)} channels.")
      _rotate_in(_base(_get(model, path)), None if q is None else q.T, index)
  return model


# --- round-to-nearest quantization -----------------------------------------------------------------


class QuantCodes(nnx.Variable):
  """b-bit two's-complement-offset weight codes (q + 2^(b−1)), packed little-endian into uint8."""


class QuantScales(nnx.Variable):
  """One float32 step size per output channel: w = scale·q."""


def _sym_quant(x: jax.Array, scale: jax.Array, bits: int) -> jax.Array:
  maxq = 2 ** (bits - 1) - 1
  return jnp.clip(jnp.round(x / scale), -(maxq + 1), maxq)


def fake_quant_per_token(x: jax.Array, bits: int, clip_ratio: float = 1.0) -> jax.Array:
  """Symmetric per-token round-to-nearest of x (..., C) to `bits` bits: each token (every position of the leading
  axes) gets its own step max|x_token|·clip_ratio/(2^(b−1) − 1). Returns x on that grid, same shape."""
  maxq = 2 ** (bits - 1) - 1
  xmax = jnp.max(jnp.abs(x), axis=-1, keepdims=True) * clip_ratio
  scale = jnp.where(xmax == 0, 1.0, xmax / maxq)
  return _sym_quant(x, scale, bits) * scale


def weight_scales(kernel: jax.Array, bits: int, clip: bool = True) -> jax.Array:
  """Per-output-channel symmetric step of `kernel` (..., out): max|w|/(2^(b−1) − 1), shrunk by the ratio in
  1, 0.99, ..., 0.21 that minimises Σ|Q(w) − w|^2.4 when `clip` (QuaRot's `--w_clip`). Returns (out,)."""
  maxq = 2 ** (bits - 1) - 1
  w = kernel.reshape(-1, kernel.shape[-1])                       # (fan, out)
  xmax = jnp.max(jnp.abs(w), axis=0)
  xmax = jnp.where(xmax == 0, 1.0, xmax)
  if not clip:
    return xmax / maxq
  ratios = 1.0 - jnp.arange(int(W_CLIP_MAXSHRINK * W_CLIP_GRID)) / W_CLIP_GRID    # (r,)
  scales = ratios[:, None] * xmax[None, :] / maxq                                  # (r, out)
  err = jnp.sum(jnp.abs(_sym_quant(w[None], scales[:, None, :], bits) * scales[:, None, :] - w[None])
                ** W_CLIP_NORM, axis=1)                                            # (r, out)
  return jnp.take_along_axis(scales, jnp.argmin(err, axis=0)[None], axis=0)[0]


class RTNLayer(nnx.Module):
  """A linear layer (nnx.Conv / ConvTranspose / Linear) with round-to-nearest weights and input activations.

  Arguments:
    layer: the layer. With `w_bits` < 16 its kernel is replaced by `codes` ((⌈size·b/8⌉,) uint8) and `scales`
      ((out,) float32); the layer computes with kernel = scales·(codes − 2^(b−1)).
    w_bits, a_bits: 16 = float (no quantization). online: 0, or n: the input is rotated by H/√n first.
    clip: search the weight clip ratio (QuaRot `--w_clip`).
  Call: as the layer; x (..., C) is rotated (online), quantized per token to a_bits, then fed to the layer.
  Guarantee: each output channel computes with at most 2^w_bits distinct weights, each token's input with at
  most 2^a_bits distinct values.
  """

  def __init__(self, layer: nnx.Module, w_bits: int = 16, a_bits: int = 16, online: int = 0, clip: bool = True):
    self.layer = layer
    self.w_bits, self.a_bits, self.online, self.record = 16, int(a_bits), int(online), False
    self.shape: tuple[int, ...] = tuple(layer.kernel.shape)
    self.codes, self.scales = nnx.data(None), nnx.data(None)  # set by quantize_weights
    if w_bits < 16:
      self.quantize_weights(w_bits, clip)

  def quantize_weights(self, bits: int, clip: bool = True, hessian: jax.Array | None = None) -> None:
    """Replaces the float kernel by `bits`-bit packed codes and per-channel scales (in place): round-to-nearest,
    or GPTQ with the layer-input Hessian `hessian` (fan, fan) (`zoo.quant.gptq`; same grid and scales)."""
    if not 2 <= bits <= packing.MAX_BITS:
      raise ValueError(f"w_bits must be in 2..{packing.MAX_BITS} (or 16 = float), got {bits}.")
    kernel = self.layer.kernel[...]
    shapes_only = init_lib.shapes_only()  # an abstract build (ModelSpec.abstract): codes only need their shapes
    scales = weight_scales(kernel, bits, clip and not shapes_only)  # (out,) either way
    if hessian is None or shapes_only:
      q = _sym_quant(kernel, scales, bits).astype(jnp.int32) + 2 ** (bits - 1)
    else:
      q = zgptq.gptq_codes(kernel, hessian, scales, bits) + 2 ** (bits - 1)
    self.codes = QuantCodes(packing.pack(q.reshape(-1), bits))
    self.scales = QuantScales(scales.astype(jnp.float32))
    self.w_bits = int(bits)
    del self.layer.kernel

  def kernel(self) -> jax.Array:
    """The kernel the layer computes with: `shape`."""
    if self.codes is None:
      return self.layer.kernel[...]
    q = packing.unpack(self.codes[...], math.prod(self.shape), self.w_bits) - 2 ** (self.w_bits - 1)
    return q.reshape(self.shape).astype(jnp.float32) * self.scales[...]

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.online:
      x = x @ (jnp.asarray(hadamard(self.online), x.dtype) / np.sqrt(self.online))
    if self.record:
      self.sow(nnx.Intermediate, "inputs", x)
    if self.a_bits < 16:
      x = fake_quant_per_token(x, self.a_bits)
    if self.codes is None:
      return self.layer(x)
    return zq.call_with_kernel(self.layer, self.kernel(), x)


def layer_hessian(model: nnx.Module, layer: RTNLayer, calibration: Any) -> jax.Array:
  """H = 2 XᵀX / n of `layer`'s input rows (im2col of what it receives after any online rotation, before
  activation quantization) when `model` runs on `calibration` (n_images, *input_shape), in batches of
  `CALIBRATION_BATCH`. Returns (fan, fan) float32."""
  calibration = np.asarray(calibration, np.float32)
  total, count = None, 0
  layer.record = True
  try:
    for i in range(0, len(calibration), CALIBRATION_BATCH):
      model(jnp.asarray(calibration[i:i + CALIBRATION_BATCH]))
      for leaf in jax.tree.leaves(nnx.pop(model, nnx.Intermediate)):
        rows = zgptq.im2col(layer.layer, leaf)
        part = rows.T @ rows
        total = part if total is None else total + part
        count += rows.shape[0]
  finally:
    layer.record = False
  if total is None:
    raise ValueError("layer_hessian: no calibration images (or the layer never ran).")
  return 2.0 * total / count


def rtn(model: nnx.Module, w_bits: int = 4, a_bits: int = 4, clip: bool = True, weight_quantizer: str = "rtn",
        calibration: Any = None) -> nnx.Module:
  """Quantizes every layer the plan names (in place): weights per output channel to `w_bits` (16 = float) and
  input activations per token to `a_bits` (16 = float). Works on rotated and unrotated models. Returns `model`.
  weight_quantizer: "rtn" (round-to-nearest) or "gptq" (needs `calibration`: images (n, *input_shape); layers
  are quantized one by one in plan order with float activations, then `a_bits` is set on all)."""
  if weight_quantizer not in WEIGHT_QUANTIZERS:
    raise ValueError(f"weight_quantizer must be one of {WEIGHT_QUANTIZERS}, got {weight_quantizer!r}.")
  if weight_quantizer == "gptq":
    if calibration is None:
      raise ValueError("weight_quantizer='gptq' needs calibration images (calibration=(n, *input_shape)): GPTQ's "
                       "Hessians come from the layers' inputs on them.")
    modules = []
    for path in _plan(model).quantize:
      module = _get(model, path)
      if not isinstance(module, RTNLayer):
        module = RTNLayer(module)
        _set(model, path, module)
      modules.append(module)
    for module in modules:
      if w_bits < 16 and module.codes is None:
        module.quantize_weights(w_bits, clip, hessian=layer_hessian(model, module, calibration))
    for module in modules:
      module.a_bits = int(a_bits)
    return model
  for path in _plan(model).quantize:
    module = _get(model, path)
    if not isinstance(module, RTNLayer):
      module = RTNLayer(module)
      _set(model, path, module)
    if w_bits < 16 and module.codes is None:
      module.quantize_weights(w_bits, clip)
    module.a_bits = int(a_bits)
  return model


def quantize(model: nnx.Module, w_bits: int = 4, a_bits: int = 4, rotation: bool = True, seed: int = 0,
             clip: bool = True, weight_quantizer: str = "rtn", calibration: Any = None) -> nnx.Module:
  """`rotate(model, seed)` (unless rotation=False) then `rtn(model, w_bits, a_bits, clip, weight_quantizer,
  calibration)`, in place."""
  if rotation:
    rotate(model, seed)
  return rtn(model, w_bits, a_bits, clip, weight_quantizer, calibration)


def quantize_model(model: nnx.Module, method: str = METHOD, calibration: Any = None, structure_only: bool = False,
                   **recipe: Any) -> nnx.Module:
  """`quantize` by method name ("rotate-rtn4", or "rtn4" without rotation); a model with `quant` / `quantized`
  attributes (the zoo families that rebuild their quantized form from keyword arguments) records the recipe (not
  the calibration images). `recipe` may set weight_quantizer="gptq" (then `calibration` images are needed).
  structure_only: build the quantized form's layers with round-to-nearest values whatever the weight quantizer
  (same shapes and dtypes; what a family does before a checkpoint's state overwrites them)."""
  if method not in (METHOD, "rtn4"):
    raise ValueError(f"rotation quantization methods are {METHOD!r} and 'rtn4' (no rotation); got {method!r}.")
  if getattr(model, "quantized", False):
    raise ValueError("the model is already quantized (its layers hold 4-bit codes); quantize the float model.")
  run = dict(recipe)
  if structure_only:
    run.pop("weight_quantizer", None)
  else:
    run["calibration"] = calibration
  quantize(model, rotation=method == METHOD, **run)
  if hasattr(model, "quantized"):
    model.quant, model.quantized = {"method": method, **recipe}, True
  return model


def rebuild_kwargs(model: nnx.Module) -> dict[str, Any]:
  """The keyword arguments that make a zoo family rebuild `model`'s quantized form ({} for other modules)."""
  return {"quant": model.quant, "quantized": True} if getattr(model, "quantized", False) else {}


def quantized_layers(model: nnx.Module) -> list[tuple[str, RTNLayer]]:
  """Every `RTNLayer` of `model` as (path "a/0/b", layer)."""
  return [("/".join(map(str, p)), m) for p, m in nnx.iter_modules(model) if isinstance(m, RTNLayer)]


def record_inputs(model: nnx.Module, on: bool = True) -> None:
  """Makes every `RTNLayer` sow its (rotated, unquantized) input as `nnx.Intermediate` "inputs" (or stop)."""
  for _, layer in quantized_layers(model):
    layer.record = on
