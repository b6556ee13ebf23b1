"""Differentiable control-barrier-function (CBF) layer: the safety filter of invariance set propagation.

A right-hand side that is affine in some constrained parameters θ_c,

    ẏ = F(y) + G(y) θ_c,

keeps the safe set S = {y : b_i(y) >= 0 for all i} forward invariant when θ_c is, at every evaluation, the
solution of the CBF quadratic program

    θ_c*(y) = argmin_θ ||θ - θ_ref||²   s.t.   L_F b_i(y) + L_G b_i(y) θ + p_i b_i(y) >= 0,   i = 1..m,

with L_F b = ∇b·F, L_G b = ∇b·G and the class-K function α(b) = p·b (Xiao et al., "On the Forward Invariance
of Neural ODEs", ICML 2023, Sec. 3-4). Along any solution then ḃ_i >= -p_i b_i, so b_i(y(t)) >= b_i(y(0))
e^{-p_i t} >= 0 (comparison lemma) for every θ_ref: the guarantee does not depend on the learned weights.

Every constraint is written `a_i·θ + c_i >= 0` (a = L_G b: (m, n), c = L_F b + p·b: (m,)). Solvers:

* `half_space_projection` — one constraint, closed form: θ = θ_ref + max(0, -(a·θ_ref + c)) a / ||a||².
* `active_set_qp` — a few constraints (m <= 4), exact: every one of the 2^m active sets gives the KKT
  point of its equality-constrained problem; the optimum is the cheapest primal-feasible one. Gradients
  flow through the selected candidate's closed form (exact wherever the active set is locally constant).
* `qpax_qp` — any m, through `qpax`'s primal-dual interior point on the *elastic* (exact L1-penalty) form
  min ||θ-θ_ref||² + ρ Σ s_i  s.t. a_i·θ + c_i + s_i >= 0, s >= 0: it always has a solution and equals the
  CBF-QP whenever ρ exceeds the largest multiplier (ρ scales with the problem, see below); its gradient is
  the implicit function theorem on the KKT system of the active set qpax identified.

Rows are normalised (a_i/||a_i||, c_i/||a_i||) before solving; this does not change the feasible set and
makes the QP well conditioned when ||a_i|| is small (e.g. a hidden unit close to zero).

**Infeasibility (documented behaviour, never NaN).** When no θ satisfies all constraints — which for the
obstacle CBFs of `Obstacles` can happen only if L_G b_i = 0 exactly, or if the state is already inside
obstacles whose constraints conflict — every solver returns a finite θ with `infeasible = True` and the
remaining `violation = max_i max(0, -(a_i·θ + c_i))` (in the units of c): `half_space_projection` returns
θ_ref when a = 0; `active_set_qp` returns the candidate with the smallest largest normalised violation;
`qpax_qp` returns the elastic (least-penalised-violation) solution. The invariance guarantee does not hold
at such states; models report the flag (see `zoo.models.invariance_node`).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo import errors
from zoo.errors import UnsafeStateError  # re-exported


class CBFSolution(NamedTuple):
  """The filtered constrained parameters and how well the constraints hold.

  Attributes:
    theta: (n,) the solution θ_c*.
    violation: () max_i max(0, -(a_i·θ + c_i)); 0 up to rounding when `infeasible` is False.
    infeasible: () bool, True when the solver found no θ satisfying every constraint (for `qpax_qp` also when
      its interior point did not converge: no certified solution).
  """

  theta: jax.Array
  violation: jax.Array
  infeasible: jax.Array


# ----------------------------------------------------------------------------------------------- obstacles


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Obstacles:
  """Obstacles as data (not weights): the unsafe sets {y : Σ_j (y_j - c_j)^q < r^q} and their CBF gains.

  b_i(y) = Σ_j (y_j - c_ij)^{q_i} - r_i^{q_i} with an even power q_i (2: disc/ball, 4: the paper's
  superellipse "other specification"); the safe set is {y : b_i(y) >= 0 for all i}; p_i is the gain of the
  class-K function α(b) = p·b (larger p: the trajectory may approach the obstacle more closely).
  Build with `Obstacles.create(...)`, which validates shapes; instances are pytrees (jit/vmap friendly).

  Attributes:
    centers: (m, d) obstacle centres.
    radii: (m,) radii (> 0).
    gains: (m,) CBF gains p_i (> 0).
    powers: (m,) even powers q_i, stored as floats.
  """

  centers: jax.Array
  radii: jax.Array
  gains: jax.Array
  powers: jax.Array

  @classmethod
  def create(cls, centers, radii, gains=20.0, powers=2.0) -> "Obstacles":
    """Validated obstacles. `radii`, `gains`, `powers` broadcast to (m,); raises `InputShapeError`."""
    centers = np.asarray(centers, dtype=float)
    if centers.ndim == 1:
      centers = centers[None]
    if centers.ndim != 2 or centers.shape[0] == 0:
      raise errors.InputShapeError(
          f"obstacle centers have shape {centers.shape}; expected (m, d) with m >= 1, e.g. [[0, 1.2], [-0.9, 0]].")
    m = centers.shape[0]
    def vec(v, name):
      v = np.asarray(v, dtype=float)
      try:
        v = np.broadcast_to(v, (m,)).copy()
      except ValueError:
        raise errors.InputShapeError(
            f"obstacle {name} have shape {v.shape}; expected a scalar or ({m},), one per centre.") from None
      if not np.all(np.isfinite(v)):
        raise errors.InputShapeError(f"obstacle {name} must be finite; got {v}.")
      return v
    radii, gains, powers = vec(radii, "radii"), vec(gains, "gains"), vec(powers, "powers")
    if np.any(radii <= 0) or np.any(gains <= 0):
      raise errors.InputShapeError(f"obstacle radii and gains must be > 0; got radii={radii}, gains={gains}.")
    if np.any((powers < 2) | (powers % 2 != 0)):
      raise errors.InputShapeError(f"obstacle powers must be even integers >= 2; got {powers}.")
    return cls(centers, radii, gains, powers)  # numpy float64: exact under jax.enable_x64, cast on use

  @property
  def count(self) -> int:
    return self.centers.shape[0]

  def barrier(self, y: jax.Array) -> jax.Array:
    """b(y): (m,) for one state y: (d,). Safe iff all >= 0."""
    diff = y[None, :] - self.centers
    return jnp.sum(_even_power(diff, self.powers[:, None]), axis=-1) - _even_power(self.radii, self.powers)

  def barrier_grad(self, y: jax.Array) -> jax.Array:
    """∇b(y): (m, d) for one state y: (d,)."""
    diff = y[None, :] - self.centers
    q = self.powers[:, None]
    return q * _even_power(diff, q - 1.0)

  def as_dict(self) -> dict[str, list]:
    return {k: np.asarray(getattr(self, k)).tolist() for k in ("centers", "radii", "gains", "powers")}


def _even_power(x: jax.Array, q: jax.Array) -> jax.Array:
  """x**q for integer-valued float q (sign kept for odd q), with a finite gradient at x = 0.

  `jnp.power` with a float exponent differentiates through log|x| and gives NaN at x = 0.
  """
  qi = jnp.round(q)
  mag = jnp.where(x == 0, 0.0, jnp.abs(jnp.where(x == 0, 1.0, x)) ** qi)
  odd = jnp.mod(qi, 2) == 1
  return jnp.where(odd & (x < 0), -mag, mag)


# ----------------------------------------------------------------------------------------------- constraints


def cbf_constraints(b: jax.Array, db: jax.Array, f0: jax.Array, g: jax.Array,
                    gains: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The CBF constraints a·θ + c >= 0 of ẏ = F(y) + G(y) θ.

  a_i = ∇b_i·G, c_i = ∇b_i·F + p_i b_i (Xiao et al. 2023, Eq. 6 with α(b) = p b).

  Arguments:
    b: (m,) barrier values b_i(y).
    db: (m, d) barrier gradients ∇b_i(y).
    f0: (d,) the θ-free part F(y).
    g: (d, n) the θ-coefficient G(y).
    gains: (m,) class-K gains p_i.

  Returns:
    a: (m, n), c: (m,).
  """
  return db @ g, db @ f0 + gains * b


