"""Compact storage of a clustered layer: b-bit packed cluster indices plus a k×d float codebook.

Index i of a layer (0 ≤ i < m) occupies bits [i·b, (i+1)·b) of a little-endian bit stream, least significant
bit first, stored in ⌈m·b/8⌉ uint8 bytes (the last byte zero-padded). Every b in 1..8 packs exactly: the
round trip `unpack(pack(idx, b), m, b) == idx` holds for any indices < 2^b. Both functions are written in
`jax.numpy`, so they run under `jit` and `nnx.eval_shape` (restoring a checkpoint builds the packed shapes
without data), and accept numpy input.

A layer with kernel K of shape (..., out) and vectors of dimension d (groups of d consecutive output
channels) stores `indices: uint8 (⌈m·b/8⌉,)` with m = K.size / d, and `codebook: (2^b, d)`; the weights
are K = codebook[unpack(indices, m, b)].reshape(K.shape).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

MAX_BITS = 8


def num_bytes(count: int, bits: int) -> int:
  """Bytes that `count` indices of `bits` bits take: ⌈count·bits/8⌉."""
  return math.ceil(count * bits / 8)


def _check_bits(bits: int) -> None:
  if not (isinstance(bits, (int, np.integer)) and 1 <= bits <= MAX_BITS):
    raise ValueError(f"bits must be an integer in 1..{MAX_BITS} (k = 2^bits ≤ 256 centroids), got {bits!r}.")


def pack(indices: jax.Array, bits: int) -> jax.Array:
  """Packs cluster indices into a little-endian bit stream.

  Arguments:
    indices: (m,) integers in [0, 2^bits). bits: b in 1..8.
  Returns:
    (⌈m·b/8⌉,) uint8.
  """
  _check_bits(bits)
  idx = jnp.asarray(indices).reshape(-1).astype(jnp.uint32)
  m = idx.shape[0]
  shifts = jnp.arange(bits, dtype=jnp.uint32)
  stream = ((idx[:, None] >> shifts) & 1).reshape(-1).astype(jnp.uint8)  # (m·b,) bits, LSB first
  stream = jnp.pad(stream, (0, 8 * num_bytes(m, bits) - m * bits))
  weights = (1 << jnp.arange(8, dtype=jnp.uint32)).astype(jnp.uint8)
  return jnp.sum(stream.reshape(-1, 8) * weights, axis=1, dtype=jnp.uint8)


def unpack(packed: jax.Array, count: int, bits: int) -> jax.Array:
  """Inverse of `pack`.

  Arguments:
    packed: (⌈count·bits/8⌉,) uint8. count: m, the number of indices. bits: b in 1..8.
  Returns:
    (m,) int32 indices in [0, 2^bits).
  """
  _check_bits(bits)
  packed = jnp.asarray(packed)
  if packed.dtype != jnp.uint8 or packed.shape != (num_bytes(count, bits),):
    raise ValueError(f"packed indices must be uint8 of shape ({num_bytes(count, bits)},) for {count} indices of "
                     f"{bits} bits; got {packed.dtype}{list(packed.shape)}.")
  stream = (packed[:, None].astype(jnp.uint32) >> jnp.arange(8, dtype=jnp.uint32)) & 1
  stream = stream.reshape(-1)[: count * bits].reshape(count, bits)
  return jnp.sum(stream << jnp.arange(bits, dtype=jnp.uint32), axis=1).astype(jnp.int32)


def vectors(kernel: jax.Array, dim: int) -> jax.Array:
  """A kernel (..., out) as m = size/d weight vectors of d consecutive output channels: (m, d).

  coremltools groups d output channels at the same input position (it moves torch's output axis last
  first); flax kernels already keep the output axis last.
  """
  if kernel.shape[-1] % dim:
    raise ValueError(f"a kernel with {kernel.shape[-1]} output channels cannot be split into vectors of "
                     f"dimension {dim}; choose dim dividing {kernel.shape[-1]}.")
  return kernel.reshape(-1, dim)


@functools.partial(jax.jit, static_argnames=("bits",))
def encode(kernel: jax.Array, codebook: jax.Array, bits: int) -> jax.Array:
  """Snaps every weight vector of `kernel` to its nearest codebook row and packs the indices.

  Arguments:
    kernel: (..., out). codebook: (2^bits, d). bits: b.
  Returns:
    (⌈m·b/8⌉,) uint8 with m = kernel.size / d.
  """
  from zoo.quant import kmeans  # pylint: disable=import-outside-toplevel

  if codebook.shape[0] != 2 ** bits:
    raise ValueError(f"codebook has {codebook.shape[0]} rows; {bits} bits address {2 ** bits}.")
  return pack(kmeans.nearest(codebook, vectors(kernel, codebook.shape[1])), bits)


@functools.partial(jax.jit, static_argnames=("shape", "bits"))
def decode(packed: jax.Array, codebook: jax.Array, shape: tuple[int, ...], bits: int) -> jax.Array:
  """The snapped kernel codebook[unpack(packed)] with `shape`. codebook: (2^bits, d) -> `shape`."""
  d = codebook.shape[1]
  count = math.prod(shape) // d
  return codebook[unpack(packed, count, bits)].reshape(shape)
