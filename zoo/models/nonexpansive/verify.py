"""The guarantee's verification: per-layer operator norms, step-size conditions, their product L, and the
empirical ratio ‖N(x) − N(y)‖/‖x − y‖ on random and adversarial pairs, all on the given weights."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from zoo import attacks
from zoo.models.nonexpansive.model import NonexpansiveResNet, lipschitz_bound
from zoo.nn import lipschitz as lip
from zoo.registry import Check

VERIFY_TOL = 1e-3               # float32 and power-iteration accuracy (~1e-6 per layer after refresh)
ASCENT_LR = 1e-2
MIN_DELTA = 1e-3               # ‖δ‖ below which an adversarial pair's ratio is round-off, not signal


@functools.partial(jax.jit, static_argnames="graphdef")
def _ascent_step(graphdef: nnx.GraphDef, state: nnx.State, z: tuple[jax.Array, jax.Array], opt_state: Any):
  """One Adam step (lr `ASCENT_LR`) on z = (x, δ), each (starts, H, W, C), maximising Σ log ‖N(x + δ) − N(x)‖/‖δ‖.
  Returns (z, opt_state, the ratios ‖N(x + δ) − N(x)‖/‖δ‖ at the input z, (starts,))."""
  def neg_log_ratio(z):
    xa, da = z
    f = nnx.merge(graphdef, state)
    diff = f(xa + da) - f(xa)
    delta2 = jnp.sum(da.reshape(da.shape[0], -1) ** 2, 1)
    log_ratio2 = jnp.log(jnp.sum(diff ** 2, axis=1) + 1e-30) - jnp.log(delta2 + 1e-30)
    # A pair whose δ shrank below MIN_DELTA is float32 noise over a tiny step, not a ratio: it does not count.
    counted = jnp.isfinite(log_ratio2) & (delta2 > MIN_DELTA ** 2)
    return -jnp.sum(log_ratio2), jnp.where(counted, jnp.exp(0.5 * log_ratio2), 0.0)

  (_, ratios), grads = jax.value_and_grad(neg_log_ratio, has_aux=True)(z)
  updates, opt_state = optax.adam(ASCENT_LR).update(grads, opt_state)
  return optax.apply_updates(z, updates), opt_state, ratios


def empirical_lipschitz(model: NonexpansiveResNet, num_pairs: int = 2000, ascent_starts: int = 64,
                        ascent_steps: int = 200, seed: int = 0) -> tuple[float, float]:
  """max ‖N(x) − N(y)‖/‖x − y‖ over (random pairs, pairs found by gradient ascent on the log-ratio).

  Random pairs: x uniform in [0, 1]^d and y = x + δ with ‖δ‖ log-uniform in [1e-2, 10], half of them independent
  uniform points. Adversarial: Adam (lr 1e-2) on (x, δ) from `ascent_starts` random pairs, the best ratio seen.
  """
  shape = model.input_shape
  rng = np.random.default_rng(seed)
  x = rng.uniform(0, 1, (num_pairs, *shape)).astype(np.float32)
  direction = rng.normal(size=x.shape).astype(np.float32)
  direction /= np.linalg.norm(direction.reshape(num_pairs, -1), axis=1).reshape(-1, 1, 1, 1)
  radius = 10 ** rng.uniform(-2, 1, (num_pairs, 1, 1, 1)).astype(np.float32)
  y = x + radius * direction
  y[: num_pairs // 2] = rng.uniform(0, 1, (num_pairs // 2, *shape))
  fx, fy = attacks.predict(model, x), attacks.predict(model, y)
  random_ratio = np.linalg.norm(fx - fy, axis=1) / np.linalg.norm((x - y).reshape(num_pairs, -1), axis=1)

  graphdef, state = nnx.split(model)
  xa = jnp.asarray(rng.uniform(0, 1, (ascent_starts, *shape)), jnp.float32)
  da = jnp.asarray(rng.normal(size=(ascent_starts, *shape)) * 0.1, jnp.float32)
  z = (xa, da)
  opt_state = optax.adam(ASCENT_LR).init(z)
  best = jnp.zeros(())
  for _ in range(ascent_steps):
    z, opt_state, ratios = _ascent_step(graphdef, state, z, opt_state)
    best = jnp.maximum(best, jnp.max(ratios))
  return float(random_ratio.max()), float(best)


def _norm_detail(m: dict[str, Any]) -> str:
  exact = "" if m["exact_sigma"] is None else f", exact SVD {m['exact_sigma']:.7f}"
  return f"power iteration {m['power_sigma']:.7f}{exact}"


def _layer_checks(records: list[dict[str, Any]], bound: float) -> list[Check]:
  """Each layer's operator norms ≤ 1 and, for each pair, the step-size condition and its Lipschitz bound ≤ 1."""
  checks = []
  for r in records:
    if r["kind"] == "linear":
      s = r["sigma"]
      checks.append(Check(f"‖{r['name']}‖₂ ≤ 1", s["sigma"] <= bound, s["sigma"], bound, _norm_detail(s)))
    else:
      for label, s in (("W (expansive)", r["sigma_W"]), ("A (contractive)", r["sigma_A"])):
        checks.append(Check(f"‖{r['name']}.{label}‖₂ ≤ 1", s["sigma"] <= bound, s["sigma"], bound,
                            _norm_detail(s)))
      cond = float(lip.paper_rate(r["h_c"]) * (1 + r["h_e"])) if 0 <= r["h_c"] <= 1 else float("inf")
      checks.append(Check(f"{r['name']} step sizes √(1−h_C+h_C²)(1+h_E) ≤ 1", cond <= bound, cond, bound,
                          f"h_C = {r['h_c']:.4f}, h_E = {r['h_e']:.4f}"))
      checks.append(Check(
          f"{r['name']} Lipschitz bound ≤ 1", r["bound"] <= bound, r["bound"], bound,
          f"contractive_bound(h_C, ‖A‖ = {r['sigma_A']['sigma']:.6f}, σ_min(A) = {r['sigma_A']['sigma_min']:.4f})"
          f" × (1 + h_E‖W‖)"))
  return checks