# ----------------------------------------------------------------------------------------------- solvers


def _tiny(dtype) -> float:
  return float(np.sqrt(np.finfo(dtype).tiny))


def _feas_tol(dtype) -> float:
  return 1e-9 if jnp.dtype(dtype) == jnp.float64 else 1e-4


def _normalise(a: jax.Array, c: jax.Array):
  """Rows scaled to unit ||a_i||; degenerate rows (||a_i|| ~ 0) become (0, c_i)."""
  sq = jnp.sum(a * a, axis=-1)
  degenerate = sq <= _tiny(a.dtype) ** 2
  safe = jnp.sqrt(jnp.where(degenerate, 1.0, sq))  # double where: a finite gradient at a = 0
  a_hat = jnp.where(degenerate[:, None], 0.0, a / safe[:, None])
  c_hat = jnp.where(degenerate, c, c / safe)
  return a_hat, c_hat, degenerate


def _violation(theta, a, c):
  return jnp.max(jnp.maximum(0.0, -(a @ theta + c)), initial=0.0)


def half_space_projection(theta_ref: jax.Array, a: jax.Array, c: jax.Array) -> CBFSolution:
  """Projection of θ_ref on the half-space {θ : a·θ + c >= 0} (the one-constraint CBF-QP, closed form).

  θ* = θ_ref + max(0, -(a·θ_ref + c)) a / ||a||². If a = 0 and c < 0 (infeasible) θ* = θ_ref.

  Arguments:
    theta_ref: (n,) reference parameters.
    a: (n,) or (1, n) constraint normal; c: () or (1,) offset.

  Returns:
    `CBFSolution` with theta: (n,).
  """
  a2 = jnp.reshape(a, (1, -1))
  c2 = jnp.reshape(c, (1,))
  a_hat, c_hat, degenerate = _normalise(a2, c2)
  gap = a_hat[0] @ theta_ref + c_hat[0]
  theta = theta_ref + jnp.maximum(0.0, -gap) * a_hat[0]
  violation = _violation(theta, a2, c2)
  infeasible = degenerate[0] & (c2[0] < 0)
  return CBFSolution(theta, violation, infeasible)


