"""zoo.nn.dopri5.solve_windows: the same solution and gradient as diffrax's Dopri5 solve it stands in for."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.nn import dopri5
from zoo.nn.precision import float64

RTOL, ATOL, DTMAX = 1e-7, 1e-9, 0.05


def van_der_pol(args, consts, y):
  """A stiff-ish oscillator whose step sizes vary a lot: mu (args) scales the nonlinearity; consts shifts it."""
  return jnp.stack([y[1], args["mu"] * (1 - (y[0] - consts) ** 2) * y[1] - (y[0] - consts) + args["b"]])


def diffrax_windows(args, consts, y0, ts, max_steps=4096):
  term = diffrax.ODETerm(lambda t, y, a: van_der_pol(a, consts, y))

  def one(y0, ts):
    return diffrax.diffeqsolve(term, diffrax.Dopri5(), ts[0], ts[-1], None, y0, args=args,
                               saveat=diffrax.SaveAt(ts=ts), max_steps=max_steps, throw=False,
                               stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL, dtmax=DTMAX)).ys
  return jax.vmap(one)(y0, ts)


def windows(n=8, t_len=6):
  rng = np.random.default_rng(0)
  y0 = rng.normal(size=(n, 2)) * 2
  start = rng.uniform(0, 3, size=(n, 1))
  ts = start + np.cumsum(rng.uniform(0.02, 0.3, size=(n, t_len)), axis=1) - 0.02  # uneven, some > DTMAX apart
  ts[:, 0] = start[:, 0]
  return jnp.asarray(y0), jnp.asarray(ts)


def weights(mu=3.0, b=0.1):
  """The field's weights as arrays of the current float type (float64 inside the tests)."""
  return {"mu": jnp.asarray(mu), "b": jnp.asarray(b)}


def loss_of(solve):
  def loss(args, y0, ts):
    ys = solve(args, jnp.asarray(0.2), y0, ts)
    return jnp.mean(jnp.abs(ys - 0.5)) + jnp.mean(ys ** 2)
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


@float64
def test_solution_and_gradient_equal_diffrax():
  """Same states at every save time, same loss gradient (w.r.t. the field's weights and the initial states) as a
  vmap of diffrax.diffeqsolve(Dopri5, PIDController, SaveAt(ts)) differentiated by its checkpointed adjoint."""
  y0, ts = windows()
  ARGS = weights()
  ours = dopri5.solve_windows(van_der_pol, ARGS, jnp.asarray(0.2), y0, ts, rtol=RTOL, atol=ATOL, dtmax=DTMAX)
  ref = diffrax_windows(ARGS, jnp.asarray(0.2), y0, ts)
  assert ours.shape == ref.shape == (8, 6, 2)
  np.testing.assert_allclose(ours, ref, rtol=1e-11, atol=1e-12)
  np.testing.assert_array_equal(ours[:, 0], y0)
  solve = lambda a, c, y, t: dopri5.solve_windows(van_der_pol, a, c, y, t, rtol=RTOL, atol=ATOL, dtmax=DTMAX)
  (v1, (ga1, gy1)), (v0, (ga0, gy0)) = loss_of(solve)(ARGS, y0, ts), loss_of(diffrax_windows)(ARGS, y0, ts)
  np.testing.assert_allclose(v1, v0, rtol=1e-11)
  for k in ARGS:
    np.testing.assert_allclose(ga1[k], ga0[k], rtol=1e-8)
  np.testing.assert_allclose(gy1, gy0, rtol=1e-8, atol=1e-10)
  assert float(jnp.abs(ga1["mu"])) > 1e-3  # a gradient that is really there


@float64
@pytest.mark.parametrize("widths", [(8, 3, 2, 1)])
def test_gathering_unfinished_windows_changes_nothing(widths):
  """The lane widths only regroup the work: solution and gradient equal to the default phases' to rounding."""
  y0, ts = windows()
  ARGS = weights()
  solve = lambda w: (lambda a, c, y, t: dopri5.solve_windows(van_der_pol, a, c, y, t, rtol=RTOL, atol=ATOL,
                                                              dtmax=DTMAX, widths=w))
  (v1, (ga1, gy1)), (v0, (ga0, gy0)) = loss_of(solve(widths))(ARGS, y0, ts), loss_of(solve(None))(ARGS, y0, ts)
  np.testing.assert_allclose(v1, v0, rtol=1e-13)
  np.testing.assert_allclose(gy1, gy0, rtol=1e-11, atol=1e-13)
  for k in ARGS:
    np.testing.assert_allclose(ga1[k], ga0[k], rtol=1e-11)


