"""The ELCD family record, its registered variants (LASA 2D shapes, 4D, 8D), the guarantee and deviation texts and
the official PyTorch reference numbers the cards show beside the measured ones."""

from __future__ import annotations

from zoo.models.elcd.model import ELCD
from zoo.models.elcd.report import demo, evaluate, loss, plot
from zoo.models.elcd.verify import verify
from zoo.registry import Family, register_variant


FAMILY = Family(
    name="elcd", module=ELCD, loss=loss, evaluate=evaluate, verify=verify, plot=plot, demo=demo,
    paper="Jaffe, Davydov, Lapsekili, Singh, Bullo. Learning Neural Contracting Dynamics: Extended Linearization "
          "and Global Guarantees. NeurIPS 2024. arXiv:2402.08090")


_GUARANTEE = ("Globally exponentially stable at the target with a unique equilibrium: the latent field's extended "
              "linearization has symmetric part ⪯ −0.01·I for every state, so every trajectory converges and the "
              "field is contracting in the metric pulled back by the learned diffeomorphism. In discrete time, "
              "`model.rollout` (a linearly implicit step in latent space, mapped back by φ⁻¹) keeps it for every "
              "step size h and every finite start: ‖z_(k+1) − z*‖ ≤ ‖z_k − z*‖/(1 + 0.01·h).")
_DEVIATIONS = """Architecture, initialisation, data preprocessing and optimiser follow the official LASA demo
(seanjaffe1/Extended-Linearized-Contracting-Dynamics, lasa_demo.ipynb): P_s/P_a MLPs with 16 tanh units, a 2-step
rational-quadratic neural-spline flow (10 bins, tail bound 10, residual conditioner 30 × 2 blocks), Adam 1e-3,
batch 100, 100 epochs, the first 3 demonstrations for training. Differences: J_{φ⁻¹}(z)·f(z) is one forward-mode
Jacobian-vector product (the official code builds the full Jacobian); the trainer drops the last incomplete batch;
the permutations are drawn from JAX's PRNG, so the same seed gives different weights than PyTorch; test metrics are
on demonstrations 3-6 (the official notebook only plots demonstration 0).

Integrators. The paper (and the official `forward_step_until_converge`) rolls out with classical RK4 in data space
at dt 0.01; here that is `model.rollout_rk4_data`, and the metrics without a suffix use it (1000-step cut, stop when
‖Δx‖ < 1e-5; `_converged`: the same rollout run until it stops, ≤ 10,000 steps). Far from the data the data-space
speed reaches 1e4–1e10 and that RK4 diverges or stalls (e.g. on jshape, 0–54% of starts at ‖x0 − x*‖ = 10–1000
converge within 10,000 steps: benchmarks/results/elcd_far_starts.md). The public `model.rollout` instead steps
(I − h A(z_k))(z_(k+1) − z*) = z_k − z* in latent space (first-order accurate, contracting for any h); metrics
with `_latent` use it. The guarantee bounds the rate only by ε = 0.01 per time unit, and some fields contract at
about that rate far from the data: from ‖x0 − x*‖ = 1000 at dt 0.01, 10,000 steps (t = 100) are then not enough
(jshape, sine), while at dt 0.1 every start of every variant converges within 10,000 steps."""


# The official PyTorch ELCD re-run here on the same data, batches and seeds (benchmarks/elcd_official.py; mean ±
# std over seeds 0-2, test demonstrations; benchmarks/results/elcd_official.md): the card's reference column. Not
# numbers printed in the paper: its tables use other runs, so the column says what was run.
def _torch(shape: str, value: str) -> str:
  return (f"{value} (official PyTorch ELCD of Jaffe et al. 2024, github seanjaffe1/Extended-Linearized-Contracting-"
          f"Dynamics, `lasa_demo.ipynb` recipe, re-run by benchmarks/elcd_official.py: LASA {shape}, test demos 3-6, "
          f"100 epochs, mean ± std over 3 seeds; not a number printed in the paper)")


_OFFICIAL_RAW = {
    ("elcd-lasa2d-angle", "Angle"): {"mean_nearest_distance": "0.189 ± 0.036", "dtw": "139 ± 24",
                                     "frechet": "0.335 ± 0.025", "swept_error_area": "4.4 ± 2.4",
                                     "final_distance": "0.014 ± 0.015"},
    ("elcd-lasa4d", "4D (PShape+NShape)"): {"mean_nearest_distance": "0.584 ± 0.12", "dtw": "401 ± 85",
                                            "frechet": "0.649 ± 0.14", "swept_error_area": "18.3 ± 0.66",
                                            "final_distance": "0.159 ± 0.17"},
    ("elcd-lasa8d", "8D (PShape+NShape+Sshape+Angle, this zoo's stack)"): {"mean_nearest_distance": "2.09 ± 0.29", "dtw": "1.59e+03 ± 2e+02",
                            "frechet": "2.77 ± 0.52", "swept_error_area": "39 ± 1.4",
                            "final_distance": "0.0972 ± 0.099"},
}
_OFFICIAL = {name: {k: _torch(shape, v) for k, v in vals.items()} for (name, shape), vals in _OFFICIAL_RAW.items()}


def _variant(name: str, dataset: str, dim: int, description: str, shapes: str) -> None:
  register_variant(name, FAMILY, dict(dim=dim, hidden=16, flow_steps=2), description=description, dataset=dataset,
                   input_shape=(dim,), guarantee=_GUARANTEE,
                   tags=("contraction", "stable-dynamics", "normalizing-flow", "imitation-learning", "lasa", shapes),
                   deviations=_DEVIATIONS, reference=_OFFICIAL.get(name, {}))


# One 2D variant per LASA shape family (angles, C/G/J-like hooks, letters, sines and snakes, multi-modal).
LASA_2D = ("Angle", "CShape", "GShape", "JShape", "NShape", "PShape", "Sshape", "Sine", "Worm", "Multi_Models_1")
for _shape in LASA_2D:
  _variant(f"elcd-lasa2d-{_shape.lower().replace('_', '-')}", f"lasa/{_shape}", 2,
           f"ELCD on the LASA {_shape} shape (2D): a globally contracting motion policy learned from 3 demonstrations.",
           _shape)
_variant("elcd-lasa4d", "lasa/4d", 4,
         "ELCD on 4D LASA (PShape and NShape stacked, as the official 4D demo): a globally contracting policy.",
         "PShape+NShape")
_variant("elcd-lasa8d", "lasa/8d", 8,
         "ELCD on 8D LASA (PShape, NShape, Sshape and Angle stacked): a globally contracting motion policy.",
         "PShape+NShape+Sshape+Angle")
