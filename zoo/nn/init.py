"""Initialisers shared by the families.

PyTorch's `nn.Linear` / `nn.Conv2d` default (what the papers' official code used): weights and biases
U(−1/√fan_in, 1/√fan_in). The kernel initialiser is variance scaling 1/3 (uniform on ±√(3·(1/3)/fan_in))."""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

TORCH_KERNEL = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def uniform(bound: float) -> Callable:
  """U(−bound, bound) of any shape and dtype."""
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def torch_bias(fan_in: int) -> Callable:
  """PyTorch's default bias initialiser of a layer with `fan_in` inputs: U(±1/√fan_in)."""
  return uniform(1 / math.sqrt(fan_in))
