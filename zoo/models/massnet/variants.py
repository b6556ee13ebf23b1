"""The massnet family record and its registered variant `massnet-sir` (guarantee, deviations, the official
notebook's reference numbers)."""

from __future__ import annotations

from zoo.models.massnet.model import MassNet
from zoo.models.massnet.report import evaluate, loss, plot
from zoo.models.massnet.verify import verify
from zoo.registry import Family, register

FAMILY = Family(
    name="massnet", module=MassNet, loss=loss, evaluate=evaluate, verify=verify, plot=plot, x64=True,
    paper="Celledoni, Murari, Owren, Schönlieb, Sherry. Dynamical systems' based neural networks. "
          "SIAM J. Sci. Comput. 2023. arXiv:2210.02373")


@register("massnet-sir", FAMILY, dataset="sir", input_shape=(3,),
          guarantee="Conserves the total Σᵢxᵢ exactly (to float64 round-off) for every input.",
          tags=("mass-preserving", "conservation-law", "dynamical-systems", "sir"),
          reference={"test_mse": "3.35e-6 (official notebook time1FlowMap.ipynb, PyTorch, float64)",
                     "mass_drift_max": "round-off (official notebook)"},
          deviations="""Architecture, data, optimiser and schedule follow the official notebook (widths 10/10/15,
3 steps per block, MLP width 50, PyTorch-style uniform init, Adam 1e-2 with coupled weight decay 1e-5, step decay
×0.1 every 60 epochs, 150 epochs, batch 32, float64). The trainer drops the last incomplete batch (28 steps per
epoch instead of 29), and the checkpoint kept is the best test MSE of the evaluations every 10 epochs. Our test
MSE is higher than the notebook's reported 3.35e-6 (see Metrics); the conservation law holds either way.""")
def massnet_sir():
  """Learns the time-1 flow map of the SIR epidemic model; the total population is conserved exactly."""
  return dict(dim=3, widths=(10, 10, 15), steps_per_block=3, hidden=50)
