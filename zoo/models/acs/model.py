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
  """One step of the hierarchical policy, each `(batch, …)`: the executed `action`, the policy's `raw` sample, the
  `log_prob` of the executed action under π, the safeguard's `iterations` and `residual` (A_s − h), and `bound` h."""

  action: jax.Array
  raw: jax.Array
  log_prob: jax.Array
  iterations: jax.Array
  residual: jax.Array
  bound: jax.Array


class ACSAgent(nnx.Module):
  """Upper layer (Gaussian policy) + critics + lower layer (the safeguard), with ε stored as state.

  `agent(obs)` is the safe deterministic action: the policy mean corrected by the safeguard at the stored ε;
  `agent.policy(obs)` is the raw policy action. `agent.act(obs, key)` samples for training and returns the
  log-probability of the action that is executed. Shapes: `obs: (batch, obs_dim)` → `(batch, act_dim)`.
  """

  def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (64, 64), *, eta: float = safeguard.ETA,
               steps: int = safeguard.STEPS, step_size: float = safeguard.STEP_SIZE, low: float = -1.0,
               high: float = 1.0, epsilon: float = 0.3, rngs: nnx.Rngs):
    self.obs_dim, self.act_dim = obs_dim, act_dim
    self.eta, self.steps, self.step_size, self.low, self.high = eta, steps, step_size, low, high
    self.policy = GaussianPolicy(obs_dim, act_dim, hidden, rngs=rngs)
    self.value = ValueCritic(obs_dim, hidden, rngs=rngs)
    self.safe_value = SafetyCritic(obs_dim, hidden, rngs=rngs)
    self.safe_advantage = SafetyAdvantage(obs_dim, act_dim, hidden, rngs=rngs)
    self.epsilon = nnx.Variable(jnp.asarray(epsilon, jnp.float32))

  def _guard(self, obs: jax.Array, proposal: jax.Array, enabled: bool) -> tuple[safeguard.Correction, jax.Array]:
    bound = safeguard.threshold(self.safe_value(obs), self.epsilon.value, self.eta)
    if not enabled:
      return safeguard.Correction(proposal, jnp.zeros(proposal.shape[:1], jnp.int32),
                                  self.safe_advantage(obs, jnp.clip(proposal, self.low, self.high)) - bound), bound
    return safeguard.correct(self.safe_advantage, obs, proposal, bound, steps=self.steps, step_size=self.step_size,
                             low=self.low, high=self.high), bound

  def act(self, obs: jax.Array, key: jax.Array, *, guard: bool = True) -> Action:
    """Samples a ~ π(·|s), corrects it (unless `guard=False`) and scores the executed action under π."""
    raw = self.policy.sample(obs, key)
    fixed, bound = self._guard(obs, raw, guard)
    return Action(fixed.action, raw, self.policy.log_prob(obs, fixed.action), fixed.iterations, fixed.residual, bound)

  def __call__(self, obs: jax.Array, *, guard: bool = True) -> jax.Array:
    """The safe deterministic action (policy mean through the safeguard), clipped to the action box."""
    fixed, _ = self._guard(obs, self.policy(obs), guard)
    return jnp.clip(fixed.action, self.low, self.high)
