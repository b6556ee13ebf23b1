"""Neural ODEs made forward invariant by a CBF layer ("invariance set propagation"), spiral experiment.

The right-hand side of the paper's spiral model is f(y) = W₂ tanhshrink(W₁ y³ + b₁) + b₂ (Linear(2,50) →
Tanhshrink → Linear(50,2) applied to y∘y∘y). It is affine in the constrained parameters θ_c = the first k
columns of the last layer (k = `constrained_units`; W₂[:, :k] in PyTorch's layout, `kernel[:k]` in NNX):

    f(y) = F(y) + G(y) θ_c,   F(y) = W₂[:, k:] z_{k:}(y) + b₂,   G(y) θ_c = Θ_c z_{:k}(y),

and at every evaluation θ_c is replaced by the CBF-QP solution for the obstacles' barriers (`zoo.nn.cbf`):
min ||θ_c - θ_ref||² s.t. ∇b_i·(F + G θ_c) + p_i b_i >= 0. Then every solution that starts in the safe set
S = {b_i >= 0 ∀i} stays in it for all t, whatever the learned θ_ref (Xiao et al., "On the Forward Invariance of
Neural ODEs", ICML 2023, arXiv:2210.04763, forward-invariance theorem).

Obstacles are data, not weights: the defaults live in the module as non-trainable `ObstacleData` variables
(saved in checkpoints, never updated by an optimizer over `nnx.Param`), and any call takes other obstacles:

    model = zoo.load("invariance-node-spiral")
    ys = model.rollout(jnp.array([[2.0, 0.0]]), jnp.linspace(0, 25, 1000))           # default obstacles
    moved = Obstacles.create([[-0.1, -1.1], [0.8, 0.1]], radii=0.2, gains=20.0, powers=4.0)
    ys2 = model.rollout(jnp.array([[2.0, 0.0]]), jnp.linspace(0, 25, 1000), obstacles=moved)  # no retraining
    ys3 = model.rollout(..., obstacles=None)                                          # unconstrained θ_ref

Bad input: `rollout` raises `UnsafeStateError` (a ValueError) for an initial state inside an obstacle (there the
guarantee does not apply; pass `check_safe=False` to integrate anyway: the CBF then pushes the state out, with
b(t) >= b(0) e^{-pt} -> 0 from below). Infeasible QPs (only where L_G b = 0, i.e. the k constrained hidden
units are exactly 0) fall back as documented in `zoo.nn.cbf` (finite, flagged, never NaN); `verify` counts them.

Modules: `model` (the nnx.Module and its pure vector field / solver), `verify` (the guarantee, checked by
rollouts), `report` (loss, evaluate, plots, demo), `card` (the baseline-vs-invariant table), `obstacles` (the
paper's obstacle specifications), `variants` (the `Family` record and the registered variants).

Official code: github.com/Weixy21/InvarianceNODE (spiral/train.py, spiral/test.py); this is a JAX rewrite.
"""

from __future__ import annotations

from zoo.models.invariance_node import variants  # noqa: F401  (registers the variants)
from zoo.models.invariance_node.card import BASELINE, COMPARISON_TITLE, INVARIANT, card_sections, comparison_markdown
from zoo.models.invariance_node.model import (DEFAULT, MAX_DT, InvariantNeuralODE, ObstacleData, field, filtered,
                                              solve, split_affine, tanhshrink)
from zoo.models.invariance_node.obstacles import MOVED_OBSTACLES, PAPER_OBSTACLES, moved_obstacles, paper_obstacles
from zoo.models.invariance_node.report import EVAL_VIOLATION, demo, evaluate, loss, plot
from zoo.models.invariance_node.variants import FAMILY, GUARANTEE, PAPER
from zoo.models.invariance_node.verify import (ESCAPE_RADIUS, VERIFY_BOUND, VERIFY_HORIZON, VERIFY_SOLVER,
                                               VERIFY_STATES, SafetyRollouts, invariance_checks, safe_initial_states,
                                               safety_rollouts, verify)
from zoo.nn.cbf import Obstacles, UnsafeStateError

__all__ = ["InvariantNeuralODE", "Obstacles", "ObstacleData", "UnsafeStateError", "PAPER_OBSTACLES",
           "MOVED_OBSTACLES", "FAMILY"]
