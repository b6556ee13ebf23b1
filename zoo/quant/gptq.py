"""GPTQ: one-shot weight quantization with second-order error compensation.

Frantar, Ashkboos, Hoefler, Alistarh, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers", ICLR 2023 (arXiv:2210.17323). For a layer y = W x with W (out, fan) and calibration inputs
X (fan, n), GPTQ minimises ‖W X − Q X‖²_F over Q on a fixed grid, one input column at a time: with
H = 2 X Xᵀ / n (+ λI, λ = 1% of mean diag H), the upper Cholesky factor U of H⁻¹ (H⁻¹ = Uᵀ U) gives, after
quantizing column i, the update W[:, j] −= (w_i − q_i)/U_ii · U_ij for every later column j (the optimal
compensation of the remaining columns, OBS). Columns are processed in blocks of `block` (the paper's lazy batch
updates), the later blocks updated once per block.

Here the grid is the RTN path's (zoo.quant.rotate.weight_scales): symmetric, one step per output channel, so a
GPTQ kernel still has ≤ 2^bits distinct values per output channel. A zoo kernel is (..., fan_in, out) with
x @ kernel; `im2col` gives convolutions their matmul form (patches in the kernel's flattening order).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["DAMP", "BLOCK", "im2col", "hessian", "gptq_codes"]

DAMP, BLOCK = 0.01, 128  # the paper's dampening (fraction of mean diag H) and lazy-batch block size


def im2col(layer: nnx.Module, x: jax.Array) -> jax.Array:
  """The rows X (tokens, fan) with layer(x) = X @ kernel.reshape(fan, out) + bias, for nnx.Linear, nnx.Conv and
  nnx.ConvTranspose (no transposed kernel) with explicit padding pairs, unit dilation and one feature group.
  x: (batch, ..., C) channels last -> (tokens, prod(kernel.shape[:-1]))."""
  kernel_shape = tuple(layer.kernel.shape) if hasattr(layer, "kernel") else None
  if isinstance(layer, nnx.Linear):
    return x.reshape(-1, x.shape[-1])
  if not isinstance(layer, (nnx.Conv, nnx.ConvTranspose)):
    raise TypeError(f"im2col: {type(layer).__name__} is not nnx.Linear, nnx.Conv or nnx.ConvTranspose.")
  pad = layer.padding
  if isinstance(pad, str) or any(isinstance(p, int) for p in pad):
    raise ValueError(f"im2col needs explicit (low, high) padding pairs, got {pad!r}.")
  dilation = getattr(layer, "kernel_dilation", None)
  if getattr(layer, "feature_group_count", 1) != 1 or dilation not in (None, 1) and any(d != 1 for d in dilation):
    raise ValueError("im2col supports one feature group and unit kernel dilation only.")
  window = tuple(layer.kernel_size)
  nd = len(window)
  strides = (layer.strides,) * nd if isinstance(layer.strides, int) else tuple(layer.strides or (1,) * nd)
  if isinstance(layer, nnx.ConvTranspose):
    if layer.transpose_kernel:
      raise ValueError("im2col: ConvTranspose with transpose_kernel=True is not supported.")
    # lax.conv_transpose with explicit padding = a stride-1 convolution of the stride-dilated input
    patches = jax.lax.conv_general_dilated_patches(x, window, (1,) * nd, tuple(map(tuple, pad)),
                                                   lhs_dilation=strides,
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC") if nd == 2 else None)
  else:
    patches = jax.lax.conv_general_dilated_patches(x, window, strides, tuple(map(tuple, pad)),
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC") if nd == 2 else None)
  cin = x.shape[-1]
  patches = patches.reshape(-1, cin, *window)                          # features ordered (C, *window)
  patches = jnp.moveaxis(patches, 1, -1)                               # (tokens, *window, C): the kernel's order
  out = patches.reshape(patches.shape[0], -1)
  if kernel_shape is not None and out.shape[1] != int(jnp.prod(jnp.asarray(kernel_shape[:-1]))):
    raise ValueError(f"im2col: {out.shape[1]} patch features for a kernel of shape {kernel_shape}.")
  return out


def hessian(rows: jax.Array) -> jax.Array:
  """H = 2 XᵀX / n of calibration rows X (n, fan), float32. Returns (fan, fan)."""
  rows = jnp.asarray(rows, jnp.float32)
  return 2.0 * rows.T @ rows / rows.shape[0]


def _quant(w: jax.Array, scale: jax.Array, bits: int) -> jax.Array:
  maxq = 2 ** (bits - 1) - 1
  return jnp.clip(jnp.round(w / scale), -(maxq + 1), maxq)


def gptq_codes(kernel: jax.Array, h: jax.Array, scales: jax.Array, bits: int, damp: float = DAMP,
               block: int = BLOCK) -> jax.Array:
  """GPTQ integer codes of `kernel` (..., fan, out) for the layer-input Hessian `h` (fan, fan) on the symmetric
  grid scales (out,)·q, q ∈ [−2^(b−1), 2^(b−1) − 1]. Inputs that never fire (H_ii = 0) get weight 0, as in the
  paper's code. Returns q (kernel.shape) int32; the quantized kernel is q·scales."""
  shape = kernel.shape
  w = jnp.asarray(kernel, jnp.float32).reshape(-1, shape[-1]).T                 # (out, fan): columns = inputs
  fan = w.shape[1]
  if h.shape != (fan, fan):
    raise ValueError(f"gptq: Hessian {h.shape} for a kernel with fan-in {fan} (shape {shape}).")
  h = jnp.asarray(h, jnp.float32)
  dead = jnp.diag(h) == 0
  h = h + jnp.diag(dead.astype(jnp.float32))
  w = jnp.where(dead[None, :], 0.0, w)
  h = h + damp * jnp.mean(jnp.diag(h)) * jnp.eye(fan, dtype=jnp.float32)
  chol = jnp.linalg.cholesky(h)
  hinv = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(fan, dtype=jnp.float32))
  u = jnp.linalg.cholesky(hinv).T                                                # upper: H⁻¹ = Uᵀ U
  if not bool(jnp.all(jnp.isfinite(u))):
    raise FloatingPointError("gptq: the damped Hessian is not positive definite; raise `damp`.")
  scale = jnp.asarray(scales, jnp.float32)[:, None]                             # (out, 1)

  def column(i, carry):
    w1, q1, err1, u1 = carry
    wi = w1[:, i]
    qi = _quant(wi[:, None], scale, bits)[:, 0]
    e = (wi - qi * scale[:, 0]) / u1[i, i]
    w1 = w1 - e[:, None] * u1[i][None, :]                                        # U upper: only columns ≥ i move
    return w1, q1.at[:, i].set(qi), err1.at[:, i].set(e), u1

  codes = []
  for start in range(0, fan, block):
    stop = min(start + block, fan)
    u1 = u[start:stop, start:stop]
    w1 = w[:, start:stop]
    init = (w1, jnp.zeros_like(w1), jnp.zeros_like(w1), u1)
    _, q1, err1, _ = jax.lax.fori_loop(0, stop - start, column, init)
    codes.append(q1)
    w = w.at[:, stop:].add(-err1 @ u[start:stop, stop:])
  q = jnp.concatenate(codes, axis=1).T.reshape(shape)
  return q.astype(jnp.int32)
