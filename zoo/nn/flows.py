"""Neural-spline flows: bijections of ℝᵈ with closed-form inverses and exact Jacobian-vector products.

A flow is a composition of layers, each a bijection with a closed-form inverse:

* `Permutation` — y = x[π] for a fixed random permutation π (stored with the weights, never trained).
* `LULinear` — y = L U x + b with L unit lower triangular and U upper triangular with diagonal
  softplus(u) + eps > 0, so det = Πᵢ Uᵢᵢ > 0; initialised at the identity (L = U = I, b = 0). The inverse is two
  triangular solves.
* `RQSplineCoupling` — a coupling layer: the coordinates of one mask class pass unchanged and condition (through a
  residual net) monotone rational-quadratic splines (Gregory & Delbourgo 1982) applied to the other coordinates.
  Each spline maps [−B, B] onto itself with K bins of width, height ≥ 1e-3·2B and knot derivatives ≥ 1e-3, and is
  the identity outside [−B, B] (linear tails); the boundary derivatives are 1, so the map is C¹ and strictly
  increasing. The inverse is the root of a quadratic in closed form.
* `NeuralSplineFlow` — per step [Permutation, LULinear, RQSplineCoupling (alternating masks)], then a final
  [Permutation, LULinear]: the `create_vector_transform(..., linear_transform_type="lu",
  base_transform_type="rq-coupling")` layout of the ELCD official code.

Guarantee: every layer, hence the flow, is a bijection ℝᵈ → ℝᵈ (a C¹ diffeomorphism, det J ≠ 0 everywhere), for
any weights; `inverse(forward(x)) = x` up to floating-point round-off, computed in closed form
(no iteration). `jvp_forward` / `jvp_inverse` give J_φ(x)·v and J_{φ⁻¹}(z)·v exactly (forward-mode autodiff).

Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019 (arXiv:1906.04032); the layout and
hyperparameters follow Jaffe et al., "Learning Neural Contracting Dynamics", NeurIPS 2024 (official code
seanjaffe1/Extended-Linearized-Contracting-Dynamics, built on the nflows / manifold-flow transforms).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.nn import init

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3

def _inverse_softplus(y: float) -> float:
  return float(np.log(np.expm1(y)))


# --- the spline --------------------------------------------------------------------------------------------


def _knots(unnormalized: jax.Array, bound: float, min_size: float) -> tuple[jax.Array, jax.Array]:
  """Bin sizes and knot positions on [−B, B] from unnormalized logits: (..., K) -> (..., K), (..., K+1)."""
  num_bins = unnormalized.shape[-1]
  sizes = min_size + (1 - min_size * num_bins) * jax.nn.softmax(unnormalized, axis=-1)
  cum = jnp.cumsum(sizes, axis=-1)
  cum = 2 * bound * jnp.concatenate([jnp.zeros_like(cum[..., :1]), cum], axis=-1) - bound
  cum = cum.at[..., 0].set(-bound).at[..., -1].set(bound)  # exact end points
  return cum[..., 1:] - cum[..., :-1], cum


def rational_quadratic_spline(
    x: jax.Array, unnormalized_widths: jax.Array, unnormalized_heights: jax.Array,
    unnormalized_derivatives: jax.Array, *, inverse: bool = False, tail_bound: float = 1.0,
    min_bin_width: float = MIN_BIN_WIDTH, min_bin_height: float = MIN_BIN_HEIGHT,
    min_derivative: float = MIN_DERIVATIVE) -> tuple[jax.Array, jax.Array]:
  """Monotone rational-quadratic spline on [−B, B] with identity (linear) tails, applied elementwise.

  y = y_k + h_k (s_k θ² + δ_k θ(1−θ)) / (s_k + (δ_k + δ_{k+1} − 2 s_k) θ(1−θ)), θ = (x − x_k)/w_k, s_k = h_k/w_k,
  in the bin k holding x (Durkan et al. 2019, eq. 4); δ at ±B is 1 so the tails join with slope 1.

  Arguments:
    x: (...,) points. unnormalized_widths, unnormalized_heights: (..., K) bin logits.
    unnormalized_derivatives: (..., K−1) logits of the interior knot derivatives (softplus + min_derivative).
    inverse: evaluate the inverse spline (closed-form root of a quadratic) instead.
    tail_bound: B.
  Returns:
    (y, log|dy/dx|), both (...,). For `inverse=True` the log-determinant is that of the inverse map.
  """
  num_bins = unnormalized_widths.shape[-1]
  if min_bin_width * num_bins > 1 or min_bin_height * num_bins > 1:
    raise ValueError(f"{num_bins} bins do not fit the minimal bin size.")
  bound = tail_bound
  edge = _inverse_softplus(1 - min_derivative)  # softplus(edge) + min_derivative = 1
  pad = jnp.full(unnormalized_derivatives.shape[:-1] + (1,), edge, unnormalized_derivatives.dtype)
  derivatives = min_derivative + jax.nn.softplus(jnp.concatenate([pad, unnormalized_derivatives, pad], -1))
  widths, cumwidths = _knots(unnormalized_widths, bound, min_bin_width)
  heights, cumheights = _knots(unnormalized_heights, bound, min_bin_height)

  inside = (x >= -bound) & (x <= bound)
  xc = jnp.clip(x, -bound, bound)  # evaluate the spline on a safe point; `where` picks the tail outside
  knots = cumheights if inverse else cumwidths
  idx = jnp.sum(xc[..., None] >= knots[..., 1:-1], axis=-1, keepdims=True)  # bin index in [0, K−1]
  onehot = idx == jnp.arange(num_bins)  # selecting by a mask compiles faster than a gather

  def pick(a):  # a: (..., K) -> the entry of x's bin
    return jnp.sum(jnp.where(onehot, a, 0), axis=-1)

  x_k, w_k = pick(cumwidths[..., :-1]), pick(widths)
  y_k, h_k = pick(cumheights[..., :-1]), pick(heights)
  s_k = h_k / w_k
  d_k, d_k1 = pick(derivatives[..., :-1]), pick(derivatives[..., 1:])
  curvature = d_k + d_k1 - 2 * s_k

  if inverse:
    t = xc - y_k
    a = t * curvature + h_k * (s_k - d_k)
    b = h_k * d_k - t * curvature
    c = -s_k * t
    disc = jnp.maximum(b * b - 4 * a * c, 0.0)
    theta = (2 * c) / (-b - jnp.sqrt(disc))  # the root in [0, 1], numerically stable form
    out = theta * w_k + x_k
  else:
    theta = (xc - x_k) / w_k
    tt = theta * (1 - theta)
    out = y_k + h_k * (s_k * theta ** 2 + d_k * tt) / (s_k + curvature * tt)
  tt = theta * (1 - theta)
  denom = s_k + curvature * tt
  dnum = s_k ** 2 * (d_k1 * theta ** 2 + 2 * s_k * tt + d_k * (1 - theta) ** 2)
  logdet = jnp.log(dnum) - 2 * jnp.log(denom)
  if inverse:
    logdet = -logdet
  return jnp.where(inside, out, x), jnp.where(inside, logdet, jnp.zeros_like(logdet))


# --- layers --------------------------------------------------------------------------------------------------


class PermutationIndex(nnx.Variable):
  """A fixed permutation (int array) saved with the weights and never trained (a PyTorch buffer)."""


class Permutation(nnx.Module):
  """y = x[:, π] for a random permutation π drawn at initialisation. log|det| = 0.

  Arguments: dim: d.
  """

  def __init__(self, dim: int, *, rngs: nnx.Rngs):
    self.dim = dim
    self.perm = PermutationIndex(jax.random.permutation(rngs.params(), dim).astype(jnp.int32))

  def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x: (batch, d) -> (y: (batch, d), log|det J|: (batch,))."""
    return x[:, self.perm[...]], jnp.zeros(x.shape[:1], x.dtype)

  def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    return y[:, jnp.argsort(self.perm[...])], jnp.zeros(y.shape[:1], y.dtype)


