r"""crax-bench's own PPO-Lagrangian (code nobody here wrote) on the same PointGoal1 layout: training speed, and
return and cost in our units, beside ours.

    ZOO_CACHE_DIR=... nice -n 5 python benchmarks/acs_crax_ppo_lag.py --steps 320000 --seed 0 --name acs_crax_ppo_lag

crax's `ppo_lag.train` (Brax-style PPO in Flax linen, one jitted training epoch of `lax.scan`s) on
`crax.envs.get_environment("safe_goal_point", **zoo.models.acs.env.POINTGOAL1)`: the layout, timing and episode
length our PointGoal1 uses, but crax's own reward and cost (continuous cost 2·max(0, 1 − d/r) per hazard, positive
exactly where ours is 1), its own observation (goal compass included) and its defaults for PPO (lr 1e-4, γ 0.9,
unroll 10, 2 updates per batch, minibatches of 16 × 10 steps). 16 environments as ours; cost bound 25 per episode
(crax divides it by the episode length). `crax-train` itself needs wandb (not installed here), so this calls the
trainer's function. The run is split into `--epochs` compiled epochs (crax's `num_resets_per_eval`; environments
restart between them) so that the speed after the first (compiling) epoch can be read: environment steps over
wall-clock between epochs. crax's own `training/sps` is kept too, but crax 0.1.0 times one epoch and counts the steps
of all `num_resets_per_eval` epochs in it (`epochs` times too high); benchmarks/acs_curves.py divides it back.

After training, crax's trained policy (the `make_policy(params, deterministic=...)` its `train` returns) is evaluated
in OUR units: `--eval-episodes` (16) episodes of 1000 steps, through zoo.models.acs.env.PointGoal1's own `step` (our
wrapper holds crax's environment with the same keyword arguments, so the policy acts on crax's observation
`state.inner.obs`, the one it trained on, while the return (Safety-Gym: decrease of the distance to the goal's centre,
+1 at the goal) and the cost (steps inside a hazard) are computed by our code, not duplicated here). The layouts are
those of our PPO-Lagrangian's evaluation for the same seed (`zoo.models.acs.learner.EVAL_SEED_OFFSET`, round 0, 16
environments), deterministic (crax's tanh of the mean) and stochastic (sampled) in one compiled `lax.scan`. crax's own
reward and continuous cost are summed beside them for reference. crax's training-time episode metrics (its
MetricsLogger's `episodic/*`: `sum_reward`, `cost`, ... averaged over the episodes finished since the last log, and its
`training/*` losses and `lambda_lagr`) are recorded every `episode_length × num_envs` steps (`training_metrics_steps`;
host-side only, the compiled training program is unchanged). crax's own evaluator (`num_evals > 0`: `eval/episode_*`
over `num_eval_envs` episodes in crax's units) is not used: it would compile a second rollout for numbers the
evaluation here already gives.

Writes benchmarks/results/NAME.json (per-epoch sps, crax's training-time metrics, the evaluation, wall-clock, the
machine's load).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))  # zoo from this checkout


def ours_only(env):
  """crax's environment with the observation cut to ours (`--observation ours`): sensors, goal lidar and hazard lidar,
  without crax's goal compass (the 44 values `zoo.models.acs.env.PointGoal1` observes)."""
  from crax.envs.base import Wrapper  # pylint: disable=import-outside-toplevel

  from zoo.models.acs.env import LIDAR_BINS, SENSORS  # pylint: disable=import-outside-toplevel

  size = SENSORS + 2 * LIDAR_BINS

  class OursOnly(Wrapper):

    def reset(self, rng):
      state = self.env.reset(rng)
      return state.replace(obs=state.obs[..., :size])

    def step(self, state, action):
      state = self.env.step(state, action)
      return state.replace(obs=state.obs[..., :size])

    @property
    def observation_size(self):
      return size

  return OursOnly(env)


