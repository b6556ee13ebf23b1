"""invariance-node-spiral / neural-ode-spiral: trajectories never enter the obstacles; the baseline does.

A hand-set "straight line" network (ẏ = const, heading at the obstacles) makes the unconstrained model cross
them for sure, so the invariance check is shown to FAIL on it and to PASS once the CBF layer is on.
"""

import json

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import zoo
import zoo.data
from zoo import errors, hub
from zoo.data import spiral
from zoo.models import invariance_node as inode
from zoo.models.invariance_node import report as inode_report
from zoo.nn.cbf import Obstacles, UnsafeStateError
from zoo.nn.precision import float64_scope

N_STATES, HORIZON = 64, 3.0  # small verification runs (one compiled shape shared by the tests)


def _straight_line_model(velocity=(-1.0, 0.1), obstacles=inode.PAPER_OBSTACLES) -> inode.InvariantNeuralODE:
  """W₁ = 0, b₁ = 1 (every hidden unit = tanhshrink(1) ≠ 0), W₂ = 0, b₂ = velocity: ẏ = velocity without CBF."""
  model = zoo.create("invariance-node-spiral", obstacles=obstacles)
  with float64_scope():
    model.linear1.kernel[...] = jnp.zeros_like(model.linear1.kernel[...])
    model.linear1.bias[...] = jnp.ones_like(model.linear1.bias[...])
    model.linear2.kernel[...] = jnp.zeros_like(model.linear2.kernel[...])
    model.linear2.bias[...] = jnp.asarray(velocity, model.linear2.bias[...].dtype)
  return model


def test_vector_field_shapes_dtype_and_input_errors():
  model = zoo.create("invariance-node-spiral")
  y = np.array([[2.0, 0.0], [0.0, 1.5], [0.1, 1.0]])
  out = model(y)
  assert out.shape == (3, 2) and out.dtype == np.float64
  assert not jax.config.jax_enable_x64  # float64 is scoped to the model
  with pytest.raises(errors.InputShapeError):
    model(np.zeros(2))
  with pytest.raises(errors.InputShapeError):
    model.rollout(np.zeros((1, 3)), np.linspace(0, 1, 5))


@pytest.mark.parametrize("which", ["random", "straight"])
def test_filter_satisfies_the_cbf_condition_and_is_minimal(which):
  model = zoo.create("invariance-node-spiral", seed=3) if which == "random" else _straight_line_model()
  obs = inode.paper_obstacles()
  rng = np.random.default_rng(0)
  y = np.concatenate([rng.uniform(-2, 2, size=(300, 2)),  # and states close to each obstacle
                      *(c + rng.uniform(-0.35, 0.35, size=(100, 2)) for c in np.asarray(obs.centers))])
  with float64_scope():
    b = np.asarray(jax.vmap(obs.barrier)(jnp.asarray(y)))
    y = y[np.min(b, axis=1) > 0]
    f = np.asarray(model.velocity(y))
    plain = np.asarray(model.velocity(y, None))
    rep = model.filter_report(y)
    grads = np.asarray(jax.vmap(obs.barrier_grad)(jnp.asarray(y)))  # (N, m, 2)
    b = np.asarray(jax.vmap(obs.barrier)(jnp.asarray(y)))
  assert not np.any(np.asarray(rep.infeasible))
  cond = np.einsum("nmd,nd->nm", grads, f) + np.asarray(obs.gains) * b
  assert cond.min() >= -1e-9  # ḃ_i + p b_i >= 0: the condition of the invariance theorem
  slack = np.einsum("nmd,nd->nm", grads, plain) + np.asarray(obs.gains) * b
  inactive = np.all(slack > 1e-9, axis=1)
  assert inactive.sum() > 50
  np.testing.assert_allclose(f[inactive], plain[inactive], atol=1e-14)  # minimal intervention
  if which == "straight":
    assert np.sum(~inactive) > 5 and np.all(np.abs(f - plain)[~inactive].max(axis=1) > 1e-6)


def test_obstacles_are_data_not_weights():
  model = zoo.create("invariance-node-spiral")
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  assert set(params) == {"linear1", "linear2"}
  stored = nnx.to_pure_dict(nnx.state(model, inode.ObstacleData))
  np.testing.assert_allclose(stored["obstacle_centers"], [[0.0, 1.2], [-0.9, 0.0]])
  assert "obstacle_centers" in nnx.to_pure_dict(nnx.state(model))  # saved with the checkpoint
  before = np.asarray(model.obstacle_centers[...])
  x = jnp.asarray([[-0.6, 0.05], [0.1, 0.9]])  # near the obstacles: the QP is active

  def loss(m):
    return jnp.sum(m(x) ** 2)

  with float64_scope():
    grads = nnx.grad(loss)(model)
    opt = nnx.Optimizer(model, __import__("optax").sgd(0.1), wrt=nnx.Param)
    opt.update(model, grads)
  assert set(nnx.to_pure_dict(grads)) == {"linear1", "linear2"}
  g = nnx.to_pure_dict(grads)
  assert all(np.all(np.isfinite(v)) for layer in g.values() for v in layer.values())
  np.testing.assert_array_equal(model.obstacle_centers[...], before)  # the optimizer never moves them


