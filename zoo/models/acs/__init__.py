"""ACS: safe RL with hierarchical adaptive chance-constraint safeguards (work in progress, issue 18).

An upper PPO-clip policy proposes an action; a safety critic V_s(s) ≈ P(episode cost < d | s) and a safety
advantage A_s(s, a) define the relaxed chance constraint A_s(s, a) ≥ −η (V_s(s) − (1 − ε_k)); the lower layer
corrects the action by gradient steps on A_s until the constraint holds.

Chen et al., "Safe Reinforcement Learning via Hierarchical Adaptive Chance-Constraint Safeguards", IROS 2024,
arXiv:2310.03379 (notes: shared/papers/acs.md; authors' research code BillChan226/SafeRLZoo, asp/acs.py).

Modules: `model` (policy, critics, `ACSAgent`, which with `method="ppo"` / `"ppo-lag"` is also the baselines'
agent), `safeguard` (ε schedule, threshold, the gradient correction), `targets` (GAE, the safety critic's
episode-outcome labels), `ppo` (PPO-clip loss and full-batch fitting, PPO-Lagrangian's advantage mixing and
multiplier), `rollout` (collecting experience with the safeguard in the loop), `learner` (the trainer's RL hook: one
iteration = collect + update, for all three methods), `report` (loss, evaluation by episodes, verify), `variants`
(the `Family` record; `acs-pointgoal1`, `ppo-lag-pointgoal1`, `ppo-pointgoal1`), `env` (Safety Gym PointGoal1 on
crax-bench; needs the optional extra: `pip install -e '.[rl]'`, imported only when an environment is built).
Train: `python -m train --config configs/acs.py:pointgoal1 --workdir runs/acs` (`:ppo`, `:ppo-lag`; `,smoke`).
See ENVIRONMENT.md beside this file for the environment choice.
"""

from __future__ import annotations

from zoo.models.acs import learner, ppo, report, rollout, safeguard, targets
from zoo.models.acs.model import ACSAgent, Action, GaussianPolicy, SafetyAdvantage, SafetyCritic, ValueCritic
from zoo.models.acs.variants import FAMILY

__all__ = ["ACSAgent", "Action", "FAMILY", "GaussianPolicy", "SafetyAdvantage", "SafetyCritic", "ValueCritic",
           "learner", "ppo", "report", "rollout", "safeguard", "targets"]
