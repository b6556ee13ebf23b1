r"""PointGoal1 candidates for the ACS family: what each JAX port builds, and its vmapped, jitted step rate.

    python benchmarks/acs_env_compare.py --env crax [--num-envs 1,16,64] [--steps 200]
    PYTHONPATH=/path/to/mjx_safety_gym_no_deps python benchmarks/acs_env_compare.py --env mjxsg
    python benchmarks/acs_env_compare.py --env pointgoal1   # the acs family's wrapper (Safety Gym settings)

`crax` is crax-bench 0.1.0's `safe_goal_point` at level 1 with the dense distance reward on
(`reward_distance_scale=1.0`); `mjxsg` is mjx-safety-gym 0.1.6's `GoToGoal` (installed with `--no-deps`, since its
metadata pins jax 0.6.0). For each: the layout it builds (hazard count and radius, goal size, arena, obstacles),
observation and action sizes, control period, then a random-action rollout: the share of steps with cost > 0, the
cost values seen, the reward range, and the step rate of `jax.jit(jax.vmap(step))` scanned over `--steps` steps
for each batch size (first call = compile, then the median of 3 timed calls). Merges its entry into
benchmarks/results/acs_env_compare.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "acs_env_compare.json"


def _build(name: str, args_keep_debug_print: bool = False):
  """Returns (env, reset(key) -> state, step(state, action) -> state, cost(state), describe() -> dict)."""
  if name == "crax":
    import mujoco
    from crax import envs

    env = envs.get_environment("safe_goal_point", level=1, reward_distance_scale=1.0)
    base = env.env
    mj = base.sys.mj_model
    hazards = base._hazard_manager.hazards

    def describe():
      return {
          "package": "crax-bench 0.1.0, envs.get_environment('safe_goal_point', level=1, reward_distance_scale=1.0)",
          "hazards": [
              {"type": h.hazard_type, "size": float(np.max(np.asarray(h.size))), "collidable": bool(h.collidable)}
              for h in hazards
          ],
          "goal_count": int(base._num_goals),
          "goal_size": float(base._goal_radii[0]),
          "placement_extents": list(base._placement_extents),
          "episode_length": int(base.episode_length),
          "control_period_s": float(mj.opt.timestep * base._n_frames),
          "observation_size": int(base.observation_size),
          "action_size": int(base.action_size),
          "actuators": [mujoco.mj_id2name(mj, mujoco.mjtObj.mjOBJ_ACTUATOR, i) for i in range(mj.nu)],
          "ctrlrange": mj.actuator_ctrlrange.tolist(),
      }

    return env, env.reset, env.step, (lambda s: s.info["cost"]), describe
  if name == "mjxsg":
    from mjx_safety_gym.envs.go_to_goal import GoToGoal

    # GoToGoal.get_cost calls jax.debug.print inside a lax.cond; under vmap the cond becomes a select, so it prints
    # (a host callback) at every step of every environment. Silenced in this process before tracing, as a user
    # would have to; it is not what makes GoToGoal slow (16 envs: 112 env-steps/s printing, 100 silenced, same load).
    if not args_keep_debug_print:
      jax.debug.print = lambda *a, **k: None
    env = GoToGoal()
    mj = env.mj_model

    def describe():
      return {
          "package": "mjx-safety-gym 0.1.6 (--no-deps), mjx_safety_gym.envs.go_to_goal.GoToGoal()",
          "hazards": [{"type": "cylinder", "size": 0.2, "collidable": False}] * env.spec["hazards"].num_objects,
          "vases": env.spec["vases"].num_objects,
          "goal_count": 1,
          "goal_size": 0.3,
          "placement_extents": [-2.0, -2.0, 2.0, 2.0],
          "episode_length": None,
          "control_period_s": float(mj.opt.timestep * 2),
          "observation_size": int(env.observation_size),
          "action_size": int(env.action_size),
          "ctrlrange": mj.actuator_ctrlrange.tolist(),
      }

    return env, env.reset, env.step, (lambda s: s.info["cost"]), describe
  if name == "pointgoal1":
    from zoo.models.acs import env as acs_env

    env = acs_env.PointGoal1()
    mj = env._inner.sys.mj_model  # pylint: disable=protected-access

    def describe():
      return {
          "package": "zoo.models.acs.env.PointGoal1 (crax-bench 0.1.0 safe_goal_point with POINTGOAL1 settings), "
                     "BatchedEnv auto-reset",
          "config": {k: v for k, v in env.config.items()},
          "control_period_s": float(mj.opt.timestep * env.config["n_frames"]),
          "observation_size": env.observation_size,
          "action_size": env.action_size,
      }

    return env, None, None, None, describe
  raise ValueError(f"unknown env {name!r}: crax, mjxsg or pointgoal1")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env", required=True, choices=["crax", "mjxsg", "pointgoal1"])
  parser.add_argument("--num-envs", default="1,16,64")
  parser.add_argument("--steps", type=int, default=200, help="steps per timed rollout")
  parser.add_argument("--keep-debug-print", action="store_true", help="mjxsg: keep its per-step jax.debug.print")
  args = parser.parse_args()

  t0 = time.perf_counter()
  env, reset, step, cost_of, describe = _build(args.env, args.keep_debug_print)
  build_s = time.perf_counter() - t0
  entry = {"describe": describe(), "build_s": round(build_s, 2), "jax": jax.__version__, "rates": [],
           "debug_print_silenced": args.env == "mjxsg" and not args.keep_debug_print}

  def rollout(keys):
    states = jax.vmap(reset)(keys)
    obs_dim = states.obs.shape[-1]

    def body(carry, key):
      s = carry
      a = jax.random.uniform(key, (keys.shape[0], entry["describe"]["action_size"]), minval=-1.0, maxval=1.0)
      s = jax.vmap(step)(s, a)
      return s, (jax.vmap(cost_of)(s), s.reward, s.done)

    step_keys = jax.random.split(jax.random.fold_in(keys[0], 1), args.steps)
    final, (costs, rewards, dones) = jax.lax.scan(body, states, step_keys)
    return obs_dim, final.obs, costs, rewards, dones

  def batched_rollout(keys):  # pointgoal1: the wrapper's own batching and auto-reset
    from zoo.models.acs import env as acs_env

    batched = acs_env.BatchedEnv(env, keys.shape[0])
    states = batched.reset(keys[0])

    def body(s, key):
      act_key, reset_key = jax.random.split(key)
      a = jax.random.uniform(act_key, (keys.shape[0], env.action_size), minval=-1.0, maxval=1.0)
      s, tr = batched.step(s, a, reset_key)
      return s, (tr.cost, tr.reward, tr.done)

    final, (costs, rewards, dones) = jax.lax.scan(body, states, jax.random.split(keys[1 % keys.shape[0]], args.steps))
    return states.obs.shape[-1], final.obs, costs, rewards, dones

  for n in [int(x) for x in args.num_envs.split(",")]:
    fn = jax.jit(batched_rollout if args.env == "pointgoal1" else rollout)
    keys = jax.random.split(jax.random.key(0), n)
    t = time.perf_counter()
    out = jax.block_until_ready(fn(keys))
    compile_and_first = time.perf_counter() - t
    times = []
    for rep in range(3):
      keys = jax.random.split(jax.random.key(rep + 1), n)
      t = time.perf_counter()
      out = jax.block_until_ready(fn(keys))
      times.append(time.perf_counter() - t)
    _, obs, costs, rewards, dones = out
    costs, rewards = np.asarray(costs), np.asarray(rewards)
    median = statistics.median(times)
    entry["rates"].append({
        "num_envs": n,
        "steps": args.steps,
        "first_call_s": round(compile_and_first, 1),
        "median_s": round(median, 3),
        "env_steps_per_s": round(n * args.steps / median),
    })
    entry["random_policy"] = {
        "obs_shape": list(np.asarray(obs).shape),
        "share_steps_cost_gt_0": float(np.mean(costs > 0)),
        "cost_values": sorted({round(float(c), 3) for c in np.unique(costs)})[:12],
        "reward_min_max": [float(rewards.min()), float(rewards.max())],
        "done_share": float(np.mean(np.asarray(dones))),
    }
    entry["rates"][-1]["load_average_1min"] = round(os.getloadavg()[0], 1)
    print(json.dumps(entry["rates"][-1]), flush=True)
  entry["load_average"] = os.getloadavg()
  print(json.dumps(entry, indent=1))

  results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
  # Keep rates measured earlier for other batch sizes (one compile per batch size: minutes on 2 cores).
  earlier = {r["num_envs"]: r for r in results.get(args.env, {}).get("rates", [])}
  earlier.update({r["num_envs"]: r for r in entry["rates"]})
  entry["rates"] = [earlier[n] for n in sorted(earlier)]
  results[args.env] = entry
  RESULTS.parent.mkdir(parents=True, exist_ok=True)
  RESULTS.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
  main()