def test_baseline_violates_and_the_check_can_fail():
  """ẏ = (-1, 0.1) runs through the obstacles: the raw model FAILS the invariance check."""
  model = _straight_line_model(obstacles=None)
  checks = inode.invariance_checks(model, None, inode.paper_obstacles(), "raw", n=N_STATES, horizon=HORIZON)
  assert not checks[0].passed
  assert checks[0].value > 0.01  # deep inside an obstacle, not a rounding artefact


def test_cbf_layer_keeps_the_same_rollouts_safe():
  model = _straight_line_model()
  checks = inode.invariance_checks(model, model.default_obstacles, inode.paper_obstacles(), "cbf", n=N_STATES,
                                   horizon=HORIZON)
  assert all(c.passed for c in checks), checks
  assert checks[0].value <= inode.VERIFY_BOUND


def test_moved_obstacles_at_inference_without_retraining():
  """Causal manipulation: superellipses elsewhere, passed at call time, are avoided too; the default is untouched."""
  model = _straight_line_model()
  moved = Obstacles.create([[0.5, 0.0], [-0.5, 0.6]], radii=0.25, gains=20.0, powers=4.0)
  raw = inode.invariance_checks(model, None, moved, "raw moved", n=N_STATES, horizon=HORIZON)
  assert not raw[0].passed
  checks = inode.invariance_checks(model, moved, moved, "moved", n=N_STATES, horizon=HORIZON)
  assert all(c.passed for c in checks), checks
  np.testing.assert_allclose(model.obstacle_centers[...], [[0.0, 1.2], [-0.9, 0.0]])


def test_initial_state_inside_an_obstacle():
  model = _straight_line_model(velocity=(0.3, 0.0))
  ts = np.linspace(0.0, 2.0, 21)
  inside = np.array([[-0.9, 0.1]])  # b = 0.01 - 0.04 < 0
  with pytest.raises(UnsafeStateError, match="inside obstacle") as info:
    model.rollout(inside, ts)
  assert isinstance(info.value, ValueError) and isinstance(info.value, errors.ZooError)
  for bad in (np.nan, np.inf):  # never a silent NaN trajectory
    with pytest.raises(UnsafeStateError, match="not finite"):
      model.rollout(np.array([[1.0, 1.0], [bad, 0.0]]), ts, check_safe=False)
  ys = np.asarray(model.rollout(inside, ts, check_safe=False))  # documented: the CBF pushes it out
  assert np.all(np.isfinite(ys))
  with float64_scope():
    b = np.asarray(jax.vmap(inode.paper_obstacles().barrier)(jnp.asarray(ys[0])))[:, 1]
  assert b[-1] > b[0] and np.all(np.diff(b) >= -1e-9)  # b rises monotonically toward the boundary
  assert b[-1] >= b[0] * np.exp(-20.0 * 2.0) - 1e-9  # b(t) >= b(0) e^{-pt}


def test_spiral_data_windows_follow_the_ode():
  train = zoo.data.load("spiral", "train")
  test = zoo.data.load("spiral", "test")
  assert train["y"].shape == (990, 10, 2) and train["t"].shape == (990, 10)
  assert test["y"].shape == (1, 1000, 2) and test["t"].shape == (1, 1000)
  np.testing.assert_array_equal(train["y"][:, 0], train["y0"])
  np.testing.assert_allclose(test["y"][0, 0], [2.0, 0.0])
  start = int(np.argmin(np.abs(test["t"][0] - train["t"][0, 0])))  # each window is a slice of the trajectory
  np.testing.assert_allclose(train["y"][0], test["y"][0, start:start + 10], atol=1e-12)
  t, y = spiral.trajectory(y0=train["y0"][7], data_size=10, t_end=train["t"][7, -1] - train["t"][7, 0])
  np.testing.assert_allclose(y, train["y"][7], atol=1e-6)  # the data solves ẏ = y³A (25 s of rtol 1e-12 drift)
  with float64_scope():
    b = np.asarray(jax.vmap(inode.paper_obstacles().barrier)(jnp.asarray(test["y"][0])))
  assert b.min() < -0.02  # the ground truth itself runs through the obstacles


