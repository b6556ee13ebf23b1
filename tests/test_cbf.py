"""zoo.nn.cbf: the CBF-QP solvers are exact, differentiable, and finite (flagged) when infeasible."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from zoo import errors
from zoo.nn import cbf


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def _reference_qp(theta, a, c):
  """min ||x - theta||² s.t. a x + c >= 0 by scipy's SLSQP (independent of the code under test)."""
  res = minimize(lambda x: np.sum((x - theta) ** 2), theta, jac=lambda x: 2 * (x - theta), method="SLSQP",
                 constraints=[{"type": "ineq", "fun": lambda x: a @ x + c, "jac": lambda x: a}],
                 options={"ftol": 1e-15, "maxiter": 500})
  feasible = res.success and np.min(a @ res.x + c) > -1e-8
  return res.x, feasible


_active_set = jax.jit(cbf.active_set_qp)  # one compile per (n, m) shape
_qpax = jax.jit(cbf.qpax_qp)
_half_space = jax.jit(cbf.half_space_projection)


def _random_problems(count, seed=0, max_m=4, shape=None):
  rng = np.random.default_rng(seed)
  for _ in range(count):
    n, m = shape or (int(rng.integers(2, 6)), int(rng.integers(1, max_m + 1)))
    yield rng.normal(size=n), rng.normal(size=(m, n)), rng.normal(size=m)


def test_half_space_projection_is_the_closed_form():
  theta, a, c = jnp.array([1.0, -2.0, 0.5]), jnp.array([0.5, 1.0, -1.0]), jnp.array(-1.0)
  sol = cbf.half_space_projection(theta, a, c)
  expect = theta + max(0.0, -(a @ theta + c)) * a / (a @ a)
  np.testing.assert_allclose(sol.theta, expect, atol=1e-12)
  assert float(a @ sol.theta + c) == pytest.approx(0.0, abs=1e-12)  # active: lands on the boundary
  assert not sol.infeasible and float(sol.violation) < 1e-12
  inactive = cbf.half_space_projection(theta, a, jnp.array(10.0))
  np.testing.assert_array_equal(inactive.theta, theta)  # satisfied: untouched


# (n parameters, m constraints): the model's (2, 2), more constraints than parameters (often infeasible), larger
# (one constraint: test_closed_form_equals_active_set_for_one_constraint)
SHAPES = ((2, 2), (2, 3), (3, 3), (5, 4))


def test_active_set_matches_an_independent_qp_solver():
  checked = 0
  for shape in SHAPES:  # one vmapped compile per shape
    problems = list(_random_problems(35, seed=sum(shape), shape=shape))
    theta, a, c = (jnp.asarray(np.stack(x)) for x in zip(*problems))
    sols = jax.jit(jax.vmap(cbf.active_set_qp))(theta, a, c)
    for i, (th, ai, ci) in enumerate(problems):
      sol = jax.tree.map(lambda v, i=i: np.asarray(v[i]), sols)
      ref, feasible = _reference_qp(th, ai, ci)
      if feasible:  # SLSQP found the optimum: ours is the same point
        np.testing.assert_allclose(sol.theta, ref, atol=1e-6)
        checked += 1
      if not sol.infeasible:  # ours claims feasibility: it is feasible, and no better than SLSQP's point
        assert float(np.min(ai @ sol.theta + ci)) >= -1e-9
        if feasible:
          assert np.sum((sol.theta - th) ** 2) <= np.sum((ref - th) ** 2) + 1e-9
      else:
        assert not feasible and float(sol.violation) > 0
  assert checked > 100


