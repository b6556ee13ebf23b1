"""ACS building blocks without MuJoCo (no `rl` extra needed): the safeguard's direction and stopping rule, the ε
schedule and threshold, the agent scoring the executed action, GAE and the safety labels, PPO(-Lagrangian), and
experience collection in a toy batched environment."""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, struct

from zoo import errors
from zoo.models import acs
from zoo.models.acs import env as acs_env
from zoo.models.acs import ppo, rollout, safeguard, targets

TARGET = jnp.array([0.6, -0.4])


class ToyAdvantage(nnx.Module):
  """A_s(s, a) = s₀ − |a − a*|²: highest at a* (inside the action box), raised by moving a towards a*."""

  def __init__(self):
    self.target = nnx.Param(TARGET)

  def __call__(self, obs, action):
    return obs[:, 0] - jnp.sum((action - self.target.value) ** 2, axis=-1)


def _start():
  obs = jnp.zeros((3, 4))
  action = jnp.array([[-0.2, 0.5], [0.0, 0.0], [0.9, 0.4]])  # within 20 steps of 0.05 of a*
  return obs, action


def test_ascending_raises_the_safety_advantage_and_the_research_codes_sign_lowers_it():
  adv = ToyAdvantage()
  obs, action = _start()
  before = adv(obs, action)
  bound = jnp.full((3,), -0.05)
  up = safeguard.correct(adv, obs, action, bound, direction=1.0)
  down = safeguard.correct(adv, obs, action, bound, direction=-1.0)
  assert np.all(np.asarray(adv(obs, up.action)) > np.asarray(before))
  assert np.all(np.asarray(up.residual) >= 0), "ascent reaches the bound within 20 steps of 0.05"
  assert np.all(np.asarray(adv(obs, jnp.clip(down.action, -1, 1))) < np.asarray(before))
  assert np.all(np.asarray(down.residual) < 0) and np.all(np.asarray(down.iterations) == safeguard.STEPS)


def test_safeguard_stops_at_the_bound_and_leaves_satisfied_actions_alone():
  adv = ToyAdvantage()
  obs, action = _start()
  action = action.at[1].set(TARGET + 0.01)  # already satisfies the bound
  out = safeguard.correct(adv, obs, action, jnp.full((3,), -0.05))
  np.testing.assert_array_equal(np.asarray(out.action[1]), np.asarray(action[1]))
  assert int(out.iterations[1]) == 0
  # each step moves the largest component by exactly 0.05 (normalised gradient), so ≤ STEPS·0.05 in ∞-norm
  moved = np.max(np.abs(np.asarray(out.action - action)), axis=-1)
  assert np.all(moved <= np.asarray(out.iterations) * safeguard.STEP_SIZE + 1e-6)
  # stopping: one step fewer would not satisfy the bound
  fewer = safeguard.correct(adv, obs, action, jnp.full((3,), -0.05), steps=int(out.iterations[0]) - 1)
  assert float(fewer.residual[0]) < 0 <= float(out.residual[0])


def test_epsilon_schedule_and_threshold():
  eps = np.asarray([safeguard.epsilon_schedule(k) for k in range(15)])
  np.testing.assert_allclose(eps[:3], [3.7, 3.4, 3.1], rtol=1e-6)
  assert np.all(np.diff(eps) <= 0) and eps[11] == pytest.approx(0.4) and eps[12] == pytest.approx(0.3) and eps[-1] == pytest.approx(0.3)
  # h = −η(V_s − (1 − ε)): with V_s at the target probability 1 − ε the constraint asks A_s ≥ 0
  assert float(safeguard.threshold(jnp.array(0.7), 0.3)) == pytest.approx(0.0, abs=1e-7)
  assert float(safeguard.threshold(jnp.array(1.0), 0.3)) == pytest.approx(-0.8 * 0.3)


