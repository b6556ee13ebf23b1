"""Differentiable k-means: the IDKM implicit gradient, the JFB gradient, DKM unrolling, initialisation.

Tolerances (float64 throughout), relative to the gradient's largest entry: the IFT gradient matches a 300-step
unrolled DKM gradient to 1e-10 (measured 1.1e-14 and 1.4e-13; here ρ(∂F/∂C) ≈ 0.77 and 0.75, so 300 steps
converge far below that) and central finite differences (step 1e-5) to 1e-7 of Σ|g·v| (measured 5.5e-9 and
7.2e-10); JFB differs from both by 7e-2 and 9e-2 (so the adjoint solve is exercised) and matches the one-step
gradient to 1e-12.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.quant import kmeans
from zoo.quant.kmeans import KMeansConfig

# (dim, k, tau): soft enough that ∂F/∂C is far from 0 (the adjoint solve matters), yet contracting.
CASES = [(1, 4, 0.05), (2, 3, 0.2)]
CASE_PARAMS = [CASES[0], pytest.param(CASES[1], marks=pytest.mark.slow)]  # d = 2 in the slow run (CI time)


def data(dim, k, seed=0, m=60):
  rng = np.random.default_rng(seed)
  centres = rng.normal(0, 1.5, (k, dim))
  w = centres[rng.integers(0, k, m)] + rng.normal(0, 0.4, (m, dim))
  return jnp.asarray(w, jnp.float64)


def objective(w, c0, cfg, r, s):
  """L(W) = Σ r ⊙ W̃ + Σ s ⊙ C: exercises the direct path (through A) and the path through C*."""
  soft, c = kmeans.cluster(c0, w, cfg)
  return jnp.sum(r * soft) + jnp.sum(s * c)


def setup(dim, k, tau, seed=0):
  w = data(dim, k, seed)
  c0 = kmeans.init_centroids(jax.random.key(seed), w, k)
  rng = np.random.default_rng(seed + 1)
  r = jnp.asarray(rng.normal(size=w.shape))
  s = jnp.asarray(rng.normal(size=(k, dim)))
  return w, c0, r, s


def rel_err(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


LONG = 300  # iterations of the "long" runs: ρ(∂F/∂C)^300 < 1e-30 for both cases


@pytest.fixture(scope="module", params=CASE_PARAMS, ids=lambda c: "d%d-k%d-tau%g" % c)
def case(request):
  """One problem and its gradients: IFT (IDKM), long unrolled DKM, JFB (each compiled once)."""
  dim, k, tau = request.param
  with jax.enable_x64(True):
    w, c0, r, s = setup(dim, k, tau)
    grad = jax.jit(jax.grad(objective), static_argnums=2)
    cfgs = {"idkm": KMeansConfig("idkm", tau=tau, iters=LONG, eps=0.0, adjoint_iters=LONG, adjoint_tol=1e-15),
            "dkm": KMeansConfig("dkm", tau=tau, iters=LONG, eps=0.0),
            "idkm-jfb": KMeansConfig("idkm-jfb", tau=tau, iters=LONG, eps=0.0)}
    grads = {m: grad(w, c0, cfg, r, s) for m, cfg in cfgs.items()}
    yield dict(dim=dim, k=k, tau=tau, w=w, c0=c0, r=r, s=s, cfgs=cfgs, grads=grads)


def test_ift_gradient_matches_long_unrolled_dkm(case):
  g = case["grads"]
  assert rel_err(g["idkm"], g["dkm"]) < 1e-10
  # the adjoint term matters here: JFB (which drops it) is clearly different
  assert rel_err(g["idkm-jfb"], g["dkm"]) > 1e-3


def test_ift_gradient_matches_finite_differences(case):
  c = case
  f = jax.jit(functools.partial(objective, c0=c["c0"], cfg=c["cfgs"]["idkm"], r=c["r"], s=c["s"]))
  g, w = c["grads"]["idkm"], c["w"]
  rng = np.random.default_rng(7)
  h = 1e-5
  for _ in range(4):
    v = jnp.asarray(rng.normal(size=w.shape))
    fd = (f(w + h * v) - f(w - h * v)) / (2 * h)
    assert abs(float(jnp.sum(g * v)) - float(fd)) <= 1e-7 * float(jnp.sum(jnp.abs(g * v)))


def test_unrolled_gradient_converges_to_the_implicit_one(case):
  c = case
  if c["dim"] != 1:
    pytest.skip("one case suffices")
  grad = jax.jit(jax.grad(objective), static_argnums=2)
  errs = [rel_err(grad(c["w"], c["c0"], KMeansConfig("dkm", tau=c["tau"], iters=t, eps=0.0), c["r"], c["s"]),
                  c["grads"]["idkm"]) for t in (2, 20)]
  errs.append(rel_err(c["grads"]["dkm"], c["grads"]["idkm"]))  # t = LONG
  assert errs[0] > errs[1] > errs[2]


def test_jfb_is_the_one_step_gradient(case):
  if case["dim"] != 1:
    pytest.skip("one case suffices (an identity of the backward pass, independent of d)")
  w, c0, r, s, tau = case["w"], case["c0"], case["r"], case["s"], case["tau"]
  c_star = kmeans.solve(c0, w, case["cfgs"]["idkm-jfb"])

  def one_step(w):  # value C*, gradient of one application of F at C*
    f = kmeans.update(jax.lax.stop_gradient(c_star), w, tau)
    c = c_star + f - jax.lax.stop_gradient(f)
    return jnp.sum(r * kmeans.soft_weights(c, w, tau)) + jnp.sum(s * c)

  g_jfb = case["grads"]["idkm-jfb"]
  assert rel_err(g_jfb, jax.grad(one_step)(w)) < 1e-12
  # IDKM with a zero-step adjoint solve is JFB
  g0 = jax.grad(objective)(w, c0, KMeansConfig("idkm", tau=tau, iters=LONG, eps=0.0, adjoint_iters=0), r, s)
  assert rel_err(g0, g_jfb) < 1e-12
  # one unrolled DKM step started at the fixed point is the same gradient
  g_dkm1 = jax.grad(objective)(w, c_star, KMeansConfig("dkm", tau=tau, iters=1, eps=0.0), r, s)
  assert rel_err(g_dkm1, g_jfb) < 1e-8


def test_the_three_methods_share_the_forward_pass():
  w, c0, _, _ = setup(1, 4, 0.05)
  outs = [kmeans.cluster(c0, w, KMeansConfig(m, tau=0.05, iters=7, eps=0.0)) for m in kmeans.METHODS]
  for soft, c in outs[1:]:
    np.testing.assert_array_equal(np.asarray(c), np.asarray(outs[0][1]))
    np.testing.assert_array_equal(np.asarray(soft), np.asarray(outs[0][0]))
  # and it is iterating F
  c = c0
  for _ in range(7):
    c = kmeans.update(c, w, 0.05)
  np.testing.assert_allclose(np.asarray(outs[0][1]), np.asarray(c), rtol=1e-13)


def test_eps_stops_early_the_same_way_in_scan_and_while_loop():
  w, c0, _, _ = setup(1, 4, 0.05)
  cfg = dict(tau=0.05, iters=200, eps=1e-3)
  c_dkm = kmeans.centroids(c0, w, KMeansConfig("dkm", **cfg))
  c_idkm = kmeans.centroids(c0, w, KMeansConfig("idkm", **cfg))
  np.testing.assert_array_equal(np.asarray(c_dkm), np.asarray(c_idkm))
  c_full = kmeans.centroids(c0, w, KMeansConfig("idkm", tau=0.05, iters=200, eps=0.0))
  assert not np.array_equal(np.asarray(c_idkm), np.asarray(c_full))  # it did stop before 200 steps


def test_the_fixed_point_is_a_fixed_point(case):
  c = kmeans.solve(case["c0"], case["w"], case["cfgs"]["idkm"])
  np.testing.assert_allclose(np.asarray(kmeans.update(c, case["w"], case["tau"])), np.asarray(c), atol=1e-12)


def test_assignments_are_clamped_softmax_rows():
  w, c0, _, _ = setup(1, 4, 1e-4)
  a = kmeans.assignments(c0, w, 1e-4)
  assert float(a.min()) >= kmeans.CLAMP
  np.testing.assert_allclose(np.asarray(a.sum(1)), 1.0, atol=4 * kmeans.CLAMP)


def test_kmeans_plus_plus_finds_separated_clusters():
  rng = np.random.default_rng(0)
  centres = np.array([[-10.0, 0.0], [0.0, 10.0], [10.0, 0.0], [0.0, -10.0]])
  w = jnp.asarray(centres[rng.integers(0, 4, 400)] + rng.normal(0, 0.1, (400, 2)))
  c = np.asarray(kmeans.init_centroids(jax.random.key(1), w, 4))
  dist = np.linalg.norm(c[:, None] - centres[None], axis=-1)
  assert sorted(dist.argmin(1).tolist()) == [0, 1, 2, 3]  # one centroid per cluster
  assert dist.min(1).max() < 0.1


def test_snap_has_at_most_k_distinct_rows():
  w, c0, _, _ = setup(2, 3, 0.2)
  snapped = np.asarray(kmeans.snap(c0, w))
  assert len(np.unique(snapped, axis=0)) <= 3
  np.testing.assert_array_equal(snapped, np.asarray(c0)[np.asarray(kmeans.nearest(c0, w))])


def test_bad_configs_are_refused():
  with pytest.raises(ValueError, match="method"):
    KMeansConfig("kmeans")
  with pytest.raises(ValueError, match="tau"):
    KMeansConfig(tau=0.0)
  with pytest.raises(ValueError, match="iters"):
    KMeansConfig(iters=0)
