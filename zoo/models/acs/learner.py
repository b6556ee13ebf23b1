"""The RL loop of the family, as the trainer's `learner` hook (`zoo.registry.Learner`): ACS and its two baselines,
PPO and PPO-Lagrangian, trained by the same code on the same environment, budget and seeds.

One iteration k (the research code's epoch): `num_envs` PointGoal1 environments, reset with layouts drawn from
(seed, k), run `steps` steps (whole episodes: `steps` is a multiple of the episode length) in one compiled
`lax.scan` (`rollout.collect`), then one compiled update:
- every method: GAE(γ, λ) advantages of the reward, PPO-clip on the policy (up to `pi_iters` full-batch Adam steps,
  early stop at 1.5 × target KL), `vf_iters` steps on V(s);
- PPO-Lagrangian: GAE of the cost with V_c(s); λ ← max(0, λ + lr (J_c − d)) from this iteration's mean episode
  cost J_c, then the policy follows (Â_r − λ (Â_c − mean Â_c)) / (1 + λ) (safety-starter-agents' mixing);
- ACS: the safeguard acts during collection with ε_k = max(4 − 0.3 (k + 1), 0.3); the policy learns from
  r − 0.1 c; V_s(s) is fitted to the 0/1 outcome 1[episode cost < d] of its episode (`safety_iters` steps) and
  A_s(s, a) of the executed action to the λ = 1 advantage of V_s with the episode's outcome as its final value
  (`safety_advantage_iters` steps), as the authors' research code (shared/papers/acs.md) except for the discount:
  V_s is an undiscounted probability, so δ_t = V_s(s_{t+1}) − V_s(s_t) (`safety_gamma` 1) and the target telescopes
  to 1[episode cost < d] − V_s(s_t), an unbiased estimate of Q_s − V_s (`targets.safety_advantages`). The research
  code's δ_t = 0.99 V_s(s_{t+1}) − V_s(s_t), summed undiscounted, drifts by −0.01 Σ V_s (about −7 at the start of a
  1000-step episode). The discounted form Σ 0.99^k δ_{t+k}, tried first here, is ≈ −V_s(s_t) except near an
  episode's end: with it the learned A_s stayed below the bound and the safeguard spent all 20 steps without
  meeting the constraint on 99-100 % of the steps once ε ≤ 0.4.

Nothing random is carried between iterations (every key is derived from (seed, k)), so the state an exact resume
needs is the agent and the optimizers (`checkpointed()`); ε and λ live in the agent.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from zoo import errors
from zoo.models.acs import ppo, rollout, safeguard, targets
from zoo.models.acs.model import ACSAgent

EVAL_SEED_OFFSET = 1_000_003  # evaluation layouts: keys from (seed + offset, round), apart from training's


@dataclasses.dataclass(frozen=True)
class Settings:
  """The update's hyperparameters (hashable: static for the compiled update). Defaults: the research code's
  (Spinning Up PPO) and safety-starter-agents' cost limit."""

  gamma: float = 0.99
  lam: float = 0.97
  clip: float = ppo.CLIP
  target_kl: float = ppo.TARGET_KL
  pi_iters: int = 80
  vf_iters: int = 80
  budget: float = 25.0
  cost_gamma: float = 0.99
  cost_lam: float = 0.97
  lagrangian_lr: float = 0.01
  reward_cost_penalty: float = 0.1
  safety_iters: int = 80
  safety_advantage_iters: int = 160
  safety_gamma: float = 1.0


class Optimizers(nnx.Module):
  """One Adam per network (the research code's separate learning rates); only the agent's networks get one."""

  def __init__(self, agent: ACSAgent, pi_lr: float, vf_lr: float, safety_lr: float):
    self.policy = nnx.Optimizer(agent.policy, optax.adam(pi_lr), wrt=nnx.Param)
    self.value = nnx.Optimizer(agent.value, optax.adam(vf_lr), wrt=nnx.Param)
    if agent.method == "ppo-lag":
      self.cost_value = nnx.Optimizer(agent.cost_value, optax.adam(vf_lr), wrt=nnx.Param)
    if agent.method == "acs":
      self.safe_value = nnx.Optimizer(agent.safe_value, optax.adam(safety_lr), wrt=nnx.Param)
      self.safe_advantage = nnx.Optimizer(agent.safe_advantage, optax.adam(safety_lr), wrt=nnx.Param)


def _flat(x: jax.Array) -> jax.Array:
  return x.reshape((-1, *x.shape[2:]))


