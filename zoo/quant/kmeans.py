"""Differentiable k-means of weight vectors: DKM (unrolled), IDKM (implicit) and IDKM-JFB (Jacobian-free).

One soft k-means update is shared by the three methods. For weight vectors W: (m, d) and centroids C: (k, d),

    D_ij = ‖w_i − c_j‖²,   A = max(softmax_j(−D/τ), 1e-7),   F(C, W) = diag(1ᵀA)⁻¹ AᵀW,

and the soft (training) weights are W̃ = A(C, W)·C. The clustering is the fixed point C* = F(C*, W):

- `dkm`: t updates from the warm-start centroids, differentiated by autodiff through every iteration
  (memory O(t·m·k)). Cho et al., "DKM: Differentiable k-Means Clustering Layer for Neural Network
  Compression", ICLR 2022; defaults as apple/coremltools `palettization_config.py` (τ = 1e-4, ε = 1e-4 on the
  change of inertia, 3 iterations, clamp 1e-7).
- `idkm`: the same updates in a `lax.while_loop` (nothing stored); the backward pass uses the implicit
  function theorem, solving uᵀ(I − ∂F/∂C) = gᵀ by the iteration u ← g + (∂F/∂C)ᵀu with VJPs, then
  ∂L/∂W = uᵀ ∂F/∂W (memory O(m·k), independent of t). Jaffe, Singh, Bullo, "IDKM: Memory Efficient Neural
  Network Quantization via Implicit, Differentiable k-Means", arXiv:2312.07759.
- `idkm-jfb`: the IDKM forward pass; the backward pass replaces (I − ∂F/∂C)⁻¹ by I (u = g): backprop through
  one application of F at C* (time and memory independent of t).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp

CLAMP = 1e-7  # coremltools `zero_threshold`: the softmax assignments are clamped from below
METHODS = ("dkm", "idkm", "idkm-jfb")
Method = Literal["dkm", "idkm", "idkm-jfb"]


@dataclasses.dataclass(frozen=True)
class KMeansConfig:
  """Settings of one differentiable clustering (hashable: a static argument of jitted functions).

  Attributes:
    method: "dkm" | "idkm" | "idkm-jfb".
    tau: softmax temperature τ (on squared distances of raw weights; coremltools default 1e-4).
    iters: t, the most soft k-means updates of the forward pass.
    eps: stop early once |inertia(C_n) − inertia(C_{n−1})| ≤ eps (coremltools `palett_epsilon`); 0 = never.
    adjoint_iters: most iterations of the IDKM adjoint solve (None: `iters`).
    adjoint_tol: the adjoint solve stops when max|u_{n+1} − u_n| ≤ adjoint_tol·max|g|.
  """

  method: Method = "idkm"
  tau: float = 1e-4
  iters: int = 5
  eps: float = 1e-4
  adjoint_iters: int | None = None
  adjoint_tol: float = 1e-6

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"method {self.method!r}: use one of {', '.join(METHODS)}.")
    if self.iters < 1:
      raise ValueError(f"iters must be >= 1, got {self.iters}.")
    if not self.tau > 0:
      raise ValueError(f"tau must be > 0, got {self.tau}.")


# --- the shared soft k-means update ----------------------------------------------------------------


def sq_distances(w: jax.Array, c: jax.Array) -> jax.Array:
  """D_ij = ‖w_i − c_j‖². w: (m, d), c: (k, d) -> (m, k)."""
  return jnp.sum(jnp.square(w[:, None, :] - c[None, :, :]), axis=-1)


def assignments(c: jax.Array, w: jax.Array, tau: float) -> jax.Array:
  """A = max(softmax(−D/τ), 1e-7) over the k clusters. c: (k, d), w: (m, d) -> (m, k)."""
  return jnp.maximum(jax.nn.softmax(-sq_distances(w, c) / tau, axis=-1), CLAMP)


def update(c: jax.Array, w: jax.Array, tau: float) -> jax.Array:
  """One soft k-means step F(C, W) = diag(1ᵀA)⁻¹ AᵀW. c: (k, d), w: (m, d) -> (k, d)."""
  a = assignments(c, w, tau)
  return (a.T @ w) / jnp.sum(a, axis=0)[:, None]


def soft_weights(c: jax.Array, w: jax.Array, tau: float) -> jax.Array:
  """W̃ = A(C, W)·C, the weights used in training. c: (k, d), w: (m, d) -> (m, d)."""
  return assignments(c, w, tau) @ c


def inertia(c: jax.Array, w: jax.Array) -> jax.Array:
  """Σ_i min_j ‖w_i − c_j‖² (scalar)."""
  return jnp.sum(jnp.min(sq_distances(w, c), axis=-1))


def nearest(c: jax.Array, w: jax.Array) -> jax.Array:
  """Index of the nearest centroid of each vector. c: (k, d), w: (m, d) -> (m,) int32."""
  return jnp.argmin(sq_distances(w, c), axis=-1).astype(jnp.int32)


def snap(c: jax.Array, w: jax.Array) -> jax.Array:
  """Hard assignment: each vector replaced by its nearest centroid. -> (m, d) with ≤ k distinct rows."""
  return c[nearest(c, w)]


# --- the forward iterations ------------------------------------------------------------------------


def _step(c, w, tau, prev_inertia, n, eps):
  """One update plus coremltools' stopping test (inertia measured at the centroids being updated)."""
  inert = inertia(c, w)
  done = (n > 0) & (jnp.abs(prev_inertia - inert) <= eps)
  return update(c, w, tau), inert, done