def test_configs():
  from configs import invariance_node as cfg  # pylint: disable=import-outside-toplevel

  c = cfg.get_config("invariance-node-spiral")
  assert c.model == "invariance-node-spiral" and c.optimizer.name == "rmsprop" and c.batch_size == 20
  assert cfg.get_config("baseline").model == "neural-ode-spiral"
  assert cfg.get_config("invariant,smoke").smoke
  with pytest.raises(ValueError):
    cfg.get_config("spiral3")


@pytest.mark.slow
def test_loss_gradient_flows_through_the_qp_and_the_solver():
  """jax.grad of the training loss (diffrax + CBF-QP) is finite, nonzero, and matches a finite difference."""
  model = zoo.create("invariance-node-spiral", seed=1)
  data = zoo.data.load("spiral", "train")
  batch = {k: jnp.asarray(v[:4]) for k, v in data.items()}
  with float64_scope():
    (value, _), grads = nnx.value_and_grad(inode.loss, has_aux=True)(model, batch)
    g = nnx.to_pure_dict(grads)["linear2"]["kernel"]
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0
    eps = 1e-6
    k0 = model.linear2.kernel[...]
    model.linear2.kernel[...] = k0.at[0, 1].add(eps)
    hi = inode.loss(model, batch)[0]
    model.linear2.kernel[...] = k0.at[0, 1].add(-eps)
    lo = inode.loss(model, batch)[0]
    model.linear2.kernel[...] = k0
  assert float(g[0, 1]) == pytest.approx(float(hi - lo) / (2 * eps), rel=1e-3, abs=1e-8)



@pytest.mark.parametrize("name", ["invariance-node-spiral", "neural-ode-spiral"])
def test_training_solve_is_the_rollout_solver_differentiated(name):
  """The training loss's solver (zoo.nn.dopri5.solve_windows: lanes, recorded steps, discrete adjoint) gives the
  loss and gradient of a vmap of `solve` (diffrax, what `rollout` integrates with) differentiated through diffrax's
  checkpointed adjoint, on the shipped weights and real training windows (both models: through the CBF-QP and
  without it)."""
  model = zoo.load(name)
  data = zoo.data.load("spiral", "train")
  rows = np.array([0, 250, 500, 980])  # the obstacles' side of the spiral and its ends
  y, t = jnp.asarray(data["y"][rows]), jnp.asarray(data["t"][rows])

  def value_and_grad(solver):
    fn = nnx.jit(nnx.value_and_grad(lambda m: m.trajectory_loss(y, t, solver)))
    value, grads = fn(model)
    return float(value), jax.tree.map(np.asarray, nnx.to_pure_dict(grads))

  with float64_scope():
    (v1, g1), (v0, g0) = value_and_grad("windows"), value_and_grad("diffrax")
  assert v1 == pytest.approx(v0, rel=1e-11)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-12 * np.abs(b).max()), g1, g0)
  assert np.abs(g0["linear2"]["kernel"]).max() > 0
  with pytest.raises(ValueError, match="solver must be"):
    model.trajectory_loss(y, t, "euler")


def _manifest(name):
  return json.loads((hub.checkpoints_dir() / name / "manifest.json").read_text())


def _boundary_states(obstacles: Obstacles, per_obstacle: int, gap: float = 1e-3) -> np.ndarray:
  """States just outside each obstacle's boundary Σ_j (y_j - c_j)^q = r^q (scaled by 1 + gap): where a violation
  would start."""
  rings = []
  for c, r, q in zip(np.asarray(obstacles.centers), np.asarray(obstacles.radii), np.asarray(obstacles.powers)):
    ang = np.linspace(0.0, 2 * np.pi, per_obstacle, endpoint=False)
    u = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    to_boundary = r / np.sum(np.abs(u) ** q, axis=1) ** (1 / q)
    rings.append(c + (1 + gap) * to_boundary[:, None] * u)
  states = np.concatenate(rings)
  with float64_scope():
    b = np.asarray(jax.vmap(obstacles.barrier)(jnp.asarray(states)))
  assert np.all(b >= 0) and np.all(np.min(b, axis=1) < 1e-3)  # safe, and close to a boundary
  return states