def _subset_table(m: int) -> np.ndarray:
  return np.array(list(itertools.product((0.0, 1.0), repeat=m)), dtype=float)  # (2^m, m)


def _small_spd_solve(mat: jax.Array, rhs: jax.Array, pivot_tol: float) -> tuple[jax.Array, jax.Array]:
  """x = mat⁻¹ rhs for a small symmetric (m, m) matrix by an unrolled LDLᵀ (elementwise ops: fast under vmap).

  Returns (x, ok); ok is False when a pivot is <= pivot_tol (singular or indefinite); then the failing pivots
  are replaced by 1 so that x and its gradient stay finite.
  """
  m = mat.shape[0]
  low = [[None] * m for _ in range(m)]
  piv = [None] * m
  ok = jnp.array(True)
  for j in range(m):
    dj = mat[j, j] - sum(low[j][k] ** 2 * piv[k] for k in range(j))
    good = dj > pivot_tol
    ok = ok & good
    piv[j] = jnp.where(good, dj, 1.0)
    for i in range(j + 1, m):
      low[i][j] = (mat[i, j] - sum(low[i][k] * low[j][k] * piv[k] for k in range(j))) / piv[j]
  z = []
  for i in range(m):
    z.append(rhs[i] - sum(low[i][k] * z[k] for k in range(i)))
  x = [None] * m
  for i in reversed(range(m)):
    x[i] = z[i] / piv[i] - sum(low[k][i] * x[k] for k in range(i + 1, m))
  return jnp.stack(x), ok


