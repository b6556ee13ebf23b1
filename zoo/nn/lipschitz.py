"""Lipschitz-constrained layers: spectral normalisation by power iteration on the operator, and non-expansive steps.

All constants are for the Euclidean norm on the whole input (for an image, the flattened H·W·C vector).

* `SpectralConv`, `SpectralDense` — x ↦ K̂x + b with K̂ = K / max(1, σ̂), where σ̂ = ‖K u‖ is the power-iteration
  estimate of ‖K‖₂ from a persistent vector u (a `PowerIterate` variable, saved with the weights, never trained).
  For a convolution the power iteration runs on the **convolution operator** on the layer's input grid
  (u ← KᵀKu/‖KᵀKu‖, Kᵀ the exact adjoint from `jax.linear_transpose`), not on the reshaped kernel, so the bound
  includes the zero padding. In training mode (`model.train()`) every call refines u by one iteration (as
  `torch.nn.utils.spectral_norm`); in eval mode the stored u is used as is. ‖K̂‖₂ ≤ 1 holds to the accuracy of
  the estimate, which `measure` checks by many iterations (and exactly, by SVD, for operators up to 4096 inputs).
* `ContractiveStep` — Ψ_C(x) = x − h Aᵀσ(Ax + b), σ(t) = max(t, t/2): an explicit Euler step of the gradient flow
  of the convex potential Σᵢ φ((Ax + b)ᵢ), φ' = σ. With D the secant slopes of σ (in [1/2, 1]) and Δ = x − y,
  z = AΔ: ‖Ψ_C(x) − Ψ_C(y)‖² ≤ ‖Δ‖² − Σᵢ g(dᵢ) zᵢ², g(d) = 2hd − h²c²d², c = ‖A‖₂. g is concave, so
  m = min(g(1/2), g(1)) and Lip(Ψ_C)² ≤ 1 − m·s² if m ≥ 0 (s = σ_min(A) = min ‖Az‖/‖z‖) and 1 + |m|·c² otherwise
  (`contractive_bound`). For an orthogonal A (c = s = 1) and h ≤ 1 this is √(1 − h + h²/4) ≤ √(1 − h + h²), the
  rate of the paper; the paper's rate holds whenever s² ≥ (1 − h)/(1 − h/4).
* `ExpansiveStep` — Ψ_E(x) = x + h σ(Wx + v): Lip ≤ 1 + |h|‖W‖₂ (`expansive_bound`).
* `NonexpansivePair` — Ψ_C^{h_C} ∘ Ψ_E^{h_E} with h_C ∈ (0, 1) learned and h_E = r·(1/ρ − 1), r ∈ (0, 1) learned,
  ρ = max(√(1 − h_C + h_C²), contractive_bound(h_C, 1, ŝ)) where ŝ estimates σ_min(Â) by a second persistent
  power iteration (on 1.1·I − ÂᵀÂ). Hence √(1 − h_C + h_C²)(1 + h_E) ≤ 1 (the paper's condition) and
  Lip(pair) ≤ contractive_bound·(1 + h_E) ≤ 1 (the rigorous one) by construction.
* `orthogonality_penalty` and `delta_orthogonal` — the soft penalty ‖K ⋆ K − δ⊗I‖_F and the delta-orthogonal
  initialisation of the official code (davidemurari/StructuredNeuralNetworks, Adversarial Robustness).

Celledoni, Murari, Owren, Schönlieb, Sherry, "Dynamical systems' based neural networks", SIAM J. Sci. Comput. 2023;
Sherry, Celledoni, Ehrhardt, Murari, Owren, Schönlieb, "Designing stable neural networks using convex analysis
and ODEs", Physica D 2024.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.nn import init

MIN_SINGULAR_SHIFT = 1.1   # σ_min iteration runs on SHIFT·I − ÂᵀÂ, positive semi-definite while ‖Â‖² ≤ SHIFT
EXACT_MAX_DIM = 4096       # operators with at most this many inputs (and ≤ 2²⁴ matrix entries) are also measured
EXACT_MAX_ENTRIES = 1 << 24  # exactly, from their dense matrix



class PowerIterate(nnx.Variable):
  """A persistent power-iteration vector (unit norm, shape (1, *input_shape)): refined by one iteration per
  call in training mode, saved with the weights, never touched by the optimizer (it is not an `nnx.Param`)."""


def leaky_half(x: jax.Array) -> jax.Array:
  """σ(x) = max(x, x/2): slopes in [1/2, 1], the activation of the paper."""
  return jnp.maximum(x, 0.5 * x)


def _unit(u: jax.Array) -> jax.Array:
  return u / jnp.maximum(jnp.linalg.norm(u), jnp.finfo(u.dtype).tiny)


def power_iteration(apply: Callable, transpose: Callable, u: jax.Array, iters: int) -> tuple[jax.Array, jax.Array]:
  """`iters` steps of u ← AᵀAu/‖AᵀAu‖; returns (‖Au‖ for the final unit u (a lower bound on ‖A‖₂), u)."""
  u = jax.lax.fori_loop(0, iters, lambda _, u: _unit(transpose(apply(u))), _unit(u))
  return jnp.linalg.norm(apply(u)), u


def min_singular_iteration(apply: Callable, transpose: Callable, v: jax.Array, iters: int,
                           shift: float | jax.Array = MIN_SINGULAR_SHIFT) -> tuple[jax.Array, jax.Array]:
  """`iters` steps of v ← (shift·v − AᵀAv)/‖·‖ (power iteration on shift·I − AᵀA, whose top eigenvector is A's
  smallest right singular vector when ‖A‖² ≤ shift); returns (‖Av‖ (an upper bound on σ_min(A)), v)."""
  v = jax.lax.fori_loop(0, iters, lambda _, v: _unit(shift * v - transpose(apply(v))), _unit(v))
  return jnp.linalg.norm(apply(v)), v


def contractive_bound(h: Any, c: Any, s: Any) -> Any:
  """Lipschitz bound of x ↦ x − hAᵀσ(Ax + b) for ‖A‖₂ = c, σ_min(A) = s, σ slopes in [1/2, 1] (see module doc).

  Works on floats, numpy or jax arrays (broadcasting)."""
  xp = jnp if any(isinstance(a, jax.Array) for a in (h, c, s)) else np
  m = xp.minimum(h - h * h * c * c / 4, 2 * h - h * h * c * c)
  return xp.sqrt(xp.where(m >= 0, xp.maximum(1 - m * s * s, 0.0), 1 - m * c * c))


def expansive_bound(h: Any, c: Any) -> Any:
  """Lipschitz bound of x ↦ x + hσ(Wx + v) for ‖W‖₂ = c and σ 1-Lipschitz: 1 + |h|·c."""
  return 1 + abs(h) * c


def paper_rate(h: Any) -> Any:
  """√(1 − h + h²): the contraction rate of the paper's contractive step (orthogonal A, σ(t) = max(t, t/2))."""
  xp = jnp if isinstance(h, jax.Array) else np
  return xp.sqrt(1 - h + h * h)


