"""zoo.attacks: L2 PGD correctness, and certified ≤ PGD-robust ≤ clean accuracy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import zoo
import zoo.data
from zoo import attacks

RNG = np.random.default_rng(0)
W = jnp.asarray(RNG.normal(size=(20, 3)), jnp.float32)  # a linear classifier on R^20


def linear(x):
  return x @ W


def _data(n=200):
  x = jnp.asarray(RNG.uniform(0.2, 0.8, (n, 20)), jnp.float32)
  return x, jnp.argmax(linear(x), axis=1)  # labels = the model's predictions: clean accuracy 1


def test_pgd_stays_in_the_ball_and_the_box():
  x, y = _data()
  for eps in (0.05, 0.5, 3.0):
    adv = attacks.pgd_l2(linear, x, y, eps, steps=10)
    assert float(jnp.max(jnp.linalg.norm(adv - x, axis=1))) <= eps * (1 + 1e-5)
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0


def test_pgd_increases_the_loss():
  x, y = _data()
  for loss in ("ce", "margin"):
    adv = attacks.pgd_l2(linear, x, y, 0.3, steps=10, loss=loss, random_start=False)
    before = attacks.attack_loss(linear(x), y, loss)
    after = attacks.attack_loss(linear(adv), y, loss)
    assert float(jnp.mean(after)) > float(jnp.mean(before))
    assert float(jnp.mean(after >= before - 1e-6)) == 1.0


def test_pgd_finds_the_worst_case_of_a_linear_binary_classifier():
  """For f = Wx with two classes and no box, the smallest margin in the ε-ball is m − ε‖w_y − w_j‖ exactly."""
  w2 = W[:, :2]
  model = lambda x: x @ w2  # noqa: E731
  x, _ = _data()
  y = jnp.argmax(model(x), axis=1)
  eps = 0.2
  adv = attacks.pgd_l2(model, x, y, eps, steps=20, loss="margin", random_start=False, bounds=(-np.inf, np.inf))
  optimum = attacks.margins(model(x), y) - eps * jnp.linalg.norm(w2[:, 0] - w2[:, 1])
  np.testing.assert_allclose(attacks.margins(model(adv), y), optimum, atol=1e-4)


def test_certified_accuracy_formula_and_validity():
  logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
  labels = jnp.array([0, 1, 1])  # margins 2, 1, −1
  assert attacks.certified_accuracy(logits, labels, lipschitz=1.0, eps=1.5 / math.sqrt(2)) == pytest.approx(1 / 3)
  assert attacks.certified_accuracy(logits, labels, lipschitz=1.0, eps=0.0) == pytest.approx(2 / 3)
  # With the exact Lipschitz constant of a linear model, every certified example survives PGD.
  x, y = _data()
  lip = float(np.linalg.svd(np.asarray(W), compute_uv=False)[0])
  for eps in (0.05, 0.2, 0.5):
    margin = np.asarray(attacks.margins(linear(x), y))
    certified = margin > math.sqrt(2) * lip * eps
    adv = attacks.pgd_l2(linear, x, y, eps, steps=20, loss="margin")
    survived = np.asarray(jnp.argmax(linear(adv), axis=1) == y)
    assert np.all(survived[certified])


@pytest.mark.slow  # the shipped-weights tests of test_nonexpansive.py check the same ordering
def test_certified_below_robust_below_clean_on_a_zoo_classifier():
  """On the shipped non-expansive classifier (L ≤ 1): certified ≤ PGD-robust ≤ clean accuracy at every radius,
  robust accuracy falls as ε grows, and the attack leaves the model unchanged."""
  from zoo import hub

  name = "nonexpansive-resnet-digits"
  if not (hub.checkpoints_dir() / name / "manifest.json").is_file():
    pytest.skip(f"{name} is not embedded")
  model = zoo.load(name)
  data = zoo.data.load("digits", "test")
  x, y = jnp.asarray(data["image"]), jnp.asarray(data["label"])
  state = jax.tree.map(np.asarray, nnx.state(model))
  logits = attacks.predict(model, x)
  clean = attacks.clean_accuracy(model, x, y)
  robust = [attacks.robust_accuracy(model, x, y, eps) for eps in (0.5, 1.0)]
  for eps, r in zip((0.5, 1.0), robust):
    assert attacks.certified_accuracy(logits, y, 1.0, eps) <= r <= clean
  assert robust[0] > robust[1]
  jax.tree.map(np.testing.assert_array_equal, state, jax.tree.map(np.asarray, nnx.state(model)))
