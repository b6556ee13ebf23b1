"""ELCD: the contraction guarantee on random weights, the push-forward field, rollouts, verify, variants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import zoo
from zoo import errors, hub
from zoo.models import elcd
from zoo.nn.contraction import ExtendedLinearField
from zoo.nn.precision import float64_scope

TINY = dict(hidden=4, flow_steps=1, flow_hidden=8, flow_blocks=1, num_bins=4)


def _tiny(dim=2, seed=0, **kwargs):
  return elcd.ELCD(dim, **{**TINY, **kwargs}, rngs=nnx.Rngs(seed))


@pytest.fixture(scope="module")
def model():
  """One tiny random ELCD shared by the tests (building and compiling dominate their cost)."""
  return _tiny(2, seed=0)


def _sym_max(field, z):
  a = np.asarray(field.matrix(jnp.asarray(z, jnp.float32)), np.float64)
  return float(np.max(np.linalg.eigvalsh((a + np.swapaxes(a, 1, 2)) / 2)[:, -1]))


@pytest.mark.parametrize("dim,simple", [(2, False), (5, False), (3, True)])
def test_symmetric_part_is_below_minus_eps_for_random_weights(dim, simple):
  rng = np.random.default_rng(dim)
  z = rng.normal(size=(2000, dim)) * 10.0 ** rng.uniform(-2, 2, (2000, 1))
  for seed in range(4):
    field = ExtendedLinearField(dim, hidden=16, simple=simple, rngs=nnx.Rngs(seed))
    assert _sym_max(field, z) <= -field.eps + 1e-5


def test_unconstrained_ablation_breaks_the_bound():
  z = np.random.default_rng(0).normal(size=(2000, 2)) * 3
  assert _sym_max(ExtendedLinearField(2, hidden=16, constrained=False, rngs=nnx.Rngs(0)), z) > 0


@nnx.jit
def _pushforward(model, x):
  """(velocity, J_φ(x)⁻¹ f(φ(x)) with the Jacobian built by jacfwd)."""
  jac = jax.vmap(jax.jacfwd(lambda u: model.encode(u[None])[0]))(x)
  f = model.latent_field(model.encode(x))
  return model.velocity(x), jnp.linalg.solve(jac, f[..., None])[..., 0]


def test_velocity_is_the_pushforward_of_the_latent_field(model):
  x = np.random.default_rng(1).normal(size=(16, 2)) * 2
  with float64_scope():
    vel, expected = _pushforward(model, jnp.asarray(x, jnp.float64))
  np.testing.assert_allclose(vel, expected, rtol=1e-9, atol=1e-10)
  assert model(x.astype(np.float32)).shape == (16, 2)


def test_rollout_converges_and_stays_inside_the_discrete_envelope(model):
  x0 = np.random.default_rng(2).normal(size=(4, 2)).astype(np.float32) * 3
  xs, taken, zs = model.rollout(x0, steps=1000, dt=0.1, return_steps=True, return_latent=True)
  xs, taken, zs = np.asarray(xs), np.asarray(taken), np.asarray(zs)
  assert xs.shape == zs.shape == (4, 1001, 2) and taken.shape == (4,)
  np.testing.assert_array_equal(xs[:, 0], x0)
  final = np.linalg.norm(xs[:, -1], axis=1)
  assert np.all(final < 1e-2 * np.linalg.norm(x0, axis=1)), final  # converged to the target x* = 0
  stopped = taken < 1000  # met the stopping rule ‖Δx‖ < 1e-5 ...
  assert stopped.sum() >= 2
  np.testing.assert_array_equal(xs[stopped, -1], xs[stopped, taken[stopped]])  # ... and froze there
  # the guarantee in latent coordinates: ‖z_k − z*‖ ≤ (1 + εh)^(−k)‖z_0 − z*‖
  dist = np.linalg.norm(zs - np.asarray(model.latent_target()), axis=-1)
  envelope = (1 + model.eps * 0.1) ** -np.arange(1001.0) * dist[:, :1]
  assert np.all(dist <= envelope * (1 + 1e-4) + 1e-5)


def test_rollout_is_decode_of_the_latent_rollout(model):
  x0 = np.random.default_rng(3).normal(size=(4, 2)).astype(np.float32) * 50  # the shapes above: no recompile
  xs, zs = model.rollout(x0, steps=1000, dt=0.5, tol=0.0, return_latent=True)
  xs, zs = np.asarray(xs), np.asarray(zs)
  np.testing.assert_allclose(zs[:, 0], np.asarray(model.encode(x0)), rtol=1e-6, atol=1e-5)
  decoded = np.asarray(model.decode(jnp.asarray(zs[:, 1:].reshape(-1, 2)))).reshape(4, 1000, 2)
  np.testing.assert_allclose(xs[:, 1:], decoded, rtol=1e-6, atol=1e-6)  # x_k = φ⁻¹(z_k)
  with pytest.raises(errors.InvalidArgumentError, match="dt"):
    model.rollout(x0, dt=0.0)
  with pytest.raises(errors.InvalidArgumentError, match="whole number"):
    model.rollout(x0, steps=-1)
  assert model.rollout(x0, 0).shape == model.rollout_rk4_data(x0, 0).shape == (4, 1, 2)


def _latent_step_ratios(field, z, e, dt):
  """‖e'‖(1 + εh)/‖e‖ for e' = latent_step(A(z), e, h), in float64."""
  with float64_scope():
    a = field.matrix(jnp.asarray(z, jnp.float64))
    new = elcd.latent_step(a, jnp.asarray(e, jnp.float64), dt)
  return np.linalg.norm(np.asarray(new), axis=1) * (1 + field.eps * dt) / np.linalg.norm(e, axis=1)


@pytest.mark.parametrize("dt", [0.01, 0.1, 1.0, 10.0, 1e3])
@pytest.mark.parametrize("dim,simple", [(2, False), (5, False), (8, False), (3, True)])
def test_discrete_contraction_holds_for_random_weights_and_any_dt(dim, simple, dt):
  """‖e_(k+1)‖ ≤ ‖e_k‖/(1 + εh) for random weights, random points z and errors e at all scales, any h."""
  rng = np.random.default_rng(dim)
  z = rng.normal(size=(4000, dim)) * 10.0 ** rng.uniform(-2, 3, (4000, 1))
  e = rng.normal(size=(4000, dim)) * 10.0 ** rng.uniform(-3, 3, (4000, 1))
  for seed in range(3):
    field = ExtendedLinearField(dim, hidden=16, simple=simple, rngs=nnx.Rngs(seed))
    ratios = _latent_step_ratios(field, z, e, dt)
    assert np.all(ratios <= 1 + 1e-9), ratios.max()


@pytest.mark.parametrize("dt", [0.1, 1.0])
def test_unconstrained_ablation_can_violate_the_discrete_bound(dt):
  rng = np.random.default_rng(0)
  z, e = rng.normal(size=(4000, 2)) * 3, rng.normal(size=(4000, 2))
  ratios = _latent_step_ratios(ExtendedLinearField(2, hidden=16, constrained=False, rngs=nnx.Rngs(0)), z, e, dt)
  assert np.any(ratios > 1), ratios.max()


@pytest.mark.parametrize("dt", [0.01, 1.0, 10.0])
def test_rollouts_of_random_models_contract_step_by_step_and_pairwise(dt):
  """Through the public rollout (float64): every step shrinks ‖z_k − z*‖ by 1/(1 + εh), and any two rollouts stay
  within (‖e¹_0‖ + ‖e²_0‖)(1 + εh)^(−k) of each other."""
  rng = np.random.default_rng(int(dt * 100))
  m = _tiny(3, seed=7, target=(0.5, -1.0, 2.0))
  x0 = rng.normal(size=(64, 3)) * 10.0 ** rng.uniform(-1, 3, (64, 1))
  with float64_scope():
    _, taken, zs = m.rollout(jnp.asarray(x0), steps=60, dt=dt, tol=0.0, return_steps=True, return_latent=True)
    z_eq = np.asarray(m.latent_target(jnp.float64))
  zs = np.asarray(zs)
  assert zs.dtype == np.float64 and np.all(np.asarray(taken) == 60)
  e = np.linalg.norm(zs - z_eq, axis=-1)
  shrink = 1 + m.eps * dt
  assert np.all(e[:, 1:] * shrink <= e[:, :-1] * (1 + 1e-9) + 1e-12)
  gap = np.linalg.norm(zs[0::2] - zs[1::2], axis=-1)
  assert np.all(gap <= (e[0::2, :1] + e[1::2, :1]) * shrink ** -np.arange(61.0) * (1 + 1e-9) + 1e-12)


def test_far_starts_converge_through_rollout(model):
  checks = elcd.rollout_checks(model, radii=(10.0, 100.0, 1000.0), directions=32)
  assert len(checks) == 3 and all(c.passed for c in checks), checks


def test_verify_passes_on_a_constrained_model_and_fails_on_an_unconstrained_one(model):
  checks = elcd.verify(model, num_points=2000, directions=16)
  assert len(checks) == 6 and all(c.passed for c in checks), checks
  bad = elcd.verify(_tiny(2, seed=4, constrained=False), num_points=2000, directions=16)
  assert not bad[0].passed and not bad[1].passed and not all(c.passed for c in bad), bad


def test_input_shape_is_checked(model):
  with pytest.raises(errors.InputShapeError, match=r"\(batch, 2\)"):
    model(np.zeros((3,), np.float32))
  with pytest.raises(errors.InputShapeError):
    model(np.zeros((5, 3), np.float32))
  with pytest.raises(errors.InputShapeError):
    model.rollout(np.zeros((2,), np.float32))
  with pytest.raises(errors.InputShapeError, match="floating"):
    model(np.zeros((5, 2), np.int32))


def test_loss_trains_flow_and_field_jointly(model):
  rng = np.random.default_rng(5)
  batch = {"x": jnp.asarray(rng.normal(size=(32, 2)), jnp.float32),
           "v": jnp.asarray(rng.normal(size=(32, 2)), jnp.float32)}
  (value, aux), grads = nnx.jit(nnx.value_and_grad(elcd.loss, has_aux=True))(model, batch)
  assert float(value) == pytest.approx(float(aux["mse"])) and np.isfinite(float(value))
  norms = {k: float(optax_norm(v)) for k, v in (("flow", grads["flow"]), ("field", grads["field"]))}
  assert all(np.isfinite(n) and n > 0 for n in norms.values()), norms


def optax_norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def test_evaluate_reports_the_paper_metric_and_trajectory_metrics(model):
  t = np.linspace(0, 1, 60)
  demos = [np.stack([(1.5 + 0.1 * k) * (1 - t), np.sin(np.pi * t) * (1 - t)], 1) for k in range(4)]
  data = {"x": np.concatenate(demos), "v": np.concatenate([np.gradient(d, t, axis=0) for d in demos]),
          "demo": np.repeat([3, 4, 5, 6], 60).astype(np.int32), "t": np.tile(np.arange(60), 4).astype(np.int32)}
  out = elcd.evaluate(model, data)
  paper = ("mean_nearest_distance", "dtw", "frechet", "swept_error_area", "final_distance", "rollout_steps",
           "perturbed_final_distance")
  converged = ("mean_nearest_distance", "final_distance", "rollout_steps")
  for key in ("loss", "velocity_mse", *paper, *(k + "_latent" for k in paper), *(k + "_converged" for k in converged),
              *(k + "_latent_converged" for k in converged)):
    assert np.isfinite(out[key]), (key, out)
  assert out["rollout_steps_latent_converged"] >= out["rollout_steps_latent"]
  assert out["loss"] == out["velocity_mse"] > 0


def test_registered_variants_and_configs():
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("elcd_config", hub.checkpoints_dir().parent / "configs" / "elcd.py")
  config = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(config)
  for name, dataset, dim in (("elcd-lasa2d-angle", "lasa/Angle", 2), ("elcd-lasa4d", "lasa/4d", 4),
                             ("elcd-lasa8d", "lasa/8d", 8)):
    s = zoo.get_spec(name)
    assert (s.dataset, s.input_shape, s.family.name) == (dataset, (dim,), "elcd")
    c = config.get_config(name.removeprefix("elcd-"))
    assert (c.model, c.dataset, c.optimizer.lr, c.batch_size, c.epochs) == (name, dataset, 1e-3, 100, 100)
    assert config.get_config(name.removeprefix("elcd-") + ",smoke").smoke
  assert len(zoo.list_models("elcd-lasa2d-*")) >= 4
  with pytest.raises(errors.UnknownVariantError, match=r"no variant 'lasa3d'\. Did you mean: [^?]*lasa4d"):
    config.get_config("lasa3d")


SHIPPED = ["elcd-lasa2d-angle", "elcd-lasa4d", "elcd-lasa8d"]


@pytest.mark.parametrize("name", [SHIPPED[0], *(pytest.param(n, marks=pytest.mark.slow) for n in SHIPPED[1:])])
def test_shipped_weights_keep_the_guarantee(name):
  assert zoo.get_spec(name).pretrained is not None, f"{name} should ship"
  model = zoo.load(name)  # the embedded copy, sha256-pinned
  checks = elcd.verify(model, num_points=4000, directions=32)
  assert len(checks) == 6 and all(c.passed for c in checks), checks
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, model.dim)) * 3, jnp.float32)
  xs = np.asarray(model.rollout(x, steps=1000))
  dist = np.linalg.norm(xs - np.asarray(model.target), axis=-1)
  assert np.all(dist[:, -1] < dist[:, 0])  # every start ends nearer the target than it began


@pytest.mark.slow  # compiling the paper's RK4 alone takes ~20 s of CPU
@pytest.mark.parametrize("name,steps,dt,diverges", [
    ("elcd-lasa2d-sine", 250, 2.0, True),  # verify's budget
    ("elcd-lasa8d", 10_000, 0.01, True),  # the default dt, 10x the default steps
    # T = 1000 (sine's field contracts at ≈ ε = 0.01 far out): RK4 converges but breaks the step-wise contraction
    ("elcd-lasa2d-sine", 10_000, 0.1, False)])
def test_rollout_check_fails_on_the_paper_rk4_and_passes_on_rollout(name, steps, dt, diverges):
  """The same check, the same starts (‖x0 − x*‖ = 100) and arguments; only the integrator differs."""
  model = zoo.load(name)
  kwargs = dict(radii=(100.0,), directions=32, steps=steps, dt=dt)
  old = elcd.rollout_checks(model, "rollout_rk4_data", **kwargs)
  assert not all(c.passed for c in old) and old[0].passed != diverges, old
  new = elcd.rollout_checks(model, "rollout", **kwargs)
  assert all(c.passed for c in new), new


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_reproduce_the_card_numbers(name):
  import zoo.data  # pylint: disable=import-outside-toplevel
  model = zoo.load(name)
  metrics = elcd.evaluate(model, zoo.data.load(zoo.get_spec(name).dataset, "test"))
  card = zoo.info(name)["metrics"]
  for key in ("mean_nearest_distance", "dtw", "frechet", "final_distance"):
    assert metrics[key] == pytest.approx(card[key], rel=1e-3), key


def test_zoo_run_shows_a_perturbed_rollout(tmp_path, capsys):
  from zoo import cli  # pylint: disable=import-outside-toplevel
  assert cli.main(["run", "elcd-lasa2d-angle", "--out", str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert "perturbed start" in out and "Far away" in out and "normalised units" in out
  assert (tmp_path / "elcd_streamlines.png").is_file() and (tmp_path / "elcd_far_starts.png").is_file()
