"""The ACS networks: a Gaussian policy (the upper layer), a value critic V(s), the safety critic V_s(s) ≈
P(episode cost < d | s) and the safety advantage A_s(s, a) ≈ Q_s(s, a) − V_s(s).

Shapes: `obs: (batch, obs_dim)`, `action: (batch, act_dim)`; critics return `(batch,)`. Sizes follow the authors'
research code (tanh MLPs 64×64, Gaussian with a state-independent log-std initialised at −0.5); nothing here
depends on the environment package, so the core zoo imports it without the `rl` extra.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.models.acs import safeguard
from zoo.registry import check_input


class MLP(nnx.Module):
  """tanh MLP `(batch, in_dim) -> (batch, out_dim)`; the last layer is linear. `out_scale` scales the last
  layer's initial kernel (0.01 for a policy mean that starts near zero, 1 for critics)."""

  def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (64, 64), *, out_scale: float = 1.0,
               rngs: nnx.Rngs):
    dims = [in_dim, *hidden]
    self.hidden = nnx.List([nnx.Linear(a, b, kernel_init=nnx.initializers.orthogonal(math.sqrt(2.0)), rngs=rngs)
                            for a, b in zip(dims[:-1], dims[1:])])
    self.out = nnx.Linear(dims[-1], out_dim, kernel_init=nnx.initializers.orthogonal(out_scale), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    for layer in self.hidden:
      x = jnp.tanh(layer(x))
    return self.out(x)


class GaussianPolicy(nnx.Module):
  """π(a | s) = N(μ(s), diag(exp(2 log σ))) with a state-independent log σ.

  `__call__(obs)` is the raw policy action μ(s) (no safeguard); `sample` draws a ~ π(·|s); `log_prob(obs, a)` is
  the density of any given action, so a learner stores the log-probability of the action that was executed
  (after the safeguard's correction), not of the uncorrected sample.
  """

  def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (64, 64), *, log_std_init: float = -0.5,
               rngs: nnx.Rngs):
    self.obs_dim, self.act_dim = obs_dim, act_dim
    self.mean = MLP(obs_dim, act_dim, hidden, out_scale=0.01, rngs=rngs)
    self.log_std = nnx.Param(jnp.full((act_dim,), log_std_init, jnp.float32))

  def __call__(self, obs: jax.Array) -> jax.Array:
    check_input(obs, (self.obs_dim,), "obs")
    return self.mean(obs)

  def sample(self, obs: jax.Array, key: jax.Array) -> jax.Array:
    """a ~ π(·|s): `(batch, act_dim)`."""
    mu = self(obs)
    return mu + jnp.exp(self.log_std.value) * jax.random.normal(key, mu.shape, mu.dtype)

  def log_prob(self, obs: jax.Array, action: jax.Array) -> jax.Array:
    """log π(a | s): `(batch,)`."""
    mu = self(obs)
    log_std = self.log_std.value
    z = (action - mu) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)

  def entropy(self) -> jax.Array:
    return jnp.sum(self.log_std.value + 0.5 * math.log(2 * math.pi * math.e))

  def act(self, obs: jax.Array, key: jax.Array, *, guard: jax.Array | bool = True,
          deterministic: jax.Array | bool = False) -> "Action":
    """`policy_act`: what a rollout calls on the baselines (no safeguard; `guard` is ignored)."""
    return policy_act(self, obs, key, guard=guard, deterministic=deterministic)


class ValueCritic(nnx.Module):
  """V(s) `(batch, obs_dim) -> (batch,)`: the reward value, or (as `SafetyCritic`) the probability of staying
  within the episode cost budget."""

  def __init__(self, obs_dim: int, hidden: Sequence[int] = (64, 64), *, rngs: nnx.Rngs):
    self.obs_dim = obs_dim
    self.net = MLP(obs_dim, 1, hidden, rngs=rngs)

  def __call__(self, obs: jax.Array) -> jax.Array:
    check_input(obs, (self.obs_dim,), "obs")
    return self.net(obs)[..., 0]


class SafetyCritic(ValueCritic):
  """V_s(s) ≈ P(Σ_t c_t < d | s), fitted by regression on the 0/1 episode outcome (no output squashing, as the
  research code)."""


class SafetyAdvantage(nnx.Module):
  """A_s(s, a) on concat(s, a): `(batch, obs_dim), (batch, act_dim) -> (batch,)`; fitted to the λ = 1 advantage of
  V_s. The safeguard raises it by gradient steps on a."""

  def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (64, 64), *, rngs: nnx.Rngs):
    self.obs_dim, self.act_dim = obs_dim, act_dim
    self.net = MLP(obs_dim + act_dim, 1, hidden, rngs=rngs)

  def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
    check_input(obs, (self.obs_dim,), "obs")
    check_input(action, (self.act_dim,), "action")
    return self.net(jnp.concatenate([obs, action], axis=-1))[..., 0]


class Action(NamedTuple):
  """One step of the hierarchical policy, each `(batch, …)`: the executed `action`, the policy's `raw` proposal (a
  sample, or the mean when deterministic), the `log_prob` of the executed action under π, the safeguard's
  `iterations` and `residual` (A_s − h), and `bound` h (zeros for a policy without safeguard)."""

  action: jax.Array
  raw: jax.Array
  log_prob: jax.Array
  iterations: jax.Array
  residual: jax.Array
  bound: jax.Array


