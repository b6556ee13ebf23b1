"""Initialisers shared by the families.

PyTorch's `nn.Linear` / `nn.Conv2d` default (what the papers' official code used): weights and biases
U(−1/√fan_in, 1/√fan_in). The kernel initialiser is variance scaling 1/3 (uniform on ±√(3·(1/3)/fan_in))."""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
from flax import nnx

TORCH_KERNEL = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform")

_SHAPES_ONLY = contextvars.ContextVar("zoo_shapes_only", default=False)


@contextlib.contextmanager
def shapes_only_build() -> Iterator[None]:
  """Within: a constructor is traced for its structure, shapes and dtypes only (`ModelSpec.abstract`, under
  `nnx.eval_shape`), so initialisation work that changes values only (k-means of clustered layers, rotations,
  the weight-clip search) may be skipped (`shapes_only()`); a constructor's structure must not depend on it."""
  token = _SHAPES_ONLY.set(True)
  try:
    yield
  finally:
    _SHAPES_ONLY.reset(token)


def shapes_only() -> bool:
  """Whether the constructor now running is traced for shapes only (see `shapes_only_build`)."""
  return _SHAPES_ONLY.get()


def uniform(bound: float) -> Callable:
  """U(−bound, bound) of any shape and dtype."""
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def torch_bias(fan_in: int) -> Callable:
  """PyTorch's default bias initialiser of a layer with `fan_in` inputs: U(±1/√fan_in)."""
  return uniform(1 / math.sqrt(fan_in))