@float64
def test_gradient_matches_finite_differences():
  """d loss / d mu by central differences of the solve itself (steps fixed by a small, smooth perturbation)."""
  y0, ts = windows(4, 4)
  solve = lambda a: dopri5.solve_windows(van_der_pol, a, jnp.asarray(0.0), y0, ts, rtol=1e-10, atol=1e-12,
                                         dtmax=0.01)
  loss = lambda mu: jnp.sum(solve({"mu": mu, "b": jnp.asarray(0.1)}) ** 2)
  g = jax.grad(loss)(jnp.asarray(1.0))
  eps = 1e-5
  fd = (loss(jnp.asarray(1.0 + eps)) - loss(jnp.asarray(1.0 - eps))) / (2 * eps)
  np.testing.assert_allclose(g, fd, rtol=1e-5)


@float64
def test_a_window_over_max_steps_is_inf_alone():
  """A window that needs more than max_steps stops (diffrax throw=False): its later states are inf, the others
  are unaffected, and a loss over them is not finite."""
  y0, ts = windows(3, 5)
  ARGS = weights()
  ts = ts.at[1].set(ts[1, 0] + jnp.linspace(0, 3.0, 5))  # 3 time units at dtmax 0.05: > 60 steps
  ys = dopri5.solve_windows(van_der_pol, ARGS, jnp.asarray(0.2), y0, ts, rtol=RTOL, atol=ATOL, dtmax=DTMAX,
                            max_steps=20)
  ref = diffrax_windows(ARGS, jnp.asarray(0.2), y0, ts, max_steps=20)
  assert np.all(np.isinf(np.asarray(ys[1, -1]))) and np.all(np.isinf(np.asarray(ref[1, -1])))
  np.testing.assert_allclose(ys[np.array([0, 2])], ref[np.array([0, 2])], rtol=1e-11, atol=1e-12)


def test_bad_shapes_and_widths_say_what_to_pass():
  y0, ts = jnp.zeros((4, 2)), jnp.tile(jnp.linspace(0, 1, 3), (4, 1))
  ARGS = weights()
  with pytest.raises(ValueError, match="y0: \\(B, D\\) and ts: \\(B, T\\)"):
    dopri5.solve_windows(van_der_pol, ARGS, 0.0, y0[0], ts, rtol=RTOL, atol=ATOL, dtmax=DTMAX)
  with pytest.raises(ValueError, match="widths must decrease"):
    dopri5.solve_windows(van_der_pol, ARGS, 0.0, y0, ts, rtol=RTOL, atol=ATOL, dtmax=DTMAX, widths=(4, 4, 1))
  assert dopri5.default_widths(20) == (20, 5, 1) and dopri5.default_widths(3) == (3, 1)


@float64
def test_vmap_over_seeds_equals_separate_solves():
  """Seeds side by side (`jax.vmap` of loss and gradient over weights and windows, as `--config.num_seeds` runs it)
  give each seed's own solve: the record loop's batching rule (rows written in place, finished seeds kept) is
  exact, also when the seeds' solves take different numbers of iterations."""
  y0, ts = windows()
  mus = jnp.asarray([0.5, 3.0, 6.0])  # different stiffness: different step counts per seed
  y0s = jnp.stack([y0, y0[::-1], y0 * 0.5])
  solve = lambda a, c, y, t: dopri5.solve_windows(van_der_pol, a, c, y, t, rtol=RTOL, atol=ATOL, dtmax=DTMAX)
  fn = loss_of(solve)
  batched = jax.vmap(lambda mu, y: fn({"mu": mu, "b": jnp.asarray(0.1)}, y, ts))(mus, y0s)
  for s in range(3):
    v, (ga, gy) = fn({"mu": mus[s], "b": jnp.asarray(0.1)}, y0s[s], ts)
    np.testing.assert_allclose(batched[0][s], v, rtol=1e-13)
    np.testing.assert_allclose(batched[1][0]["mu"][s], ga["mu"], rtol=1e-11)
    np.testing.assert_allclose(batched[1][1][s], gy, rtol=1e-11, atol=1e-14)
