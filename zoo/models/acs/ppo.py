"""The upper layer's update: PPO-clip (Spinning Up's form, as the research code) and the Lagrangian variant's
advantage mixing and multiplier step. Shapes: a flat batch of transitions, `obs: (n, obs_dim)`,
`actions: (n, act_dim)`, `old_log_prob, advantages: (n,)`.

The log-probabilities passed as `old_log_prob` must be those of the executed actions (`ACSAgent.act` returns them):
the ratio π_new(a|s) / π_old(a|s) is only an importance weight for the action the environment saw.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.models.acs.model import GaussianPolicy

CLIP = 0.2
TARGET_KL = 0.01  # early stop of the policy iterations at 1.5 × TARGET_KL (Spinning Up)


def normalise(advantages: jax.Array) -> jax.Array:
  return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def policy_loss(policy: GaussianPolicy, obs: jax.Array, actions: jax.Array, old_log_prob: jax.Array,
                advantages: jax.Array, clip: float = CLIP) -> tuple[jax.Array, dict[str, jax.Array]]:
  """−E[min(ρ Â, clip(ρ, 1 − ε, 1 + ε) Â)] with ρ = π(a|s)/π_old(a|s); also the approximate KL and clip fraction."""
  log_prob = policy.log_prob(obs, actions)
  ratio = jnp.exp(log_prob - old_log_prob)
  clipped = jnp.clip(ratio, 1.0 - clip, 1.0 + clip)
  loss = -jnp.mean(jnp.minimum(ratio * advantages, clipped * advantages))
  return loss, {"approx_kl": jnp.mean(old_log_prob - log_prob),
                "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > clip).astype(jnp.float32))}


@nnx.jit
def policy_step(optimizer: nnx.Optimizer, policy: GaussianPolicy, obs: jax.Array, actions: jax.Array,
                old_log_prob: jax.Array, advantages: jax.Array) -> dict[str, jax.Array]:
  """One Adam step on the PPO-clip loss (the caller stops when `approx_kl` > 1.5 × TARGET_KL)."""
  (loss, info), grads = nnx.value_and_grad(policy_loss, has_aux=True)(policy, obs, actions, old_log_prob, advantages)
  optimizer.update(policy, grads)
  return {"loss": loss, **info}


def lagrangian_advantages(reward_advantages: jax.Array, cost_advantages: jax.Array,
                          multiplier: jax.Array) -> jax.Array:
  """PPO-Lagrangian's policy advantage (Â_r − λ Â_c) / (1 + λ) (safety-starter-agents' scaling)."""
  return (reward_advantages - multiplier * cost_advantages) / (1.0 + multiplier)


def multiplier_step(multiplier: jax.Array, episode_cost: jax.Array, budget: float, lr: float) -> jax.Array:
  """λ ← max(0, λ + lr (J_c − d)): grows while the mean episode cost exceeds the budget."""
  return jnp.maximum(0.0, multiplier + lr * (jnp.mean(episode_cost) - budget))
