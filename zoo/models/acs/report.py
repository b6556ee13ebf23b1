"""The family's hooks besides the learner: the upper layer's loss on a batch of transitions, evaluation by
episodes in PointGoal1 (needs the `rl` extra), and the verification of what `model(obs)` guarantees.

`verify` checks the safeguard as users call it, on observations drawn like PointGoal1's (sensors, lidar in [0, 1]),
without MuJoCo: the action lies in the box, a proposal that satisfies the relaxed chance constraint passes unchanged,
and every corrected action either satisfies it or used every correction step. How often the agent enters hazards
is measured in the environment, not certified: by `evaluate` during training and by `measure` (what `zoo verify`
adds, `MEASURE_EPISODES` deterministic episodes on layouts apart from training's and evaluation's; needs the `rl`
extra).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from zoo.models.acs import ppo
from zoo.models.acs.model import ACSAgent
from zoo.registry import Batch, Check

VERIFY_SAMPLES = 512
MEASURE_EPISODES = 128  # 8 rounds of 16 PointGoal1 episodes of 1000 steps
MEASURE_SEED = 2_000_029  # their layouts: keys from (MEASURE_SEED, round), apart from training's and evaluation's


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


def episode_costs(model: ACSAgent, *, episodes: int = MEASURE_EPISODES, guard: bool = True, seed: int = MEASURE_SEED,
                  num_envs: int = 16, episode_length: int = 1000, steps: int | None = None,
                  budget: float | None = None) -> dict[str, np.ndarray]:
  """Deterministic PointGoal1 episodes (policy mean; the safeguard on unless `guard` is False) in rounds of
  `num_envs` environments × `steps` (default `episode_length`) steps until at least `episodes` have finished, layouts
  from (`seed`, round): `cost (n,)` and `reward (n,)` per finished episode (cost = steps inside a hazard),
  `violation_rate` (share of all steps with c = 1). The defaults are the training's rollout program (the same
  shapes), so a trained model's compilation is usually in the cache."""
  from zoo.models.acs import env as acs_env  # pylint: disable=import-outside-toplevel
  from zoo.models.acs import learner  # pylint: disable=import-outside-toplevel

  steps = steps or episode_length
  _, run = learner.runner(episode_length, num_envs, steps, acs_env.BUDGET if budget is None else budget)
  per_round = num_envs * (steps // episode_length)
  costs, rewards, steps_in_hazard, steps_taken = [], [], 0.0, 0
  for r in range(-(-episodes // per_round)):
    out = run(learner.actor(model), jax.random.fold_in(jax.random.key(seed), r), jnp.asarray(bool(guard)),
              jnp.asarray(True))
    done = np.asarray(out.done)
    costs.append(np.asarray(out.episode_cost)[done])
    rewards.append(np.asarray(out.episode_reward)[done])
    steps_in_hazard += float(np.asarray(out.cost).sum())
    steps_taken += int(np.asarray(out.cost).size)
  cost, reward = np.concatenate(costs), np.concatenate(rewards)
  return {"cost": cost, "reward": reward, "violation_rate": np.asarray(steps_in_hazard / steps_taken)}


def measure(model: ACSAgent) -> list[Check]:
  """What `zoo verify` measures in PointGoal1 (`MEASURE_EPISODES` deterministic episodes, needs the `rl` extra):
  `Check`s of kind "measured" (statistics against stated bounds; the safeguard does not certify them).

  ACS: the violation rate with the safeguard on is at most d / 1000 = 0.025 (mean episode cost within the budget),
  the share of episodes with cost < d is at least 1 − ε (the chance constraint the safeguard enforces, ε the
  model's current threshold), and the violation rate is lower with the safeguard on than off (raw policy mean).
  PPO-Lagrangian: the violation rate is at most d / 1000. Unconstrained PPO: none (it makes no safety claim)."""
  from zoo.models.acs import env as acs_env  # pylint: disable=import-outside-toplevel

  if not model.guarded and model.method != "ppo-lag":
    return []
  budget, length = acs_env.BUDGET, 1000
  on = episode_costs(model, guard=True)
  rate, n = float(on["violation_rate"]), len(on["cost"])
  summary = (f"{n} episodes: cost per episode {on['cost'].mean():.3g} ± {on['cost'].std():.3g}, return "
             f"{on['reward'].mean():.3g} ± {on['reward'].std():.3g}")
  label = "with the safeguard on" if model.guarded else "(policy mean)"
  checks = [Check(f"violation rate {label} ≤ d / episode length = {budget:g}/{length}", rate <= budget / length,
                  rate, budget / length, summary, kind="measured")]
  if model.guarded:
    eps = float(model.epsilon.value)
    share = float(np.mean(on["cost"] < budget))
    checks.append(Check(f"share of episodes with cost < d = {budget:g} ≥ 1 − ε (chance constraint, ε = {eps:.3g})",
                        share >= 1 - eps, share, 1 - eps, f"{int(np.sum(on['cost'] < budget))} of {n} episodes",
                        kind="measured"))
    off = episode_costs(model, guard=False)
    rate_off = float(off["violation_rate"])
    checks.append(Check("the safeguard lowers the violation rate (on − off < 0)", rate - rate_off < 0,
                        rate - rate_off, 0.0,
                        f"on {rate:.4f}, off {rate_off:.4f}; off: cost per episode {off['cost'].mean():.3g} ± "
                        f"{off['cost'].std():.3g}, return {off['reward'].mean():.3g} ± {off['reward'].std():.3g}",
                        kind="measured"))
  return checks


def trajectories(model: ACSAgent, *, num_envs: int = 4, episode_length: int = 1000, seed: int = 0,
                 guard: bool = True) -> dict[str, np.ndarray]:
  """Deterministic episodes from layouts drawn from `seed`, with positions: `xy (T, B, 2)` of the agent before each
  step, `goal (T, B, 2)` (the current goal; it respawns when reached), `hazards (B, H, 2)`, `cost, reward,
  iterations (T, B)` (the safeguard's steps). Needs the `rl` extra; compiles once per process and shape."""
  from zoo.models.acs import learner  # pylint: disable=import-outside-toplevel

  run, hazard_radius = _tracer(num_envs, episode_length)
  hazards, (xy, goal, cost, reward, iterations) = run(learner.actor(model), jax.random.key(seed),
                                                      jnp.asarray(bool(guard)))
  out = {"xy": xy, "goal": goal, "cost": cost, "reward": reward, "iterations": iterations, "hazards": hazards}
  return {**{k: np.asarray(v) for k, v in out.items()}, "hazard_radius": np.asarray(hazard_radius)}


@functools.lru_cache(maxsize=4)
def _tracer(num_envs: int, episode_length: int):
  from flax import nnx  # pylint: disable=import-outside-toplevel

  from zoo.models.acs import env as acs_env  # pylint: disable=import-outside-toplevel

  env = acs_env.PointGoal1(episode_length=episode_length)
  batched = acs_env.BatchedEnv(env, num_envs)

  @nnx.jit
  def run(actor, key, guard):
    state = batched.reset(key)
    graphdef, params = nnx.split(actor)

    def body(s, k):
      act = nnx.merge(graphdef, params).act(s.obs, k, guard=guard, deterministic=True)
      xy = jax.vmap(env.agent_xy)(s.inner)
      goal = s.inner.info["goal_positions"][:, 0, :2]
      s_next, tr = batched.step(s, act.action, k)
      return s_next, (xy, goal, tr.cost, tr.reward, act.iterations)

    _, out = jax.lax.scan(body, state, jax.random.split(key, episode_length))
    return state.inner.info["hazard_positions"][..., :2], out

  return run, float(env.config["hazard_specs"][0]["size"])


def demo(model: ACSAgent, outdir, dataset: str) -> str:
  """`zoo run`: four deterministic PointGoal1 episodes (for ACS with the safeguard on and off), their return, cost
  and violation rate, and a top-down plot of the trajectories with hazards and goals."""
  from zoo import plotting  # pylint: disable=import-outside-toplevel

  del dataset
  modes = [True, False] if model.guarded else [True]
  runs = {g: trajectories(model, guard=g) for g in modes}
  lines = [f"{model.method}: 4 deterministic episodes of 1000 steps in PointGoal1 (layouts from seed 0); cost = steps "
           f"inside a hazard, budget d = 25 per episode."]
  for g, r in runs.items():
    label = ("safeguard on" if g else "safeguard off (raw policy mean)") if model.guarded else "policy mean"
    extra = f", safeguard corrected {float(np.mean(r['iterations'] > 0)):.1%} of steps" if model.guarded and g else ""
    lines.append(f"{label}: return per episode {r['reward'].sum(0).mean():.3g}, cost per episode "
                 f"{r['cost'].sum(0).mean():.3g}, violation rate {r['cost'].mean():.4f}{extra}")
  plt = plotting.pyplot()
  cols = runs[True]["xy"].shape[1]
  fig, axes = plt.subplots(len(runs), cols, figsize=(3.2 * cols, 3.3 * len(runs)), squeeze=False)
  for row, (g, r) in enumerate(runs.items()):
    for b in range(cols):
      ax = axes[row, b]
      for h in r["hazards"][b]:
        ax.add_patch(plt.Circle(h, float(r["hazard_radius"]), color="tab:red", alpha=0.3))
      for gx in np.unique(np.round(r["goal"][:, b], 4), axis=0):
        ax.add_patch(plt.Circle(gx, 0.3, color="tab:green", alpha=0.3))
      ax.plot(r["xy"][:, b, 0], r["xy"][:, b, 1], color="tab:blue", lw=1, label="agent")
      hit = r["cost"][:, b] > 0
      ax.plot(r["xy"][hit, b, 0], r["xy"][hit, b, 1], "r.", ms=3, label="in a hazard (c = 1)")
      ax.plot(*r["xy"][0, b], "ko", ms=4, label="start")
      ax.set(xlim=(-2, 2), ylim=(-2, 2), aspect="equal", xlabel="x (m)", ylabel="y (m)",
             title=(("guard on" if g else "guard off") if model.guarded else model.method)
             + f", cost {r['cost'][:, b].sum():.0f}")
      if row == 0 and b == 0:
        ax.legend(loc="lower left", fontsize=7)
  path = plotting.save(fig, outdir, f"{model.method}_pointgoal1_trajectories.png")
  lines.append(f"plot: {path} (red discs: hazards, green: goals reached or current)")
  return "\n".join(lines)