def active_set_qp(theta_ref: jax.Array, a: jax.Array, c: jax.Array) -> CBFSolution:
  """Exact CBF-QP for a few constraints by enumerating the 2^m active sets (m <= 4).

  For an active set S the equality-constrained minimiser is θ_S = θ_ref + Â_Sᵀ λ_S with
  (Â_S Â_Sᵀ) λ_S = -(Â_S θ_ref + ĉ_S); the QP optimum is the cheapest primal-feasible θ_S (it is one of them,
  and every feasible candidate costs at least as much). Singular active sets are skipped.

  Arguments:
    theta_ref: (n,) reference parameters.
    a: (m, n) constraint normals L_G b; c: (m,) offsets L_F b + p b.

  Returns:
    `CBFSolution` with theta: (n,). Infeasible: the candidate of least largest normalised violation.
  """
  m = a.shape[0]
  if m > 6:
    raise ValueError(f"active_set_qp enumerates 2^m active sets; m={m} is too many, use qpax_qp.")
  dtype = theta_ref.dtype
  a_hat, c_hat, degenerate = _normalise(a, c)
  masks = jnp.asarray(_subset_table(m), dtype=dtype)  # (K, m)
  gram = a_hat @ a_hat.T  # (m, m), unit diagonal on non-degenerate rows
  gap = a_hat @ theta_ref + c_hat  # (m,)

  def candidate(mask):
    mat = gram * (mask[:, None] * mask[None, :]) + jnp.diag(1.0 - mask)
    lam, ok = _small_spd_solve(mat, -gap * mask, _feas_tol(dtype))
    ok = ok & ~jnp.any((mask > 0) & degenerate)
    theta = theta_ref + a_hat.T @ (lam * mask)
    slack = a_hat @ theta + c_hat
    return theta, ok, jnp.max(jnp.maximum(0.0, -slack))

  thetas, ok, viol = jax.vmap(candidate)(masks)
  scale = 1.0 + jnp.max(jnp.abs(c_hat)) + jnp.linalg.norm(theta_ref)
  feasible = ok & (viol <= _feas_tol(dtype) * jax.lax.stop_gradient(scale))
  cost = jnp.sum((thetas - theta_ref) ** 2, axis=-1)
  any_feasible = jnp.any(feasible)
  best_feasible = jnp.argmin(jnp.where(feasible, cost, jnp.inf))
  least_violating = jnp.argmin(jnp.where(ok, viol, jnp.inf) + 1e-12 * cost)
  idx = jnp.where(any_feasible, best_feasible, least_violating)
  theta = thetas[idx]
  return CBFSolution(theta, _violation(theta, a, c), ~any_feasible)


def qpax_qp(theta_ref: jax.Array, a: jax.Array, c: jax.Array, *, penalty: float | None = None,
            tol: float | None = None, max_iter: int = 50) -> CBFSolution:
  """CBF-QP for any number of constraints with `qpax` (interior point, elastic form) and implicit gradients.

  Forward: qpax's primal-dual interior point on min ||θ - θ_ref||² + ρ Σ s_i s.t. â_i·θ + ĉ_i + s_i >= 0,
  s >= 0 (normalised rows). The L1 penalty is exact — the solution is the CBF-QP's — whenever ρ exceeds the
  largest multiplier; the default ρ = 1e5 σ, σ = 1 + ||θ_ref|| + max_i max(0, -(â_i·θ_ref + ĉ_i)), covers active
  constraints meeting at angles down to ~1e-5 rad. The problem is solved in units of σ (O(1) data whatever ||a||),
  with the slack of rows satisfied by more than 1e6 σ capped there (they cannot become active). Backward: the implicit function theorem on the KKT system of the active set S that qpax
  identified (dual > slack): θ = θ_ref - Â_Sᵀ (Â_S Â_Sᵀ)⁻¹ (Â_S θ_ref + ĉ_S), differentiated in every input.
  (qpax's own VJP with respect to the constraint matrix disagrees with finite differences when the
  multipliers differ from 1 — qpax 0.1.4 — so it is not used.)

  Arguments:
    theta_ref: (n,) reference parameters.
    a: (m, n) constraint normals; c: (m,) offsets.
    penalty: ρ (default as above). tol: interior-point tolerance (1e-10 in float64, 1e-5 in float32).
    max_iter: interior-point iterations.

  Returns:
    `CBFSolution` with theta: (n,); `infeasible` when the normalised violation exceeds the tolerance or the
    interior point did not converge within `max_iter` (badly scaled problems, e.g. a tiny ||a||).
  """
  import qpax  # pylint: disable=import-outside-toplevel

  dtype = theta_ref.dtype
  n, m = theta_ref.shape[0], a.shape[0]
  a_hat, c_hat, degenerate = _normalise(a, c)
  gap = a_hat @ theta_ref + c_hat
  # how far θ has to move: the norm of θ_ref plus the largest violation (satisfied rows do not set the scale)
  scale = jax.lax.stop_gradient(1.0 + jnp.linalg.norm(theta_ref) + jnp.maximum(0.0, -jnp.min(gap)))
  if penalty is None:
    penalty = 1e5 * scale
  if tol is None:
    tol = 1e-10 if dtype == jnp.float64 else 1e-5
  sg = jax.lax.stop_gradient
  # a row satisfied at θ_ref by more than 1e6·scale stays inactive unless θ moves that far: its slack is capped
  c_capped = jnp.minimum(c_hat, 1e6 * scale - a_hat @ theta_ref)
  # solved in units of `scale` (θ = scale·θ'): O(1) data, penalty ρ/scale; without it a tiny ||a|| (c/||a|| ~ 1e3)
  # leaves the interior point unconverged within max_iter
  x, _, _, slack, _, dual, converged, _ = qpax.solve_qp_elastic(
      2.0 * jnp.eye(n, dtype=dtype), sg(-2.0 * theta_ref / scale), sg(-a_hat), sg(c_capped / scale), penalty / scale,
      solver_tol=tol, max_iter=max_iter)
  x = scale * x
  finite = jnp.all(jnp.isfinite(x))
  x = jnp.where(finite, x, sg(theta_ref))
  # implicit differentiation through the identified active set (value: qpax's x; gradient: the formula's)
  mask = (finite & (dual > slack) & ~degenerate).astype(dtype)
  mat = (a_hat @ a_hat.T) * (mask[:, None] * mask[None, :]) + jnp.diag(1.0 - mask)
  lam = jnp.linalg.solve(mat + 1e-12 * jnp.eye(m, dtype=dtype), -(a_hat @ theta_ref + c_hat) * mask) * mask
  theta_lin = theta_ref + a_hat.T @ lam
  theta = x + (theta_lin - sg(theta_lin))
  infeasible = (_violation(x, a_hat, c_hat) > 1e2 * tol * scale) | (converged == 0)
  return CBFSolution(theta, _violation(theta, a, c), infeasible)