def test_agent_scores_the_executed_action_not_the_raw_sample():
  agent = acs.ACSAgent(4, 2, rngs=nnx.Rngs(0))
  agent.safe_advantage = ToyAdvantage()  # a critic whose correction we know
  agent.epsilon.value = jnp.asarray(0.3)
  obs = jnp.zeros((5, 4))
  step = agent.act(obs, jax.random.key(0))
  corrected = np.asarray(step.iterations) > 0
  assert corrected.any(), "the toy critic must make the safeguard act"
  np.testing.assert_allclose(np.asarray(step.log_prob), np.asarray(agent.policy.log_prob(obs, step.action)), rtol=1e-6)
  raw_logp = np.asarray(agent.policy.log_prob(obs, step.raw))
  assert np.all(np.abs(np.asarray(step.log_prob)[corrected] - raw_logp[corrected]) > 1e-3)
  # unguarded: executed == raw sample
  free = agent.act(obs, jax.random.key(0), guard=False)
  np.testing.assert_array_equal(np.asarray(free.action), np.asarray(free.raw))
  # the deterministic call is the guarded mean; the raw policy action is agent.policy(obs)
  safe, raw = np.asarray(agent(obs)), np.asarray(agent.policy(obs))
  assert safe.shape == raw.shape == (5, 2) and np.all(np.abs(safe) <= 1)
  assert np.all(np.asarray(agent.safe_advantage(obs, jnp.asarray(safe))) >= np.asarray(
      agent.safe_advantage(obs, jnp.clip(jnp.asarray(raw), -1, 1))))


def test_agent_rejects_a_wrong_observation_shape():
  agent = acs.ACSAgent(4, 2, rngs=nnx.Rngs(0))
  with pytest.raises(errors.InputShapeError):
    agent(jnp.zeros((4,)))
  with pytest.raises(errors.InputShapeError):
    agent(jnp.zeros((2, 5)))


def test_environment_without_the_rl_extra_names_the_install_command(monkeypatch):
  from zoo.models.acs import env  # importing the module itself needs no extra

  monkeypatch.setitem(sys.modules, "crax", None)  # as if crax-bench were not installed
  with pytest.raises(errors.MissingExtraError, match=r"pip install -e '\.\[rl\]'"):
    env.PointGoal1()


def _gae_loop(rewards, values, next_values, done, gamma, lam):
  t_len, batch = rewards.shape
  adv = np.zeros((t_len, batch))
  for b in range(batch):
    running = 0.0
    for t in reversed(range(t_len)):
      keep = 1.0 - done[t, b]
      delta = rewards[t, b] + gamma * keep * next_values[t, b] - values[t, b]
      running = delta + gamma * lam * keep * running
      adv[t, b] = running
  return adv


def test_gae_matches_a_plain_loop_and_does_not_bootstrap_across_episode_ends():
  rng = np.random.default_rng(0)
  rewards, values, next_values = (rng.normal(size=(7, 3)).astype(np.float32) for _ in range(3))
  done = np.zeros((7, 3), np.float32)
  done[2, 0] = done[4, 1] = done[6, 2] = 1.0
  for gamma, lam in [(0.99, 0.97), (0.99, 1.0)]:
    adv, ret = targets.gae(*map(jnp.asarray, (rewards, values, next_values, done)), gamma, lam)
    np.testing.assert_allclose(np.asarray(adv), _gae_loop(rewards, values, next_values, done, gamma, lam),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ret), np.asarray(adv) + values, rtol=1e-6)
  # at an episode end the advantage is r − V: nothing from the next episode leaks in
  assert float(adv[2, 0]) == pytest.approx(rewards[2, 0] - values[2, 0], rel=1e-6)


def test_safety_targets_label_every_step_with_its_episodes_outcome():
  # one env: episode A = steps 0-2 (cost 30 > 25), episode B = steps 3-5 (cost 2), steps 6-7 still running
  done = jnp.array([0, 0, 1, 0, 0, 1, 0, 0], bool)[:, None]
  episode_cost = jnp.array([0, 0, 30, 0, 0, 2, 0, 0], jnp.float32)[:, None]
  labels, known = targets.episode_safety_targets(done, episode_cost, 25.0)
  np.testing.assert_array_equal(np.asarray(labels[:6, 0]), [0, 0, 0, 1, 1, 1])
  np.testing.assert_array_equal(np.asarray(known[:, 0]), [1, 1, 1, 1, 1, 1, 0, 0])
  # exactly at the budget is a violation: the constraint is Σc < d
  labels, _ = targets.episode_safety_targets(done, episode_cost.at[5, 0].set(25.0), 25.0)
  assert float(labels[3, 0]) == 0.0


