"""The family record and the two registered variants (the paper's invariant model and its plain baseline)."""

from __future__ import annotations

import pathlib

from zoo.models.invariance_node.card import card_sections
from zoo.models.invariance_node.model import InvariantNeuralODE
from zoo.models.invariance_node.obstacles import PAPER_OBSTACLES
from zoo.models.invariance_node.report import demo, evaluate, loss, plot
from zoo.models.invariance_node.verify import verify
from zoo.registry import Family, register

PAPER = ("W. Xiao, T.-H. Wang, R. Hasani, M. Lechner, Y. Ban, C. Gan, D. Rus. On the Forward Invariance of "
         "Neural ODEs. ICML 2023. arXiv:2210.04763")

FAMILY = Family(name="invariance_node", module=InvariantNeuralODE, loss=loss, evaluate=evaluate, verify=verify,
                plot=plot, demo=demo, card_sections=card_sections, paper=PAPER, x64=True)


def _deviations(name: str) -> str:
  """The variant's deviations from the paper's setup (card prose, `deviations/NAME.md`)."""
  return (pathlib.Path(__file__).with_name("deviations") / f"{name}.md").read_text(encoding="utf-8")


GUARANTEE = ("Trajectories starting outside the obstacles never enter them: every right-hand-side evaluation "
             "solves a CBF-QP on the last layer's first column, so b_i(y(t)) >= b_i(y(0)) e^(-p t) >= 0 for any "
             "weights and for obstacles passed at inference.")


@register("invariance-node-spiral", FAMILY, dataset="spiral", input_shape=(2,), guarantee=GUARANTEE,
          tags=("neural-ode", "control-barrier-function", "forward-invariance", "safety", "spiral"),
          deviations=_deviations("invariance-node-spiral"))
def invariance_node_spiral():
  "Cubic-spiral neural ODE that provably avoids two discs (r = 0.2 at (0, 1.2), (-0.9, 0); p = 20)."
  return dict(hidden=50, constrained_units=1, obstacles=PAPER_OBSTACLES)


@register("neural-ode-spiral", FAMILY, dataset="spiral", input_shape=(2,),
          guarantee=("None by itself (the unconstrained baseline); obstacles passed at inference make it "
                     "forward invariant (the paper's test-time CBF)."),
          tags=("neural-ode", "spiral", "baseline"),
          deviations=_deviations("neural-ode-spiral"))
def neural_ode_spiral():
  "Unconstrained cubic-spiral neural ODE (the paper's baseline): crosses the obstacles."
  return dict(hidden=50, constrained_units=1, obstacles=None)