# ------------------------------------------------------------------------------------------- initialisers


def delta_orthogonal(gain: float = 1.0) -> Callable:
  """Delta-orthogonal kernel initialiser (Xiao et al. 2018; as the official code): zeros except the centre tap,
  which is gain·Q[:out, :in] for Q a random orthogonal matrix (QR of a Gaussian, signs fixed). With in = out and
  'SAME' zero padding the convolution is then exactly gain × an orthogonal operator. Shape HWIO."""

  def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    kh, kw, cin, cout = shape
    dim = max(cin, cout)
    q, r = jnp.linalg.qr(jax.random.normal(key, (dim, dim), jnp.float32))
    q = q * jnp.sign(jnp.diag(r))[None, :]
    centre = (q[:cout, :cin].T * gain).astype(dtype)
    return jnp.zeros(shape, dtype).at[kh // 2, kw // 2].set(centre)

  return init


def leaky_relu_gain(negative_slope: float) -> float:
  """torch.nn.init.calculate_gain('leaky_relu', a) = √(2 / (1 + a²)) (the official init's gain)."""
  return math.sqrt(2.0 / (1 + negative_slope ** 2))


# ------------------------------------------------------------------------------------ normalised operators


class SpectralOperator(nnx.Module):
  """A linear layer x ↦ K̂x + b whose ℓ2 operator norm is kept ≤ 1 by power iteration on the operator.

  Subclasses define `apply(x, kernel)` (the linear map on a batch). `normalize=False` gives the unconstrained
  layer (K̂ = K), used by baselines; it keeps the same state so that its norm can be measured alike.

  Attributes:
    kernel: nnx.Param, the raw weights K. bias: nnx.Param or None.
    u: PowerIterate (1, *input_shape), the top right singular vector estimate of K.
    v: PowerIterate (1, *input_shape) or None, the smallest right singular vector estimate of K̂
      (`track_min_singular=True`).
    use_running_average: True (eval, the default): use the stored vectors; False (`model.train()`): refine them
      by one iteration per call.
    dtype: None (compute in the input's dtype), or the dtype the layer casts its input and normalised weights to
      when called (mixed precision, `zoo.nn.precision.compute_view`); the normalisation itself stays float32.
  """

  input_shape: tuple[int, ...]

  def _init_state(self, kernel: jax.Array, bias: jax.Array | None, input_shape: Sequence[int], *, normalize: bool,
                  track_min_singular: bool, init_iters: int, rngs: nnx.Rngs) -> None:
    self.input_shape = tuple(int(d) for d in input_shape)
    self.normalize = normalize
    self.use_running_average = True
    self.dtype = None
    self.kernel = nnx.Param(kernel)
    self.bias = nnx.Param(bias) if bias is not None else None
    shape = (1, *self.input_shape)
    self.u = PowerIterate(_unit(jax.random.normal(rngs.params(), shape)))
    self.v = PowerIterate(_unit(jax.random.normal(rngs.params(), shape))) if track_min_singular else None
    # Converge the vectors at initialisation (the official code runs 1000-10000 power iterations at start);
    # nothing to do for an isometric initial kernel (delta-orthogonal, square: every unit vector is a singular
    # vector). Traced (nnx.eval_shape before a restore, or zoo's one compiled initialisation) nothing happens here:
    # the compiled initialisation calls `compiled_init_outputs` and `finish_compiled_init`.
    self.init_iters = int(init_iters)
    if init_iters and not isinstance(kernel, jax.core.Tracer):
      self.refresh(init_iters, force=True)

  def compiled_init_outputs(self) -> dict[str, jax.Array]:
    """Inside `zoo.compiled_init.build` (traced, after construction): what `refresh(init_iters, force=True)`
    computes on the device, in the same program: the dense matrix of K for an exactly measured operator (its
    eigen-solve runs on the host, `finish_compiled_init`), else the power-iterated vectors, set here."""
    if not self.init_iters:
      return {}
    kernel = self.kernel[...]
    if self.exact_feasible():
      return {"matrix": _dense_matrix(kernel, apply_fn=self.apply_fn, shape=self.input_shape)}
    self.u[...] = _jit_power(self, kernel, self.u[...], self.init_iters)[1]
    if self.v is not None:
      self.v[...] = _jit_min(self, self.weight(update=False), self.v[...], self.init_iters, MIN_SINGULAR_SHIFT)[1]
    return {}

  def finish_compiled_init(self, outputs: dict[str, jax.Array]) -> None:
    """The host part of the initial `refresh`: u from the dense matrix `compiled_init_outputs` computed (and v,
    which needs the normalised kernel, as `refresh` does)."""
    vec = self._exact_eigenvector(self._matrix(None, outputs["matrix"]), top=True)  # float64, as `refresh`
    dtype = self.u.get_value().dtype
    self.u.set_value(jax.device_put(vec.reshape(1, *self.input_shape).astype(dtype)))  # no program: a host cast
    if self.v is not None:
      self.v[...] = self._exact_vector(self.weight(update=False), top=False)

  # -- the linear map and its exact adjoint ----------------------------------------------------------------

  apply_fn: Callable  # (x: (batch, *input_shape), kernel) -> (batch, *output_shape), linear in x

  def apply(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Kx on a batch (no bias)."""
    return type(self).apply_fn(x, kernel)

  def transpose(self, z: jax.Array, kernel: jax.Array) -> jax.Array:
    """Kᵀz on a batch: the exact adjoint of `apply` (jax.linear_transpose), z: (batch, *output_shape)."""
    return _transpose(type(self).apply_fn, self.input_shape, z, kernel)

  def operator(self, kernel: jax.Array) -> tuple[Callable, Callable]:
    """(x ↦ Kx, z ↦ Kᵀz) on batches."""
    return (lambda x: self.apply(x, kernel)), (lambda z: self.transpose(z, kernel))

  # -- the normalised weights --------------------------------------------------------------------------------

  def _update(self, update: bool | None) -> bool:
    return (not self.use_running_average) if update is None else update

  def weight(self, update: bool | None = None) -> jax.Array:
    """K̂ = K / max(1, ‖Ku‖) (K when `normalize=False`). In training mode u first takes one power iteration
    step (without gradient), and the gradient flows through ‖Ku‖ (as torch's spectral_norm)."""
    kernel = self.kernel[...]
    if not self.normalize:
      return kernel
    u = self.u[...]
    if self._update(update):
      frozen = jax.lax.stop_gradient(kernel)
      u = _unit(self.transpose(self.apply(u, frozen), frozen))
      self.u[...] = u
    sigma = jnp.linalg.norm(self.apply(u, kernel))
    return kernel / jnp.maximum(1.0, sigma)

  def min_singular(self, kernel_hat: jax.Array, update: bool | None = None) -> jax.Array:
    """ŝ = ‖K̂v‖ ≥ σ_min(K̂), from the persistent vector v (refined by one shifted iteration in training mode)."""
    if self.v is None:
      raise ValueError("this layer was built without track_min_singular=True")
    v = self.v[...]
    if self._update(update):
      frozen = jax.lax.stop_gradient(kernel_hat)
      v = _unit(MIN_SINGULAR_SHIFT * v - self.transpose(self.apply(v, frozen), frozen))
      self.v[...] = v
    return jnp.linalg.norm(self.apply(v, kernel_hat))

  def cast(self, *arrays: jax.Array) -> tuple[jax.Array, ...]:
    """`arrays` in the layer's compute dtype (unchanged when `dtype` is None)."""
    return arrays if self.dtype is None else tuple(jnp.asarray(a, self.dtype) for a in arrays)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: (batch, *input_shape) -> (batch, *output_shape)."""
    x, kernel = self.cast(x, self.weight())
    y = self.apply(x, kernel)
    return y if self.bias is None else y + self.cast(self.bias[...])[0]

  # -- measuring and refreshing ------------------------------------------------------------------------------

  def refresh(self, iters: int, exact_max_dim: int = EXACT_MAX_DIM, force: bool = False) -> None:
    """Converges the stored vectors: `iters` more power iterations (no gradient), or, for operators with at most
    `exact_max_dim` inputs, the exact singular vectors (dense SVD in float64; power iteration converges slowly
    when the top singular values cluster, as they do for near-orthogonal kernels). Unnormalised layers keep
    their vectors unless `force`."""
    if not (self.normalize or force):
      return
    kernel = self.kernel[...]
    exact = self.exact_feasible(exact_max_dim)
    if exact:
      self.u[...] = self._exact_vector(kernel, top=True)
    else:
      self.u[...] = _jit_power(self, kernel, self.u[...], iters)[1]
    if self.v is not None:
      hat = self.weight(update=False)
      if exact:
        self.v[...] = self._exact_vector(hat, top=False)
      else:
        self.v[...] = _jit_min(self, hat, self.v[...], iters, MIN_SINGULAR_SHIFT)[1]

  def exact_feasible(self, exact_max_dim: int = EXACT_MAX_DIM) -> bool:
    """Whether the dense matrix is small enough for exact measurement (≤ exact_max_dim inputs, ≤ 2²⁴ entries)."""
    n = int(np.prod(self.input_shape))
    m = int(np.prod(jax.eval_shape(self.apply, jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32),
                                   self.kernel[...]).shape))
    return n <= exact_max_dim and n * m <= EXACT_MAX_ENTRIES

  def _matrix(self, kernel: jax.Array | None, dense: jax.Array | None = None) -> np.ndarray:
    """The operator as a float64 matrix (inputs, outputs): row i = K e_i (`dense`: K's `_dense_matrix`, computed
    already)."""
    n = int(np.prod(self.input_shape))
    if dense is None:
      dense = _dense_matrix(kernel, apply_fn=self.apply_fn, shape=self.input_shape)
    return np.asarray(dense, np.float64).reshape(n, -1)

  def _exact_vector(self, kernel: jax.Array, top: bool) -> jax.Array:
    """The right singular vector of the largest (`top`) or smallest singular value, shape (1, *input_shape):
    the extreme eigenvector of the Gram matrix KᵀK (float64)."""
    vec = self._exact_eigenvector(self._matrix(kernel), top)
    return jnp.asarray(vec.reshape(1, *self.input_shape), self.u[...].dtype)

  @staticmethod
  def _exact_eigenvector(matrix: np.ndarray, top: bool) -> np.ndarray:
    """The eigenvector of the largest (`top`) or smallest eigenvalue of matrix·matrixᵀ (float64, (n,))."""
    import scipy.linalg  # pylint: disable=import-outside-toplevel

    n = matrix.shape[0]
    with _one_blas_thread():
      _, vec = scipy.linalg.eigh(matrix @ matrix.T, subset_by_index=[n - 1, n - 1] if top else [0, 0])
    return vec[:, 0]

  def measure(self, iters: int = 1000, exact_max_dim: int = EXACT_MAX_DIM, seed: int = 0) -> dict[str, Any]:
    """‖K̂‖₂ and σ_min(K̂) of the operator the forward pass uses (eval mode), measured afresh.

    Power iteration (`iters` steps) from the stored vector and from two random starts: the largest estimate of
    ‖K̂‖₂ and the smallest of σ_min. For operators with at most `exact_max_dim` inputs (`exact_feasible`), also
    the exact values (float64 eigenvalues of the Gram matrix of the dense operator); then `sigma`/`sigma_min` are
    the conservative of the two.
    Returns {"sigma", "sigma_min", "power_sigma", "power_sigma_min", "exact_sigma", "exact_sigma_min"}.
    """
    hat = self.weight(update=False)
    key = jax.random.key(seed)
    starts = [self.u[...]] + [jax.random.normal(k, (1, *self.input_shape)) for k in jax.random.split(key, 2)]
    power_sigma = max(float(_jit_power(self, hat, u, iters)[0]) for u in starts)
    shift = MIN_SINGULAR_SHIFT * max(power_sigma, 1e-12) ** 2
    vstarts = ([self.v[...]] if self.v is not None else []) + starts[1:]
    power_min = min(float(_jit_min(self, hat, v, iters, shift)[0]) for v in vstarts)
    out = {"power_sigma": power_sigma, "power_sigma_min": power_min, "exact_sigma": None, "exact_sigma_min": None}
    n = int(np.prod(self.input_shape))
    if self.exact_feasible(exact_max_dim):
      matrix = self._matrix(hat)
      with _one_blas_thread():
        eig = np.linalg.eigvalsh(matrix @ matrix.T)  # σᵢ² of K̂ (zeros when it has fewer outputs than inputs)
      out["exact_sigma"] = float(np.sqrt(max(eig[-1], 0.0)))
      out["exact_sigma_min"] = float(np.sqrt(max(eig[0], 0.0))) if matrix.shape[1] >= n else 0.0
    out["sigma"] = max(power_sigma, out["exact_sigma"] or 0.0)
    out["sigma_min"] = power_min if out["exact_sigma_min"] is None else min(power_min, out["exact_sigma_min"])
    return out


def _one_blas_thread():
  """Dense eigen-solves on one BLAS thread: small problems, and multi-threaded OpenBLAS spins badly on a busy
  machine (512×512 eigh: 30 ms on one thread, seconds on two under load)."""
  from threadpoolctl import threadpool_limits  # pylint: disable=import-outside-toplevel

  return threadpool_limits(limits=1, user_api="blas")


def _transpose(apply_fn: Callable, input_shape: tuple[int, ...], z: jax.Array, kernel: jax.Array) -> jax.Array:
  like = jax.ShapeDtypeStruct((z.shape[0], *input_shape), z.dtype)
  return jax.linear_transpose(lambda x: apply_fn(x, kernel), like)(z)[0]


def _ops(apply_fn: Callable, shape: tuple[int, ...], kernel: jax.Array):
  return (lambda x: apply_fn(x, kernel)), (lambda z: _transpose(apply_fn, shape, z, kernel))


# Jitted with the layer type's linear map and input shape static: one compile per geometry (JAX's own cache),
# shared by every layer and iteration count.
@functools.partial(jax.jit, static_argnames=("apply_fn", "shape"))
def _dense_matrix(kernel: jax.Array, *, apply_fn: Callable, shape: tuple[int, ...]) -> jax.Array:
  n = int(np.prod(shape))
  return apply_fn(jnp.eye(n, dtype=kernel.dtype).reshape(n, *shape), kernel)


@functools.partial(jax.jit, static_argnames=("apply_fn", "shape"))
def _power(kernel, u, iters, *, apply_fn: Callable, shape: tuple[int, ...]):
  return power_iteration(*_ops(apply_fn, shape, kernel), u, iters)


@functools.partial(jax.jit, static_argnames=("apply_fn", "shape"))
def _min_singular(kernel, v, iters, shift, *, apply_fn: Callable, shape: tuple[int, ...]):
  return min_singular_iteration(*_ops(apply_fn, shape, kernel), v, iters, shift)


def _jit_power(layer: SpectralOperator, kernel: jax.Array, u: jax.Array, iters: int):
  return _power(kernel, u, jnp.asarray(iters, jnp.int32), apply_fn=layer.apply_fn, shape=layer.input_shape)


def _jit_min(layer: SpectralOperator, kernel: jax.Array, v: jax.Array, iters: int, shift: float):
  return _min_singular(kernel, v, jnp.asarray(iters, jnp.int32), jnp.asarray(shift, kernel.dtype),
                       apply_fn=layer.apply_fn, shape=layer.input_shape)


def _conv_nhwc(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _dense(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return x @ kernel.astype(x.dtype)


class SpectralConv(SpectralOperator):
  """2-D convolution (NHWC, stride 1, 'SAME' zero padding) with ‖K̂‖₂ ≤ 1 as an operator on the input grid.

  Arguments:
    in_features, out_features: channels. kernel_size: (kh, kw). input_size: (H, W) of the grid it acts on.
    normalize: keep the operator norm ≤ 1 (False: the unconstrained convolution). use_bias: add a bias.
    track_min_singular: also track σ_min of the normalised operator (for contractive steps).
    kernel_init, bias_init: initialisers (default: torch's, as the official code). init_iters: power
    iterations at initialisation.
  Call: x: (batch, H, W, in_features) -> (batch, H, W, out_features).
  """

  def __init__(self, in_features: int, out_features: int, kernel_size: Sequence[int] = (3, 3),
               input_size: Sequence[int] = (8, 8), *, normalize: bool = True, use_bias: bool = True,
               track_min_singular: bool = False, kernel_init: Callable = init.TORCH_KERNEL,
               bias_init: Callable | None = None, init_iters: int = 200, rngs: nnx.Rngs):
    kh, kw = kernel_size
    kernel = kernel_init(rngs.params(), (kh, kw, in_features, out_features), jnp.float32)
    bias = None
    if use_bias:
      bias_init = bias_init or init.torch_bias(kh * kw * in_features)
      bias = bias_init(rngs.params(), (out_features,), jnp.float32)
    self.in_features, self.out_features = in_features, out_features
    self.kernel_size = (kh, kw)
    self._init_state(kernel, bias, (*input_size, in_features), normalize=normalize,
                     track_min_singular=track_min_singular, init_iters=init_iters, rngs=rngs)

  apply_fn = staticmethod(_conv_nhwc)


class SpectralDense(SpectralOperator):
  """Dense layer x ↦ K̂x + b (kernel (in, out)) with ‖K̂‖₂ ≤ 1 (`normalize=True`).

  Call: x: (batch, in_features) -> (batch, out_features).
  """

  def __init__(self, in_features: int, out_features: int, *, normalize: bool = True, use_bias: bool = True,
               kernel_init: Callable = init.TORCH_KERNEL, bias_init: Callable | None = None, init_iters: int = 200,
               rngs: nnx.Rngs):
    kernel = kernel_init(rngs.params(), (in_features, out_features), jnp.float32)
    bias = (bias_init or init.torch_bias(in_features))(rngs.params(), (out_features,), jnp.float32) if use_bias else None
    self.in_features, self.out_features = in_features, out_features
    self._init_state(kernel, bias, (in_features,), normalize=normalize, track_min_singular=False,
                     init_iters=init_iters, rngs=rngs)

  apply_fn = staticmethod(_dense)


def refresh_estimates(model: nnx.Module, iters: int = 500) -> None:
  """Runs `iters` more power iterations on every `SpectralOperator` of `model` (the stored vectors converge, so
  the normalisation the forward pass applies is that of the converged estimates). Changes no `nnx.Param`."""
  for _, module in nnx.iter_modules(model):
    if isinstance(module, SpectralOperator):
      module.refresh(iters)


# ------------------------------------------------------------------------------------------ the penalty


def orthogonality_penalty(kernel: jax.Array) -> jax.Array:
  """‖K ⋆ K − δ⊗I‖_F for a kernel (kh, kw, in, out): zero iff the convolution's rows are orthonormal on the
  infinite grid (KKᵀ = I). The official `deconv_orth_dist` (weight 0.1 in the loss)."""
  kh, kw, _, cout = kernel.shape
  k = jnp.transpose(kernel, (3, 2, 0, 1))  # (out, in, kh, kw): the out filters as a batch of images
  out = jax.lax.conv_general_dilated(k, k, (1, 1), [(kh - 1, kh - 1), (kw - 1, kw - 1)],
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
  target = jnp.zeros_like(out).at[:, :, kh - 1, kw - 1].set(jnp.eye(cout, dtype=out.dtype))
  return jnp.linalg.norm((out - target).ravel())


# ---------------------------------------------------------------------------------------------- the steps


class ContractiveStep(nnx.Module):
  """Ψ_C(x) = x − h Aᵀσ(Ax + b), σ(t) = max(t, t/2), A a convolution (c → c channels).

  Lipschitz ≤ `contractive_bound(h, ‖A‖₂, σ_min(A))`: ≤ √(1 − h + h²) for orthogonal A and h ∈ [0, 1]; ≤ 1 for
  any ‖A‖₂ ≤ 1 and h ∈ [0, 4/3]. Celledoni et al. 2023, Sec. 4.

  Arguments: channels, input_size (H, W), kernel_size, normalize (‖A‖₂ ≤ 1), gain (delta-orthogonal init).
  Call: x: (batch, H, W, channels), h: () -> (batch, H, W, channels).
  """

  def __init__(self, channels: int, input_size: Sequence[int], kernel_size: Sequence[int] = (3, 3), *,
               normalize: bool = True, gain: float = 1.0, rngs: nnx.Rngs):
    self.conv = SpectralConv(channels, channels, kernel_size, input_size, normalize=normalize,
                             track_min_singular=True, kernel_init=delta_orthogonal(gain),
                             bias_init=nnx.initializers.zeros, init_iters=0, rngs=rngs)  # isometric at init

  def __call__(self, x: jax.Array, h: jax.Array, kernel: jax.Array | None = None) -> jax.Array:
    kernel = self.conv.weight() if kernel is None else kernel
    x, h, kernel, bias = self.conv.cast(x, h, kernel, self.conv.bias[...])
    z = leaky_half(self.conv.apply(x, kernel) + bias)
    return x - h * self.conv.transpose(z, kernel)


class ExpansiveStep(nnx.Module):
  """Ψ_E(x) = x + h σ(Wx + v), W a convolution (c → c): Lipschitz ≤ 1 + |h|·‖W‖₂.

  Call: x: (batch, H, W, channels), h: () -> (batch, H, W, channels).
  """

  def __init__(self, channels: int, input_size: Sequence[int], kernel_size: Sequence[int] = (3, 3), *,
               normalize: bool = True, gain: float = 1.0, rngs: nnx.Rngs):
    self.conv = SpectralConv(channels, channels, kernel_size, input_size, normalize=normalize,
                             kernel_init=delta_orthogonal(gain), bias_init=nnx.initializers.zeros, init_iters=0,
                             rngs=rngs)  # isometric at init

  def __call__(self, x: jax.Array, h: jax.Array) -> jax.Array:
    x, h = self.conv.cast(x, h)
    return x + h * leaky_half(self.conv(x))


def _logit(p: jax.Array) -> jax.Array:
  return jnp.log(p) - jnp.log1p(-p)


class NonexpansivePair(nnx.Module):
  """Ψ_C^{h_C} ∘ Ψ_E^{h_E}: an expansive step, then a contractive one, with tied step sizes.

  Constrained (default): h_C = sigmoid(θ_C) ∈ (0, 1), h_E = sigmoid(θ_E)·(1/ρ − 1) with
  ρ = max(√(1 − h_C + h_C²), contractive_bound(h_C, 1, ŝ)), ŝ the tracked σ_min of Â, and ‖Â‖₂, ‖Ŵ‖₂ ≤ 1 by
  power iteration: √(1 − h_C + h_C²)(1 + h_E) ≤ 1 and Lip ≤ 1 by construction. Unconstrained
  (`constrained=False`, the baseline): raw kernels and free step sizes h_C = θ_C, h_E = θ_E (same initial values).

  Arguments: channels, input_size (H, W), kernel_size, constrained, gain (delta-orthogonal init gain).
  Call: x: (batch, H, W, channels) -> same.
  """

  def __init__(self, channels: int, input_size: Sequence[int], kernel_size: Sequence[int] = (3, 3), *,
               constrained: bool = True, gain: float = 1.0, rngs: nnx.Rngs):
    self.constrained = constrained
    self.expansive = ExpansiveStep(channels, input_size, kernel_size, normalize=constrained, gain=gain, rngs=rngs)
    self.contractive = ContractiveStep(channels, input_size, kernel_size, normalize=constrained, gain=gain,
                                       rngs=rngs)
    # Initial steps: h_C, r ~ U(0.05, 0.95) (the official code draws its step parameters from U(0, 1)).
    h_c, r = jax.random.uniform(rngs.params(), (2,), jnp.float32, 0.05, 0.95)
    if constrained:
      self.theta_c, self.theta_e = nnx.Param(_logit(h_c)), nnx.Param(_logit(r))
    else:
      self.theta_c, self.theta_e = nnx.Param(h_c), nnx.Param(r * (1 / paper_rate(h_c) - 1))

  def step_sizes(self, s_hat: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """(h_C, h_E); `s_hat` is the σ_min estimate of the normalised A (constrained only)."""
    if not self.constrained:
      return self.theta_c[...], self.theta_e[...]
    h_c = jax.nn.sigmoid(self.theta_c[...])
    rate = paper_rate(h_c)
    if s_hat is not None:
      rate = jnp.maximum(rate, contractive_bound(h_c, jnp.asarray(1.0, h_c.dtype), jnp.minimum(s_hat, 1.0)))
    return h_c, jax.nn.sigmoid(self.theta_e[...]) * (1 / rate - 1)

  def current_step_sizes(self) -> tuple[float, float]:
    """The step sizes the forward pass uses now (eval mode, from the stored estimates)."""
    conv = self.contractive.conv
    s_hat = conv.min_singular(conv.weight(update=False), update=False) if self.constrained else None
    h_c, h_e = self.step_sizes(s_hat)
    return float(h_c), float(h_e)

  def __call__(self, x: jax.Array) -> jax.Array:
    conv = self.contractive.conv
    kernel = conv.weight()
    s_hat = conv.min_singular(kernel) if self.constrained else None
    h_c, h_e = self.step_sizes(s_hat)
    return self.contractive(self.expansive(x, h_e), h_c, kernel)
