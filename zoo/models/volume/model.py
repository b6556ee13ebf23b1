"""The volume-preserving network: `ShearMLP` (one half-step's force), `VolumeLayer` (one splitting step of two
shears), `VolumeNet` (a stack of them), and the jitted numpy entry points `apply` and `rollout`.

Guarantee: det ∂N/∂z (z) = 1 for every z and every weight (float64 round-off), and N⁻¹ = `VolumeNet.inverse`
exactly."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.nn.precision import float64, float64_scope
from zoo.registry import check_input, check_steps

F64 = jnp.float64


class ShearMLP(nnx.Module):
  """u ↦ P σ(A u + a): (batch, d) -> (batch, d), one hidden layer of width `hidden` (P = I when hidden is None).

  Arguments: dim d, hidden width (None: the slides' σ(Au + a) with A square), scale of the initial read-out.
  """

  def __init__(self, dim: int, hidden: int | None, *, rngs: nnx.Rngs):
    width = dim if hidden is None else hidden
    self.inner = nnx.Linear(dim, width, dtype=F64, param_dtype=F64, rngs=rngs,
                            kernel_init=nnx.initializers.variance_scaling(1.0, "fan_in", "normal"),
                            bias_init=nnx.initializers.normal(1.0))
    self.outer = None if hidden is None else nnx.Linear(
        width, dim, use_bias=False, dtype=F64, param_dtype=F64, rngs=rngs,
        kernel_init=nnx.initializers.variance_scaling(0.1, "fan_in", "normal"))

  @float64
  def __call__(self, u: jax.Array) -> jax.Array:
    y = jnp.tanh(self.inner(u))
    return y if self.outer is None else self.outer(y)


class VolumeLayer(nnx.Module):
  """One splitting step x ← x + h F(v), v ← v + h G(x): det ∂/∂(x, v) = 1, inverse explicit.

  `preserving=False` is an ablation whose first update reads the whole state, x ← x + h F(x + v), which is not
  a shear (its determinant is not 1): used to show that `verify` can fail.
  Call: z: (batch, 2d) -> (batch, 2d).
  """

  def __init__(self, dim: int, hidden: int | None, step: float, *, preserving: bool = True, rngs: nnx.Rngs):
    self.dim, self.step, self.preserving = dim, float(step), preserving
    self.f = ShearMLP(dim, hidden, rngs=rngs)
    self.g = ShearMLP(dim, hidden, rngs=rngs)

  @float64
  def __call__(self, z: jax.Array) -> jax.Array:
    x, v = z[:, : self.dim], z[:, self.dim:]
    x = x + self.step * self.f(v if self.preserving else x + v)
    v = v + self.step * self.g(x)
    return jnp.concatenate([x, v], axis=1)

  @float64
  def inverse(self, z: jax.Array) -> jax.Array:
    if not self.preserving:
      raise ValueError("the non-preserving ablation has no closed-form inverse")
    x, v = z[:, : self.dim], z[:, self.dim:]
    v = v - self.step * self.g(x)
    x = x - self.step * self.f(v)
    return jnp.concatenate([x, v], axis=1)


class VolumeNet(nnx.Module):
  """A volume-preserving network: `layers` splitting steps of step size `step`.

  Guarantee: det ∂N/∂z (z) = 1 for every z and every weight (float64 round-off), and N⁻¹ = `inverse` exactly.

  Arguments:
    dim: the state dimension 2d (split as x = z[:d], v = z[d:]). layers: number of splitting steps. hidden:
    width of each F_k, G_k (None: the slides' σ(Au + a)). step: h of each layer (default: time_step / layers,
    so that N has the form of a splitting integrator over time_step). time_step: the flow time N approximates.
    preserving: see `VolumeLayer` (False: an ablation that breaks the guarantee).
  Call: z: (batch, dim) float -> (batch, dim) float64 (computed in float64 whatever the caller's mode; keep
  working on it as numpy or inside `zoo.nn.precision.float64_scope()`, else JAX rounds further arithmetic to
  float32).
  """

  def __init__(self, dim: int = 2, layers: int = 8, hidden: int | None = 16, step: float | None = None,
               time_step: float = 0.5, preserving: bool = True, *, rngs: nnx.Rngs):
    if dim % 2:
      raise ValueError(f"dim must be even (the state splits into x and v halves); got {dim}.")
    self.dim = dim
    self.step = float(time_step / layers if step is None else step)
    with float64_scope():
      self.layers = nnx.List([VolumeLayer(dim // 2, hidden, self.step, preserving=preserving, rngs=rngs)
                              for _ in range(layers)])

  @float64
  def __call__(self, z: jax.Array) -> jax.Array:
    check_input(z, (self.dim,), "z")
    z = jnp.asarray(z, F64)
    for layer in self.layers:
      z = layer(z)
    return z

  @float64
  def inverse(self, z: jax.Array) -> jax.Array:
    """N⁻¹(z) in closed form: (batch, dim) -> (batch, dim) float64."""
    check_input(z, (self.dim,), "z")
    z = jnp.asarray(z, F64)
    for layer in reversed(self.layers):
      z = layer.inverse(z)
    return z

  @float64
  def rollout(self, z0: jax.Array, steps: int) -> jax.Array:
    """Iterates N: z0 (batch, dim) -> (batch, steps + 1, dim) float64 (z0 first)."""
    steps = check_steps(steps)
    z = jnp.asarray(z0, F64)
    out = [z]
    for _ in range(steps):
      z = self(z)
      out.append(z)
    return jnp.stack(out, axis=1)

  @float64
  def log_abs_det_jacobian(self, z: jax.Array) -> jax.Array:
    """log|det ∂N/∂z| at each row of z (batch, dim) by forward-mode autodiff: (batch,) float64."""
    z = jnp.asarray(z, F64)
    jac = jax.vmap(jax.jacfwd(lambda p: self(p[None])[0]))(z)
    return jnp.linalg.slogdet(jac)[1]


def model_time(model: VolumeNet) -> float:
  """The flow time one application of `model` spans: step × layers."""
  return model.step * len(model.layers)


METHODS = ("__call__", "inverse", "log_abs_det_jacobian")  # what `apply` runs


@functools.partial(nnx.jit, static_argnames="method")
def _apply(model: VolumeNet, z: jax.Array, method: str) -> jax.Array:
  return getattr(model, method)(z)


@float64
def apply(model: VolumeNet, method: str, z: np.ndarray) -> np.ndarray:
  """`model.<method>(z)` for a method of `METHODS`, jitted (compiled once per architecture, method and batch shape),
  as a float64 numpy array."""
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
  return np.asarray(_apply(model, jnp.asarray(z, F64), method))


@functools.partial(nnx.jit, static_argnames="steps")
def _rollout_scan(m: VolumeNet, z: jax.Array, steps: int) -> jax.Array:
  def body(z, _):
    z = m(z)
    return z, z
  _, zs = jax.lax.scan(body, z, None, length=steps)
  return jnp.concatenate([z[:, None], jnp.swapaxes(zs, 0, 1)], axis=1)


@float64
def rollout(model: VolumeNet, z0: np.ndarray, steps: int) -> np.ndarray:
  """`model.rollout(z0, steps)` as one jitted scan: (batch, dim) -> (batch, steps + 1, dim) float64 numpy."""
  return np.asarray(_rollout_scan(model, jnp.asarray(z0, F64), check_steps(steps)))
