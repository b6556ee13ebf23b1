"""Neural-spline flows: exact inverses, log-determinants and Jacobian-vector products (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from zoo.nn import flows


def _perturbed_flow(dim, seed=0, scale=0.1, **kwargs):
  """A flow whose parameters are moved away from the (near-identity) initialisation, as float64."""
  flow = flows.NeuralSplineFlow(dim, rngs=nnx.Rngs(seed), **kwargs)
  params = nnx.state(flow, nnx.Param)
  leaves, tree = jax.tree.flatten(params)
  key = jax.random.key(seed + 1)
  leaves = [(leaf + scale * jax.random.normal(jax.random.fold_in(key, i), leaf.shape)).astype(jnp.float64)
            for i, leaf in enumerate(leaves)]
  nnx.update(flow, jax.tree.unflatten(tree, leaves))
  return flow


def _jacobians(fn, x):
  return jax.vmap(jax.jacfwd(lambda u: fn(u[None])[0]))(x)


@jax.jit
def _spline_quantities(x, logits):
  k = 10
  y, logdet = flows.rational_quadratic_spline(x, logits[:, :k], logits[:, k:2 * k], logits[:, 2 * k:],
                                              tail_bound=10.0)
  x_back, logdet_inv = flows.rational_quadratic_spline(y, logits[:, :k], logits[:, k:2 * k], logits[:, 2 * k:],
                                                       tail_bound=10.0, inverse=True)
  slope = jax.vmap(jax.grad(lambda u, p: flows.rational_quadratic_spline(
      u, p[:k], p[k:2 * k], p[2 * k:], tail_bound=10.0)[0]))(x, logits)
  return y, logdet, x_back, logdet_inv, slope


def test_spline_is_monotone_inverse_exact_and_identity_outside_tails():
  with jax.enable_x64(True):
    k, n = 10, 4001
    logits = jax.random.normal(jax.random.key(0), (1, 3 * k - 1), jnp.float64) * 2
    logits = jnp.broadcast_to(logits, (n, 3 * k - 1))
    x = jnp.linspace(-14.0, 14.0, n).at[:2].set(jnp.asarray([-10 + 1e-9, 10 - 1e-9]))
    y, logdet, x_back, logdet_inv, slope = map(np.asarray, _spline_quantities(x, logits))
  x = np.asarray(x)
  order = np.argsort(x)
  assert np.all(np.diff(y[order]) > 0)
  outside = np.abs(x) > 10
  np.testing.assert_array_equal(y[outside], x[outside])
  np.testing.assert_array_equal(logdet[outside], 0.0)
  np.testing.assert_allclose(x_back, x, atol=1e-11)
  np.testing.assert_allclose(logdet_inv, -logdet, atol=1e-10)
  np.testing.assert_allclose(np.log(slope), logdet, atol=1e-9)
  np.testing.assert_allclose(slope[:2], 1.0, atol=1e-6)  # C¹ at the tail bound: boundary derivatives are 1


def test_lu_linear_starts_at_identity_and_inverts():
  layer = flows.LULinear(3, rngs=nnx.Rngs(0))
  x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
  y, logdet = layer.forward(jnp.asarray(x))
  np.testing.assert_allclose(y, x, atol=1e-6)
  np.testing.assert_allclose(logdet, 0.0, atol=1e-5)
  with jax.enable_x64(True):
    layer = flows.LULinear(3, identity_init=False, rngs=nnx.Rngs(1))
    x = jnp.asarray(x, jnp.float64)
    y, logdet = layer.forward(x)
    lower, upper = layer.factors()
    assert float(logdet[0]) == pytest.approx(float(jnp.linalg.slogdet(lower @ upper)[1]), abs=1e-6)
    np.testing.assert_allclose(layer.inverse(y)[0], x, atol=1e-6)


def test_permutation_is_state_but_not_trained():
  flow = flows.NeuralSplineFlow(4, steps=1, hidden=8, blocks=1, rngs=nnx.Rngs(0))
  perms = jax.tree.leaves(nnx.state(flow, flows.PermutationIndex))
  assert len(perms) == 2 and all(sorted(np.asarray(p).tolist()) == [0, 1, 2, 3] for p in perms)
  assert not any(jnp.issubdtype(p.dtype, jnp.integer) for p in jax.tree.leaves(nnx.state(flow, nnx.Param)))


@nnx.jit
def _flow_quantities(flow, x, v):
  z, logdet = flow.forward(x)
  x_back, logdet_inv = flow.inverse(z)
  return dict(z=z, logdet=logdet, x_back=x_back, logdet_inv=logdet_inv,
              jac=_jacobians(lambda u: flow.forward(u)[0], x), jac_inv=_jacobians(lambda u: flow.inverse(u)[0], z),
              jvp_inverse=flow.jvp_inverse(z, v), jvp_forward=flow.jvp_forward(x, v))


@pytest.mark.slow  # heavy: `make test-slow` (issue 13: the default run stays under 8 minutes)
def test_flow_inverse_logdet_and_jvps_are_exact(dim=5):
  with jax.enable_x64(True):
    flow = _perturbed_flow(dim, steps=2, hidden=12, blocks=2, num_bins=6, tail_bound=4.0)
    x = 3 * jax.random.normal(jax.random.key(2), (16, dim), jnp.float64)  # some points beyond the tail bound
    v = jax.random.normal(jax.random.key(3), x.shape, jnp.float64)
    q = nnx.jit(_flow_quantities)(flow, x, v)
  z, logdet, jac, jac_inv = q["z"], q["logdet"], q["jac"], q["jac_inv"]
  assert z.dtype == jnp.float64
  np.testing.assert_allclose(q["x_back"], x, atol=1e-10)
  np.testing.assert_allclose(q["logdet_inv"], -logdet, atol=1e-10)
  np.testing.assert_allclose(np.linalg.slogdet(np.asarray(jac))[1], logdet, atol=1e-8)
  np.testing.assert_allclose(np.einsum("bij,bjk->bik", jac_inv, jac), np.broadcast_to(np.eye(dim), jac.shape),
                             atol=1e-9)
  x_out, jv = q["jvp_inverse"]
  np.testing.assert_allclose(x_out, x, atol=1e-10)
  np.testing.assert_allclose(jv, np.einsum("bij,bj->bi", jac_inv, v), atol=1e-10)
  z_out, jv = q["jvp_forward"]
  np.testing.assert_allclose(z_out, z, atol=1e-12)
  np.testing.assert_allclose(jv, np.einsum("bij,bj->bi", jac, v), atol=1e-10)


def test_coupling_passes_its_identity_features_through():
  layer = flows.RQSplineCoupling(5, even=True, hidden=8, blocks=1, rngs=nnx.Rngs(0))
  assert layer.transform_features == (0, 2, 4) and layer.identity_features == (1, 3)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(7, 5)), jnp.float32)
  y, _ = layer.forward(x)
  np.testing.assert_array_equal(np.asarray(y[:, [1, 3]]), np.asarray(x[:, [1, 3]]))
  with pytest.raises(ValueError, match="dim ≥ 2"):
    flows.RQSplineCoupling(1, even=True, rngs=nnx.Rngs(0))
