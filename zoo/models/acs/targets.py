"""Learning targets over a rollout, time-major `(T, batch)`: generalised advantage estimates (PPO's reward and cost
advantages; ACS's safety advantage with r_safe = 0 and λ = 1) and the safety critic's episode-outcome labels.

`done[t]` marks that step t ended its episode (the next state is a fresh episode): no bootstrapping across it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(rewards: jax.Array, values: jax.Array, next_values: jax.Array, done: jax.Array, gamma: float,
        lam: float, terminal: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Advantages Â_t = Σ_k (γλ)^k δ_{t+k} within each episode, δ_t = r_t + γ (1 − terminal_t) V(s_{t+1}) − V(s_t),
  and returns Â + V.

  `rewards, values, next_values, done: (T, batch)`; `next_values[t]` is V of the state reached by step t (before any
  reset). `done` ends the sum (nothing from the next episode leaks in); `terminal` (default `done`) also drops the
  bootstrap V(s_{t+1}): pass the true terminations there, so an episode cut by the time limit (or by the end of the
  rollout) still bootstraps from the state it reached.
  """
  not_done = 1.0 - done.astype(values.dtype)
  not_terminal = not_done if terminal is None else 1.0 - terminal.astype(values.dtype)
  deltas = rewards + gamma * not_terminal * next_values - values

  def body(carry, x):
    delta, keep = x
    carry = delta + gamma * lam * keep * carry
    return carry, carry

  _, advantages = jax.lax.scan(body, jnp.zeros_like(values[0]), (deltas, not_done), reverse=True)
  return advantages, advantages + values


def episode_safety_targets(done: jax.Array, episode_cost: jax.Array, budget: float) -> tuple[jax.Array, jax.Array]:
  """V_s labels: every step of an episode gets 1[episode cost < budget] (the research code's target for
  V_s(s) ≈ P(Σ c < d | s)). `episode_cost[t]` is the finished episode's total where `done[t]`.

  Returns `(targets, known)`, both `(T, batch)`: steps of an episode still running at the end of the rollout have
  no label yet (`known` False) and must be masked out (or carried into the next rollout).
  """

  def body(carry, x):
    total, known = carry
    ends, cost = x
    total = jnp.where(ends, cost, total)
    known = known | ends
    return (total, known), ((total < budget).astype(jnp.float32), known)

  start = (jnp.zeros_like(episode_cost[0]), jnp.zeros(done.shape[1:], bool))
  _, (targets, known) = jax.lax.scan(body, start, (done.astype(bool), episode_cost), reverse=True)
  return targets, known


def safety_advantages(safe_values: jax.Array, next_safe_values: jax.Array, done: jax.Array, labels: jax.Array,
                      gamma: float = 1.0) -> jax.Array:
  """A_s targets `(T, batch)`: Σ_k γ^k δ_{t+k} to the end of the episode, δ_t = γ V_s(s_{t+1}) − V_s(s_t), with the
  episode's outcome `labels` (`episode_safety_targets`) as the value after its last step. With γ = 1 (V_s is an
  undiscounted probability) it telescopes to 1[episode cost < d] − V_s(s_t), the Monte-Carlo Q_s − V_s.

  `safe_values, next_safe_values`: V_s of each step's state and of the state it reached (before any reset)."""
  after = jnp.where(done, labels, next_safe_values)
  advantages, _ = gae(jnp.zeros_like(safe_values), safe_values, after, done, gamma, 1.0, jnp.zeros_like(done))
  return advantages