def evaluate(make_policy, params, seed: int, episodes: int, episode_length: int, observation: str = "crax") -> dict:
  """crax's trained policy on `episodes` PointGoal1 layouts (our PPO-Lagrangian's evaluation layouts for `seed`),
  one episode each, deterministic and stochastic, stepped by our wrapper: per episode our return and cost (steps in a
  hazard) and crax's own reward and continuous cost sums, with their mean and population std."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  from zoo.models.acs import env as acs_env  # pylint: disable=import-outside-toplevel
  from zoo.models.acs import learner  # pylint: disable=import-outside-toplevel

  env = acs_env.PointGoal1(episode_length=episode_length)
  batched = acs_env.BatchedEnv(env, episodes)
  deterministic = jnp.arange(2 * episodes) < episodes  # first half: policy mode; second half: sampled actions

  @jax.jit
  def run(params, key):
    reset_key, key = jax.random.split(key)  # as learner.runner's `run`: the same layouts as our evaluation
    state = batched.reset(reset_key)
    state = jax.tree.map(lambda x: jnp.concatenate([x, x]), state)  # the same layouts for both modes
    mode, sample = make_policy(params, deterministic=True), make_policy(params, deterministic=False)

    def body(carry, k):
      s, alive = carry
      obs = s.inner.obs if observation == "crax" else s.obs  # what the policy trained on
      action = jnp.where(deterministic[:, None], mode(obs, k)[0], sample(obs, k)[0])
      s, t = jax.vmap(env.step)(s, action)
      live = alive.astype(jnp.float32)
      sums = {"return": t.reward * live, "cost": t.cost * live, "crax_reward": s.inner.reward * live,
              "crax_cost": s.inner.info["cost"] * live, "steps": live}
      return (s, alive & ~t.done), sums

    _, sums = jax.lax.scan(body, (state, jnp.ones(2 * episodes, bool)), jax.random.split(key, episode_length))
    return jax.tree.map(lambda x: x.sum(0), sums)

  t0 = time.time()
  key = jax.random.fold_in(jax.random.key(seed + learner.EVAL_SEED_OFFSET), 0)
  sums = {k: np.asarray(v) for k, v in jax.device_get(run(params, key)).items()}
  out = {"episodes": episodes, "episode_length": episode_length, "seconds": time.time() - t0,
         "layouts": f"our evaluation's: key(seed + {learner.EVAL_SEED_OFFSET}), round 0, {episodes} environments"}
  for name, part in (("deterministic", slice(0, episodes)), ("stochastic", slice(episodes, 2 * episodes))):
    block = {k: v[part].tolist() for k, v in sums.items()}
    block.update({f"{k}_mean": float(np.mean(v[part])) for k, v in sums.items()})
    block.update({f"{k}_std": float(np.std(v[part])) for k, v in sums.items()})
    block["violation_rate"] = float(np.sum(sums["cost"][part]) / np.sum(sums["steps"][part]))
    out[name] = block
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=320_000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num-envs", type=int, default=16)
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--name", default="acs_crax_ppo_lag")
  parser.add_argument("--eval-episodes", type=int, default=16)
  parser.add_argument("--observation", choices=("crax", "ours"), default="crax",
                      help="crax: crax's own 46 values (goal compass included); ours: the 44 our PointGoal1 observes")
  args = parser.parse_args()

  from zoo import cache  # pylint: disable=import-outside-toplevel
  cache.enable_compilation_cache()
  from crax import envs  # pylint: disable=import-outside-toplevel
  from crax.training.agents.ppo_lag import train as ppo_lag_train  # pylint: disable=import-outside-toplevel

  from zoo.models.acs.env import BUDGET, POINTGOAL1  # pylint: disable=import-outside-toplevel

  episode_length = int(POINTGOAL1["episode_length"])
  kwargs = {k: v for k, v in POINTGOAL1.items() if k != "episode_length"}
  env = envs.get_environment("safe_goal_point", episode_length=episode_length, **kwargs)
  if args.observation == "ours":
    env = ours_only(env)
  epochs, logged, start = [], [], time.time()

  def progress(step, metrics):
    record = {"env_steps": int(step), "seconds": time.time() - start, "load_1min": os.getloadavg()[0]}
    record.update({k: float(v) for k, v in metrics.items() if np.ndim(v) == 0})
    if "training/walltime" in metrics:  # the end of a compiled epoch (ppo.train's own call)
      epochs.append(record)
      print(f"{step} steps, {record['seconds']:.0f} s, sps {record.get('training/sps', float('nan')):.0f}", flush=True)
    else:  # crax's MetricsLogger, from inside the epoch: episodic/* and training/* averages since its last log
      logged.append(record)
      print(f"{step} steps: crax episodic/sum_reward {record.get('episodic/sum_reward', float('nan')):.2f}, "
            f"episodic/cost {record.get('episodic/cost', float('nan')):.1f}", flush=True)

  make_policy, params, _, _ = ppo_lag_train(
      environment=env, num_timesteps=args.steps, episode_length=episode_length, num_envs=args.num_envs,
      batch_size=16, num_minibatches=16, num_evals=0, num_resets_per_eval=args.epochs, seed=args.seed,
      safety_bound=BUDGET, progress_fn=progress, training_metrics_steps=episode_length * args.num_envs)
  wall = time.time() - start
  evaluation = evaluate(make_policy, params, args.seed, args.eval_episodes, episode_length, args.observation)
  # steps / wall-clock between consecutive epochs after the first (crax 0.1.0's own training/sps times one epoch but
  # counts the steps of all `num_resets_per_eval` epochs: it reads `epochs` times too high)
  steady = [(b["env_steps"] - a["env_steps"]) / (b["seconds"] - a["seconds"]) for a, b in zip(epochs, epochs[1:])]
  out = {"machine": platform.platform(), "steps": args.steps, "seed": args.seed, "num_envs": args.num_envs,
         "observation": args.observation,
         "epochs_per_run": args.epochs, "wall_seconds": wall, "epochs": epochs,
         "steady_sps_median": float(np.median(steady)) if steady else None,
         "first_epoch_seconds": epochs[0]["seconds"] if epochs else None, "crax_training_log": logged,
         "eval": evaluation}
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=2) + "\n")
  print(json.dumps({k: v for k, v in out.items() if k not in ("epochs", "crax_training_log")}, indent=2))


if __name__ == "__main__":
  main()
