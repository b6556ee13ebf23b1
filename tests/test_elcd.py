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


def test_rollout_converges_and_stays_inside_the_latent_envelope(model):
  x0 = np.random.default_rng(2).normal(size=(4, 2)).astype(np.float32) * 3
  xs, taken = model.rollout(x0, steps=1000, dt=0.1, return_steps=True)
  xs, taken = np.asarray(xs), np.asarray(taken)
  assert xs.shape == (4, 1001, 2) and taken.shape == (4,)
  np.testing.assert_array_equal(xs[:, 0], x0)
  final = np.linalg.norm(xs[:, -1], axis=1)
  assert np.all(final < 1e-2 * np.linalg.norm(x0, axis=1)), final  # converged to the target x* = 0
  stopped = taken < 1000  # met the stopping rule ‖Δx‖ < 1e-5 ...
  assert stopped.sum() >= 2
  np.testing.assert_array_equal(xs[stopped, -1], xs[stopped, taken[stopped]])  # ... and froze there
  # the guarantee, seen in latent coordinates: ‖φ(x(t)) − z*‖ ≤ e^(−εt)‖φ(x(0)) − z*‖
  dist = np.linalg.norm(np.asarray(model.encode(jnp.asarray(xs.reshape(-1, 2))) - model.latent_target()), axis=-1)
  dist = dist.reshape(4, 1001)
  envelope = np.exp(-model.eps * 0.1 * np.arange(1001)) * dist[:, :1]
  assert np.all(dist <= envelope * (1 + 1e-3) + 1e-5)


def test_verify_passes_on_a_constrained_model_and_fails_on_an_unconstrained_one(model):
  checks = elcd.verify(model, num_points=2000, num_starts=8)
  assert len(checks) == 5 and all(c.passed for c in checks), checks
  bad = elcd.verify(_tiny(2, seed=4, constrained=False), num_points=2000, num_starts=8)
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
  for key in ("loss", "velocity_mse", "mean_nearest_distance", "dtw", "frechet", "swept_error_area",
              "final_distance", "rollout_steps", "perturbed_final_distance"):
    assert np.isfinite(out[key]), (key, out)
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


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_keep_the_guarantee(name):
  assert zoo.get_spec(name).pretrained is not None, f"{name} should ship"
  model = zoo.load(name)  # the embedded copy, sha256-pinned
  checks = elcd.verify(model, num_points=4000, num_starts=8)
  assert len(checks) == 5 and all(c.passed for c in checks), checks
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, model.dim)) * 3, jnp.float32)
  xs = np.asarray(model.rollout(x, steps=1000))
  dist = np.linalg.norm(xs - np.asarray(model.target), axis=-1)
  assert np.all(dist[:, -1] < dist[:, 0])  # every start ends nearer the target than it began


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
  assert "perturbed start" in out and (tmp_path / "elcd_streamlines.png").is_file()
