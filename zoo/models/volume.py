"""Volume-preserving networks: compositions of shears, so det ∂N/∂z = 1 exactly and N⁻¹ is explicit.

The state z = (x, v) ∈ R^d × R^d follows the vector field X(x, v) = [F(v), G(x)], each half depending only on
the other half (divergence-free). Each layer is the splitting step of the slides

    x ← x + h F_k(v),        v ← v + h G_k(x)          (F_k(v) = P_k σ(A_k v + a_k), G_k(x) = Q_k σ(B_k x + b_k))

whose two sub-steps are shears with unit Jacobian determinant, so det ∂N/∂z = 1 for every input and every
weight, and whose inverse is explicit: v ← v − h G_k(x), then x ← x − h F_k(v), layers in reverse order.
The slides' field X(x, v) = [σ(Av + a), σ(Bx + b)] is the case P_k = Q_k = I with A_k, B_k square; the
read-out P_k, Q_k (width `hidden`) lets one layer represent non-monotone forces (such as −sin q) and keeps
each sub-step a shear. σ = tanh. Float64.

Celledoni, Murari, Owren, Schönlieb, Sherry, "Dynamical systems' based neural networks", SIAM J. Sci. Comput.
2023, Sec. 3 (volume preservation); the seed slides (Murari, "Dynamical systems' based neural networks").
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.registry import Check, Family, check_input, register

F64 = jnp.float64
_DET_TOL = 1e-12      # |log|det J|| in float64: ~1e-16 per shear × a few dozen operations
_INVERSE_TOL = 1e-12  # |N⁻¹(N(z)) − z| / (1 + |z|)


class ShearMLP(nnx.Module):
  """u ↦ P σ(A u + a): (batch, d) -> (batch, d), one hidden layer of width `hidden` (P = I when hidden is None).

  Arguments: dim d, hidden width (None: the slides' σ(Au + a) with A square), scale of the initial read-out.
  """

  def __init__(self, dim: int, hidden: int | None, *, rngs: nnx.Rngs):
    width = dim if hidden is None else hidden
    self.inner = nnx.Linear(dim, width, dtype=F64, param_dtype=F64, rngs=rngs,
                            kernel_init=nnx.initializers.variance_scaling(1.0, "fan_in", "normal"),
                            bias_init=nnx.initializers.normal(1.0))
    self.outer = None if hidden is None else nnx.Linear(
        width, dim, use_bias=False, dtype=F64, param_dtype=F64, rngs=rngs,
        kernel_init=nnx.initializers.variance_scaling(0.1, "fan_in", "normal"))

  def __call__(self, u: jax.Array) -> jax.Array:
    y = jnp.tanh(self.inner(u))
    return y if self.outer is None else self.outer(y)


class VolumeLayer(nnx.Module):
  """One splitting step x ← x + h F(v), v ← v + h G(x): det ∂/∂(x, v) = 1, inverse explicit.

  `preserving=False` is an ablation whose first update reads the whole state, x ← x + h F(x + v), which is not
  a shear (its determinant is not 1): used to show that `verify` can fail.
  Call: z: (batch, 2d) -> (batch, 2d).
  """

  def __init__(self, dim: int, hidden: int | None, step: float, *, preserving: bool = True, rngs: nnx.Rngs):
    self.dim, self.step, self.preserving = dim, float(step), preserving
    self.f = ShearMLP(dim, hidden, rngs=rngs)
    self.g = ShearMLP(dim, hidden, rngs=rngs)

  def __call__(self, z: jax.Array) -> jax.Array:
    x, v = z[:, : self.dim], z[:, self.dim:]
    x = x + self.step * self.f(v if self.preserving else x + v)
    v = v + self.step * self.g(x)
    return jnp.concatenate([x, v], axis=1)

  def inverse(self, z: jax.Array) -> jax.Array:
    if not self.preserving:
      raise ValueError("the non-preserving ablation has no closed-form inverse")
    x, v = z[:, : self.dim], z[:, self.dim:]
    v = v - self.step * self.g(x)
    x = x - self.step * self.f(v)
    return jnp.concatenate([x, v], axis=1)


class VolumeNet(nnx.Module):
  """A volume-preserving network: `layers` splitting steps of step size `step`.

  Guarantee: det ∂N/∂z (z) = 1 for every z and every weight (float64 round-off), and N⁻¹ = `inverse` exactly.

  Arguments:
    dim: the state dimension 2d (split as x = z[:d], v = z[d:]). layers: number of splitting steps. hidden:
    width of each F_k, G_k (None: the slides' σ(Au + a)). step: h of each layer (default: time_step / layers,
    so that N has the form of a splitting integrator over time_step). time_step: the flow time N approximates.
    preserving: see `VolumeLayer` (False: an ablation that breaks the guarantee).
  Call: z: (batch, dim) float -> (batch, dim) float64 (computed under `jax.enable_x64(True)` whatever the caller's
  mode; keep working on it as numpy or under x64, else JAX rounds further arithmetic to float32).
  """

  def __init__(self, dim: int = 2, layers: int = 8, hidden: int | None = 16, step: float | None = None,
               time_step: float = 0.5, preserving: bool = True, *, rngs: nnx.Rngs):
    if dim % 2:
      raise ValueError(f"dim must be even (the state splits into x and v halves); got {dim}.")
    self.dim = dim
    self.step = float(time_step / layers if step is None else step)
    with jax.enable_x64(True):
      self.layers = nnx.List([VolumeLayer(dim // 2, hidden, self.step, preserving=preserving, rngs=rngs)
                              for _ in range(layers)])

  def __call__(self, z: jax.Array) -> jax.Array:
    check_input(z, (self.dim,), "z")
    with jax.enable_x64(True):
      z = jnp.asarray(z, F64)
      for layer in self.layers:
        z = layer(z)
      return z

  def inverse(self, z: jax.Array) -> jax.Array:
    """N⁻¹(z) in closed form: (batch, dim) -> (batch, dim) float64."""
    check_input(z, (self.dim,), "z")
    with jax.enable_x64(True):
      z = jnp.asarray(z, F64)
      for layer in reversed(self.layers):
        z = layer.inverse(z)
      return z

  def rollout(self, z0: jax.Array, steps: int) -> jax.Array:
    """Iterates N: z0 (batch, dim) -> (batch, steps + 1, dim) float64 (z0 first)."""
    with jax.enable_x64(True):
      z = jnp.asarray(z0, F64)
      out = [z]
      for _ in range(steps):
        z = self(z)
        out.append(z)
      return jnp.stack(out, axis=1)

  def log_abs_det_jacobian(self, z: jax.Array) -> jax.Array:
    """log|det ∂N/∂z| at each row of z (batch, dim) by forward-mode autodiff: (batch,) float64."""
    with jax.enable_x64(True):
      z = jnp.asarray(z, F64)
      jac = jax.vmap(jax.jacfwd(lambda p: self(p[None])[0]))(z)
      return jnp.linalg.slogdet(jac)[1]


# --- task: the time-h flow map of the pendulum -------------------------------------------------------------


def loss(model: VolumeNet, batch) -> tuple[jax.Array, dict]:
  mse = jnp.mean((model(batch["x"]) - batch["y"]) ** 2)
  return mse, {"mse": mse}


_METHODS = {name: nnx.jit(lambda m, z, _name=name: getattr(m, _name)(z))
            for name in ("__call__", "inverse", "log_abs_det_jacobian")}  # one jitted function each: compiled
                                                                        # once per architecture and batch shape


def _jitted(model: VolumeNet, method: str, z: np.ndarray) -> np.ndarray:
  with jax.enable_x64(True):
    return np.asarray(_METHODS[method](model, jnp.asarray(z, F64)))


ROLLOUT_STEPS = 200  # 100 time units of the pendulum (h = 0.5): ≈ 15 periods of a small oscillation


def _rollout_states(n: int = 8, seed: int = 0) -> np.ndarray:
  """Initial states of energy H ≤ 0.5 (inside the training box), fixed by `seed`: (n, 2)."""
  from zoo.data import pendulum  # pylint: disable=import-outside-toplevel

  rng = np.random.RandomState(seed)
  out = []
  while len(out) < n:
    z = np.array([rng.uniform(-2.1, 2.1), rng.uniform(-1.8, 1.8)])
    if pendulum.energy(z) <= 0.5:
      out.append(z)
  return np.stack(out)


def rollout_errors(model: VolumeNet, steps: int = ROLLOUT_STEPS) -> dict[str, float]:
  """Iterates the learned map `steps` times from 8 oscillating states against the true flow (DOP853 1e-12)."""
  from zoo.data import pendulum  # pylint: disable=import-outside-toplevel

  z0 = _rollout_states()
  learned = _jitted_rollout(model, z0, steps)
  true = pendulum.flow(z0, model_time(model) * np.arange(steps + 1))
  err = np.linalg.norm(learned - true, axis=2)
  energy_drift = np.abs(pendulum.energy(learned) - pendulum.energy(z0)[:, None])
  return {"rollout_error_final": float(err[:, -1].mean()), "rollout_error_max": float(err.max()),
          "rollout_energy_drift_max": float(energy_drift.max())}


def model_time(model: VolumeNet) -> float:
  return model.step * len(model.layers)


@functools.partial(nnx.jit, static_argnames="steps")
def _rollout_scan(m: VolumeNet, z: jax.Array, steps: int) -> jax.Array:
  def body(z, _):
    z = m(z)
    return z, z
  _, zs = jax.lax.scan(body, z, None, length=steps)
  return jnp.concatenate([z[:, None], jnp.swapaxes(zs, 0, 1)], axis=1)


def _jitted_rollout(model: VolumeNet, z0: np.ndarray, steps: int) -> np.ndarray:
  with jax.enable_x64(True):
    return np.asarray(_rollout_scan(model, jnp.asarray(z0, F64), steps))


def evaluate(model: VolumeNet, data) -> dict[str, float]:
  """Test MSE of the flow map; max |log|det J||, max inverse error on the split; long-rollout error vs the true
  flow (mean final error, max error, max energy drift over 200 steps from 8 oscillating states)."""
  x, y = np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64)
  pred = _jitted(model, "__call__", x)
  back = _jitted(model, "inverse", pred)
  logdet = _jitted(model, "log_abs_det_jacobian", x)
  mse = float(np.mean((pred - y) ** 2))
  return {"loss": mse, "test_mse": mse, "max_abs_log_det": float(np.max(np.abs(logdet))),
          "max_inverse_error": float(np.max(np.abs(back - x))), **rollout_errors(model)}


def verify(model: VolumeNet, num_points: int = 10_000, seed: int = 0) -> list[Check]:
  """det J = 1 (|log|det J|| ≤ 1e-12 by jax.jacfwd, float64) and N⁻¹(N(z)) = z on random states spanning
  scales 1e-2 to 1e2 (half inside the data box), and |log|det J|| of the inverse too."""
  rng = np.random.default_rng(seed)
  scale = 10.0 ** rng.uniform(-2, 2, (num_points, 1))
  z = rng.uniform(-1, 1, (num_points, model.dim)) * scale
  z[: num_points // 2] = rng.uniform(-2.1, 2.1, (num_points // 2, model.dim))
  logdet = np.abs(_jitted(model, "log_abs_det_jacobian", z))
  forward = _jitted(model, "__call__", z)
  checks = [Check("|log|det ∂N/∂z|| (volume preservation)", float(logdet.max()) <= _DET_TOL, float(logdet.max()),
                  _DET_TOL, f"jax.jacfwd at {num_points} states, |z| from 1e-2 to 1e2, float64")]
  try:
    back = _jitted(model, "inverse", forward)
  except ValueError as e:
    checks.append(Check("N⁻¹(N(z)) = z (closed-form inverse)", False, float("inf"), _INVERSE_TOL, str(e)))
    return checks
  rel = np.max(np.abs(back - z) / (1 + np.abs(z)))
  checks.append(Check("N⁻¹(N(z)) = z (closed-form inverse)", float(rel) <= _INVERSE_TOL, float(rel), _INVERSE_TOL,
                      "max |N⁻¹(N(z)) − z| / (1 + |z|) over the same states"))
  return checks


def plot(model: VolumeNet, data, outdir) -> list[pathlib.Path]:
  """Long rollout of the learned map vs the true pendulum flow: phase portrait, error and energy over time,
  and |log|det J|| over the phase plane."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  from zoo.data import pendulum  # pylint: disable=import-outside-toplevel

  del data
  z0 = _rollout_states()
  steps = ROLLOUT_STEPS
  t = model_time(model) * np.arange(steps + 1)
  learned = _jitted_rollout(model, z0, steps)
  true = pendulum.flow(z0, t)
  fig, axes = plt.subplots(1, 4, figsize=(17, 3.9))
  for j in range(len(z0)):
    axes[0].plot(true[j, :, 0], true[j, :, 1], color="0.6", lw=1)
    axes[0].plot(learned[j, :, 0], learned[j, :, 1], ".", ms=2, color=f"C{j}")
  axes[0].set(xlabel="q", ylabel="p", title=f"{steps} steps: learned (dots), true flow (grey)")
  err = np.linalg.norm(learned - true, axis=2)
  axes[1].semilogy(t[1:], err[:, 1:].T)
  axes[1].set(xlabel="t", ylabel="‖learned − true‖", title="rollout error")
  axes[2].semilogy(t[1:], np.abs(pendulum.energy(learned) - pendulum.energy(z0)[:, None])[:, 1:].T)
  axes[2].set(xlabel="t", ylabel="|H − H(0)|", title="energy drift (not enforced)")
  q, p = np.meshgrid(np.linspace(-3, 3, 61), np.linspace(-3, 3, 61))
  grid = np.stack([q.ravel(), p.ravel()], 1)
  logdet = np.abs(_jitted(model, "log_abs_det_jacobian", grid)).reshape(q.shape)
  im = axes[3].pcolormesh(q, p, np.log10(logdet + 1e-18), shading="auto")
  fig.colorbar(im, ax=axes[3], label="log10 |log|det J||")
  axes[3].set(xlabel="q", ylabel="p", title="volume preservation (float64)")
  fig.tight_layout()
  path = pathlib.Path(outdir) / "volnet_pendulum.png"
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return [path]


def card_sections(model: VolumeNet, metrics: dict[str, float]) -> dict[str, str]:
  """Card sections: the system learned and why, and the long rollout against the true flow."""
  del model
  system = (
      "The pendulum q' = p, p' = −sin q (H = p²/2 − cos q), time-0.5 flow map, data from `zoo.data.pendulum` (2000 "
      "states in [−2.1, 2.1]×[−1.8, 1.8], DOP853 at 1e-12). Why: it is Hamiltonian, so its flow preserves "
      "phase-space area exactly — the structure this network enforces — while being nonlinear (a non-monotone "
      "force, oscillations of amplitude-dependent period, a separatrix), and its true flow is computable to "
      "round-off for any horizon, so long rollouts can be compared against it.")
  rollout = (
      f"Iterating the learned map {ROLLOUT_STEPS} times (t = 0 … {ROLLOUT_STEPS * 0.5:g}, ≈ 15 periods) from 8 "
      f"oscillating states (H ≤ 0.5) and comparing with the true flow: mean final error "
      f"{metrics.get('rollout_error_final', float('nan')):.3g}, max error "
      f"{metrics.get('rollout_error_max', float('nan')):.3g} (mostly phase error: the error grows linearly, the "
      f"orbits stay closed), max energy drift {metrics.get('rollout_energy_drift_max', float('nan')):.3g} (energy is "
      f"not enforced, only volume). One-step test MSE {metrics.get('test_mse', float('nan')):.3g}; "
      f"max |log|det J|| {metrics.get('max_abs_log_det', float('nan')):.2g} and max inverse error "
      f"{metrics.get('max_inverse_error', float('nan')):.2g} on the test states (float64). The figure below: phase "
      "portrait, error and energy drift over time, and |log|det J|| over the phase plane.")
  return {"Data: the pendulum, and why": system, "Long rollout against the true flow": rollout}


FAMILY = Family(
    name="volume", module=VolumeNet, loss=loss, evaluate=evaluate, verify=verify, plot=plot, x64=True,
    card_sections=card_sections,
    paper="Celledoni, Murari, Owren, Schönlieb, Sherry. Dynamical systems' based neural networks. SIAM J. Sci. "
          "Comput. 2023. arXiv:2210.02373")


@register("volnet-pendulum", FAMILY, dataset="pendulum", input_shape=(2,),
          guarantee="Volume-preserving: det ∂N/∂z = 1 for every input (float64 round-off), with a closed-form "
                    "inverse N⁻¹.",
          tags=("volume-preserving", "invertible", "hamiltonian", "dynamical-systems", "pendulum"),
          deviations=(
              "The paper has no volume-preserving experiment (and no official code for it); this variant learns "
              "the time-0.5 flow map of the pendulum q' = p, p' = −sin q, a Hamiltonian (so area-preserving) "
              "system with a non-monotone force and a separatrix, whose flow is integrated to 1e-12 (DOP853) — "
              "the learned map and the true one share the structure being enforced. Each half-step "
              "F_k(v) = P_k tanh(A_k v + a_k) has a linear read-out P_k (width 16) instead of the slides' "
              "σ(A v + a) with square A: in 2-D the latter is a monotone function of one variable and cannot "
              "represent −sin q; the read-out keeps every sub-step a shear (det 1)."))
def volnet_pendulum():
  """Volume-preserving network (8 shear splitting steps) learning the time-0.5 flow map of the pendulum; det J = 1
  exactly and the inverse is explicit."""
  return dict(dim=2, layers=8, hidden=16, time_step=0.5)
