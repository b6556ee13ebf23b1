"""ACS building blocks without MuJoCo (no `rl` extra needed): the safeguard's direction and stopping rule, the ε
schedule and threshold, the agent scoring the executed action, GAE and the safety labels, PPO(-Lagrangian), experience
collection in a toy batched environment, the learner's update for each method, the registered variants and their
verification."""

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
    tr = acs_env.Transition(-jnp.linalg.norm(pos[:, :2], axis=-1), cost, done, total, jnp.zeros_like(total), pos,
                            jnp.zeros_like(done))
    keep = ~done[:, None]
    return _ToyState(jnp.where(keep, pos, 0.0), jnp.where(done, 0, steps), jnp.where(done, 0.0, total)), tr


def test_collect_records_the_executed_action_and_its_log_prob():
  agent = acs.ACSAgent(4, 2, rngs=nnx.Rngs(0))
  agent.safe_advantage = ToyAdvantage()
  env = _ToyBatchedEnv()
  run = nnx.jit(rollout.collect, static_argnums=(1, 4))
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


def test_gae_bootstraps_a_time_limit_end_but_not_a_termination():
  rewards = jnp.ones((3, 2))
  values, next_values = jnp.zeros((3, 2)), jnp.full((3, 2), 10.0)
  done = jnp.array([[0, 0], [1, 1], [0, 0]], bool)
  terminal = jnp.array([[0, 0], [0, 1], [0, 0]], bool)  # env 0: time limit at step 1; env 1: a true end
  adv, _ = targets.gae(rewards, values, next_values, done, 0.5, 1.0, terminal)
  assert float(adv[1, 0]) == pytest.approx(1.0 + 0.5 * 10.0) and float(adv[1, 1]) == pytest.approx(1.0)
  # the sum still stops at both ends: step 0 sees step 1's delta, nothing of step 2
  assert float(adv[0, 0]) == pytest.approx(1.0 + 0.5 * 10.0 + 0.5 * float(adv[1, 0]))


def test_the_agents_own_critic_rises_under_ascent_and_falls_under_the_research_codes_sign():
  """On the ACS agent's MLP A_s (not a toy): one normalised step of size 0.05 along +∇_a A_s raises A_s for (almost)
  every state, the research code's literal sign lowers it."""
  agent = acs.ACSAgent(44, 2, rngs=nnx.Rngs(3))
  obs = jnp.asarray(acs.report.observations(44, 256))
  action = jnp.asarray(np.random.default_rng(0).uniform(-0.8, 0.8, (256, 2)), jnp.float32)
  before = np.asarray(agent.safe_advantage(obs, action))
  never = jnp.full((256,), jnp.inf)  # an unreachable bound: every row takes the step
  after = {d: np.asarray(agent.safe_advantage(obs, jnp.clip(
      safeguard.correct(agent.safe_advantage, obs, action, never, steps=1, direction=d).action, -1, 1)))
           for d in (1.0, -1.0)}
  assert np.mean(after[1.0] > before) > 0.95 and np.mean(after[-1.0] < before) > 0.95


def test_fit_policy_stops_at_the_kl_limit_and_fit_regression_fits():
  import optax  # pylint: disable=import-outside-toplevel

  policy = acs.GaussianPolicy(3, 1, (16,), rngs=nnx.Rngs(0))
  opt = nnx.Optimizer(policy, optax.adam(1e-2), wrt=nnx.Param)
  obs = jnp.asarray(np.random.default_rng(0).normal(size=(128, 3)), jnp.float32)
  actions = policy.sample(obs, jax.random.key(1))
  old = policy.log_prob(obs, actions)
  adv = ppo.normalise(actions[:, 0])
  info = nnx.jit(lambda p, o: ppo.fit_policy(p, o, obs, actions, old, adv, iterations=80))(policy, opt)
  taken = int(info["pi_iterations"])
  assert 0 < taken < 80, "a large learning rate must hit the KL stop before 80 steps"
  kl = float(jnp.mean(old - policy.log_prob(obs, actions)))
  assert kl > 1.5 * ppo.TARGET_KL >= float(info["approx_kl"])  # stopped at the first step measured above the limit
  critic = acs.ValueCritic(3, (16,), rngs=nnx.Rngs(0))
  copt = nnx.Optimizer(critic, optax.adam(1e-2), wrt=nnx.Param)
  target = obs[:, 0] * 2.0
  first = float(ppo.fit_regression(critic, copt, (obs,), target, iterations=200))
  assert float(jnp.mean((critic(obs) - target) ** 2)) < 0.1 * first
  # a masked-out row does not pull the fit
  mask = jnp.arange(128) >= 1
  critic2 = acs.ValueCritic(3, (16,), rngs=nnx.Rngs(0))
  copt2 = nnx.Optimizer(critic2, optax.adam(1e-2), wrt=nnx.Param)
  ppo.fit_regression(critic2, copt2, (obs,), target.at[0].set(1e6), iterations=200, mask=mask)
  assert abs(float(critic2(obs[:1])[0])) < 100


def _toy_config(**acs_fields):
  import ml_collections  # pylint: disable=import-outside-toplevel

  c = ml_collections.ConfigDict()
  c.seed = 0
  c.env = ml_collections.ConfigDict(dict(episode_length=3, num_envs=5, steps=6, budget=1.0))
  c.ppo = ml_collections.ConfigDict(dict(gamma=0.99, lam=0.97, clip=0.2, target_kl=0.01, pi_lr=3e-4, vf_lr=1e-3,
                                         pi_iters=5, vf_iters=5))
  c.lagrangian = ml_collections.ConfigDict(dict(lr=0.5, init=0.0))
  c.acs = ml_collections.ConfigDict(dict(reward_cost_penalty=0.1, safety_lr=1e-3, safety_iters=5,
                                         safety_advantage_iters=5, epsilon_start=4.0, epsilon_decay=0.3,
                                         epsilon_floor=0.3, **acs_fields))
  c.eval = ml_collections.ConfigDict(dict(rounds=1))
  return c


