"""Vector fields that are contracting by construction.

`ExtendedLinearField` — the ELCD field f(z) = A(z)(z − z*) with
A(z) = −P_s(z)ᵀP_s(z) − εI + P_a(z) − P_a(z)ᵀ, P_s, P_a: ℝᵈ → ℝ^{d×d} two-layer tanh MLPs (or constant matrices,
"ELCD simple"). A(z) stands for the extended linearization ∫₀¹ Df(z* + s(z − z*)) ds of f around z*.

Guarantee (any weights): the symmetric part of A(z) is −P_sᵀP_s − εI ⪯ −εI for every z, hence
(z − z*)ᵀ f(z) ≤ −ε‖z − z*‖², so every solution obeys ‖z(t) − z*‖ ≤ e^{−εt}‖z(0) − z*‖: z* is the unique,
globally exponentially stable equilibrium and the field is equilibrium-contracting at rate ε; it is contracting with
respect to some metric (Jaffe et al. 2024). Euclidean contraction (μ₂(Df(z)) < 0 everywhere) is NOT implied:
Df(z) = A(z) + DA(z)[·](z − z*) carries a term growing with ‖z − z*‖. The log-norm at the target is
μ₂(Df(z*)) = μ₂(A(z*)) ≤ −ε.

Jaffe, Davydov, Lapsekili, Singh, Bullo, "Learning Neural Contracting Dynamics: Extended Linearization and Global
Guarantees", NeurIPS 2024 (arXiv:2402.08090); official code seanjaffe1/Extended-Linearized-Contracting-Dynamics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

_XAVIER = nnx.initializers.xavier_uniform()
_BIAS = nnx.initializers.constant(0.01)  # the official init: Xavier-uniform weights, biases 0.01


class MatrixMLP(nnx.Module):
  """z ↦ W₂ tanh(W₁ z + b₁) + b₂ reshaped to (d, d). Call: (batch, d) -> (batch, d, d)."""

  def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
    self.dim = dim
    self.inner = nnx.Linear(dim, hidden, kernel_init=_XAVIER, bias_init=_BIAS, rngs=rngs)
    self.outer = nnx.Linear(hidden, dim * dim, kernel_init=_XAVIER, bias_init=_BIAS, rngs=rngs)

  def __call__(self, z: jax.Array) -> jax.Array:
    return self.outer(jnp.tanh(self.inner(z))).reshape(z.shape[0], self.dim, self.dim)


class ExtendedLinearField(nnx.Module):
  """f(z) = A(z)(z − z*), A(z) = −P_s(z)ᵀP_s(z) − εI + P_a(z) − P_a(z)ᵀ; see the module docstring.

  Guarantee: sym A(z) ⪯ −εI for all z and all weights (unless `constrained=False`).

  Arguments:
    dim: d. hidden: width of the P_s and P_a MLPs (10 by default, 16 in the LASA demo). eps: ε (0.01).
    simple: "ELCD simple": constant P_s, P_a (d × d, Xavier-uniform), so A is constant.
    constrained: False is an ablation for tests: A(z) = P_s(z) − εI + P_a(z) − P_a(z)ᵀ (no −PᵀP), which may have
      an indefinite symmetric part; `verify` must reject it.
  Call: z: (batch, d), z_eq: (d,) or (batch, d) -> f(z): (batch, d).
  """

  def __init__(self, dim: int, hidden: int = 10, eps: float = 0.01, *, simple: bool = False,
               constrained: bool = True, rngs: nnx.Rngs):
    self.dim = dim
    self.eps = float(eps)
    self.simple = simple
    self.constrained = constrained
    if simple:
      self.p_s = nnx.Param(_XAVIER(rngs.params(), (dim, dim), jnp.float32))
      self.p_a = nnx.Param(_XAVIER(rngs.params(), (dim, dim), jnp.float32))
    else:
      self.p_s = MatrixMLP(dim, hidden, rngs=rngs)
      self.p_a = MatrixMLP(dim, hidden, rngs=rngs)

  def matrix(self, z: jax.Array) -> jax.Array:
    """A(z): z (batch, d) -> (batch, d, d); computed in the promoted dtype of z and the weights."""
    if self.simple:
      dtype = jnp.result_type(z.dtype, self.p_s[...].dtype)
      p_s = jnp.broadcast_to(self.p_s[...].astype(dtype), (z.shape[0], self.dim, self.dim))
      p_a = jnp.broadcast_to(self.p_a[...].astype(dtype), (z.shape[0], self.dim, self.dim))
    else:
      p_s, p_a = self.p_s(z), self.p_a(z)
    skew = p_a - jnp.swapaxes(p_a, 1, 2)
    eye = jnp.eye(self.dim, dtype=p_s.dtype)
    if not self.constrained:
      return p_s - self.eps * eye + skew
    return -jnp.swapaxes(p_s, 1, 2) @ p_s - self.eps * eye + skew

  def __call__(self, z: jax.Array, z_eq: jax.Array) -> jax.Array:
    return jnp.einsum("bij,bj->bi", self.matrix(z), z - z_eq)
