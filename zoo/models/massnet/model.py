"""The mass-preserving network: `MassStep` (one explicit Euler step of an antisymmetric field), `lift` / `project`
between widths, `MassNet` (blocks of steps), and `predict` (the jitted forward as numpy).

Guarantee: Σᵢ N(x)ᵢ = Σᵢ xᵢ to float64 round-off, for every input and every weight."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.nn import init
from zoo.nn.precision import float64, float64_scope
from zoo.registry import check_input

F64 = jnp.float64


class MassStep(nnx.Module):
  """x ↦ x + h·(S(x) − S(x)ᵀ)ᵀ𝟙 with S strictly upper triangular from a one-hidden-layer MLP.

  Guarantee: Σ output = Σ x (for `conserve=True`; `conserve=False` drops the antisymmetry: an ablation
  whose total drifts, used to show that `verify` can fail).

  Arguments:
    dim: state dimension n. hidden: width of the MLP producing the n(n−1)/2 free entries.
  """

  def __init__(self, dim: int, hidden: int, *, conserve: bool = True, rngs: nnx.Rngs):
    self.dim = dim
    self.conserve = conserve
    n_free = dim * (dim - 1) // 2 if conserve else dim * dim
    # PyTorch's nn.Linear initialisation (as the official code): U(±1/√fan_in) for weights and biases.
    self.inner = nnx.Linear(dim, hidden, use_bias=False, dtype=F64, param_dtype=F64, kernel_init=init.TORCH_KERNEL,
                            rngs=rngs)
    self.inner_bias = nnx.Param(jax.random.normal(rngs.params(), (hidden,), F64))
    self.outer = nnx.Linear(hidden, n_free, dtype=F64, param_dtype=F64, kernel_init=init.TORCH_KERNEL,
                            bias_init=init.torch_bias(hidden), rngs=rngs)
    self.step = nnx.Param(jax.random.normal(rngs.params(), (), F64))

  @float64
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: (batch, dim) -> (batch, dim)."""
    free = jax.nn.relu(self.outer(jax.nn.relu(self.inner(x) + self.inner_bias[...])))
    if self.conserve:
      rows, cols = np.triu_indices(self.dim, 1)
      upper = jnp.zeros(x.shape[:1] + (self.dim, self.dim), x.dtype).at[:, rows, cols].set(free)
      field = jnp.sum(upper - jnp.swapaxes(upper, 1, 2), axis=1)  # 𝟙ᵀ(S − Sᵀ): column sums
    else:
      field = jnp.sum(free.reshape(x.shape[0], self.dim, self.dim), axis=1)
    return x + self.step[...] * field


def lift(x: jax.Array, dim: int) -> jax.Array:
  """Pads zeros: (batch, n) -> (batch, dim), same total."""
  return jnp.pad(x, ((0, 0), (0, dim - x.shape[1])))


def project(x: jax.Array, dim: int) -> jax.Array:
  """Keeps the first `dim` components and adds the mean of the rest to each: same total."""
  return x[:, :dim] + jnp.sum(x[:, dim:], axis=1, keepdims=True) / dim


class MassNet(nnx.Module):
  """A mass-preserving network: blocks of `MassStep`s at widths `widths`, lifted/projected in between.

  Guarantee: Σᵢ N(x)ᵢ = Σᵢ xᵢ to float64 round-off, for every input and every weight.

  Arguments:
    dim: input/output dimension. widths: working dimension of each block (lift when it grows, project when
      it shrinks), steps_per_block: MassSteps per block, hidden: MLP width, conserve: see MassStep.
  Call: x: (batch, dim) float -> (batch, dim) float64 (computed in float64 whatever the caller's mode; keep
  working on it as numpy or inside `zoo.nn.precision.float64_scope()`: outside it JAX rounds further arithmetic
  to float32).
  """

  def __init__(self, dim: int = 3, widths=(10, 10, 15), steps_per_block: int = 3, hidden: int = 50,
               conserve: bool = True, *, rngs: nnx.Rngs):
    self.dim = dim
    self.widths = tuple(widths)
    with float64_scope():
      self.blocks = nnx.List([
          nnx.List([MassStep(w, hidden, conserve=conserve, rngs=rngs) for _ in range(steps_per_block)])
          for w in self.widths])

  @float64
  def __call__(self, x: jax.Array) -> jax.Array:
    check_input(x, (self.dim,))
    x = jnp.asarray(x, F64)
    for width, block in zip(self.widths, self.blocks):
      x = lift(x, width) if width >= x.shape[1] else project(x, width)
      for step in block:
        x = step(x)
    return project(x, self.dim)


@nnx.jit
def _forward(model: MassNet, x: jax.Array) -> jax.Array:
  return model(x)


@float64
def predict(model: MassNet, x: np.ndarray) -> np.ndarray:
  """N(x) through one jitted forward (compiled once per architecture and batch shape): (batch, dim) float64."""
  return np.asarray(_forward(model, jnp.asarray(x, F64)))