def solve(c0: jax.Array, w: jax.Array, cfg: KMeansConfig) -> jax.Array:
  """Iterates C ← F(C, W) from c0 for at most `cfg.iters` steps (stopping early by `cfg.eps`), storing nothing.

  Not differentiable by itself (a `lax.while_loop`); `fixed_point` gives it the implicit gradient.
  """

  def cond(state):
    n, _, _, done = state
    return (n < cfg.iters) & ~done

  def body(state):
    n, c, prev, _ = state
    c_new, inert, done = _step(c, w, cfg.tau, prev, n, cfg.eps)
    return n + 1, c_new, inert, done

  init = (jnp.int32(0), c0, jnp.asarray(jnp.inf, w.dtype), jnp.asarray(False))
  return jax.lax.while_loop(cond, body, init)[1]


def unrolled(c0: jax.Array, w: jax.Array, cfg: KMeansConfig) -> jax.Array:
  """DKM: exactly `cfg.iters` scan steps (each a no-op once the eps test has stopped the iteration), so
  reverse-mode autodiff keeps every iteration's assignments: memory grows linearly with t."""

  def body(state, _):
    n, c, prev, stopped = state
    c_new, inert, done = _step(c, w, cfg.tau, prev, n, cfg.eps)
    stop = stopped | done
    c_next = jnp.where(stopped, c, c_new)
    return (n + 1, c_next, jnp.where(stopped, prev, inert), stop), None

  init = (jnp.int32(0), c0, jnp.asarray(jnp.inf, w.dtype), jnp.asarray(False))
  return jax.lax.scan(body, init, None, length=cfg.iters)[0][1]


# --- implicit differentiation ----------------------------------------------------------------------


def adjoint(c_star: jax.Array, w: jax.Array, g: jax.Array, cfg: KMeansConfig) -> jax.Array:
  """Solves u = g + (∂F/∂C)ᵀu at C* by fixed-point iteration (IDKM); returns g itself for IDKM-JFB.

  Arguments:
    c_star: (k, d) the fixed point. w: (m, d). g: (k, d) the cotangent ∂L/∂C*.
  Returns:
    u: (k, d), so that ∂L/∂W = uᵀ ∂F/∂W.
  """
  if cfg.method == "idkm-jfb":
    return g
  max_iters = cfg.iters if cfg.adjoint_iters is None else cfg.adjoint_iters
  _, vjp_c = jax.vjp(lambda c: update(c, w, cfg.tau), c_star)
  scale = jnp.max(jnp.abs(g)) + jnp.finfo(g.dtype).tiny

  def cond(state):
    n, _, change = state
    return (n < max_iters) & (change > cfg.adjoint_tol * scale)

  def body(state):
    n, u, _ = state
    u_new = g + vjp_c(u)[0]
    return n + 1, u_new, jnp.max(jnp.abs(u_new - u))

  return jax.lax.while_loop(cond, body, (jnp.int32(0), g, jnp.asarray(jnp.inf, g.dtype)))[1]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def fixed_point(c0: jax.Array, w: jax.Array, cfg: KMeansConfig) -> jax.Array:
  """C* = F(C*, W) reached from c0 (`solve`), with the IDKM / IDKM-JFB gradient in W (none in c0)."""
  return solve(c0, w, cfg)


