"""Mass-preserving networks: every layer keeps the sum of the state's components exactly.

Each step is an explicit Euler step of the vector field ẋ = (S(x) − S(x)ᵀ)ᵀ𝟙, whose components sum to
𝟙ᵀ(S − Sᵀ)ᵀ𝟙 = 0; Euler (like any Runge–Kutta method) preserves linear invariants, so
Σᵢ N(x)ᵢ = Σᵢ xᵢ holds to round-off for any weights. S(x) is strictly upper triangular with entries
σ(B σ(A x + a) + c) (σ = ReLU), lifting pads zeros and projection spreads the dropped components' sum
evenly over the kept ones: both keep the total too.

Celledoni, Murari, Owren, Schönlieb, Sherry, "Dynamical systems' based neural networks", SIAM J. Sci.
Comput. 2023 (official code: davidemurari/StructuredNeuralNetworks, "Mass Preserving Networks").

Modules: `model` (`MassStep`, `MassNet`, `lift`, `project`, `predict`), `verify` (the conservation law on given
weights), `report` (loss, evaluation and plot of the SIR flow map), `variants` (the `Family` record and
`massnet-sir`).
"""

from __future__ import annotations

from zoo.models.massnet.model import MassNet, MassStep, lift, predict, project
from zoo.models.massnet.report import evaluate, loss, plot
from zoo.models.massnet.verify import verify
from zoo.models.massnet.variants import FAMILY

__all__ = ["FAMILY", "MassNet", "MassStep", "evaluate", "lift", "loss", "plot", "predict", "project", "verify"]