@pytest.mark.parametrize("method", ["acs", "ppo", "ppo-lag"])
def test_update_trains_each_method_from_a_toy_rollout(method):
  """The learner's compiled update on a rollout of the toy environment (no MuJoCo): every network with an
  optimizer changes, the metrics are finite, PPO-Lagrangian's λ grows when the episode cost exceeds the budget."""
  agent = acs.ACSAgent(4, 2, (16,), method=method, rngs=nnx.Rngs(0))
  config = _toy_config()
  opts = acs.learner.Optimizers(agent, 3e-4, 1e-3, 1e-3)
  env = _ToyBatchedEnv()
  start = env.reset(5).replace(obs=jnp.tile(jnp.array([0.4, 0.0, 0.0, 0.0]), (5, 1)))  # next to the hazard
  _, out = nnx.jit(rollout.collect, static_argnums=(1, 4))(acs.learner.actor(agent), env, start,
                                                           jax.random.key(0), 6, True)
  before = jax.tree.map(np.asarray, nnx.state(agent, nnx.Param))
  settings = acs.learner.Settings(pi_iters=5, vf_iters=5, budget=1.0, lagrangian_lr=0.5, safety_iters=5,
                                  safety_advantage_iters=5)
  info = {k: float(v) for k, v in acs.learner.update(agent, opts, out, settings).items()}
  assert all(np.isfinite(v) for v in info.values()), info
  after = nnx.state(agent, nnx.Param)
  changed = {path[0].key for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(before), jax.tree.leaves(after))
             if not np.array_equal(a, np.asarray(b))}
  expected = {"acs": {"policy", "value", "safe_value", "safe_advantage"}, "ppo": {"policy", "value"},
              "ppo-lag": {"policy", "value", "cost_value"}}[method]
  assert changed == expected, changed
  assert info["episodes"] == 10 and info["violation_rate"] > 0
  if method == "ppo-lag":
    assert info["cost"] > 1.0 and info["multiplier"] == pytest.approx(0.5 * (info["cost"] - 1.0), rel=1e-5)
    assert float(agent.multiplier.value) == pytest.approx(info["multiplier"])
  else:
    assert "multiplier" not in info


def test_registered_variants_return_the_safe_action_and_pass_verify():
  import zoo  # pylint: disable=import-outside-toplevel

  assert {"acs-pointgoal1", "ppo-lag-pointgoal1", "ppo-pointgoal1"} <= set(zoo.list_models("*-pointgoal1"))
  agent = zoo.create("acs-pointgoal1")
  assert agent.method == "acs" and zoo.create("ppo-lag-pointgoal1").method == "ppo-lag"
  obs = jnp.asarray(acs.report.observations(44, 64))
  safe, unguarded, raw = agent(obs), agent(obs, guard=False), agent.policy(obs)
  np.testing.assert_array_equal(np.asarray(unguarded), np.clip(np.asarray(raw), -1, 1))
  fixed, _ = agent.correction(obs, raw)
  np.testing.assert_allclose(np.asarray(safe), np.clip(np.asarray(fixed.action), -1, 1), atol=1e-6)
  assert np.any(np.asarray(fixed.iterations) > 0), "at ε = 0.3 a fresh critic leaves some proposals unsafe"
  for name in ("acs-pointgoal1", "ppo-lag-pointgoal1", "ppo-pointgoal1"):
    checks = zoo.verify(zoo.create(name), measure=False)  # the episodes `zoo verify` adds: tests/test_acs_train.py
    assert checks and all(c.passed for c in checks), [str(c) for c in checks]


@pytest.mark.parametrize("change, field", [({"iterations": 0}, "iterations"), ({"seed": -1}, "seed"),
                                           ({"checkpoint_every_steps": 0}, "checkpoint_every_steps"),
                                           ({"env.steps": 12}, "env.steps")])
def test_bad_rl_configs_are_refused_before_training(tmp_path, change, field):
  from tests.conftest import load_config  # pylint: disable=import-outside-toplevel
  from train.trainer import train_and_evaluate  # pylint: disable=import-outside-toplevel

  with pytest.raises(errors.ConfigError) as info:
    train_and_evaluate(load_config("configs/acs.py", "ppo-lag,smoke", **change), tmp_path / "run")
  assert info.value.field == field and field in str(info.value)
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_safety_advantage_target_is_the_episodes_outcome_minus_v_s():
  done = jnp.array([0, 0, 1, 0, 0, 1], bool)[:, None]
  episode_cost = jnp.array([0, 0, 30, 0, 0, 2], jnp.float32)[:, None]
  labels, _ = targets.episode_safety_targets(done, episode_cost, 25.0)
  v = jnp.array([0.9, 0.7, 0.4, 0.8, 0.6, 0.95])[:, None]
  next_v = jnp.concatenate([v[1:], jnp.array([[0.5]])])  # V_s of the state each step reached (before a reset)
  adv = np.asarray(targets.safety_advantages(v, next_v, done, labels))[:, 0]
  np.testing.assert_allclose(adv, np.asarray(labels - v)[:, 0], atol=1e-6)  # 0 − V_s, then 1 − V_s
  discounted = np.asarray(targets.safety_advantages(v, next_v, done, labels, 0.99))[:, 0]
  assert discounted[3] == pytest.approx(0.99**3 * 1.0 - 0.8, abs=1e-6)  # γ^(steps left) × outcome − V_s