def verify(model: NonexpansiveResNet, iters: int = 1000, ascent_steps: int = 200,
           lipschitz_target: float | None | str = "auto") -> list[Check]:
  """The certificate on the given weights.

  Non-expansive claim (`lipschitz_target=1.0`; "auto" picks it for `constrained=True`): every layer's operator norm
  ≤ 1 (power iteration, `iters` iterations from the stored vector and 2 random starts, and exactly by SVD for
  operators of ≤ 4096 inputs), the step-size condition, each pair's Lipschitz bound, their product L ≤ 1, and the
  empirical ratio ‖N(x) − N(y)‖/‖x − y‖ ≤ 1 on random and adversarial pairs (`ascent_steps` of gradient ascent).
  Tolerance 1e-3 (float32 arithmetic and the power iteration's accuracy).

  Baseline (`lipschitz_target=None`; "auto" picks it for `constrained=False`, which claims no constraint): the measured
  upper bound L = Π layer bounds is finite and the empirical ratios on random and adversarial pairs stay ≤ L, i.e.
  the certificate used for its certified accuracy is sound. Pass `lipschitz_target=1.0` to test a baseline
  against the non-expansive claim (it fails).
  """
  if lipschitz_target == "auto":
    lipschitz_target = 1.0 if model.constrained else None
  records = model.layer_bounds(iters=iters, random_starts=2)
  lipschitz = lipschitz_bound(records)
  if lipschitz_target is None:
    layers = ", ".join(f"{r['name']} {r['bound']:.3g}" for r in records)
    checks = [Check("Lipschitz upper bound L = Π layer bounds (measured, not constrained)",
                    math.isfinite(lipschitz), lipschitz, float("inf"), layers)]
    bound = lipschitz * (1 + VERIFY_TOL)
  else:
    bound = lipschitz_target * (1 + VERIFY_TOL)
    checks = _layer_checks(records, bound)
    checks.append(Check("Lipschitz certificate L = Π layer bounds ≤ 1", lipschitz <= bound, lipschitz, bound,
                        f"product over {len(records)} layers (ReLU, max pooling: 1)"))
  what = "≤ 1" if lipschitz_target is not None else "≤ L"
  random_ratio, ascent_ratio = empirical_lipschitz(model, ascent_steps=ascent_steps)
  checks.append(Check(f"empirical ‖N(x)−N(y)‖/‖x−y‖ {what}, random pairs", random_ratio <= bound, random_ratio,
                      bound, "2000 pairs, ‖x − y‖ from 1e-2 to 10"))
  checks.append(Check(f"empirical ‖N(x)−N(y)‖/‖x−y‖ {what}, adversarial pairs", ascent_ratio <= bound,
                      ascent_ratio, bound, f"gradient ascent on the ratio (Adam, 64 starts × {ascent_steps} steps)"))
  return checks
