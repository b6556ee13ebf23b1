"""The family's hooks besides the learner: the upper layer's loss on a batch of transitions, evaluation by
episodes in PointGoal1 (needs the `rl` extra), and the verification of what `model(obs)` guarantees.

`verify` checks the safeguard as users call it, on observations drawn like PointGoal1's (sensors, lidar in [0, 1]),
without MuJoCo: the action lies in the box, a proposal that satisfies the relaxed chance constraint passes unchanged,
and every corrected action either satisfies it or used every correction step. How often the agent enters hazards
is measured by `evaluate` in the environment, not certified.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from zoo.models.acs import ppo
from zoo.models.acs.model import ACSAgent
from zoo.registry import Batch, Check

VERIFY_SAMPLES = 512


def loss(model: ACSAgent, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
  """PPO-clip loss of the policy on transitions {"obs" (n, obs_dim), "action" (n, act_dim) executed, "log_prob" (n,)
  of the executed action when collected, "advantage" (n,)}: what the learner minimises for every method."""
  return ppo.policy_loss(model.policy, jnp.asarray(batch["obs"]), jnp.asarray(batch["action"]),
                         jnp.asarray(batch["log_prob"]), jnp.asarray(batch["advantage"]))


def evaluate(model: ACSAgent, data: Mapping[str, Any]) -> dict[str, float]:
  """Deterministic episodes in PointGoal1 (safeguard on): mean `return` and `cost` per episode (± `*_std`), the
  `violation_rate` (share of steps inside a hazard), `cost_sum` and `episodes`; for ACS the safeguard's
  `guard_iterations`, `guard_corrected`, `guard_unmet`. `data` is the evaluation setting the learner records
  (`Learner.eval_data`: episode_length, num_envs, steps, budget, rounds, seed, guard)."""
  from zoo.models.acs import learner  # pylint: disable=import-outside-toplevel

  return learner.episodes(model, data)


def observations(obs_dim: int, n: int = VERIFY_SAMPLES, seed: int = 0) -> np.ndarray:
  """`(n, obs_dim)` observations shaped like PointGoal1's: 12 sensor values ~ N(0, 1), then lidar bins in [0, 1]
  (most empty, some close)."""
  rng = np.random.default_rng(seed)
  obs = np.empty((n, obs_dim), np.float32)
  sensors = min(12, obs_dim)
  obs[:, :sensors] = rng.normal(size=(n, sensors))
  lidar = rng.uniform(size=(n, obs_dim - sensors)) * (rng.uniform(size=(n, obs_dim - sensors)) < 0.3)
  obs[:, sensors:] = lidar
  return obs


def verify(model: ACSAgent) -> list[Check]:
  """Properties of `model(obs)` on `VERIFY_SAMPLES` PointGoal1-like observations (see the module docstring)."""
  obs = jnp.asarray(observations(model.obs_dim))
  safe = np.asarray(model(obs))
  outside = float(np.max(np.maximum(np.abs(safe) - model.high, 0.0)))
  checks = [Check("model(obs) lies in the action box [−1, 1]", outside <= 0.0, outside, 0.0,
                  f"largest excess over {len(safe)} observations")]
  if model.guarded:
    mean = model.policy(obs)
    fixed, bound = model.correction(obs, mean)
    before = np.asarray(model.safe_advantage(obs, jnp.clip(mean, model.low, model.high)) - bound)
    moved = np.max(np.abs(np.asarray(fixed.action) - np.asarray(mean)), axis=-1)
    satisfied = before >= 0
    untouched = float(moved[satisfied].max()) if satisfied.any() else 0.0
    checks.append(Check("a proposal that satisfies A_s(s, a) ≥ −η(V_s(s) − (1 − ε)) passes unchanged",
                        untouched == 0.0, untouched, 0.0,
                        f"largest change over the {int(satisfied.sum())} satisfied proposals"))
    residual, iterations = np.asarray(fixed.residual), np.asarray(fixed.iterations)
    stopped_early = (residual < 0) & (iterations < model.steps)
    checks.append(Check("every corrected action satisfies the constraint or used all correction steps",
                        not stopped_early.any(), float(stopped_early.mean()), 0.0,
                        f"share of {len(residual)} actions; constraint met before {float(satisfied.mean()):.3g}, "
                        f"after {float((residual >= 0).mean()):.3g} (ε = {float(model.epsilon.value):.3g})"))
    agrees = float(np.max(np.abs(np.clip(np.asarray(fixed.action), model.low, model.high) - safe)))
    checks.append(Check("model(obs) is the corrected policy mean", agrees <= 1e-6, agrees, 1e-6,
                        "largest difference to the safeguard's output"))
  if model.method == "ppo-lag":
    lam = float(model.multiplier.value)
    checks.append(Check("Lagrange multiplier λ ≥ 0", lam >= 0.0, -lam, 0.0, f"λ = {lam:.4g}"))
  return checks