SOLVERS: dict[str, Callable[..., CBFSolution]] = {
    "closed_form": half_space_projection,
    "active_set": active_set_qp,
    "qpax": qpax_qp,
}


def cbf_qp(theta_ref: jax.Array, a: jax.Array, c: jax.Array, method: str = "auto") -> CBFSolution:
  """min ||θ - θ_ref||² s.t. a_i·θ + c_i >= 0 (the CBF-QP), differentiable in every argument.

  Arguments:
    theta_ref: (n,) reference (learned) constrained parameters.
    a: (m, n) L_G b; c: (m,) L_F b + p b.
    method: "auto" (m = 1: closed form; m <= 4: exact active set; else qpax), or a key of `SOLVERS`.

  Returns:
    `CBFSolution` (theta: (n,), violation: (), infeasible: ()).
  """
  m = a.shape[0]
  if method == "auto":
    method = "closed_form" if m == 1 else ("active_set" if m <= 4 else "qpax")
  if method not in SOLVERS:
    raise ValueError(f"unknown CBF-QP method {method!r}; choose one of 'auto', {', '.join(SOLVERS)}.")
  if method == "closed_form" and m != 1:
    raise ValueError(f"the closed form handles one constraint; got m={m}. Use 'active_set' or 'qpax'.")
  return SOLVERS[method](theta_ref, a, c)


def affine_cbf_filter(y: jax.Array, theta_ref: jax.Array, f0: jax.Array, g: jax.Array,
                      obstacles: Obstacles, method: str = "auto") -> CBFSolution:
  """The safety filter of ẏ = F(y) + G(y) θ_c at one state: θ_c* for the obstacles' CBFs.

  Arguments:
    y: (d,) state. theta_ref: (n,) learned θ_c. f0: (d,) F(y). g: (d, n) G(y).
    obstacles: the unsafe sets and gains.
    method: see `cbf_qp`.

  Returns:
    `CBFSolution`; ẏ = F + G θ* satisfies ḃ_i >= -p_i b_i for every obstacle (when feasible).
  """
  a, c = cbf_constraints(obstacles.barrier(y), obstacles.barrier_grad(y), f0, g, obstacles.gains)
  return cbf_qp(theta_ref, a, c, method)
