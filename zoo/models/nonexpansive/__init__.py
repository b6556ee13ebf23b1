"""Non-expansive (1-Lipschitz) convolutional ResNets with certified robustness, and their unconstrained baseline.

The network is a composition of integrator steps of gradient and non-gradient vector fields (the paper's
"switching" architecture): per stage, a lifting convolution (+ ReLU), then pairs Ψ_C^{h_C} ∘ Ψ_E^{h_E} of an
expansive step x ↦ x + h_E σ(Wx + v) and a contractive step x ↦ x − h_C Aᵀσ(Ax + b) (σ(t) = max(t, t/2)), then
2×2 max pooling; finally a dense layer. Every linear map has ℓ2 operator norm ≤ 1 (power iteration on the
convolution operator) and the step sizes are tied, √(1 − h_C + h_C²)(1 + h_E) ≤ 1, so each pair, the ReLUs and
the pooling are 1-Lipschitz: ‖N(x) − N(y)‖₂ ≤ ‖x − y‖₂ for all inputs (see `zoo.nn.lipschitz` for the bounds).
A prediction with margin f_y − max_{j≠y} f_j > √2·L·ε is then certified at radius ε (L the measured product of
the per-layer bounds, ≤ 1). `constrained=False` is the same architecture with raw weights and free step sizes.

Modules: `model` (the network, per-layer bounds), `evaluate` (hinge loss, PGD and certified accuracy),
`verify` (the certificate and the empirical Lipschitz ratio), `report` (plots, card sections), `variants`
(the family record and the registered variants).

Celledoni, Murari, Owren, Schönlieb, Sherry, "Dynamical systems' based neural networks", SIAM J. Sci. Comput.
2023 (official code: davidemurari/StructuredNeuralNetworks, "Adversarial Robustness": the CIFAR-10 numbers the
cards quote, margin 0.07, come from there); Sherry et al., "Designing
stable neural networks using convex analysis and ODEs", Physica D 2024 (fsherry/non-expansive-odes).
"""

from zoo.models.nonexpansive import variants
from zoo.models.nonexpansive.evaluate import (CIFAR_DIM, FASHION_MNIST_EPSILONS, PAPER_CIFAR10, PAPER_EPSILONS,
                                              PAPER_FILES, PAPER_MARGIN, PAPER_SOURCE, epsilons, evaluate, loss,
                                              multiclass_hinge)
from zoo.models.nonexpansive.model import (NEGATIVE_SLOPE, NonexpansiveResNet, Stage, lipschitz_bound, maxpool2,
                                           measure_warm)
from zoo.models.nonexpansive.report import card_sections, comparison_markdown, plot
from zoo.models.nonexpansive.variants import FAMILY
from zoo.models.nonexpansive.verify import VERIFY_TOL, empirical_lipschitz, verify

__all__ = ["CIFAR_DIM", "FAMILY", "FASHION_MNIST_EPSILONS", "NEGATIVE_SLOPE", "NonexpansiveResNet", "PAPER_CIFAR10",
           "PAPER_EPSILONS", "PAPER_FILES", "PAPER_MARGIN", "PAPER_SOURCE",
           "Stage", "VERIFY_TOL", "card_sections", "comparison_markdown", "empirical_lipschitz", "epsilons",
           "evaluate", "lipschitz_bound", "loss", "maxpool2", "measure_warm", "multiclass_hinge", "plot", "variants",
           "verify"]
