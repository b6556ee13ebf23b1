"""ELCD: extended-linearized contracting dynamics in the latent space of a neural-spline flow.

    ẋ = J_{φ⁻¹}(z) f(z),  z = φ(x),  f(z) = A(z)(z − z*),  A(z) = −P_s(z)ᵀP_s(z) − εI + P_a(z) − P_a(z)ᵀ,

with φ a neural-spline flow (`zoo.nn.flows.NeuralSplineFlow`: 2 steps of permutation, LU-linear layer and
rational-quadratic spline coupling with 10 bins, tail bound 10, a 30-unit residual conditioner with 2 blocks),
z* = φ(x*) and x* the target (the origin for LASA). The data-space field is the push-forward of f by φ⁻¹: its
solutions are x(t) = φ⁻¹(z(t)) with z(t) a solution of ż = f(z). J_{φ⁻¹}(z)·f(z) is one forward-mode
Jacobian-vector product of the closed-form inverse (exact).

Guarantee (any weights): sym A(z) ⪯ −εI, so ‖z(t) − z*‖ ≤ e^{−εt}‖z(0) − z*‖ for every latent solution:
x* is the unique, globally exponentially stable equilibrium of the data-space field, every trajectory converges to
it, and the field is contracting in the metric pulled back by φ (Jaffe et al. 2024). The public `ELCD.rollout`
keeps it in discrete time: it steps (I − h A(z_k))(z_{k+1} − z*) = z_k − z* in latent space and maps back with φ⁻¹,
so ‖z_{k+1} − z*‖ ≤ ‖z_k − z*‖/(1 + εh) for every start and every step h. `ELCD.rollout_rk4_data` is the paper's
data-space RK4 (for the paper's metrics; it diverges from far-away starts). `verify` checks the guarantee on the
weights, through `rollout` from starts up to 1000 away.

Jaffe, Davydov, Lapsekili, Singh, Bullo, "Learning Neural Contracting Dynamics: Extended Linearization and Global
Guarantees", NeurIPS 2024 (arXiv:2402.08090); official code seanjaffe1/Extended-Linearized-Contracting-Dynamics
(`models/elcd.py`, `utils.py`, `lasa_demo.ipynb`), whose structure and hyperparameters this follows.

Modules: `model` (the `ELCD` module), `verify` (the guarantee on given weights), `report` (loss, evaluation by
rollouts, plot, demo), `variants` (the `Family` record and the registered `elcd-*` variants).
"""

from __future__ import annotations

from zoo.models.elcd.model import ELCD, latent_step, pushforward_velocity, rk4
from zoo.models.elcd.report import demo, demo_rollouts, evaluate, far_starts, loss, perturbed_starts, plot
from zoo.models.elcd.verify import rollout_checks, sphere_starts, verify
from zoo.models.elcd.variants import FAMILY, LASA_2D

__all__ = ["ELCD", "FAMILY", "LASA_2D", "demo", "demo_rollouts", "evaluate", "far_starts", "latent_step", "loss",
           "perturbed_starts", "plot", "pushforward_velocity", "rk4", "rollout_checks", "sphere_starts", "verify"]