def test_qpax_matches_the_active_set():
  """Random problems, and badly scaled ones from the spiral model with 3 obstacles (a hidden unit near 0 makes
  ||L_G b|| ~ 1e-4 or 1e-14: θ* moves by ~1e4, or not at all while c/||a|| ~ 1e15)."""
  scaled = [(np.array([0.039, 0.117]), np.array([[1.14e-4, 1.93e-4], [-3.40e-5, -4.74e-6], [2.46e-4, 1.17e-5]]),
             np.array([37.4, -0.339, 46.9])),
            (np.array([0.039, 0.117]), np.array([[-1.5e-15, -3.7e-14], [2.4e-14, -2.8e-15], [-2.5e-14, -5.6e-15]]),
             np.array([32.7, 12.0, 16.2]))]
  solved = 0
  for theta, a, c in [*_random_problems(25, seed=1, shape=(2, 3)), *scaled]:  # one shape: one qpax compile
    exact = _active_set(jnp.asarray(theta), jnp.asarray(a), jnp.asarray(c))
    if exact.infeasible:
      continue
    sol = _qpax(jnp.asarray(theta), jnp.asarray(a), jnp.asarray(c))
    assert not sol.infeasible
    scale = 1.0 + float(np.max(np.abs(exact.theta)))
    np.testing.assert_allclose(sol.theta, exact.theta, atol=1e-6 * scale)
    solved += 1
  assert solved >= 15 and float(np.max(np.abs(exact.theta))) < 1  # the last (inactive) one: θ_ref untouched


def test_closed_form_equals_active_set_for_one_constraint():
  for theta, a, c in _random_problems(40, seed=2, shape=(4, 1)):  # one compile
    one = _half_space(jnp.asarray(theta), jnp.asarray(a[0]), jnp.asarray(c[0]))
    many = _active_set(jnp.asarray(theta), jnp.asarray(a), jnp.asarray(c))
    np.testing.assert_allclose(one.theta, many.theta, atol=1e-12)


@pytest.mark.parametrize("method", ["active_set", "qpax"])
def test_gradients_match_finite_differences(method):
  theta = jnp.array([1.0, 2.0, -1.0])
  a = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
  c = jnp.array([-3.0, -4.0, 0.5])  # two active constraints, one inactive
  w = jnp.array([0.3, -1.0, 2.0])
  f = jax.jit(lambda th, a, c: w @ cbf.cbf_qp(th, a, c, method).theta)
  grads = jax.grad(f, argnums=(0, 1, 2))(theta, a, c)
  eps, tol = 1e-6, 1e-6
  for i, x in enumerate((theta, a, c)):
    flat = np.asarray(x).ravel()
    fd = np.zeros_like(flat)
    for j in range(flat.size):
      d = np.zeros_like(flat)
      d[j] = eps
      args = [theta, a, c]
      args[i] = jnp.asarray((flat + d).reshape(x.shape))
      hi = f(*args)
      args[i] = jnp.asarray((flat - d).reshape(x.shape))
      fd[j] = (hi - f(*args)) / (2 * eps)
    np.testing.assert_allclose(np.asarray(grads[i]).ravel(), fd, atol=tol)


@pytest.mark.parametrize("method", ["active_set", "qpax"])
def test_infeasible_constraints_give_finite_flagged_output(method):
  """θ_0 >= 1 and θ_0 <= -1 cannot both hold: finite θ, flag, violation > 0, finite gradient (no NaN)."""
  a, c = jnp.array([[1.0, 0.0], [-1.0, 0.0]]), jnp.array([-1.0, -1.0])
  sol = jax.jit(cbf.cbf_qp, static_argnums=3)(jnp.zeros(2), a, c, method)
  assert bool(sol.infeasible)
  assert np.all(np.isfinite(sol.theta)) and float(sol.violation) > 0.5
  grad = jax.jit(jax.grad(lambda th: jnp.sum(cbf.cbf_qp(th, a, c, method).theta)))(jnp.zeros(2))
  assert np.all(np.isfinite(grad))