def test_shipped_invariant_model_never_enters_an_obstacle():
  """The shipped weights (zoo.load checks the pinned sha256): 256 random safe states and 64 states 1e-3 outside
  the obstacles' boundaries, tight Dopri8, b at every step and every 0.005 in t. One trajectory below -1e-6, one solve
  that fails, or one state with an infeasible QP fails the test — for the paper's and for moved obstacles."""
  model = zoo.load("invariance-node-spiral")
  for obs in (model.default_obstacles, inode.moved_obstacles()):
    y0 = np.concatenate([inode.safe_initial_states(obs, 4 * N_STATES, seed=7), _boundary_states(obs, N_STATES // 2)])
    res = inode.safety_rollouts(model, y0, HORIZON, obs, obs, solver=diffrax.Dopri8(), chunk=N_STATES,
                                **inode.VERIFY_SOLVER)
    assert np.all(res.status == 0), res.status  # every solve reached t = HORIZON
    assert res.min_b.min() >= -inode.VERIFY_BOUND, res.min_b.min()
    assert res.infeasible_steps.sum() == 0 and res.steps.min() > 100
  metrics = _manifest("invariance-node-spiral")["metrics"]  # the card's numbers (1,000 states, t in [0, 10])
  assert metrics["violation_rate"] == 0.0
  assert min(metrics["min_b_obstacle1"], metrics["min_b_obstacle2"]) >= -inode.VERIFY_BOUND


def test_shipped_baseline_crosses_the_obstacles():
  """The paper's claim on the shipped baseline: it enters the obstacles; the CBF imposed at inference stops it."""
  model = zoo.load("neural-ode-spiral")
  raw = inode.invariance_checks(model, None, inode.paper_obstacles(), "raw", n=N_STATES, horizon=HORIZON)
  assert not raw[0].passed and raw[0].value > 0.01  # deep inside, not a rounding artefact
  imposed = inode.invariance_checks(model, inode.paper_obstacles(), inode.paper_obstacles(), "imposed",
                                    n=N_STATES, horizon=HORIZON)
  assert all(c.passed for c in imposed), imposed
  metrics = _manifest("neural-ode-spiral")["metrics"]
  assert metrics["violation_rate"] > 0.5 and metrics["min_b_obstacle2"] < -0.01  # the card's numbers
  invariant = _manifest("invariance-node-spiral")["metrics"]
  assert invariant["l1_trajectory"] < 1.5 * metrics["l1_trajectory"]  # "at comparable error"


def test_cards_show_the_measured_comparison():
  """Both shipped cards carry the baseline-vs-invariant table built from both manifests (metrics and recorded
  checks). `card_sections` rebuilds its measured rows from this model's metrics and the sibling's, passed in (other
  shipped models are ignored); an export whose partner does not ship gets its own column only."""
  inv, base = _manifest(inode.INVARIANT), _manifest(inode.BASELINE)
  table = inode.comparison_markdown(inv["metrics"], base["metrics"], inv["checks"], base["checks"])
  for name in (inode.INVARIANT, inode.BASELINE):
    assert _manifest(name)["card_sections"][inode.COMPARISON_TITLE] == table
    card = (hub.checkpoints_dir() / name / "README.md").read_text()
    assert f"## {inode.COMPARISON_TITLE}" in card and table in card
    assert f"{inode_report.PLOT_FILES[0]}" in card  # the plot with moved obstacles at inference, panel (d)
  assert f"| {base['metrics']['violation_rate']:.3f} |" in table and f"**{inv['metrics']['violation_rate']:.3f}**" in table
  assert "**0 (deepest 2.5e-10)**" in table  # the invariant model's `zoo verify` row, from its recorded checks
  other = {"massnet-sir": {"metrics": {"l1_trajectory": 123.0, "violation_rate": 0.5}, "checks": []}}
  for name, metrics, sibling in ((inode.BASELINE, base["metrics"], inode.INVARIANT),
                                 (inode.INVARIANT, inv["metrics"], inode.BASELINE)):
    own_checks = [zoo.Check(**c) for c in _manifest(name)["checks"]]
    siblings = {**other, sibling: {k: _manifest(sibling)[k] for k in ("metrics", "checks")}}
    section = inode.card_sections(zoo.create(name), metrics, own_checks, siblings)[inode.COMPARISON_TITLE]
    assert section == table  # the whole table, verify row included, from what the trainer passes in
  alone = inode.card_sections(zoo.create(inode.BASELINE), base["metrics"], [], other)[inode.COMPARISON_TITLE]
  assert f"{base['metrics']['l1_trajectory']:.4f}" in alone and "| **–** |" in alone


@pytest.mark.slow
@pytest.mark.parametrize("name", ["invariance-node-spiral", "neural-ode-spiral"])
def test_shipped_weights_pass_zoo_verify_and_reproduce_the_card(name):
  model = zoo.load(name)
  checks = zoo.verify(model)
  assert checks and all(c.passed for c in checks), checks
  metrics = _manifest(name)["metrics"]
  with float64_scope():
    again = inode.evaluate(model, zoo.data.load("spiral", "test"))
  assert again["l1_trajectory"] == pytest.approx(metrics["l1_trajectory"], rel=1e-6)
