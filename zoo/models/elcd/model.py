"""The ELCD module: a contracting latent field pushed forward through a neural-spline flow.

    ẋ = J_{φ⁻¹}(z) f(z),  z = φ(x),  f(z) = A(z)(z − z*),  A(z) = −P_s(z)ᵀP_s(z) − εI + P_a(z) − P_a(z)ᵀ.

Guarantee (any weights): sym A(z) ⪯ −εI, so ‖z(t) − z*‖ ≤ e^{−εt}‖z(0) − z*‖ for every latent solution and x* is
the unique, globally exponentially stable equilibrium of the data-space field.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.nn.contraction import ExtendedLinearField
from zoo.nn.flows import NeuralSplineFlow
from zoo.registry import check_input


class ELCD(nnx.Module):
  """ELCD with a latent neural-spline diffeomorphism; see the package docstring for the field and its guarantee.

  Arguments:
    dim: d (data dimension = latent dimension).
    hidden: width of the P_s, P_a MLPs (16 in the official LASA demo).
    flow_steps: neural-spline flow steps (2); 0 leaves only a permutation and an LU-linear layer.
    flow_hidden, flow_blocks, num_bins, tail_bound: the flow's conditioner width (30), residual blocks (2),
      spline bins (10) and tail bound (10).
    eps: ε (0.01), the guaranteed exponential rate in latent space.
    simple: "ELCD simple" (constant A). constrained: False is a test ablation without the −PᵀP structure.
    target: x* (d floats; default the origin).
  Call: x: (batch, d) -> ẋ: (batch, d).
  """

  def __init__(self, dim: int, hidden: int = 16, flow_steps: int = 2, flow_hidden: int = 30, flow_blocks: int = 2,
               num_bins: int = 10, tail_bound: float = 10.0, eps: float = 0.01, simple: bool = False,
               constrained: bool = True, target=None, *, rngs: nnx.Rngs):
    self.dim = dim
    self.eps = float(eps)
    self.target = tuple(float(t) for t in target) if target is not None else (0.0,) * dim
    if len(self.target) != dim:
      raise ValueError(f"target has {len(self.target)} entries; dim is {dim}.")
    self.flow = NeuralSplineFlow(dim, flow_steps, hidden=flow_hidden, blocks=flow_blocks, num_bins=num_bins,
                                 tail_bound=tail_bound, rngs=rngs)
    self.field = ExtendedLinearField(dim, hidden, eps, simple=simple, constrained=constrained, rngs=rngs)

  # -- latent space ----------------------------------------------------------------------------------------

  def encode(self, x: jax.Array) -> jax.Array:
    """z = φ(x): (batch, d) -> (batch, d)."""
    graphdef, state = nnx.split(self.flow)
    return _flow_jit(graphdef, state, jnp.asarray(x), False)

  def decode(self, z: jax.Array) -> jax.Array:
    """x = φ⁻¹(z): (batch, d) -> (batch, d)."""
    graphdef, state = nnx.split(self.flow)
    return _flow_jit(graphdef, state, jnp.asarray(z), True)

  def target_array(self, dtype=jnp.float32) -> jax.Array:
    """x*: (d,)."""
    return jnp.asarray(self.target, dtype)

  def latent_target(self, dtype=jnp.float32) -> jax.Array:
    """z* = φ(x*): (d,)."""
    return self.encode(self.target_array(dtype)[None])[0]

  def latent_matrix(self, z: jax.Array) -> jax.Array:
    """A(z): (batch, d) -> (batch, d, d); sym A(z) ⪯ −εI."""
    return self.field.matrix(z)

  def latent_field(self, z: jax.Array) -> jax.Array:
    """f(z) = A(z)(z − z*): (batch, d) -> (batch, d)."""
    return self.field(z, self.latent_target(z.dtype))

  # -- data space ------------------------------------------------------------------------------------------

  def velocity(self, x: jax.Array) -> jax.Array:
    """ẋ = J_{φ⁻¹}(φ(x)) f(φ(x)): x (batch, d) -> (batch, d). Jit-compiled (also when called eagerly)."""
    check_input(x, (self.dim,))
    graphdef, state = nnx.split(self)
    return _velocity_jit(graphdef, state, jnp.asarray(x))

  def __call__(self, x: jax.Array) -> jax.Array:
    """The velocity ẋ at x: (batch, d) -> (batch, d)."""
    return self.velocity(x)

  def rollout(self, x0, steps: int = 1000, dt: float = 0.01, tol: float = 1e-5, return_steps: bool = False):
    """Trajectories of ẋ = velocity(x) from each initial condition: classical RK4, jit-compiled, vmapped.

    A trajectory stops (its later states repeat the last one) after the first step with ‖Δx‖ < tol, as the
    official `forward_step_until_converge`; shapes stay static.

    Arguments:
      x0: (batch, d) initial conditions. steps: RK4 steps (1000). dt: step (0.01). tol: stopping tolerance.
      return_steps: also return the number of steps each trajectory took before stopping.
    Returns:
      (batch, steps + 1, d) array with x0 first [, (batch,) int steps taken].
    """
    check_input(x0, (self.dim,), "x0")
    graphdef, state = nnx.split(self)
    xs, taken = _rollout(graphdef, state, jnp.asarray(x0), int(steps), dt, tol)
    return (xs, taken) if return_steps else xs


def pushforward_velocity(model: ELCD, x: jax.Array) -> jax.Array:
  """ẋ = J_{φ⁻¹}(z) f(z), z = φ(x), as one forward-mode JVP of the closed-form inverse: (batch, d) -> (batch, d).

  What `ELCD.velocity` computes, without its input check and jit: for use inside traced code."""
  z = model.encode(x)
  return model.flow.jvp_inverse(z, model.latent_field(z))[1]


def rk4(field, x: jax.Array, dt) -> jax.Array:
  """One classical Runge-Kutta step of ẋ = field(x): x (...) -> (...)."""
  k1 = field(x)
  k2 = field(x + 0.5 * dt * k1)
  k3 = field(x + 0.5 * dt * k2)
  k4 = field(x + dt * k3)
  return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


@functools.partial(jax.jit, static_argnames=("graphdef", "inverse"))
def _flow_jit(graphdef, state, x, inverse):
  flow = nnx.merge(graphdef, state)
  return (flow.inverse if inverse else flow.forward)(x)[0]


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _velocity_jit(graphdef, state, x):
  return pushforward_velocity(nnx.merge(graphdef, state), x)


@functools.partial(jax.jit, static_argnames=("graphdef", "steps"))
def _rollout(graphdef, state, x0, steps, dt, tol):
  model = nnx.merge(graphdef, state)
  dt = jnp.asarray(dt, x0.dtype)

  def field(x):  # one state (d,)
    return pushforward_velocity(model, x[None])[0]

  def one(start):
    def step(carry, _):
      x, done, taken = carry
      new = rk4(field, x, dt)
      moved = jnp.linalg.norm(new - x)
      x = jnp.where(done, x, new)
      taken = taken + jnp.where(done, 0, 1)
      return (x, done | (moved < tol), taken), x

    (_, _, taken), xs = jax.lax.scan(step, (start, jnp.array(False), jnp.array(0, jnp.int32)), None,
                                     length=steps)
    return jnp.concatenate([start[None], xs]), taken

  return jax.vmap(one)(x0)
