r"""ACS and its baselines on Safety Gym PointGoal1 (crax-bench MJX port; needs `pip install -e '.[rl]'`).

    python -m train --config configs/acs.py:pointgoal1 --workdir runs/acs-pointgoal1     # ACS
    python -m train --config configs/acs.py:ppo-lag --workdir runs/ppo-lag-pointgoal1    # PPO-Lagrangian
    python -m train --config configs/acs.py:ppo --workdir runs/ppo-pointgoal1            # unconstrained PPO
    python -m train --config configs/acs.py:pointgoal1,smoke --workdir /tmp/acs-smoke    # tiny: tests
    python -m train --config configs/acs.py:ppo-lag --config.seed=1 --config.iterations=7 --workdir ...

The three variants share every setting (harness, budget, seeds); only the registered model (its `method`) differs.
Defaults: the authors' research code (Spinning Up PPO: γ 0.99, λ 0.97, clip 0.2, π lr 3e-4 with 80 iterations and
KL stop 0.015, V lr 1e-3 with 80 iterations, tanh 64×64; ACS: η 0.8, ε_k = max(4 − 0.3 (k + 1), 0.3), reward
r − 0.1 c, safety critics 80 / 160 Adam steps at 1e-3, the safety advantage undiscounted (zoo/models/acs/learner.py
says why); cost budget d = 25) and its 16k environment steps per epoch
(here 16 environments × one 1000-step episode). 20 iterations = 3.2e5 environment steps.
"""

import ml_collections

import zoo.training

MODELS = {"pointgoal1": "acs-pointgoal1", "ppo-lag": "ppo-lag-pointgoal1", "ppo": "ppo-pointgoal1"}


def get_config(arg: str = "pointgoal1") -> ml_collections.ConfigDict:
  variant, smoke = zoo.training.parse_arg(arg, "pointgoal1")
  c = zoo.training.rl_base_config(zoo.training.choose(variant, MODELS, "configs/acs.py"))
  c.iterations = 20
  c.eval_every_steps = 5
  c.env = ml_collections.ConfigDict(dict(
      episode_length=1000,    # Safety Gym's 1000 steps of 0.02 s
      num_envs=16,            # environments vmapped in one compiled rollout
      steps=1000,             # steps per iteration per environment (a multiple of episode_length)
      budget=25.0))           # episode cost budget d (c = 1 per step inside a hazard)
  c.ppo = ml_collections.ConfigDict(dict(
      gamma=0.99, lam=0.97, clip=0.2, target_kl=0.01, pi_lr=3e-4, vf_lr=1e-3, pi_iters=80, vf_iters=80))
  c.lagrangian = ml_collections.ConfigDict(dict(lr=0.01, init=0.0))  # PPO-Lagrangian's multiplier (ppo-lag only)
  c.acs = ml_collections.ConfigDict(dict(       # ACS only
      reward_cost_penalty=0.1, safety_lr=1e-3, safety_iters=80, safety_advantage_iters=160, safety_gamma=1.0,
      epsilon_start=4.0, epsilon_decay=0.3, epsilon_floor=0.3))
  c.eval = ml_collections.ConfigDict(dict(rounds=1))  # evaluation episodes: rounds × num_envs × steps / episode_length
  if smoke:  # seconds of stepping (the first MJX compile still takes a minute or more)
    c.iterations = 3
    c.eval_every_steps = 2
    c.env.episode_length = 8
    c.env.num_envs = 2
    c.env.steps = 16
    c.env.budget = 3.0
    c.ppo.pi_iters = c.ppo.vf_iters = 4
    c.acs.safety_iters = c.acs.safety_advantage_iters = 4
    c.smoke = True
  return c
