"""The family record, the guarantee and deviation texts, the paper's reference numbers and the registered
variants (scikit-learn digits, offline, and the paper's CIFAR-10 size; each constrained and baseline)."""

from __future__ import annotations

from typing import Sequence

from zoo.models.nonexpansive.evaluate import PAPER_CIFAR10, PAPER_EPSILONS, epsilons, evaluate, loss
from zoo.models.nonexpansive.model import NonexpansiveResNet
from zoo.models.nonexpansive.report import card_sections, plot
from zoo.models.nonexpansive.verify import verify
from zoo.registry import Family, register


def reference(constrained: bool, input_shape: Sequence[int]) -> dict[str, str]:
  """The paper's CIFAR-10 numbers beside the corresponding metrics (radii scaled for small inputs)."""
  key = "non-expansive" if constrained else "unconstrained baseline"
  vals = PAPER_CIFAR10[key]
  eps = epsilons(input_shape)
  what = "" if eps[:3] == PAPER_EPSILONS else ", radius scaled"
  out = {"accuracy": f"{vals[0]:.3f} (paper, CIFAR-10, {key})"}
  for e, paper_e, v in zip(eps[:3], ("36/255", "0.5", "1.0"), vals[1:]):
    out[f"pgd_acc_eps{e:g}"] = f"{v:.3f} (paper, CIFAR-10, ε={paper_e}{what})"
  return out


FAMILY = Family(
    name="nonexpansive", module=NonexpansiveResNet, loss=loss, evaluate=evaluate, verify=verify, plot=plot,
    card_sections=card_sections,
    paper="Celledoni, Murari, Owren, Schönlieb, Sherry. Dynamical systems' based neural networks. SIAM J. Sci. "
          "Comput. 2023. arXiv:2210.02373; Sherry et al. Designing stable neural networks using convex analysis "
          "and ODEs. Physica D 2024. arXiv:2306.17332")

GUARANTEE = ("1-Lipschitz in ℓ2: ‖N(x) − N(y)‖₂ ≤ ‖x − y‖₂ for all inputs (every layer's operator norm ≤ 1 by "
             "power iteration, tied step sizes), so a margin > √2·ε certifies robustness at L2 radius ε.")
BASELINE = ("None (the unconstrained baseline of the same architecture). `zoo verify` measures its Lipschitz upper "
            "bound L = Π per-layer bounds and checks that the empirical ratio ‖N(x) − N(y)‖/‖x − y‖ on random and "
            "adversarial pairs stays below it (the certificate behind its certified accuracy is sound).")
DEVIATIONS = (
    "Rigorous where the official code is not: all residual convolutions are spectrally normalised by power "
    "iteration on the convolution operator (the official non-expansive net only penalises non-orthogonality of "
    "them), the lifting layers have no free rescaling factor (the official `rescalings[-1]` grows to ~3.6 and "
    "breaks the bound), and h_E is tied to h_C by the paper's condition √(1 − h_C + h_C²)(1 + h_E) ≤ 1 made "
    "rigorous for non-orthogonal A by also tracking σ_min(A) (see zoo/nn/lipschitz.py); the official 'switch' "
    "code clamps h_E ≤ h_C(2 − h_C)/(h_C² − 2h_C + 4). σ(t) = max(t, t/2) as the paper (the code used "
    "LeakyReLU 0.1). No input standardisation (the official code divides by the CIFAR std ≈ 0.2, so its net is "
    "≈5-Lipschitz in pixel space). PGD uses step 2.5ε/10 (foolbox's default 0.025ε, the paper's, cannot leave "
    "a quarter of the ball in 10 steps) and counts an example robust only if every iterate is correct.")


def digits_deviations() -> str:
  eps = epsilons((8, 8, 1))
  return (f"Dataset: scikit-learn digits (8×8×1 in [0, 1]) instead of CIFAR-10, which is not available offline; "
          f"widths 16/32 over two stages instead of 32/64/128 over three. Radii: the paper's 36/255, 0.5, 1.0 "
          f"scaled by √(64/3072) (same per-pixel RMS change) = {eps[0]:g}, {eps[1]:g}, {eps[2]:g}, plus 0.5 and "
          f"1.0 unscaled. Hinge margin and optimiser chosen for this data (configs/nonexpansive.py). "
          + DEVIATIONS)


@register("nonexpansive-resnet-digits", FAMILY, dataset="digits", input_shape=(8, 8, 1), guarantee=GUARANTEE,
          tags=("lipschitz", "non-expansive", "certified-robustness", "dynamical-systems", "digits"),
          deviations=digits_deviations(), reference=reference(True, (8, 8, 1)))
def nonexpansive_resnet_digits():
  """Non-expansive convolutional ResNet (expansive/contractive integrator steps, spectral normalisation by power
  iteration on the convolution operator) on scikit-learn digits, with certified L2 robustness."""
  return dict(image_size=8, in_channels=1, widths=(16, 32), pairs_per_stage=2, num_classes=10, constrained=True,
              margin=0.3, orth_weight=0.1)


@register("resnet-baseline-digits", FAMILY, dataset="digits", input_shape=(8, 8, 1), guarantee=BASELINE,
          tags=("baseline", "dynamical-systems", "digits"),
          deviations=digits_deviations(),
          reference=reference(False, (8, 8, 1)))
def resnet_baseline_digits():
  """The same ResNet without constraints (raw convolutions, free step sizes, no orthogonality penalty) on
  scikit-learn digits: the baseline against which the non-expansive net's robustness is measured."""
  return dict(image_size=8, in_channels=1, widths=(16, 32), pairs_per_stage=2, num_classes=10, constrained=False,
              margin=0.3, orth_weight=0.0)


@register("nonexpansive-resnet-cifar10", FAMILY, dataset="cifar10", input_shape=(32, 32, 3), guarantee=GUARANTEE,
          tags=("lipschitz", "non-expansive", "certified-robustness", "dynamical-systems", "cifar10"),
          deviations=DEVIATIONS, reference=reference(True, (32, 32, 3)))
def nonexpansive_resnet_cifar10():
  """Non-expansive convolutional ResNet at the paper's CIFAR-10 size (widths 32/64/128, 4 residual steps per
  stage, hinge margin 0.07, orthogonality penalty 0.1). Trains where CIFAR-10 can be downloaded."""
  return dict(image_size=32, in_channels=3, widths=(32, 64, 128), pairs_per_stage=2, num_classes=10,
              constrained=True, margin=0.07, orth_weight=0.1)


@register("resnet-baseline-cifar10", FAMILY, dataset="cifar10", input_shape=(32, 32, 3), guarantee=BASELINE,
          tags=("baseline", "dynamical-systems", "cifar10"), deviations=DEVIATIONS,
          reference=reference(False, (32, 32, 3)))
def resnet_baseline_cifar10():
  """The unconstrained baseline of nonexpansive-resnet-cifar10 (same architecture, no constraints)."""
  return dict(image_size=32, in_channels=3, widths=(32, 64, 128), pairs_per_stage=2, num_classes=10,
              constrained=False, margin=0.07, orth_weight=0.0)