def rollout_metrics(out: rollout.Rollout) -> dict[str, jax.Array]:
  """What the collected episodes did: mean return and cost per finished episode (and their std), the share of
  steps with c = 1 (`violation_rate`), the number of cost steps (`cost_sum`) and of episodes; the safeguard's
  mean iterations, share of corrected steps and share of steps whose constraint still failed after it."""
  done = out.done.astype(jnp.float32)
  episodes = jnp.maximum(done.sum(), 1.0)
  ret = jnp.sum(done * out.episode_reward) / episodes
  cost = jnp.sum(done * out.episode_cost) / episodes
  return {
      "episodes": done.sum(),
      "return": ret,
      "return_std": jnp.sqrt(jnp.sum(done * (out.episode_reward - ret) ** 2) / episodes),
      "cost": cost,
      "cost_std": jnp.sqrt(jnp.sum(done * (out.episode_cost - cost) ** 2) / episodes),
      "violation_rate": jnp.mean(out.cost),
      "cost_sum": jnp.sum(out.cost),
      "guard_iterations": jnp.mean(out.iterations.astype(jnp.float32)),
      "guard_corrected": jnp.mean((out.iterations > 0).astype(jnp.float32)),
      "guard_unmet": jnp.mean((out.residual < 0).astype(jnp.float32)),
  }


@nnx.jit(static_argnames=("settings",))
def update(agent: ACSAgent, optimizers: Optimizers, out: rollout.Rollout, settings: Settings) -> dict[str, jax.Array]:
  """One update of `agent` from one iteration's rollout `out (T, batch, …)` (see the module docstring)."""
  s = settings
  obs, next_obs = out.obs, out.next_obs
  cost = out.cost
  reward = out.reward - (s.reward_cost_penalty * cost if agent.method == "acs" else 0.0)
  critic = lambda m, x: m(_flat(x)).reshape(x.shape[:2])  # noqa: E731
  adv_r, ret_r = targets.gae(reward, critic(agent.value, obs), critic(agent.value, next_obs), out.done, s.gamma,
                             s.lam, out.terminal)
  advantages = ppo.normalise(adv_r)
  info: dict[str, jax.Array] = {}

  if agent.method == "ppo-lag":
    adv_c, ret_c = targets.gae(cost, critic(agent.cost_value, obs), critic(agent.cost_value, next_obs), out.done,
                               s.cost_gamma, s.cost_lam, out.terminal)
    done = out.done.astype(jnp.float32)
    episode_cost = jnp.sum(done * out.episode_cost) / jnp.maximum(done.sum(), 1.0)  # J_c of the finished episodes
    multiplier = ppo.multiplier_step(agent.multiplier.value, episode_cost, s.budget, s.lagrangian_lr)
    agent.multiplier.value = multiplier
    advantages = ppo.lagrangian_advantages(advantages, adv_c - adv_c.mean(), multiplier)
    info["multiplier"] = multiplier
    info["cost_value_loss"] = ppo.fit_regression(agent.cost_value, optimizers.cost_value, (_flat(obs),),
                                                 _flat(ret_c), iterations=s.vf_iters)

  if agent.method == "acs":
    # the safety critics' targets come from the critics that acted during collection (before this update)
    labels, known = targets.episode_safety_targets(out.done, out.episode_cost, s.budget)
    adv_s = targets.safety_advantages(critic(agent.safe_value, obs), critic(agent.safe_value, next_obs), out.done,
                                      labels, s.safety_gamma)

  info.update(ppo.fit_policy(agent.policy, optimizers.policy, _flat(obs), _flat(out.action), _flat(out.log_prob),
                             _flat(advantages), iterations=s.pi_iters, target_kl=s.target_kl, clip=s.clip))
  info["value_loss"] = ppo.fit_regression(agent.value, optimizers.value, (_flat(obs),), _flat(ret_r),
                                          iterations=s.vf_iters)
  if agent.method == "acs":
    info["safe_value_loss"] = ppo.fit_regression(agent.safe_value, optimizers.safe_value, (_flat(obs),),
                                                 _flat(labels), iterations=s.safety_iters, mask=_flat(known))
    info["safe_advantage_loss"] = ppo.fit_regression(agent.safe_advantage, optimizers.safe_advantage,
                                                     (_flat(obs), _flat(out.action)), _flat(adv_s),
                                                     iterations=s.safety_advantage_iters, mask=_flat(known))
    info["epsilon"] = agent.epsilon.value
    info["safe_label_mean"] = jnp.sum(labels * known) / jnp.maximum(jnp.sum(known), 1.0)
  info["entropy"] = agent.policy.entropy()
  return {**info, **rollout_metrics(out)}


@functools.lru_cache(maxsize=8)
def runner(episode_length: int, num_envs: int, steps: int, budget: float):
  """(batched environment, `run(actor, key, guard, deterministic) -> Rollout`): `num_envs` fresh PointGoal1
  episodes from `key`, `steps` steps, one compiled program per (actor structure, shapes) — training, evaluation,
  with and without the safeguard all share it. Cached: one environment and one compilation per process."""
  from zoo.models.acs import env as acs_env  # pylint: disable=import-outside-toplevel

  batched = acs_env.BatchedEnv(acs_env.PointGoal1(budget=budget, episode_length=episode_length), num_envs)

  @nnx.jit
  def run(actor: Any, key: jax.Array, guard: jax.Array, deterministic: jax.Array) -> rollout.Rollout:
    reset_key, key = jax.random.split(key)
    _, out = rollout.collect(actor, batched, batched.reset(reset_key), key, steps, guard, deterministic)
    return out

  return batched, run


