"""Collecting experience: the agent (policy + safeguard) acting in a batched environment for `steps` steps, one
`lax.scan` under `jax.jit`. Works with any batched environment that has `step(state, actions, key) -> (state,
Transition)` and states with `.obs` (`env.BatchedEnv` over `env.PointGoal1`, or a toy environment in tests).
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx, struct



@struct.dataclass
class Rollout:
  """Time-major `(T, batch, …)`: what the agent saw (`obs`), did (`action`, the executed one; `raw`, the policy's
  proposal; `log_prob` of the executed action; the safeguard's `iterations` and `residual`) and got (`reward`, binary
  `cost`, `done`, `terminal` (a true end, not the time limit), `episode_cost` and `episode_reward` where done,
  `next_obs` before any reset)."""

  obs: jax.Array
  action: jax.Array
  raw: jax.Array
  log_prob: jax.Array
  iterations: jax.Array
  residual: jax.Array
  reward: jax.Array
  cost: jax.Array
  done: jax.Array
  terminal: jax.Array
  episode_cost: jax.Array
  episode_reward: jax.Array
  next_obs: jax.Array


def collect(agent: Any, batched_env: Any, state: Any, key: jax.Array, steps: int, guard: jax.Array | bool = True,
            deterministic: jax.Array | bool = False) -> tuple[Any, Rollout]:
  """Runs `steps` steps from `state`; returns the final state (to continue from) and the `Rollout`.

  `agent` is anything with `act(obs, key, *, guard, deterministic) -> model.Action`: an `ACSAgent`, or a bare
  `GaussianPolicy` (the baselines: their rollouts then compile to one program). `guard` and `deterministic` may be
  traced booleans. Jit it with `steps` (and the environment) static, e.g.
  `nnx.jit(collect, static_argnums=(1, 4))`, or call it inside an `nnx.jit`-ed function."""
  graphdef, params = nnx.split(agent)

  def body(s, k):
    act_key, env_key = jax.random.split(k)
    act = nnx.merge(graphdef, params).act(s.obs, act_key, guard=guard, deterministic=deterministic)
    s_next, tr = batched_env.step(s, act.action, env_key)
    return s_next, Rollout(s.obs, act.action, act.raw, act.log_prob, act.iterations, act.residual, tr.reward,
                           tr.cost, tr.done, tr.terminal, tr.episode_cost, tr.episode_reward, tr.final_obs)

  return jax.lax.scan(body, state, jax.random.split(key, steps))
