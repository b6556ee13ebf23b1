"""ELCD: extended-linearized contracting dynamics in the latent space of a neural-spline flow.

    ẋ = J_{φ⁻¹}(z) f(z),  z = φ(x),  f(z) = A(z)(z − z*),  A(z) = −P_s(z)ᵀP_s(z) − εI + P_a(z) − P_a(z)ᵀ,

with φ a neural-spline flow (`zoo.nn.flows.NeuralSplineFlow`: 2 steps of permutation, LU-linear layer and
rational-quadratic spline coupling with 10 bins, tail bound 10, a 30-unit residual conditioner with 2 blocks),
z* = φ(x*) and x* the target (the origin for LASA). The data-space field is the push-forward of f by φ⁻¹: its
solutions are x(t) = φ⁻¹(z(t)) with z(t) a solution of ż = f(z). J_{φ⁻¹}(z)·f(z) is one forward-mode
Jacobian-vector product of the closed-form inverse (exact).

Guarantee (any weights): sym A(z) ⪯ −εI, so ‖z(t) − z*‖ ≤ e^{−εt}‖z(0) − z*‖ for every latent solution:
x* is the unique, globally exponentially stable equilibrium of the data-space field, every trajectory converges to
it, and the field is contracting in the metric pulled back by φ (Jaffe et al. 2024). `verify` checks this on the
weights.

Jaffe, Davydov, Lapsekili, Singh, Bullo, "Learning Neural Contracting Dynamics: Extended Linearization and Global
Guarantees", NeurIPS 2024 (arXiv:2402.08090); official code seanjaffe1/Extended-Linearized-Contracting-Dynamics
(`models/elcd.py`, `utils.py`, `lasa_demo.ipynb`), whose structure and hyperparameters this follows.
"""

from __future__ import annotations

import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.nn.contraction import ExtendedLinearField
from zoo.nn.flows import NeuralSplineFlow
from zoo.registry import Check, Family, check_input, register


