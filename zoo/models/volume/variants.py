"""The volume family record and its registered variant `volnet-pendulum` (guarantee and deviation texts)."""

from __future__ import annotations

from zoo.models.volume.model import VolumeNet
from zoo.models.volume.report import card_sections, evaluate, loss, plot
from zoo.models.volume.verify import verify
from zoo.registry import Family, register

FAMILY = Family(
    name="volume", module=VolumeNet, loss=loss, evaluate=evaluate, verify=verify, plot=plot, x64=True,
    card_sections=card_sections,
    paper="Celledoni, Murari, Owren, Schönlieb, Sherry. Dynamical systems' based neural networks. SIAM J. Sci. "
          "Comput. 2023. arXiv:2210.02373")


@register("volnet-pendulum", FAMILY, dataset="pendulum", input_shape=(2,),
          guarantee="Volume-preserving: det ∂N/∂z = 1 for every input (float64 round-off), with a closed-form "
                    "inverse N⁻¹.",
          tags=("volume-preserving", "invertible", "hamiltonian", "dynamical-systems", "pendulum"),
          reference={"test_mse": "no published number: the paper (Celledoni et al. 2023) has no volume-preserving "
                                 "experiment and its official code none for this setting (pendulum time-0.5 flow map)"},
          deviations=(
              "The paper has no volume-preserving experiment (and no official code for it); this variant learns "
              "the time-0.5 flow map of the pendulum q' = p, p' = −sin q, a Hamiltonian (so area-preserving) "
              "system with a non-monotone force and a separatrix, whose flow is integrated to 1e-12 (DOP853) — "
              "the learned map and the true one share the structure being enforced. Each half-step "
              "F_k(v) = P_k tanh(A_k v + a_k) has a linear read-out P_k (width 16) instead of the slides' "
              "σ(A v + a) with square A: in 2-D the latter is a monotone function of one variable and cannot "
              "represent −sin q; the read-out keeps every sub-step a shear (det 1)."))
def volnet_pendulum():
  """Volume-preserving network (8 shear splitting steps) learning the time-0.5 flow map of the pendulum; det J = 1
  exactly and the inverse is explicit."""
  return dict(dim=2, layers=8, hidden=16, time_step=0.5)