class LULinear(nnx.Module):
  """y = L U x + b, L unit lower triangular, U upper triangular with diagonal softplus(u) + eps.

  Guarantee: invertible for any weights (det = Π diag(U) ≥ eps^d > 0); `identity_init` starts at y = x.

  Arguments: dim: d. identity_init: L = U = I, b = 0 at initialisation (else U(±1/√d) entries). eps: 1e-3.
  """

  def __init__(self, dim: int, *, identity_init: bool = True, eps: float = 1e-3, rngs: nnx.Rngs):
    self.dim = dim
    self.eps = eps
    n = dim * (dim - 1) // 2
    if identity_init:
      lower = jnp.zeros((n,), jnp.float32)
      upper = jnp.zeros((n,), jnp.float32)
      diag = jnp.full((dim,), _inverse_softplus(1 - eps), jnp.float32)
    else:
      s = 1 / math.sqrt(dim)
      lower = jax.random.uniform(rngs.params(), (n,), jnp.float32, -s, s)
      upper = jax.random.uniform(rngs.params(), (n,), jnp.float32, -s, s)
      diag = jax.random.uniform(rngs.params(), (dim,), jnp.float32, -s, s)
    self.lower_entries = nnx.Param(lower)
    self.upper_entries = nnx.Param(upper)
    self.unconstrained_upper_diag = nnx.Param(diag)
    self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32))

  def factors(self) -> tuple[jax.Array, jax.Array]:
    """(L, U), each (d, d)."""
    d = self.dim
    rows, cols = np.tril_indices(d, -1)
    lower = jnp.eye(d, dtype=self.lower_entries[...].dtype).at[rows, cols].set(self.lower_entries[...])
    upper = jnp.zeros((d, d), lower.dtype).at[cols, rows].set(self.upper_entries[...])
    upper = upper + jnp.diag(self.upper_diag())
    return lower, upper

  def upper_diag(self) -> jax.Array:
    return jax.nn.softplus(self.unconstrained_upper_diag[...]) + self.eps

  def logabsdet(self) -> jax.Array:
    return jnp.sum(jnp.log(self.upper_diag()))

  def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x: (batch, d) -> (y: (batch, d), log|det J|: (batch,))."""
    lower, upper = self.factors()
    y = x @ upper.T @ lower.T + self.bias[...]
    return y, jnp.broadcast_to(self.logabsdet(), x.shape[:1]).astype(y.dtype)

  def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    lower, upper = self.factors()
    t = jax.scipy.linalg.solve_triangular(lower, (y - self.bias[...]).T, lower=True, unit_diagonal=True)
    x = jax.scipy.linalg.solve_triangular(upper, t, lower=False).T
    return x, jnp.broadcast_to(-self.logabsdet(), y.shape[:1]).astype(x.dtype)


class ResidualBlock(nnx.Module):
  """h ↦ h + W₂ relu(W₁ relu(h) + b₁) + b₂, W₂, b₂ initialised U(±1e-3) (near-identity start)."""

  def __init__(self, features: int, *, rngs: nnx.Rngs):
    self.linear_in = nnx.Linear(features, features, kernel_init=init.TORCH_KERNEL, bias_init=init.torch_bias(features),
                                rngs=rngs)
    self.linear_out = nnx.Linear(features, features, kernel_init=init.uniform(1e-3), bias_init=init.uniform(1e-3),
                                 rngs=rngs)

  def __call__(self, h: jax.Array) -> jax.Array:
    return h + self.linear_out(jax.nn.relu(self.linear_in(jax.nn.relu(h))))


class ResidualNet(nnx.Module):
  """Linear → `blocks` × ResidualBlock → Linear (ReLU; no batch norm, no dropout), the nflows ResidualNet.

  Arguments: in_features, out_features, hidden: width, blocks: number of residual blocks.
  Call: (batch, in_features) -> (batch, out_features).
  """

  def __init__(self, in_features: int, out_features: int, hidden: int = 30, blocks: int = 2, *,
               rngs: nnx.Rngs):
    self.hidden = hidden
    self.initial = nnx.Linear(in_features, hidden, kernel_init=init.TORCH_KERNEL, bias_init=init.torch_bias(in_features),
                              rngs=rngs)
    self.blocks = nnx.List([ResidualBlock(hidden, rngs=rngs) for _ in range(blocks)])
    self.final = nnx.Linear(hidden, out_features, kernel_init=init.TORCH_KERNEL, bias_init=init.torch_bias(hidden),
                            rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = self.initial(x)
    for block in self.blocks:
      h = block(h)
    return self.final(h)


def alternating_mask(dim: int, even: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(identity features, transformed features): the transformed ones are 0, 2, 4, ... (even) or 1, 3, ...."""
  transform = tuple(range(0 if even else 1, dim, 2))
  identity = tuple(i for i in range(dim) if i not in transform)
  return identity, transform