def test_degenerate_constraint_a_zero():
  """L_G b = 0: satisfied (c >= 0) leaves θ alone; violated (c < 0) is flagged infeasible, θ_ref kept, no NaN."""
  theta = jnp.array([0.5, -0.5])
  ok = _half_space(theta, jnp.zeros(2), jnp.array(1.0))
  np.testing.assert_array_equal(ok.theta, theta)
  assert not ok.infeasible
  bad = _half_space(theta, jnp.zeros(2), jnp.array(-1.0))
  np.testing.assert_array_equal(bad.theta, theta)
  assert bad.infeasible and float(bad.violation) == pytest.approx(1.0)
  grad = jax.jit(jax.grad(lambda a: jnp.sum(cbf.half_space_projection(theta, a, jnp.array(-1.0)).theta)))(
      jnp.zeros(2))
  assert np.all(np.isfinite(grad))
  many = _active_set(theta, jnp.array([[0.0, 0.0], [1.0, 0.0]]), jnp.array([-1.0, 0.0]))
  assert many.infeasible and np.all(np.isfinite(many.theta))


def test_tiny_but_nonzero_normal_is_still_solved():
  """A hidden unit near 0 makes ||a|| tiny; the normalised QP stays exact (the needed θ is large, not NaN)."""
  a, c = jnp.array([1e-12, 0.0]), jnp.array(-1e-3)
  sol = cbf.half_space_projection(jnp.zeros(2), a, c)
  assert not sol.infeasible
  assert float(a @ sol.theta + c) >= -1e-15
  assert float(sol.theta[0]) == pytest.approx(1e9, rel=1e-9)


def test_method_selection_and_errors():
  theta, a, c = jnp.zeros(2), jnp.ones((1, 2)), jnp.array([-1.0])
  np.testing.assert_allclose(cbf.cbf_qp(theta, a, c).theta, [0.5, 0.5])
  with pytest.raises(ValueError, match="one constraint"):
    cbf.cbf_qp(theta, jnp.ones((2, 2)), jnp.zeros(2), "closed_form")
  with pytest.raises(ValueError, match="unknown CBF-QP method"):
    cbf.cbf_qp(theta, a, c, "osqp")


def test_obstacle_barriers_and_validation():
  obs = cbf.Obstacles.create([[0.0, 1.2], [-0.9, 0.0]], radii=0.2, gains=20.0, powers=[2.0, 4.0])
  y = jnp.array([0.3, 0.4])
  b = obs.barrier(y)
  np.testing.assert_allclose(b, [0.3 ** 2 + 0.8 ** 2 - 0.04, 1.2 ** 4 + 0.4 ** 4 - 0.2 ** 4], atol=1e-12)
  np.testing.assert_allclose(obs.barrier_grad(y), jax.jit(jax.jacobian(obs.barrier))(y), atol=1e-12)
  assert np.all(np.isfinite(jax.jit(jax.jacobian(obs.barrier_grad))(jnp.array([0.0, 1.2]))))  # at a centre: no NaN
  for bad in (dict(centers=[[0, 0]], radii=-1.0), dict(centers=[[0, 0]], radii=0.2, powers=3.0),
              dict(centers=[[0, 0], [1, 1]], radii=[0.1, 0.2, 0.3]), dict(centers=np.zeros((0, 2)), radii=0.1)):
    with pytest.raises(errors.InputShapeError):
      cbf.Obstacles.create(**bad)


def test_filter_enforces_the_cbf_condition():
  """ẏ = F + G θ*: ∇b_i·ẏ + p b_i >= 0 for every obstacle at random states (the condition of the theorem)."""
  obs = cbf.Obstacles.create([[0.0, 1.2], [-0.9, 0.0], [0.8, 0.1]], radii=0.2, gains=[10.0, 20.0, 5.0])
  rng = np.random.default_rng(3)
  _filter = jax.jit(cbf.affine_cbf_filter)
  for _ in range(50):
    y = jnp.asarray(rng.uniform(-2, 2, size=2))
    f0, g, theta = (jnp.asarray(rng.normal(size=s)) for s in ((2,), (2, 4), (4,)))
    sol = _filter(y, theta, f0, g, obs)
    ydot = f0 + g @ sol.theta
    cond = obs.barrier_grad(y) @ ydot + obs.gains * obs.barrier(y)
    if not sol.infeasible:
      assert float(jnp.min(cond)) >= -1e-9
