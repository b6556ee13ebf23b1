"""Volume-preserving networks: compositions of shears, so det ∂N/∂z = 1 exactly and N⁻¹ is explicit.

The state z = (x, v) ∈ R^d × R^d follows the vector field X(x, v) = [F(v), G(x)], each half depending only on
the other half (divergence-free). Each layer is the splitting step of the slides

    x ← x + h F_k(v),        v ← v + h G_k(x)          (F_k(v) = P_k σ(A_k v + a_k), G_k(x) = Q_k σ(B_k x + b_k))

whose two sub-steps are shears with unit Jacobian determinant, so det ∂N/∂z = 1 for every input and every
weight, and whose inverse is explicit: v ← v − h G_k(x), then x ← x − h F_k(v), layers in reverse order.
The slides' field X(x, v) = [σ(Av + a), σ(Bx + b)] is the case P_k = Q_k = I with A_k, B_k square; the
read-out P_k, Q_k (width `hidden`) lets one layer represent non-monotone forces (such as −sin q) and keeps
each sub-step a shear. σ = tanh. Float64.

Celledoni, Murari, Owren, Schönlieb, Sherry, "Dynamical systems' based neural networks", SIAM J. Sci. Comput.
2023, Sec. 3 (volume preservation); the seed slides (Murari, "Dynamical systems' based neural networks").

Modules: `model` (`ShearMLP`, `VolumeLayer`, `VolumeNet`, the jitted `apply` / `rollout`), `verify` (det J = 1 and
the inverse on given weights), `report` (loss, evaluation with the long rollout against the true pendulum flow,
plot, card sections), `variants` (the `Family` record and `volnet-pendulum`).
"""

from __future__ import annotations

from zoo.models.volume.model import ShearMLP, VolumeLayer, VolumeNet, apply, model_time, rollout
from zoo.models.volume.report import (ROLLOUT_STEPS, card_sections, evaluate, loss, plot, rollout_errors,
                                      rollout_states)
from zoo.models.volume.verify import verify
from zoo.models.volume.variants import FAMILY

__all__ = ["FAMILY", "ROLLOUT_STEPS", "ShearMLP", "VolumeLayer", "VolumeNet", "apply", "card_sections", "evaluate",
           "loss", "model_time", "plot", "rollout", "rollout_errors", "rollout_states", "verify"]
