r"""crax-bench's own PPO-Lagrangian (code nobody here wrote) on the same PointGoal1 layout: training speed beside ours.

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

Writes benchmarks/results/NAME.json (per-epoch sps and episode metrics, wall-clock, the machine's load).
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


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=320_000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num-envs", type=int, default=16)
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--name", default="acs_crax_ppo_lag")
  args = parser.parse_args()

  from zoo import cache  # pylint: disable=import-outside-toplevel
  cache.enable_compilation_cache()
  from crax import envs  # pylint: disable=import-outside-toplevel
  from crax.training.agents.ppo_lag import train as ppo_lag_train  # pylint: disable=import-outside-toplevel

  from zoo.models.acs.env import BUDGET, POINTGOAL1  # pylint: disable=import-outside-toplevel

  episode_length = int(POINTGOAL1["episode_length"])
  kwargs = {k: v for k, v in POINTGOAL1.items() if k != "episode_length"}
  env = envs.get_environment("safe_goal_point", episode_length=episode_length, **kwargs)
  epochs, start = [], time.time()

  def progress(step, metrics):
    record = {"env_steps": int(step), "seconds": time.time() - start, "load_1min": os.getloadavg()[0]}
    record.update({k: float(v) for k, v in metrics.items() if getattr(v, "ndim", 0) == 0})
    epochs.append(record)
    print(f"{step} steps, {record['seconds']:.0f} s, sps {record.get('training/sps', float('nan')):.0f}", flush=True)

  ppo_lag_train(environment=env, num_timesteps=args.steps, episode_length=episode_length, num_envs=args.num_envs,
                batch_size=16, num_minibatches=16, num_evals=0, num_resets_per_eval=args.epochs, seed=args.seed,
                safety_bound=BUDGET, progress_fn=progress)
  wall = time.time() - start
  # steps / wall-clock between consecutive epochs after the first (crax 0.1.0's own training/sps times one epoch but
  # counts the steps of all `num_resets_per_eval` epochs: it reads `epochs` times too high)
  steady = [(b["env_steps"] - a["env_steps"]) / (b["seconds"] - a["seconds"]) for a, b in zip(epochs, epochs[1:])]
  out = {"machine": platform.platform(), "steps": args.steps, "seed": args.seed, "num_envs": args.num_envs,
         "epochs_per_run": args.epochs, "wall_seconds": wall, "epochs": epochs,
         "steady_sps_median": float(np.median(steady)) if steady else None,
         "first_epoch_seconds": epochs[0]["seconds"] if epochs else None}
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=2) + "\n")
  print(json.dumps({k: v for k, v in out.items() if k != "epochs"}, indent=2))


if __name__ == "__main__":
  main()