class RQSplineCoupling(nnx.Module):
  """Rational-quadratic spline coupling: y_T = spline_θ(x_I)(x_T), y_I = x_I (T, I: the mask's two classes).

  The conditioner is a `ResidualNet` from x_I to K widths, K heights and K−1 interior derivatives per transformed
  coordinate; widths and heights logits are divided by √hidden (as nflows) so the initial spline is near the
  identity.

  Arguments: dim: d ≥ 2. even: which mask class is transformed (`alternating_mask`). hidden, blocks: the
    conditioner. num_bins: K. tail_bound: B.
  """

  def __init__(self, dim: int, even: bool, *, hidden: int = 30, blocks: int = 2, num_bins: int = 10,
               tail_bound: float = 10.0, rngs: nnx.Rngs):
    if dim < 2:
      raise ValueError(f"a coupling layer needs dim ≥ 2 (got {dim}).")
    self.dim = dim
    self.identity_features, self.transform_features = alternating_mask(dim, even)
    self.num_bins = num_bins
    self.tail_bound = float(tail_bound)
    self.conditioner = ResidualNet(len(self.identity_features), len(self.transform_features) * (3 * num_bins - 1),
                                   hidden, blocks, rngs=rngs)

  def _apply(self, x: jax.Array, inverse: bool) -> tuple[jax.Array, jax.Array]:
    ident = np.asarray(self.identity_features)
    trans = np.asarray(self.transform_features)
    k = self.num_bins
    params = self.conditioner(x[:, ident]).reshape(x.shape[0], len(trans), 3 * k - 1)
    scale = math.sqrt(self.conditioner.hidden)
    y, logdet = rational_quadratic_spline(
        x[:, trans], params[..., :k] / scale, params[..., k:2 * k] / scale, params[..., 2 * k:],
        inverse=inverse, tail_bound=self.tail_bound)
    return x.at[:, trans].set(y), jnp.sum(logdet, axis=-1)

  def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x: (batch, d) -> (y: (batch, d), log|det J|: (batch,))."""
    return self._apply(x, inverse=False)

  def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self._apply(y, inverse=True)


class NeuralSplineFlow(nnx.Module):
  """φ applies, in order, [Perm, LU, C_1], ..., [Perm, LU, C_n], [Perm, LU] (C_i: spline couplings, alternating masks).

  Guarantee: φ is a C¹ diffeomorphism of ℝᵈ for any weights (det J_φ ≠ 0; its sign is that of the permutations);
  `inverse` is its exact inverse (closed form, round-off only).

  Arguments:
    dim: d ≥ 2. steps: number of (Perm, LU, coupling) steps (2 in the ELCD demos). hidden, blocks: conditioner
    width and residual blocks (30, 2). num_bins: K (10). tail_bound: B (10).
  Call: x: (batch, d) -> z: (batch, d).
  """

  def __init__(self, dim: int, steps: int = 2, *, hidden: int = 30, blocks: int = 2, num_bins: int = 10,
               tail_bound: float = 10.0, rngs: nnx.Rngs):
    self.dim = dim
    layers = []
    for i in range(steps):
      layers += [Permutation(dim, rngs=rngs), LULinear(dim, identity_init=True, rngs=rngs),
                 RQSplineCoupling(dim, even=(i % 2 == 0), hidden=hidden, blocks=blocks, num_bins=num_bins,
                                  tail_bound=tail_bound, rngs=rngs)]
    layers += [Permutation(dim, rngs=rngs), LULinear(dim, identity_init=True, rngs=rngs)]
    self.layers = nnx.List(layers)

  def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x: (batch, d) -> (z = φ(x): (batch, d), log|det J_φ(x)|: (batch,))."""
    logdet = jnp.zeros(x.shape[:1], x.dtype)
    for layer in self.layers:
      x, ld = layer.forward(x)
      logdet = logdet + ld
    return x, logdet

  def inverse(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """z: (batch, d) -> (x = φ⁻¹(z): (batch, d), log|det J_{φ⁻¹}(z)|: (batch,))."""
    logdet = jnp.zeros(z.shape[:1], z.dtype)
    for layer in reversed(self.layers):
      z, ld = layer.inverse(z)
      logdet = logdet + ld
    return z, logdet

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.forward(x)[0]

  def jvp_forward(self, x: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(φ(x), J_φ(x)·v) row by row; x, v: (batch, d) -> ((batch, d), (batch, d)). Exact (forward mode)."""
    return jax.jvp(lambda u: self.forward(u)[0], (x,), (v,))

  def jvp_inverse(self, z: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(φ⁻¹(z), J_{φ⁻¹}(z)·v) row by row; z, v: (batch, d) -> ((batch, d), (batch, d)). Exact (forward mode)."""
    return jax.jvp(lambda u: self.inverse(u)[0], (z,), (v,))
