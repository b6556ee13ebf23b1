"""`verify`: the ELCD contraction guarantee checked on the given weights, in float64.

sym A(z) ⪯ −εI for every latent z, hence ‖z(t) − z*‖ ≤ e^{−εt}‖z(0) − z*‖ and exponential approach of any two latent
solutions; checked on sampled latent points and on RK4 rollouts of ż = f(z) through the model's public methods.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.models.elcd.model import ELCD, rk4
from zoo.nn.contraction import ExtendedLinearField
from zoo.nn.precision import float64_scope
from zoo.registry import Check


def _weight_bound(field: ExtendedLinearField) -> float:
  """A global bound L ≥ ‖A(z)‖₂ for all z from the weights (|tanh| ≤ 1): ‖A‖₂ ≤ ‖P_s‖_F² + ε + 2‖P_a‖_F."""
  def frob(p):
    if field.simple:
      return float(np.linalg.norm(np.asarray(p[...], np.float64)))
    w = np.asarray(p.outer.kernel[...], np.float64)
    b = np.asarray(p.outer.bias[...], np.float64)
    return float(np.linalg.norm(w, 2) * math.sqrt(w.shape[0]) + np.linalg.norm(b))
  s, a = frob(field.p_s), frob(field.p_a)
  return (s * s if field.constrained else s) + field.eps + 2 * a


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _latent_samples(graphdef, state, offsets, near, starts):
  """z*, A(z) and f(z) at z = z* + offsets (n, d), Df at z* and z* + near (m, d), and φ(starts)."""
  model = nnx.merge(graphdef, state)
  z_eq = model.latent_target(offsets.dtype)
  z = z_eq + offsets
  jac = jax.vmap(jax.jacfwd(lambda p: model.latent_field(p[None])[0]))(jnp.concatenate([z_eq[None], z_eq + near]))
  return z_eq, model.latent_matrix(z), model.latent_field(z), jac, model.encode(starts)


@functools.partial(jax.jit, static_argnames=("graphdef", "steps"))
def _latent_rollout_norms(graphdef, state, z0, z_eq, steps, dt):
  """RK4 on ż = f(z) from z0: (n, d); returns ‖z(t) − z*‖ (steps + 1, n), ‖z_{2i}(t) − z_{2i+1}(t)‖
  (steps + 1, n // 2) and φ⁻¹(z(T)) (n, d)."""
  model = nnx.merge(graphdef, state)

  def field(z):
    return model.field(z, z_eq)

  def norms(z):
    return jnp.linalg.norm(z - z_eq, axis=1), jnp.linalg.norm(z[0::2] - z[1::2], axis=1)

  def step(z, _):
    z = rk4(field, z, dt)
    return z, norms(z)

  z_end, (radius, gap) = jax.lax.scan(step, z0, None, length=steps)
  r0, g0 = norms(z0)
  return jnp.concatenate([r0[None], radius]), jnp.concatenate([g0[None], gap]), model.decode(z_end)


def _lognorm(m: np.ndarray) -> np.ndarray:
  """μ₂(M) = λ_max((M + Mᵀ)/2) of each matrix in (..., d, d)."""
  return np.linalg.eigvalsh((m + np.swapaxes(m, -1, -2)) / 2)[..., -1]


def verify(model: ELCD, num_points: int = 20_000, num_starts: int = 32, seed: int = 0) -> list[Check]:
  """The contraction guarantee on the given weights, in float64 (the weights' own values, no float32 round-off).

  1. sym A(z) ⪯ −εI: the largest eigenvalue of (A + Aᵀ)/2 over `num_points` latent points z* + r·u, r log-uniform
     in [1e-3, 1e3], u uniform on the sphere.
  2. Equilibrium contraction: (z − z*)ᵀ f(z) ≤ −ε‖z − z*‖² on the same points.
  3. Latent Jacobian log-norm at the target: μ₂(Df(z*)) ≤ −ε (Df(z*) = A(z*)); the detail reports the sampled
     max of μ₂(Df(z)) for ‖z − z*‖ ≤ 1, which ELCD does not bound (it is contracting in some metric, not
     necessarily the Euclidean one).
  4. Far-away starts converge: RK4 on ż = f(z) from φ(x* + R·u), R ∈ {10, 100}, for T = ln(1000)/ε with
     dt = min(0.05, 1/L), L a global bound on ‖A(z)‖₂ from the weights; passes iff every ‖z(T) − z*‖ ≤
     e^{−εT}‖z(0) − z*‖ (the guaranteed envelope, 1e-3). x(t) = φ⁻¹(z(t)) is the data-space trajectory.
  5. Two rollouts approach each other exponentially: ‖z₁(t) − z₂(t)‖ ≤ (‖z₁(0) − z*‖ + ‖z₂(0) − z*‖)e^{−εt} for all
     t (guaranteed). The value is the smallest measured rate −ln(‖Δ(t)‖/‖Δ(0)‖)/t, the bound the rate that the
     envelope guarantees at that t (ε minus ln((‖z₁(0) − z*‖ + ‖z₂(0) − z*‖)/‖Δ(0)‖)/t).
  """
  eps = model.eps
  rng = np.random.default_rng(seed)
  d = model.dim
  graphdef, state = nnx.split(model)
  u = rng.normal(size=(num_points, d))
  u /= np.linalg.norm(u, axis=1, keepdims=True)
  offsets = 10.0 ** rng.uniform(-3, 3, (num_points, 1)) * u
  near = rng.uniform(0, 1, (2000, 1)) * u[:2000]
  x_eq = np.asarray(model.target, np.float64)
  v = rng.normal(size=(num_starts, d))
  v /= np.linalg.norm(v, axis=1, keepdims=True)
  radii = np.where(np.arange(num_starts) < num_starts // 2, 10.0, 100.0)[:, None]
  lip = _weight_bound(model.field)
  dt = min(0.05, 1.0 / lip)
  steps = min(int(math.ceil(math.log(1000.0) / eps / dt)), 400_000)
  horizon = steps * dt
  with float64_scope():
    z_eq, a, f, jac, z0 = _latent_samples(graphdef, state, jnp.asarray(offsets), jnp.asarray(near),
                                          jnp.asarray(x_eq + radii * v))
    radius, gap, x_end = _latent_rollout_norms(graphdef, state, z0, z_eq, steps, dt)
  a, f, jac = np.asarray(a), np.asarray(f), np.asarray(jac)
  radius, gap, x_end = np.asarray(radius), np.asarray(gap), np.asarray(x_end)

  sym_max = float(np.max(_lognorm(a)))
  tol = 1e-9 * max(1.0, float(np.max(np.abs(a))))
  ratio = float(np.max(np.sum(offsets * f, axis=1) / np.sum(offsets * offsets, axis=1)))
  mu = _lognorm(jac)
  mu_target, mu_near = float(mu[0]), mu[1:]

  t = np.arange(steps + 1) * dt
  envelope = np.exp(-eps * t)
  with np.errstate(all="ignore"):
    shrink = radius[-1] / radius[0]
    far_ok = bool(np.all(np.isfinite(shrink)) and np.all(shrink <= envelope[-1] * (1 + 1e-6)))
    x_dist = float(np.max(np.linalg.norm(x_end - x_eq, axis=1)))
    spread = radius[0, 0::2] + radius[0, 1::2]
    pairs_ok = bool(np.all(np.isfinite(gap)) and np.all(gap <= spread * envelope[:, None] * (1 + 1e-6) + 1e-300))
    rates, bounds = [], []
    for k in range(gap.shape[1]):  # until the gap is below 1e-9 of its start (round-off) or T
      g = gap[:, k] / gap[0, k]
      stop = max(int(np.argmax(g < 1e-9)) if np.any(g < 1e-9) else steps, 1)
      rates.append(-math.log(max(g[stop], 1e-300)) / t[stop])
      bounds.append(eps - math.log(spread[k] / gap[0, k]) / t[stop])
  worst = int(np.nanargmin(np.asarray(rates) - np.asarray(bounds))) if np.all(np.isfinite(rates)) else 0
  rate, rate_bound = float(rates[worst]), float(bounds[worst])
  return [
      Check("sym A(z) ⪯ −εI: max eigenvalue of (A + Aᵀ)/2", sym_max <= -eps + tol, sym_max, -eps,
            f"over {num_points} latent points at distances 1e-3..1e3 from z* (float64)"),
      Check("equilibrium contraction: max (z − z*)ᵀf(z)/‖z − z*‖²", ratio <= -eps + tol, ratio, -eps,
            "same points; implies ‖z(t) − z*‖ ≤ e^(−εt)‖z(0) − z*‖"),
      Check("latent Jacobian log-norm at the target μ₂(Df(z*))", mu_target <= -eps + tol, mu_target, -eps,
            f"for information, sampled max μ₂(Df(z)) over 2000 points with ‖z − z*‖ ≤ 1: "
            f"{float(np.max(mu_near)):.3g} ({float(np.mean(mu_near < 0)):.0%} < 0); ELCD does not bound it away "
            "from z*"),
      Check("far-away starts converge: max ‖z(T) − z*‖/‖z(0) − z*‖", far_ok, float(np.max(shrink)),
            float(envelope[-1]),
            f"{num_starts} starts at ‖x − x*‖ = 10, 100; T = {horizon:.0f} (RK4, dt {dt:.3g}); "
            f"max ‖x(T) − x*‖ = {x_dist:.2g}"),
      Check("two rollouts approach each other exponentially: measured rate", pairs_ok and rate >= rate_bound,
            rate, rate_bound,
            f"worst of {gap.shape[1]} pairs (passes iff rate ≥ bound, the rate guaranteed by "
            f"‖z₁(t) − z₂(t)‖ ≤ (‖z₁(0) − z*‖ + ‖z₂(0) − z*‖)e^(−εt), which holds for all t: {pairs_ok}); "
            f"ε = {eps:g}"),
  ]