class ELCD(nnx.Module):
  """ELCD with a latent neural-spline diffeomorphism; see the module docstring for the field and its guarantee.

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

  def _velocity(self, x: jax.Array) -> jax.Array:
    z = self.encode(x)
    return self.flow.jvp_inverse(z, self.latent_field(z))[1]

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


@functools.partial(jax.jit, static_argnames=("graphdef", "inverse"))
def _flow_jit(graphdef, state, x, inverse):
  flow = nnx.merge(graphdef, state)
  return (flow.inverse if inverse else flow.forward)(x)[0]


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _velocity_jit(graphdef, state, x):
  return nnx.merge(graphdef, state)._velocity(x)  # pylint: disable=protected-access


def _rk4(field, x, dt):
  k1 = field(x)
  k2 = field(x + 0.5 * dt * k1)
  k3 = field(x + 0.5 * dt * k2)
  k4 = field(x + dt * k3)
  return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


@functools.partial(jax.jit, static_argnames=("graphdef", "steps"))
def _rollout(graphdef, state, x0, steps, dt, tol):
  model = nnx.merge(graphdef, state)
  dt = jnp.asarray(dt, x0.dtype)

  def field(x):  # one state (d,)
    return model._velocity(x[None])[0]  # pylint: disable=protected-access

  def one(start):
    def step(carry, _):
      x, done, taken = carry
      new = _rk4(field, x, dt)
      moved = jnp.linalg.norm(new - x)
      x = jnp.where(done, x, new)
      taken = taken + jnp.where(done, 0, 1)
      return (x, done | (moved < tol), taken), x

    (_, _, taken), xs = jax.lax.scan(step, (start, jnp.array(False), jnp.array(0, jnp.int32)), None,
                                     length=steps)
    return jnp.concatenate([start[None], xs]), taken

  return jax.vmap(one)(x0)


# --- the task: LASA motions ---------------------------------------------------------------------------------


def loss(model: ELCD, batch) -> tuple[jax.Array, dict]:
  """MSE between predicted and demonstrated velocities (mean over batch and coordinates, torch's MSELoss)."""
  mse = jnp.mean((model(batch["x"]) - batch["v"]) ** 2)
  return mse, {"mse": mse}


def demo_rollouts(model: ELCD, data, steps: int = 1000, dt: float = 0.01, tol: float = 1e-5):
  """Rollouts from each demonstration's first point, cut where they stopped (as the official evaluation).

  Arguments:
    data: a LASA split (`x`, `v`, `demo`, `t`, see `zoo.data.lasa`).
  Returns:
    (list of rollouts (n_k + 1, d), demonstrated positions (K, T, d), velocities (K, T, d), demo ids (K,)).
  """
  from zoo.data import lasa  # pylint: disable=import-outside-toplevel

  pos, vel, ids = lasa.trajectories_from_examples(data)
  xs, taken = model.rollout(jnp.asarray(pos[:, 0], jnp.float32), steps=steps, dt=dt, tol=tol, return_steps=True)
  xs, taken = np.asarray(xs, np.float64), np.asarray(taken)
  return [xs[k, :taken[k] + 1] for k in range(len(xs))], pos, vel, ids


def perturbed_starts(pos: np.ndarray, scale: float = 0.3, seed: int = 0) -> np.ndarray:
  """Each demonstration's first point plus Gaussian noise of `scale` × the per-coordinate spread of the
  demonstrations: pos (K, T, d) -> (K, d)."""
  spread = pos.reshape(-1, pos.shape[-1]).std(0)
  return pos[:, 0] + scale * spread * np.random.default_rng(seed).normal(size=pos[:, 0].shape)


def evaluate(model: ELCD, data) -> dict[str, float]:
  """Velocity MSE on every (x, v) pair, and rollouts from each test demonstration's start vs the demonstration.

  Trajectory metrics (`zoo.metrics`, mean over demonstrations): `mean_nearest_distance` (the paper's "DTW",
  official `utils.dtwd_np`), true `dtw`, discrete `frechet`, `swept_error_area`; `final_distance` is the mean
  ‖x_end − x*‖ of the rollouts (RK4, dt 0.01, ≤ 1000 steps, stop when ‖Δx‖ < 1e-5) and
  `perturbed_final_distance` the same from starts perturbed by 0.3 × the demonstrations' spread (robustness).
  """
  from zoo import metrics as zm  # pylint: disable=import-outside-toplevel

  x = np.asarray(data["x"], np.float32)
  pred = np.concatenate([np.asarray(model.velocity(jnp.asarray(x[i:i + 4096]))) for i in range(0, len(x), 4096)])
  mse = float(np.mean((pred.astype(np.float64) - np.asarray(data["v"], np.float64)) ** 2))
  out = {"loss": mse, "velocity_mse": mse}
  if "demo" in data and "t" in data:
    rollouts, pos, _, _ = demo_rollouts(model, data)
    out.update(zm.trajectory_metrics(rollouts, list(pos)))
    target = np.asarray(model.target)
    out["final_distance"] = float(np.mean([np.linalg.norm(r[-1] - target) for r in rollouts]))
    out["rollout_steps"] = float(np.mean([len(r) - 1 for r in rollouts]))
    perturbed = np.asarray(model.rollout(jnp.asarray(perturbed_starts(pos), jnp.float32)))
    out["perturbed_final_distance"] = float(np.mean(np.linalg.norm(perturbed[:, -1] - target, axis=1)))
  return out


# --- the guarantee ------------------------------------------------------------------------------------------


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
    z = _rk4(field, z, dt)
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
  with jax.enable_x64(True):
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


# --- plots ----------------------------------------------------------------------------------------------------


def plot(model: ELCD, data, outdir) -> list[pathlib.Path]:
  """Streamlines of the learned field with the test demonstrations, rollouts from their starts and from perturbed
  starts; for d > 2 one panel per coordinate pair (0, 1), (2, 3), ... with the other coordinates at x*."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  rollouts, pos, _, _ = demo_rollouts(model, data)
  perturbed = np.asarray(model.rollout(jnp.asarray(perturbed_starts(pos), jnp.float32)))
  target = np.asarray(model.target)
  pairs = model.dim // 2
  fig, axes = plt.subplots(1, pairs, figsize=(5.2 * pairs, 5), squeeze=False)
  for p, ax in enumerate(axes[0]):
    i, j = 2 * p, 2 * p + 1
    pts = np.concatenate([pos[..., [i, j]].reshape(-1, 2), perturbed[..., [i, j]].reshape(-1, 2)])
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.15 * (hi - lo) + 1e-3
    gx, gy = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], 40),
                         np.linspace(lo[1] - pad[1], hi[1] + pad[1], 40))
    grid = np.tile(target, (gx.size, 1))
    grid[:, i], grid[:, j] = gx.ravel(), gy.ravel()
    vel = np.asarray(model.velocity(jnp.asarray(grid, jnp.float32)))
    ax.streamplot(gx, gy, vel[:, i].reshape(gx.shape), vel[:, j].reshape(gx.shape), color="0.7", density=1.2,
                  linewidth=0.7)
    for k in range(len(pos)):
      ax.plot(pos[k, :, i], pos[k, :, j], "k", lw=2, alpha=0.6, label="test demonstration" if k == 0 else None)
      ax.plot(rollouts[k][:, i], rollouts[k][:, j], "C3", lw=1.5, label="rollout from its start" if k == 0 else None)
      ax.plot(perturbed[k, :, i], perturbed[k, :, j], "C0--", lw=1, label="perturbed start" if k == 0 else None)
    ax.plot(target[i], target[j], "k*", ms=12)
    ax.set(xlabel=f"x{i}", ylabel=f"x{j}", title=f"coordinates ({i}, {j})" + (", others at x*" if pairs > 1 else ""))
  axes[0, 0].legend(loc="best", fontsize=8)
  fig.tight_layout()
  path = pathlib.Path(outdir) / "elcd_streamlines.png"
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return [path]


def demo(model: ELCD, outdir, dataset: str) -> str:
  """`zoo run`: rollouts from each test demonstration's start and from a perturbed start (0.3 × the
  demonstrations' spread), their distance to the target over time, and the streamline plot."""
  import zoo.data  # pylint: disable=import-outside-toplevel
  from zoo import metrics as zm  # pylint: disable=import-outside-toplevel

  data = zoo.data.load(dataset, "test")
  rollouts, pos, _, _ = demo_rollouts(model, data)
  starts = perturbed_starts(pos)
  perturbed = np.asarray(model.rollout(jnp.asarray(starts, jnp.float32), steps=1000))
  target = np.asarray(model.target)
  times = (0, 100, 250, 500, 1000)
  lines = [f"{len(pos)} test demonstrations of {dataset} ({model.dim}D, normalised units); RK4 dt 0.01.",
           "perturbed start: demonstration start + 0.3 × spread × N(0, I); ‖x(t) − x*‖ at t =",
           "demo | ‖Δstart‖ | " + " | ".join(f"{k / 100:g}" for k in times) + " | nearest-dist to demo (own start)"]
  for k in range(len(pos)):
    dist = np.linalg.norm(perturbed[k] - target, axis=1)
    nearest = zm.mean_nearest_distance(rollouts[k], pos[k])
    lines.append(f"{k:4d} | {np.linalg.norm(starts[k] - pos[k, 0]):8.3f} | "
                 + " | ".join(f"{dist[i]:.3g}" for i in times) + f" | {nearest:.3f}")
  lines.append("velocity at the perturbed starts: model.velocity(x) -> "
               f"{np.array2string(np.asarray(model.velocity(jnp.asarray(starts[:1], jnp.float32)))[0], precision=3)}")
  lines += [f"plot: {p}" for p in plot(model, data, outdir)]
  return "\n".join(lines)


FAMILY = Family(
    name="elcd", module=ELCD, loss=loss, evaluate=evaluate, verify=verify, plot=plot, demo=demo,
    paper="Jaffe, Davydov, Lapsekili, Singh, Bullo. Learning Neural Contracting Dynamics: Extended Linearization "
          "and Global Guarantees. NeurIPS 2024. arXiv:2402.08090")


# --- registered variants ---------------------------------------------------------------------------------------

_GUARANTEE = ("Globally exponentially stable at the target with a unique equilibrium: the latent field's extended "
              "linearization has symmetric part ⪯ −0.01·I for every state, so every trajectory converges and the "
              "field is contracting in the metric pulled back by the learned diffeomorphism.")
_DEVIATIONS = """Architecture, initialisation, data preprocessing and optimiser follow the official LASA demo
(seanjaffe1/Extended-Linearized-Contracting-Dynamics, lasa_demo.ipynb): P_s/P_a MLPs with 16 tanh units, a 2-step
rational-quadratic neural-spline flow (10 bins, tail bound 10, residual conditioner 30 × 2 blocks), Adam 1e-3,
batch 100, 100 epochs, the first 3 demonstrations for training. Differences: J_{φ⁻¹}(z)·f(z) is one forward-mode
Jacobian-vector product (the official code builds the full Jacobian); the trainer drops the last incomplete batch;
the permutations are drawn from JAX's PRNG, so the same seed gives different weights than PyTorch; test metrics are
on demonstrations 3-6 (the official notebook only plots demonstration 0)."""


# The official PyTorch ELCD on the same data, batches and seeds (benchmarks/elcd_official.py; mean ± std over
# seeds 0-2, test demonstrations): the card's reference column.
_TORCH = "official PyTorch, 3 seeds: "
_OFFICIAL = {
    "elcd-lasa2d-angle": {"mean_nearest_distance": _TORCH + "0.189 ± 0.036", "dtw": _TORCH + "139 ± 24",
                          "frechet": _TORCH + "0.335 ± 0.025", "swept_error_area": _TORCH + "4.4 ± 2.4",
                          "final_distance": _TORCH + "0.014 ± 0.015"},
    "elcd-lasa4d": {"mean_nearest_distance": _TORCH + "0.584 ± 0.12", "dtw": _TORCH + "401 ± 85",
                    "frechet": _TORCH + "0.649 ± 0.14", "swept_error_area": _TORCH + "18.3 ± 0.66",
                    "final_distance": _TORCH + "0.159 ± 0.17"},
    "elcd-lasa8d": {"mean_nearest_distance": _TORCH + "2.09 ± 0.29", "dtw": _TORCH + "1.59e+03 ± 2e+02",
                    "frechet": _TORCH + "2.77 ± 0.52", "swept_error_area": _TORCH + "39 ± 1.4",
                    "final_distance": _TORCH + "0.0972 ± 0.099"},
}

def _variant(name: str, dataset: str, dim: int, description: str, shapes: str) -> None:
  def factory():
    return dict(dim=dim, hidden=16, flow_steps=2)
  factory.__doc__ = description
  factory.__name__ = name.replace("-", "_")
  register(name, FAMILY, dataset=dataset, input_shape=(dim,), guarantee=_GUARANTEE,
           tags=("contraction", "stable-dynamics", "normalizing-flow", "imitation-learning", "lasa", shapes),
           deviations=_DEVIATIONS, reference=_OFFICIAL.get(name, {}))(factory)


# One 2D variant per LASA shape family (angles, C/G/J-like hooks, letters, sines and snakes, multi-modal).
LASA_2D = ("Angle", "CShape", "GShape", "JShape", "NShape", "PShape", "Sshape", "Sine", "Worm", "Multi_Models_1")
for _shape in LASA_2D:
  _variant(f"elcd-lasa2d-{_shape.lower().replace('_', '-')}", f"lasa/{_shape}", 2,
           f"ELCD on the LASA {_shape} shape (2D): a globally contracting motion policy learned from 3 demonstrations.",
           _shape)
_variant("elcd-lasa4d", "lasa/4d", 4,
         "ELCD on 4D LASA (PShape and NShape stacked, as the official 4D demo): a globally contracting policy.",
         "PShape+NShape")
_variant("elcd-lasa8d", "lasa/8d", 8,
         "ELCD on 8D LASA (PShape, NShape, Sshape and Angle stacked): a globally contracting motion policy.",
         "PShape+NShape+Sshape+Angle")