def _fixed_point_fwd(c0, w, cfg):
  c_star = solve(c0, w, cfg)
  return c_star, (c_star, w)


def _fixed_point_bwd(cfg, residuals, g):
  c_star, w = residuals
  u = adjoint(c_star, w, g, cfg)
  _, vjp_w = jax.vjp(lambda x: update(c_star, x, cfg.tau), w)
  return jnp.zeros_like(c_star), vjp_w(u)[0]


fixed_point.defvjp(_fixed_point_fwd, _fixed_point_bwd)


def centroids(c0: jax.Array, w: jax.Array, cfg: KMeansConfig) -> jax.Array:
  """The clustering's centroids after the forward iterations, differentiable in w by `cfg.method`.

  Arguments:
    c0: (k, d) warm-start centroids (treated as a constant). w: (m, d) weight vectors.
  Returns:
    (k, d) centroids.
  """
  c0 = jax.lax.stop_gradient(c0)
  if cfg.method == "dkm":
    return unrolled(c0, w, cfg)
  return fixed_point(c0, w, cfg)


def cluster(c0: jax.Array, w: jax.Array, cfg: KMeansConfig) -> tuple[jax.Array, jax.Array]:
  """Differentiable clustering of a layer's weight vectors.

  Arguments:
    c0: (k, d) warm-start centroids. w: (m, d) weight vectors.
  Returns:
    (W̃, C): the soft weights A(C, W)·C, (m, d), differentiable in w, and the centroids C, (k, d).
  """
  c = centroids(c0, w, cfg)
  return soft_weights(c, w, cfg.tau), c


# --- initialisation --------------------------------------------------------------------------------


def kmeans_plus_plus(key: jax.Array, w: jax.Array, k: int) -> jax.Array:
  """k-means++ seeding (Arthur & Vassilvitskii 2007): D²-weighted sampling. w: (m, d) -> (k, d)."""
  m = w.shape[0]
  key, first = jax.random.split(key)
  c = jnp.zeros((k, w.shape[1]), w.dtype).at[0].set(w[jax.random.randint(first, (), 0, m)])
  d2 = jnp.sum(jnp.square(w - c[0]), axis=-1)

  def body(j, state):
    c, d2, key = state
    key, sub = jax.random.split(key)
    total = jnp.sum(d2)
    # all points coincide with chosen centroids: any point will do (uniform)
    p = jnp.where(total > 0, d2 / jnp.where(total > 0, total, 1.0), 1.0 / m)
    i = jax.random.choice(sub, m, p=p)
    c = c.at[j].set(w[i])
    return c, jnp.minimum(d2, jnp.sum(jnp.square(w - w[i]), axis=-1)), key

  return jax.lax.fori_loop(1, k, body, (c, d2, key))[0]


def lloyd(c: jax.Array, w: jax.Array, iters: int = 100) -> jax.Array:
  """Hard k-means (Lloyd) from c until the assignment stops changing or `iters` steps; an empty cluster
  keeps its centroid. c: (k, d), w: (m, d) -> (k, d)."""
  k = c.shape[0]

  def body(state):
    n, c, labels, _ = state
    new = nearest(c, w)
    onehot = jax.nn.one_hot(new, k, dtype=w.dtype)
    counts = jnp.sum(onehot, axis=0)
    means = (onehot.T @ w) / jnp.maximum(counts, 1)[:, None]
    c = jnp.where(counts[:, None] > 0, means, c)
    return n + 1, c, new, jnp.any(new != labels)

  init = (jnp.int32(0), c, jnp.full((w.shape[0],), -1, jnp.int32), jnp.asarray(True))
  return jax.lax.while_loop(lambda s: (s[0] < iters) & s[3], body, init)[1]


@functools.partial(jax.jit, static_argnames=("k", "iters"))
def init_centroids(key: jax.Array, w: jax.Array, k: int, iters: int = 100) -> jax.Array:
  """k-means++ seeding refined by hard k-means (coremltools initialises DKM with k-means at the first
  palettized forward pass, max_iter 100). w: (m, d) -> (k, d) sorted by first coordinate."""
  c = lloyd(kmeans_plus_plus(key, w, k), w, iters)
  return c[jnp.argsort(c[:, 0])]