def test_ppo_loss_at_the_old_policy_and_a_bandit_that_ppo_solves():
  import optax  # pylint: disable=import-outside-toplevel

  policy = acs.GaussianPolicy(3, 1, (16,), rngs=nnx.Rngs(0))
  obs = jnp.ones((256, 3))
  target = 0.5  # reward −(a − 0.5)²: the best action is 0.5; the initial mean is ≈ 0
  optimizer = nnx.Optimizer(policy, optax.adam(3e-3), wrt=nnx.Param)
  key = jax.random.key(0)
  start = float(policy(obs[:1])[0, 0])
  for _ in range(40):
    key, sub = jax.random.split(key)
    actions = policy.sample(obs, sub)
    old = policy.log_prob(obs, actions)
    adv = ppo.normalise(-(actions[:, 0] - target) ** 2)
    loss, info = ppo.policy_loss(policy, obs, actions, old, adv)
    assert float(loss) == pytest.approx(-float(adv.mean()), abs=1e-5) and abs(float(info["approx_kl"])) < 1e-6
    for _ in range(5):
      out = ppo.policy_step(optimizer, policy, obs, actions, old, adv)
      if float(out["approx_kl"]) > 1.5 * ppo.TARGET_KL:
        break
  assert abs(float(policy(obs[:1])[0, 0]) - target) < 0.1 < abs(start - target)


def test_lagrangian_multiplier_and_advantages():
  lam = ppo.multiplier_step(jnp.asarray(0.0), jnp.array([40.0, 30.0]), 25.0, 0.01)
  assert float(lam) == pytest.approx(0.1)
  assert float(ppo.multiplier_step(jnp.asarray(0.05), jnp.array([0.0]), 25.0, 0.01)) == 0.0  # never negative
  mixed = ppo.lagrangian_advantages(jnp.array([1.0]), jnp.array([2.0]), jnp.asarray(1.0))
  assert float(mixed[0]) == pytest.approx(-0.5)


@struct.dataclass
class _ToyState:
  obs: jax.Array
  steps: jax.Array
  cost: jax.Array


@dataclasses.dataclass(frozen=True)
class _ToyBatchedEnv:
  """Points in the plane (obs = position, padded to 4) moving by 0.1·clip(a); cost 1 within 0.3 of (0.5, 0);
  3-step episodes that restart at the origin."""

  def reset(self, batch):
    return _ToyState(jnp.zeros((batch, 4)), jnp.zeros((batch,), jnp.int32), jnp.zeros((batch,)))

  def step(self, s, actions, key):
    del key
    pos = s.obs.at[:, :2].add(0.1 * jnp.clip(actions, -1, 1))
    cost = (jnp.linalg.norm(pos[:, :2] - jnp.array([0.5, 0.0]), axis=-1) < 0.3).astype(jnp.float32)
    steps, total = s.steps + 1, s.cost + cost
    done = steps >= 3
    tr = acs_env.Transition(-jnp.linalg.norm(pos[:, :2], axis=-1), cost, done, total, jnp.zeros_like(total), pos)
    keep = ~done[:, None]
    return _ToyState(jnp.where(keep, pos, 0.0), jnp.where(done, 0, steps), jnp.where(done, 0.0, total)), tr


def test_collect_records_the_executed_action_and_its_log_prob():
  agent = acs.ACSAgent(4, 2, rngs=nnx.Rngs(0))
  agent.safe_advantage = ToyAdvantage()
  env = _ToyBatchedEnv()
  run = nnx.jit(rollout.collect, static_argnums=(1, 4, 5))
  _, out = run(agent, env, env.reset(5), jax.random.key(0), 7, True)
  assert out.obs.shape == (7, 5, 4) and out.action.shape == (7, 5, 2) and out.cost.shape == (7, 5)
  np.testing.assert_allclose(
      np.asarray(out.log_prob).ravel(),
      np.asarray(agent.policy.log_prob(out.obs.reshape(-1, 4), out.action.reshape(-1, 2))), rtol=1e-5, atol=1e-5)
  assert np.any(np.asarray(out.iterations) > 0)
  # the environment moved by the executed (corrected) action, not by the raw sample
  np.testing.assert_allclose(np.asarray(out.next_obs[..., :2] - out.obs[..., :2]),
                             0.1 * np.clip(np.asarray(out.action), -1, 1), atol=1e-6)
  np.testing.assert_array_equal(np.asarray(out.done[:, 0]), [0, 0, 1, 0, 0, 1, 0])
  _, free = run(agent, env, env.reset(5), jax.random.key(0), 7, False)
  np.testing.assert_array_equal(np.asarray(free.action), np.asarray(free.raw))
  assert np.all(np.asarray(free.iterations) == 0)
