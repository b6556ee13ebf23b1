"""The PointGoal1 wrapper on crax-bench (needs the `rl` extra): binary cost inside hazards, the Safety-Gym reward
(no spurious penalty after a goal respawns, which crax's own dense reward has), the 44-value observation, episode
ends, counters and auto-reset. One compile of a short batched rollout (about a minute on 2 cores)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import require_rl

require_rl("the ACS environment")
pytestmark = pytest.mark.rl

from zoo.models.acs import env as acs_env  # pylint: disable=wrong-import-position

EPISODE = 5
STEPS = 8


@pytest.fixture(scope="module")
def rollout():
  """Two environments, zero actions (the point stays put): env 0 with a hazard moved onto the agent, env 1 with
  the goal moved 0.1 m from the agent (inside its 0.3 m radius)."""
  env = acs_env.PointGoal1(episode_length=EPISODE)
  batched = acs_env.BatchedEnv(env, 2)

  @jax.jit
  def run(key):
    state = batched.reset(key)
    inner = state.inner
    agent = jax.vmap(env.agent_xy)(inner)
    info = dict(inner.info)
    info["hazard_positions"] = info["hazard_positions"].at[0, 0, :2].set(agent[0])
    info["goal_positions"] = info["goal_positions"].at[1, 0, :2].set(agent[1] + jnp.array([0.1, 0.0]))
    inner = inner.replace(info=info)
    state = state.replace(inner=inner, last_distance=jax.vmap(env.goal_distance)(inner))

    def body(s, k):
      s, tr = batched.step(s, jnp.zeros((2, env.action_size)), k)
      return s, (tr, s.steps, s.inner.reward, s.inner.obs, s.obs, s.last_distance)

    return state, jax.lax.scan(body, state, jax.random.split(jax.random.key(1), STEPS))

  return env, run(jax.random.key(0))


def test_observation_is_sensors_and_two_lidars(rollout):
  env, (start, (_, (_, _, _, inner_obs, obs, _))) = rollout
  assert env.observation_size == 44 and env.action_size == 2
  assert start.obs.shape == (2, 44) and obs.shape == (STEPS, 2, 44) and inner_obs.shape == (STEPS, 2, 46)
  np.testing.assert_array_equal(np.asarray(obs), np.asarray(inner_obs[..., :44]))
  lidars = np.asarray(obs[..., 12:])
  assert np.all(np.isfinite(np.asarray(obs))) and lidars.min() >= 0 and lidars.max() <= 1
  assert np.all(lidars[..., :16].max(-1) > 0), "the goal lies within the 3 m lidar range in a 3 m arena"


def test_cost_is_one_exactly_while_inside_a_hazard_and_counts_per_episode(rollout):
  _, (_, (_, (tr, steps, _, _, _, _))) = rollout
  cost = np.asarray(tr.cost)
  assert set(np.unique(cost)) <= {0.0, 1.0}
  np.testing.assert_array_equal(cost[:EPISODE, 0], 1.0)  # parked on a hazard for the whole first episode
  np.testing.assert_array_equal(cost[EPISODE:, 0], 0.0)  # fresh layout: hazards keep out of the start
  done = np.asarray(tr.done)
  np.testing.assert_array_equal(done[:, 0], np.arange(1, STEPS + 1) % EPISODE == 0)
  assert float(tr.episode_cost[EPISODE - 1, 0]) == EPISODE
  np.testing.assert_array_equal(np.asarray(steps[:, 0]), [1, 2, 3, 4, 0, 1, 2, 3])  # reset after the last step


def test_reward_is_safety_gyms_and_has_no_penalty_after_a_goal_respawn(rollout):
  env, (_, (_, (tr, _, crax_reward, _, _, distance))) = rollout
  reward = np.asarray(tr.reward[:, 1])
  assert reward[0] == pytest.approx(1.0, abs=0.02), "goal reached: +1 and (almost) no distance change"
  np.testing.assert_allclose(reward[1:EPISODE], 0.0, atol=0.02)  # parked: distance to the new goal unchanged
  # crax's own dense reward, on the step after the respawn, charges the whole distance to the new goal's boundary
  new_goal_boundary = float(distance[0, 1]) - env.goal_size
  assert new_goal_boundary > 0.05
  assert float(crax_reward[1, 1]) == pytest.approx(-new_goal_boundary, abs=0.01)
  np.testing.assert_allclose(np.asarray(tr.episode_reward[EPISODE - 1, 1]), reward[:EPISODE].sum(), rtol=1e-5)
