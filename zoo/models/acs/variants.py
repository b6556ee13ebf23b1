"""The acs family record and its registered variants: ACS on PointGoal1 and its two baselines trained by the same
code (PPO, PPO-Lagrangian). Registering imports no MuJoCo: the environment is built when a learner or an evaluation
needs it (the `rl` extra)."""

from __future__ import annotations

from zoo.models.acs import learner
from zoo.models.acs.env import BUDGET
from zoo.models.acs.model import ACSAgent
from zoo.models.acs.report import demo, evaluate, loss, measure, verify
from zoo.registry import Family, register

OBS_DIM, ACT_DIM = 44, 2  # env.PointGoal1: 12 sensors + goal and hazard lidar (16 bins each); force, turn

FAMILY = Family(
    name="acs", module=ACSAgent, loss=loss, evaluate=evaluate, verify=verify, measure=measure, demo=demo,
    learner=learner.Learner,
    paper="Chen et al. Safe Reinforcement Learning via Hierarchical Adaptive Chance-Constraint "
          "Safeguards. IROS 2024, pp. 12378-12385. arXiv:2310.03379")

ENVIRONMENT = ("Safety Gym PointGoal1 on crax-bench's MJX port (`safe_goal_point` configured to PointGoal1's layout: "
               "8 hazards of radius 0.2, goal radius 0.3, [−1.5, 1.5]², 0.02 s steps, 1000-step episodes; 44 "
               "observations without the vase lidar); cost c = 1 inside a hazard, episode budget d = "
               f"{BUDGET:g}; zoo/models/acs/ENVIRONMENT.md lists every difference from Safety Gym.")
REFERENCE = {
    "return": "no published number for PointGoal1 (the paper's tables are not readable here); on SafetyAntRun, a "
              "different task, the authors' research-code logs give ACS 1013 per episode at cost 3.96, TD3 1483 at "
              "484 (github BillChan226/SafeRLZoo, paper data/safetyrun progress.txt; 1 seed, 1e6 steps)",
    "cost": "no published number for PointGoal1; budget d = 25 per episode (the cost limit of safety-starter-agents "
            "and of the authors' research code, github BillChan226/SafeRLZoo asp/acs.py)",
}
TAGS = ("safe-rl", "reinforcement-learning", "safety-gym", "pointgoal1", "mujoco-mjx")
TRAINING = ("Trained by `python -m train --config configs/acs.py:{variant}` (the acs learner: whole 1000-step "
            "episodes of 16 environments per iteration, PPO-clip with Spinning Up's settings); `zoo verify` checks "
            "the action box{extra}; the violation rate is measured in the environment by the family's evaluation.")


@register("acs-pointgoal1", FAMILY, dataset="pointgoal1", input_shape=(OBS_DIM,), tags=(*TAGS, "chance-constraint"),
          guarantee="model(obs) is the policy's action corrected by the lower layer: at most 20 normalised ascent "
                    "steps (size 0.05) on the learned safety advantage A_s until the relaxed chance constraint "
                    "A_s(s, a) ≥ −η(V_s(s) − (1 − ε)) holds (η = 0.8); a proposal that satisfies it passes unchanged, "
                    "every action lies in [−1, 1]². Safety in the environment is measured (violation rate), not "
                    "certified.",
          reference=REFERENCE,
          deviations=ENVIRONMENT + " The algorithm follows the authors' research code (PPO variant; the paper's "
                     "own TD3-based code is not public): ascent on A_s where the code descends (tests/test_acs.py "
                     "shows the code's sign lowers A_s), the PPO ratio uses the log-probability of the executed "
                     "(corrected) action, not of the uncorrected sample; no quasi-Newton correction yet. "
                     + TRAINING.format(variant="pointgoal1", extra=" and the safeguard's stopping rule"))
def acs_pointgoal1():
  """ACS (PPO upper layer + gradient safeguard on the safety advantage) for Safety Gym PointGoal1."""
  return dict(obs_dim=OBS_DIM, act_dim=ACT_DIM, hidden=(64, 64), method="acs")


@register("ppo-lag-pointgoal1", FAMILY, dataset="pointgoal1", input_shape=(OBS_DIM,), tags=(*TAGS, "lagrangian"),
          guarantee="None structural (the PPO-Lagrangian baseline): the episode cost is held near the budget d = 25 "
                    "in expectation by the multiplier λ ≥ 0; model(obs) is the policy mean clipped to [−1, 1]². "
                    "The violation rate is measured, not certified.",
          reference=REFERENCE,
          deviations=ENVIRONMENT + " PPO-Lagrangian written here with ACS's PPO code (same harness, budget and "
                     "seeds): λ ← max(0, λ + 0.01 (J_c − d)) per iteration, advantages (Â_r − λÂ_c)/(1 + λ) as "
                     "safety-starter-agents. " + TRAINING.format(variant="ppo-lag", extra=" and λ ≥ 0"))
def ppo_lag_pointgoal1():
  """PPO-Lagrangian baseline for Safety Gym PointGoal1 (same harness as acs-pointgoal1)."""
  return dict(obs_dim=OBS_DIM, act_dim=ACT_DIM, hidden=(64, 64), method="ppo-lag")


@register("ppo-pointgoal1", FAMILY, dataset="pointgoal1", input_shape=(OBS_DIM,), tags=TAGS,
          guarantee="None (the unconstrained PPO baseline: it ignores the cost); model(obs) is the policy mean "
                    "clipped to [−1, 1]². Its violation rate is measured to show what the constraint costs.",
          reference=REFERENCE,
          deviations=ENVIRONMENT + " PPO-clip written here (Spinning Up's settings), the shared code of ACS and "
                     "PPO-Lagrangian. " + TRAINING.format(variant="ppo", extra=""))
def ppo_pointgoal1():
  """Unconstrained PPO baseline for Safety Gym PointGoal1 (same harness as acs-pointgoal1)."""
  return dict(obs_dim=OBS_DIM, act_dim=ACT_DIM, hidden=(64, 64), method="ppo")