def actor(agent: ACSAgent) -> nnx.Module:
  """What acts in the environment: the whole agent for ACS (policy + safeguard), the policy alone for the baselines
  (so PPO and PPO-Lagrangian share one compiled rollout)."""
  return agent if agent.guarded else agent.policy


def episodes(agent: ACSAgent, data: Any) -> dict[str, float]:
  """Evaluation: `data["rounds"]` batches of `num_envs` × `steps` deterministic steps (whole episodes of
  `episode_length`), layouts from (`seed` + offset, round), the safeguard on unless `data["guard"]` is 0.
  Returns `rollout_metrics` over them (means weighted by episodes) as floats."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  _, run = runner(int(data["episode_length"]), int(data["num_envs"]), int(data["steps"]), float(data["budget"]))
  base = jax.random.key(int(data["seed"]) + EVAL_SEED_OFFSET)
  guard = jnp.asarray(bool(data.get("guard", 1)))
  parts = [rollout_metrics(run(actor(agent), jax.random.fold_in(base, r), guard, jnp.asarray(True)))
           for r in range(int(data["rounds"]))]
  parts = [{k: float(v) for k, v in p.items()} for p in parts]
  weights = np.asarray([p["episodes"] for p in parts])
  out = {k: float(np.average([p[k] for p in parts], weights=weights)) for k in parts[0] if k != "episodes"}
  out["episodes"] = float(weights.sum())
  out["cost_sum"] = float(sum(p["cost_sum"] for p in parts))
  if not agent.guarded:
    for k in ("guard_iterations", "guard_corrected", "guard_unmet"):
      out.pop(k)
  return out


class Learner:
  """The trainer's hook for this family (`zoo.registry.Learner`): built from the freshly initialised agent and the
  run's config (`configs/acs.py`: `config.env`, `config.ppo`, `config.lagrangian`, `config.acs`, `config.eval`)."""

  def __init__(self, model: ACSAgent, config: Any):
    env, p = config.env, config.ppo
    if env.steps % env.episode_length:
      raise errors.ConfigError("env.steps", f"config.env.steps = {env.steps} must be a multiple of "
                                            f"config.env.episode_length = {env.episode_length} (whole episodes per "
                                            f"iteration).")
    self.model = model
    self.config = config
    self.settings = Settings(
        gamma=p.gamma, lam=p.lam, clip=p.clip, target_kl=p.target_kl, pi_iters=p.pi_iters, vf_iters=p.vf_iters,
        budget=env.budget, cost_gamma=p.gamma, cost_lam=p.lam, lagrangian_lr=config.lagrangian.lr,
        reward_cost_penalty=config.acs.reward_cost_penalty, safety_iters=config.acs.safety_iters,
        safety_advantage_iters=config.acs.safety_advantage_iters, safety_gamma=config.acs.safety_gamma)
    self.optimizers = Optimizers(model, p.pi_lr, p.vf_lr, config.acs.safety_lr)
    if model.method == "ppo-lag":
      model.multiplier.value = jnp.asarray(config.lagrangian.init, jnp.float32)
    self.steps_per_iteration = env.num_envs * env.steps
    self._key = jax.random.key(config.seed)
    _, self._run = runner(env.episode_length, env.num_envs, env.steps, env.budget)
    self.eval_data = {"episode_length": env.episode_length, "num_envs": env.num_envs, "steps": env.steps,
                      "budget": env.budget, "rounds": config.eval.rounds, "seed": config.seed, "guard": 1}

  def checkpointed(self) -> dict[str, nnx.Module]:
    return {"model": self.model, "optimizers": self.optimizers}

  def epsilon(self, k: int) -> float:
    a = self.config.acs
    return float(safeguard.epsilon_schedule(k, a.epsilon_start, a.epsilon_decay, a.epsilon_floor))

  def iteration(self, k: int) -> dict[str, float]:
    if self.model.guarded:  # placed like the state it replaces (committed or not: one compiled program either way)
      current = self.model.epsilon.value
      epsilon = jnp.asarray(self.epsilon(k), jnp.float32)
      self.model.epsilon.value = jax.device_put(epsilon, current.sharding) if current.committed else epsilon
    out = self._run(actor(self.model), jax.random.fold_in(self._key, k), jnp.asarray(True), jnp.asarray(False))
    info = update(self.model, self.optimizers, out, self.settings)
    metrics = {k_: float(v) for k_, v in info.items()}
    if not self.model.guarded:
      for name in ("guard_iterations", "guard_corrected", "guard_unmet"):
        metrics.pop(name)
    metrics["env_steps"] = float((k + 1) * self.steps_per_iteration)
    return metrics