def _propose(policy: GaussianPolicy, obs: jax.Array, key: jax.Array, deterministic: jax.Array | bool) -> jax.Array:
  """π's mean where `deterministic` (a bool, traced or not), else a sample."""
  return jnp.where(deterministic, policy(obs), policy.sample(obs, key))


def policy_act(policy: GaussianPolicy, obs: jax.Array, key: jax.Array, *, guard: jax.Array | bool = True,
               deterministic: jax.Array | bool = False) -> Action:
  """The upper layer alone (PPO, PPO-Lagrangian): the executed action is the proposal. `guard` is accepted and
  ignored, so a rollout calls `act` alike on an `ACSAgent` and on a bare policy."""
  del guard
  action = _propose(policy, obs, key, deterministic)
  zeros = jnp.zeros(action.shape[:1], action.dtype)
  return Action(action, action, policy.log_prob(obs, action), zeros.astype(jnp.int32), zeros, zeros)


METHODS = ("acs", "ppo", "ppo-lag")


class ACSAgent(nnx.Module):
  """Upper layer (Gaussian policy) + critics + lower layer (the safeguard), with ε stored as state; with
  `method="ppo"` or `"ppo-lag"` the same agent without safety critics and safeguard (the baselines trained by the
  same code): PPO has the policy and V(s); PPO-Lagrangian adds the cost critic V_c(s) and the multiplier λ ≥ 0.

  `agent(obs)` is the deterministic action the environment receives: for ACS the policy mean corrected by the
  safeguard at the stored ε (`agent(obs, guard=False)` skips the correction), for the baselines the policy mean;
  always clipped to the action box. `agent.policy(obs)` is the raw (unclipped) policy mean. `agent.act(obs, key)`
  samples for training and returns the log-probability of the action that is executed. Shapes:
  `obs: (batch, obs_dim)` → `(batch, act_dim)`.
  """

  def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (64, 64), *, method: str = "acs",
               eta: float = safeguard.ETA, steps: int = safeguard.STEPS, step_size: float = safeguard.STEP_SIZE,
               low: float = -1.0, high: float = 1.0, epsilon: float = 0.3, rngs: nnx.Rngs):
    if method not in METHODS:
      raise ValueError(f"method {method!r}: use one of {', '.join(METHODS)}.")
    self.obs_dim, self.act_dim, self.method = obs_dim, act_dim, method
    self.eta, self.steps, self.step_size, self.low, self.high = eta, steps, step_size, low, high
    self.policy = GaussianPolicy(obs_dim, act_dim, hidden, rngs=rngs)
    self.value = ValueCritic(obs_dim, hidden, rngs=rngs)
    if method == "acs":
      self.safe_value = SafetyCritic(obs_dim, hidden, rngs=rngs)
      self.safe_advantage = SafetyAdvantage(obs_dim, act_dim, hidden, rngs=rngs)
      self.epsilon = nnx.Variable(jnp.asarray(epsilon, jnp.float32))
    elif method == "ppo-lag":
      self.cost_value = ValueCritic(obs_dim, hidden, rngs=rngs)
      self.multiplier = nnx.Variable(jnp.zeros((), jnp.float32))

  @property
  def guarded(self) -> bool:
    """Whether the agent has the lower layer (ACS)."""
    return self.method == "acs"

  def correction(self, obs: jax.Array, proposal: jax.Array,
                 enabled: jax.Array | bool = True) -> tuple[safeguard.Correction, jax.Array]:
    """The lower layer (ACS only): `proposal (batch, act_dim)` corrected by `safeguard.correct` at the stored ε,
    and the bound h(s) `(batch,)`."""
    bound = safeguard.threshold(self.safe_value(obs), self.epsilon.value, self.eta)
    return safeguard.correct(self.safe_advantage, obs, proposal, bound, steps=self.steps, step_size=self.step_size,
                             low=self.low, high=self.high, enabled=enabled), bound

  def act(self, obs: jax.Array, key: jax.Array, *, guard: jax.Array | bool = True,
          deterministic: jax.Array | bool = False) -> Action:
    """Samples a ~ π(·|s) (the mean where `deterministic`), corrects it (ACS, unless `guard` is False) and scores
    the executed action under π. `guard` and `deterministic` may be traced booleans (one compiled rollout serves
    training and evaluation, with and without the safeguard)."""
    if not self.guarded:
      return policy_act(self.policy, obs, key, deterministic=deterministic)
    raw = _propose(self.policy, obs, key, deterministic)
    fixed, bound = self.correction(obs, raw, guard)
    return Action(fixed.action, raw, self.policy.log_prob(obs, fixed.action), fixed.iterations, fixed.residual, bound)

  def __call__(self, obs: jax.Array, *, guard: bool = True) -> jax.Array:
    """The deterministic action, clipped to the action box: for ACS the policy mean through the safeguard (the safe
    action; `guard=False` for the uncorrected mean), for PPO and PPO-Lagrangian the policy mean."""
    mean = self.policy(obs)
    if self.guarded:
      mean = self.correction(obs, mean, guard)[0].action
    return jnp.clip(mean, self.low, self.high)
