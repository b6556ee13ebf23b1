"""The CBF-invariant neural ODE of the spiral experiment: the vector field, its CBF filter and rollouts.

ẏ = f(y) = W₂ tanhshrink(W₁ y³ + b₁) + b₂ is affine in the constrained parameters θ_c = the first k rows of the
last layer's kernel (k = `constrained_units`):

    f(y) = F(y) + G(y) θ_c,   F(y) = W₂[:, k:] z_{k:}(y) + b₂,   G(y) θ_c = Θ_c z_{:k}(y),

and at every evaluation θ_c is replaced by the CBF-QP solution for the obstacles' barriers (`zoo.nn.cbf`).
Guarantee: every solution that starts in the safe set S = {b_i >= 0 ∀i} stays in it for all t, whatever the
learned θ_ref (Xiao et al., ICML 2023, forward-invariance theorem). Everything computes in float64.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.nn.cbf import CBFSolution, Obstacles, UnsafeStateError, affine_cbf_filter
from zoo.nn.dopri5 import solve_windows
from zoo.nn.precision import float64
from zoo.registry import check_input

DEFAULT = "default"  # `obstacles=DEFAULT`: the module's own obstacles (None for the unconstrained baseline)
MAX_DT = 0.025  # largest solver step (see solve)
TRAIN_MAX_STEPS = 512  # steps per training window (a window of 10 samples takes 10, rarely 55); then the loss is inf


def plain(tree):
  """Concrete leaves as uncommitted single-device arrays (tracers untouched). A checkpoint restores committed,
  mesh-sharded arrays; without this, a loaded model and a created one would compile every solver twice."""
  return jax.tree.map(lambda v: v if isinstance(v, jax.core.Tracer) else jnp.asarray(np.asarray(v)), tree)


class ObstacleData(nnx.Variable):
  """Non-trainable obstacle description stored with the weights (not an `nnx.Param`: never optimised)."""


def tanhshrink(x: jax.Array) -> jax.Array:
  """x - tanh(x) (PyTorch's Tanhshrink)."""
  return x - jnp.tanh(x)


# ------------------------------------------------------------------------------------- pure vector field


def split_affine(params: dict[str, jax.Array], y: jax.Array, k: int):
  """f(y) = F(y) + G(y) θ: returns θ_ref: (2k,), F: (2,), G: (2, 2k) for one state y: (2,)."""
  z = tanhshrink((y ** 3) @ params["w1"] + params["b1"])  # (hidden,)
  w2 = params["w2"]  # (hidden, 2): kernel layout, f = z @ w2 + b2
  theta_ref = w2[:k].reshape(-1)  # θ[l*2 + j] = w2[l, j]
  f0 = z[k:] @ w2[k:] + params["b2"]
  g = jnp.kron(z[:k][None, :], jnp.eye(2, dtype=z.dtype))  # g[j, l*2 + j'] = z_l δ_jj'
  return theta_ref, f0, g


def filtered(params, y, obstacles: Obstacles | None, k: int, method: str) -> tuple[jax.Array, CBFSolution | None]:
  """(ẏ: (2,), CBF solution) at one state y: (2,)."""
  if obstacles is None:
    z = tanhshrink((y ** 3) @ params["w1"] + params["b1"])
    return z @ params["w2"] + params["b2"], None
  theta_ref, f0, g = split_affine(params, y, k)
  sol = affine_cbf_filter(y, theta_ref, f0, g, obstacles, method)
  return f0 + g @ sol.theta, sol


def field(params, y, obstacles, k, method) -> jax.Array:
  """ẏ: (2,) at one state y: (2,), filtered by `obstacles` (None: the plain field)."""
  return filtered(params, y, obstacles, k, method)[0]


def solve(params, y0, ts, obstacles, *, k, method, rtol, atol, max_dt=MAX_DT, max_steps=16384, solver=None,
          saveat=None, escape_radius=None, checkpoints=None):
  """One trajectory: y0: (2,), ts: (T,) increasing -> diffrax Solution (ys: (T, 2) unless `saveat`).

  Steps are capped at `max_dt`: where the filter is inactive the field can be so smooth that the error estimate
  lets a step jump across a whole obstacle (no stage lands where the filter acts); 0.025 is the data's sampling
  interval and the step of the official step-by-step inference (|ẏ| dt < 0.1 < the obstacles' diameter).

  With `escape_radius` the solve stops (result `event_occurred`, later outputs inf) once ||y|| exceeds it: the
  cubic field can blow up in finite time far from the data, and such a solve would use up every step.

  `checkpoints`: how many steps the backward pass stores (diffrax `RecursiveCheckpointAdjoint`); None stores up to
  `max_steps`. Fewer only trade memory for recomputation: the solution and its gradient are the same.
  """
  import diffrax  # pylint: disable=import-outside-toplevel  # imported on first solve: 1 s at import

  term = diffrax.ODETerm(lambda t, y, args: field(args[0], y, args[1], k, method))
  event = None
  if escape_radius is not None:
    event = diffrax.Event(lambda t, y, args, **kw: jnp.sum(y ** 2) > escape_radius ** 2)
  return diffrax.diffeqsolve(
      term, solver or diffrax.Dopri5(), t0=ts[0], t1=ts[-1], dt0=None, y0=y0, args=(params, obstacles),
      saveat=saveat or diffrax.SaveAt(ts=ts),
      stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, dtmax=max_dt),
      max_steps=max_steps, throw=False, event=event,
      adjoint=diffrax.RecursiveCheckpointAdjoint(checkpoints=checkpoints))


