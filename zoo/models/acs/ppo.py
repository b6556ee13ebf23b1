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


# --- full-batch fitting, as Spinning Up and the research code (traceable: call them inside `nnx.jit`) ------------


def fit_policy(policy: GaussianPolicy, optimizer: nnx.Optimizer, obs: jax.Array, actions: jax.Array,
               old_log_prob: jax.Array, advantages: jax.Array, *, iterations: int, target_kl: float = TARGET_KL,
               clip: float = CLIP) -> dict[str, jax.Array]:
  """Up to `iterations` full-batch Adam steps on the PPO-clip loss, stopping (for good) at the first iteration whose
  approximate KL to the data's policy exceeds 1.5 × `target_kl`, measured before its step (Spinning Up's rule).
  Returns the first iteration's loss, the KL and clip fraction where it stopped, and the number of steps taken."""
  graphdef, state = nnx.split((policy, optimizer))

  def body(_, carry):
    state, active, taken, info = carry
    pol, opt = nnx.merge(graphdef, state)
    (_, info_now), grads = nnx.value_and_grad(policy_loss, has_aux=True)(pol, obs, actions, old_log_prob,
                                                                         advantages, clip)
    active = active & (info_now["approx_kl"] <= 1.5 * target_kl)
    opt.update(pol, grads)
    state = jax.tree.map(lambda new, old: jnp.where(active, new, old), nnx.state((pol, opt)), state)
    info = jax.tree.map(lambda new, old: jnp.where(active, new, old), info_now, info)
    return state, active, taken + active.astype(jnp.int32), info

  first_loss, first_info = policy_loss(policy, obs, actions, old_log_prob, advantages, clip)
  state, _, taken, info = jax.lax.fori_loop(0, iterations, body, (state, jnp.asarray(True), jnp.asarray(0),
                                                                   first_info))
  nnx.update((policy, optimizer), state)
  return {"policy_loss": first_loss, "pi_iterations": taken, **info}


def fit_regression(module: nnx.Module, optimizer: nnx.Optimizer, inputs: tuple[jax.Array, ...], targets: jax.Array,
                   *, iterations: int, mask: jax.Array | None = None) -> jax.Array:
  """`iterations` full-batch Adam steps on the (masked) mean squared error of `module(*inputs)` to `targets (n,)`
  (a critic's fit). Returns the loss before the first step."""
  weights = jnp.ones_like(targets) if mask is None else mask.astype(targets.dtype)
  denominator = jnp.maximum(jnp.sum(weights), 1.0)

  def loss(m):
    return jnp.sum(weights * (m(*inputs) - targets) ** 2) / denominator

  graphdef, state = nnx.split((module, optimizer))

  def body(_, state):
    mod, opt = nnx.merge(graphdef, state)
    opt.update(mod, nnx.grad(loss)(mod))
    return nnx.state((mod, opt))

  before = loss(module)
  nnx.update((module, optimizer), jax.lax.fori_loop(0, iterations, body, state))
  return before
