"""`verify`: the ELCD contraction guarantee checked on the given weights, through what users call.

sym A(z) ⪯ −εI for every latent z (checked in float64 on sampled latent points), hence the discrete guarantee of the
public `ELCD.rollout`: ‖e_{k+1}‖ ≤ ‖e_k‖/(1 + εh), e_k = z_k − z*, for every start and step h; checked on rollouts of
`model.rollout` itself (float32, as users call it) from starts up to 1000 from the target.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.models.elcd.model import ELCD
from zoo.nn.precision import float64_scope
from zoo.registry import Check


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _latent_samples(graphdef, state, offsets, near):
  """z*, A(z) and f(z) at z = z* + offsets (n, d), and Df at z* and z* + near (m, d)."""
  model = nnx.merge(graphdef, state)
  z_eq = model.latent_target(offsets.dtype)
  z = z_eq + offsets
  jac = jax.vmap(jax.jacfwd(lambda p: model.latent_field(p[None])[0]))(jnp.concatenate([z_eq[None], z_eq + near]))
  return z_eq, model.latent_matrix(z), model.latent_field(z), jac


def _lognorm(m: np.ndarray) -> np.ndarray:
  """μ₂(M) = λ_max((M + Mᵀ)/2) of each matrix in (..., d, d)."""
  return np.linalg.eigvalsh((m + np.swapaxes(m, -1, -2)) / 2)[..., -1]


# The budget of the rollout check: with h = 2 and ε = 0.01 the guarantee alone gives ‖z_250 − z*‖ ≤ 1.02^(−250) ≈ 7.1e-3
# × ‖z_0 − z*‖, so 250 steps suffice for latent convergence to 1e-2 on any weights with ε = 0.01.
VERIFY_RADII = (1.0, 10.0, 100.0, 1000.0)
VERIFY_DIRECTIONS = 256
VERIFY_STEPS = 250
VERIFY_DT = 2.0
CONVERGED = 1e-2  # "converged": ‖x_end − x*‖ ≤ 1e-2 × ‖x_0 − x*‖
F32_SLACK = 1e-4  # relative float32 round-off allowed in the discrete contraction (solve and z − z*)


def sphere_starts(target, radii=VERIFY_RADII, directions: int = VERIFY_DIRECTIONS, seed: int = 0) -> np.ndarray:
  """x* + R·u for each R in `radii` and `directions` directions u uniform on the sphere (the same u for each R):
  (len(radii) · directions, d), grouped by R."""
  target = np.asarray(target, np.float64)
  u = np.random.default_rng(seed).normal(size=(directions, target.size))
  u /= np.linalg.norm(u, axis=1, keepdims=True)
  return np.concatenate([target + r * u for r in radii])


def rollout_checks(model: ELCD, integrator: str = "rollout", radii=VERIFY_RADII, directions: int = VERIFY_DIRECTIONS,
                   steps: int = VERIFY_STEPS, dt: float = VERIFY_DT, seed: int = 0) -> list[Check]:
  """The guarantee as users get it: `getattr(model, integrator)(x0, steps, dt)` (default tol) in float32 from
  `directions` starts on each sphere ‖x0 − x*‖ = R, R in `radii`.

  1. Far-away starts converge: every state finite and ‖x_end − x*‖ ≤ 1e-2 ‖x_0 − x*‖ for every start.
  2. Discrete contraction: ‖e_{k+1}‖(1 + εh) ≤ ‖e_k‖ along every rollout, e_k = z_k − z* (the rollout's latent
     states if it returns them, else φ(x_k)), for the steps taken (a stopped rollout repeats its last state) from
     ‖e_k‖ > 32d·u·(1 + ‖z*‖) (below that e_k is float32 noise around z*); float32 round-off allowed:
     ‖e_{k+1}‖(1 + εh) ≤ ‖e_k‖(1 + 1e-4) + 4d·u·‖z_k‖ (u = float32 epsilon).
  3. Pairs approach each other: rollouts 2i, 2i + 1 of each sphere satisfy ‖z¹_k − z²_k‖ ≤ (‖e¹_0‖ + ‖e²_0‖)
     (1 + εh)^(−k) (with the same slack) and end with ‖x¹_end − x²_end‖ ≤ 1e-2 (‖x¹_0 − x*‖ + ‖x²_0 − x*‖).
  Arguments:
    integrator: "rollout" (the guaranteed latent step) or "rollout_rk4_data" (the paper's data-space RK4, which
      fails these checks on shipped weights; tests use it to show the check has teeth).
  """
  eps, d = model.eps, model.dim
  target = np.asarray(model.target, np.float64)
  x0 = sphere_starts(target, radii, directions, seed)
  run = getattr(model, integrator)
  start = time.perf_counter()
  if integrator == "rollout":
    xs, taken, zs = run(jnp.asarray(x0, jnp.float32), steps=steps, dt=dt, return_steps=True, return_latent=True)
  else:
    xs, taken = run(jnp.asarray(x0, jnp.float32), steps=steps, dt=dt, return_steps=True)
    zs = None
  xs, taken = np.asarray(xs, np.float64), np.asarray(taken)
  seconds = time.perf_counter() - start
  if zs is None:
    flat = np.nan_to_num(xs.reshape(-1, d), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    zs = np.asarray(model.encode(jnp.asarray(flat)), np.float64).reshape(xs.shape)
    zs[~np.isfinite(xs)] = np.nan
  zs = np.asarray(zs, np.float64)
  z_eq = np.asarray(model.latent_target(), np.float64)
  n, shrink = len(x0), 1.0 + eps * dt
  unit = float(np.finfo(np.float32).eps)

  with np.errstate(all="ignore"):
    finite = np.all(np.isfinite(xs), axis=(1, 2)) & np.all(np.isfinite(zs), axis=(1, 2))
    start_dist = np.linalg.norm(x0 - target, axis=1)
    ratio = np.linalg.norm(xs[:, -1] - target, axis=1) / start_dist
    converged = finite & (ratio <= CONVERGED)
    group = np.repeat(np.arange(len(radii)), directions)
    per_r = "; ".join(f"R {r:g}: {np.mean(converged[group == i]):.1%} converged, worst ratio "
                      f"{np.nanmax(np.where(finite, ratio, np.inf)[group == i]):.2g}" for i, r in enumerate(radii))

    e = np.linalg.norm(zs - z_eq, axis=-1)  # (n, steps + 1)
    round_off = 4 * d * unit * np.linalg.norm(zs, axis=-1)  # forming z − z* in float32
    floor = 32 * d * unit * (1 + np.linalg.norm(z_eq))  # ‖e_k‖ below this is float32 noise around z*
    active = (np.arange(steps)[None] < taken[:, None]) & (e[:, :-1] > floor)  # step k -> k + 1 taken, e_k resolved
    excess = (e[:, 1:] * shrink - e[:, :-1] * (1 + F32_SLACK) - round_off[:, :-1]) / np.maximum(e[:, :-1], floor)
    excess = np.where(active, np.where(np.isnan(excess), np.inf, excess), -np.inf)
    contraction_ok = bool(np.all(finite)) and float(np.max(excess)) <= 0
    measured = np.where(active, e[:, 1:] * shrink / np.maximum(e[:, :-1], floor), 0.0)
    measured_max = float(np.max(np.where(np.isnan(measured), np.inf, measured)))

    first, second = np.arange(0, n, 2), np.arange(1, n, 2)
    gap = np.linalg.norm(zs[first] - zs[second], axis=-1)  # (n/2, steps + 1)
    envelope = (e[first, :1] + e[second, :1]) * shrink ** -np.arange(steps + 1)
    pair_excess = np.max((gap - envelope * (1 + F32_SLACK) - round_off[first] - round_off[second]) / envelope[:, :1])
    end_gap = np.linalg.norm(xs[first, -1] - xs[second, -1], axis=-1) / (start_dist[first] + start_dist[second])
    pairs_ok = bool(np.all(np.isfinite(gap))) and pair_excess <= 0 and bool(np.all(end_gap <= CONVERGED))

  call = (f"model.{integrator}(x0, steps={steps}, dt={dt:g}) in float32 from {directions} directions on each "
          f"sphere ‖x0 − x*‖ = {', '.join(f'{r:g}' for r in radii)} ({seconds:.1f} s)")
  return [
      Check(f"far-away starts converge through model.{integrator}: max ‖x_end − x*‖/‖x_0 − x*‖",
            bool(np.all(converged)), float(np.max(np.where(finite, ratio, np.inf))), CONVERGED,
            f"{call}; {np.mean(finite):.1%} finite; {per_r}"),
      Check(f"discrete contraction along model.{integrator}: max ‖e_(k+1)‖(1 + εh)/‖e_k‖",
            contraction_ok, measured_max, 1.0,
            f"e_k = z_k − z*, h = {dt:g}, ε = {eps:g}, over the {int(active.sum())} steps taken with ‖e_k‖ > "
            f"{floor:.1g} (float32 resolution); guaranteed ≤ 1 for the latent implicit step (float32 round-off "
            f"allowed: relative {F32_SLACK:g} + 4d·u·‖z_k‖)"),
      Check(f"pairs of rollouts approach each other: max ‖x¹_end − x²_end‖/(‖x¹_0 − x*‖ + ‖x²_0 − x*‖)",
            pairs_ok, float(np.nanmax(np.where(np.isfinite(end_gap), end_gap, np.inf))), CONVERGED,
            f"{len(first)} pairs; the latent gap stays within (‖e¹_0‖ + ‖e²_0‖)(1 + εh)^(−k) at every step: "
            f"{bool(np.isfinite(pair_excess) and pair_excess <= 0)}"),
  ]


def verify(model: ELCD, num_points: int = 20_000, directions: int = VERIFY_DIRECTIONS, seed: int = 0) -> list[Check]:
  """The contraction guarantee on the given weights.

  1. sym A(z) ⪯ −εI: the largest eigenvalue of (A + Aᵀ)/2 over `num_points` latent points z* + r·u, r log-uniform
     in [1e-3, 1e3], u uniform on the sphere (float64, the weights' own values, no float32 round-off).
  2. Equilibrium contraction: (z − z*)ᵀ f(z) ≤ −ε‖z − z*‖² on the same points.
  3. Latent Jacobian log-norm at the target: μ₂(Df(z*)) ≤ −ε (Df(z*) = A(z*)); the detail reports the sampled
     max of μ₂(Df(z)) for ‖z − z*‖ ≤ 1, which ELCD does not bound (it is contracting in some metric, not
     necessarily the Euclidean one).
  4–6. What users call (`rollout_checks`): the public `model.rollout(x0, steps=250, dt=2)` in float32 from
     `directions` starts on each sphere ‖x0 − x*‖ = 1, 10, 100, 1000: all finite and converged (‖x_end − x*‖ ≤
     1e-2 ‖x_0 − x*‖; the guarantee alone gives the latent ratio ≤ 1.02^(−250) ≈ 7.1e-3), the discrete contraction
     ‖e_{k+1}‖ ≤ ‖e_k‖/(1 + εh) at every step, and pairs of rollouts approaching each other.
  """
  eps = model.eps
  rng = np.random.default_rng(seed)
  d = model.dim
  graphdef, state = nnx.split(model)
  u = rng.normal(size=(num_points, d))
  u /= np.linalg.norm(u, axis=1, keepdims=True)
  offsets = 10.0 ** rng.uniform(-3, 3, (num_points, 1)) * u
  near = rng.uniform(0, 1, (2000, 1)) * u[:2000]
  with float64_scope():
    _, a, f, jac = _latent_samples(graphdef, state, jnp.asarray(offsets), jnp.asarray(near))
  a, f, jac = np.asarray(a), np.asarray(f), np.asarray(jac)

  sym_max = float(np.max(_lognorm(a)))
  tol = 1e-9 * max(1.0, float(np.max(np.abs(a))))
  ratio = float(np.max(np.sum(offsets * f, axis=1) / np.sum(offsets * offsets, axis=1)))
  mu = _lognorm(jac)
  mu_target, mu_near = float(mu[0]), mu[1:]
  return [
      Check("sym A(z) ⪯ −εI: max eigenvalue of (A + Aᵀ)/2", sym_max <= -eps + tol, sym_max, -eps,
            f"over {num_points} latent points at distances 1e-3..1e3 from z* (float64)"),
      Check("equilibrium contraction: max (z − z*)ᵀf(z)/‖z − z*‖²", ratio <= -eps + tol, ratio, -eps,
            "same points; implies ‖z(t) − z*‖ ≤ e^(−εt)‖z(0) − z*‖ and, for the implicit step of model.rollout, "
            "‖z_(k+1) − z*‖ ≤ ‖z_k − z*‖/(1 + εh)"),
      Check("latent Jacobian log-norm at the target μ₂(Df(z*))", mu_target <= -eps + tol, mu_target, -eps,
            f"for information, sampled max μ₂(Df(z)) over 2000 points with ‖z − z*‖ ≤ 1: "
            f"{float(np.max(mu_near)):.3g} ({float(np.mean(mu_near < 0)):.0%} < 0); ELCD does not bound it away "
            "from z*"),
  ] + rollout_checks(model, "rollout", directions=directions, seed=seed)