# ------------------------------------------------------------------------------------------------ module


class InvariantNeuralODE(nnx.Module):
  """Neural ODE ẏ = W₂ tanhshrink(W₁ y³ + b₁) + b₂ whose first k output columns pass a CBF-QP at every step.

  ẏ = F(y) + G(y) θ_c*(y),  θ_c* = argmin ||θ - θ_ref||² s.t. ∇b_i·ẏ + p_i b_i >= 0 (Xiao et al., ICML 2023).
  With `obstacles=None` (the `neural-ode-spiral` baseline) no filter is applied unless obstacles are passed at
  inference. Called on a batch it returns the (filtered) vector field.

  Arguments:
    hidden: width of the hidden layer (paper: 50).
    constrained_units: k, the hidden units whose outgoing weights are θ_c (paper: 1, i.e. 2 parameters).
    obstacles: default obstacles, dict(centers=(m, 2), radii=(m,), gains=(m,), powers=(m,)), or None.
    rtol, atol: diffrax PIDController tolerances of `rollout` and training (torchdiffeq dopri5 defaults).
    qp_method: `zoo.nn.cbf.cbf_qp` method ("auto": closed form for 1, exact active set for <= 4 obstacles).
    cbf_in_training: the loss integrates the filtered field (train through the QP); else the plain one.
    rngs: `nnx.Rngs`; weights N(0, 0.1²), biases 0 (as the official code).

  Call: x: (batch, 2) -> ẏ: (batch, 2).
  """

  def __init__(self, hidden: int = 50, constrained_units: int = 1, obstacles: dict[str, Any] | None = None,
               rtol: float = 1e-7, atol: float = 1e-9, qp_method: str = "auto", cbf_in_training: bool = True,
               *, rngs: nnx.Rngs):
    if not 1 <= constrained_units <= hidden:
      raise ValueError(f"constrained_units must be in [1, hidden={hidden}]; got {constrained_units}.")
    init = nnx.initializers.normal(0.1)
    zeros = nnx.initializers.zeros_init()
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)  # float64 under float64_scope (FAMILY.x64)
    self.linear1 = nnx.Linear(2, hidden, kernel_init=init, bias_init=zeros, param_dtype=dtype, dtype=dtype,
                              rngs=rngs)
    self.linear2 = nnx.Linear(hidden, 2, kernel_init=init, bias_init=zeros, param_dtype=dtype, dtype=dtype,
                              rngs=rngs)
    self.constrained_units = constrained_units
    self.rtol, self.atol = rtol, atol
    self.qp_method = qp_method
    self.cbf_in_training = cbf_in_training
    if obstacles is None:
      self.obstacle_centers = self.obstacle_radii = self.obstacle_gains = self.obstacle_powers = None
    else:
      obs = Obstacles.create(**obstacles)
      self.obstacle_centers = ObstacleData(jnp.asarray(obs.centers, dtype))
      self.obstacle_radii = ObstacleData(jnp.asarray(obs.radii, dtype))
      self.obstacle_gains = ObstacleData(jnp.asarray(obs.gains, dtype))
      self.obstacle_powers = ObstacleData(jnp.asarray(obs.powers, dtype))

  # -- parts ------------------------------------------------------------------------------------------
  def params(self) -> dict[str, jax.Array]:
    """The weights as a pytree (kernel layout: w1: (2, hidden), w2: (hidden, 2))."""
    return plain({"w1": self.linear1.kernel[...], "b1": self.linear1.bias[...],
                  "w2": self.linear2.kernel[...], "b2": self.linear2.bias[...]})

  @property
  def default_obstacles(self) -> Obstacles | None:
    """The obstacles stored with the weights (None for the unconstrained baseline)."""
    if self.obstacle_centers is None:
      return None
    return plain(Obstacles(self.obstacle_centers[...], self.obstacle_radii[...], self.obstacle_gains[...],
                           self.obstacle_powers[...]))

  def resolve(self, obstacles: Any = DEFAULT) -> Obstacles | None:
    """`DEFAULT` -> the module's obstacles; None -> unconstrained; `Obstacles` or a dict -> those."""
    if isinstance(obstacles, str):
      if obstacles != DEFAULT:
        raise ValueError(f"obstacles={obstacles!r}; pass 'default', None, a dict or zoo.nn.cbf.Obstacles.")
      return self.default_obstacles
    if isinstance(obstacles, dict):
      obstacles = Obstacles.create(**obstacles)
    if obstacles is None:
      return None
    if not isinstance(obstacles, Obstacles):
      raise TypeError(f"obstacles must be 'default', None, a dict or Obstacles; got {type(obstacles).__name__}.")
    dtype = self.linear1.kernel[...].dtype
    return jax.tree.map(lambda v: jnp.asarray(v, dtype), obstacles)

  # -- vector field -----------------------------------------------------------------------------------
  @float64
  def __call__(self, x: jax.Array) -> jax.Array:
    """ẏ at a batch of states x: (batch, 2) with the default obstacles -> (batch, 2)."""
    check_input(x, (2,))
    return self.velocity(x)

  @float64
  def velocity(self, y: jax.Array, obstacles: Any = DEFAULT) -> jax.Array:
    """Filtered vector field: y: (batch, 2) -> (batch, 2)."""
    obs = self.resolve(obstacles)
    params = self.params()
    y = jnp.asarray(y, params["w1"].dtype)
    return _velocity(params, y, obs, self.constrained_units, self.qp_method)

  @float64
  def filter_report(self, y: jax.Array, obstacles: Any = DEFAULT) -> CBFSolution:
    """The CBF-QP solutions at states y: (batch, 2): theta (batch, 2k), violation, infeasible (batch,)."""
    obs = self.resolve(obstacles)
    if obs is None:
      raise ValueError("filter_report needs obstacles (the model has none; pass obstacles=...).")
    params = self.params()
    y = jnp.asarray(y, params["w1"].dtype)
    return _filter_report(params, y, obs, self.constrained_units, self.qp_method)

  # -- trajectories -----------------------------------------------------------------------------------
  @float64
  def rollout(self, y0: jax.Array, ts: jax.Array, obstacles: Any = DEFAULT, *, rtol: float | None = None,
              atol: float | None = None, check_safe: bool = True) -> jax.Array:
    """Trajectories from a batch of initial states.

    Arguments:
      y0: (batch, 2) initial states (inside the safe set unless `check_safe=False`).
      ts: (T,) increasing save times; the solve starts at ts[0].
      obstacles: `DEFAULT`, None (no filter), a dict or `Obstacles`.
      rtol, atol: solver tolerances (default: the module's).
      check_safe: raise `UnsafeStateError` when some y0 has b_i(y0) < 0 (needs concrete y0). Non-finite y0
        always raise it.

    Returns:
      ys: (batch, T, 2); rows of a solve that failed (step budget) are NaN-free but inf after the failure.
    """
    check_input(y0, (2,), "y0")
    obs = self.resolve(obstacles)
    dtype = self.linear1.kernel[...].dtype
    ts = jnp.asarray(ts, dtype)
    if not isinstance(y0, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(y0))):
      rows = np.nonzero(~np.all(np.isfinite(np.asarray(y0)), axis=1))[0].tolist()
      raise UnsafeStateError(f"y0 rows {rows[:5]} are not finite (NaN or inf): no safe set contains them and the "
                             f"solver would return NaN. Pass finite initial states.")
    if check_safe and obs is not None and not isinstance(y0, jax.core.Tracer):
      b = np.asarray(jax.vmap(obs.barrier)(jnp.asarray(y0)))
      bad = np.nonzero(np.min(b, axis=1) < 0)[0]
      if bad.size:
        i = int(bad[0])
        raise UnsafeStateError(
            f"y0[{i}] = {np.asarray(y0)[i].tolist()} is inside obstacle(s) {np.nonzero(b[i] < 0)[0].tolist()} "
            f"(b = {b[i].round(4).tolist()}); {bad.size} of {len(b)} initial states are unsafe. Forward invariance "
            f"only holds from safe states: move y0 outside the obstacles, or pass check_safe=False to let the CBF "
            f"push the state out (b(t) >= b(0) e^(-p t)).")
    return _rollout(self.params(), jnp.asarray(y0, dtype), ts, obs, self.constrained_units, self.qp_method,
                    rtol or self.rtol, atol or self.atol)

  def trajectory_loss(self, y: jax.Array, t: jax.Array, solver: str = "windows") -> jax.Array:
    """Mean |ŷ - y| of rollouts from y[:, 0] over windows y: (batch, T, 2), t: (batch, T) (jittable).

    solver="windows" (training): `zoo.nn.dopri5.solve_windows`, the same Dopri5 steps as `solve` (tableau, initial
    step, controller, dense output) with a discrete adjoint over the recorded steps and unfinished windows gathered
    into narrower lanes: 1.7-2.9x less CPU for loss and gradient than diffrax's checkpointed while loop
    (benchmarks/results/invariance_node_solvers.md). solver="diffrax": a vmap of `solve`, the solver of `rollout`.
    Both give the same loss and gradient to rounding while their accepted steps coincide
    (tests/test_invariance_node.py).
    """
    obs = self.default_obstacles if self.cbf_in_training else None
    params = self.params()
    y, t = jnp.asarray(y, params["w1"].dtype), jnp.asarray(t, params["w1"].dtype)  # float32 data: one dtype
    k, method, rtol, atol = self.constrained_units, self.qp_method, self.rtol, self.atol
    if solver == "windows":
      pred = solve_windows(functools.partial(_field_of, k=k, method=method), params, obs, y[:, 0], t, rtol=rtol,
                           atol=atol, dtmax=MAX_DT, max_steps=TRAIN_MAX_STEPS)
    elif solver == "diffrax":
      pred = jax.vmap(lambda y0, ts: solve(params, y0, ts, obs, k=k, method=method, rtol=rtol, atol=atol,
                                           max_steps=TRAIN_MAX_STEPS, checkpoints=16).ys)(y[:, 0], t)
    else:
      raise ValueError(f"solver must be 'windows' or 'diffrax'; got {solver!r}.")
    return jnp.mean(jnp.abs(pred - y))


def _field_of(params, obstacles, y, *, k, method):
  """`field` in `solve_windows`' argument order."""
  return field(params, y, obstacles, k, method)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _velocity(params, y, obs, k, method):
  return jax.vmap(lambda s: field(params, s, obs, k, method))(y)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _filter_report(params, y, obs, k, method):
  return jax.vmap(lambda s: filtered(params, s, obs, k, method)[1])(y)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _rollout(params, y0, ts, obs, k, method, rtol, atol):
  return jax.vmap(lambda s: solve(params, s, ts, obs, k=k, method=method, rtol=rtol, atol=atol).ys)(y0)
