"""Adversarial robustness of any zoo classifier: L2 PGD, robust accuracy, and certified accuracy from a Lipschitz bound.

    from zoo import attacks
    x_adv = attacks.pgd_l2(model, x, y, eps=0.5, steps=10)           # x: (batch, ...) in [0, 1]
    attacks.robust_accuracy(model, x, y, eps=0.5)                     # correct at x and at every PGD iterate
    attacks.certified_accuracy(model(x), y, lipschitz=1.0, eps=0.5)   # margin > √2·L·ε

`model` is any callable from a float batch to logits (batch, classes): an `nnx.Module` (run in its current
mode, usually `model.eval()`; its state is passed to a jitted function, not baked in) or a plain function.

PGD (Madry et al. 2018) in the L2 ball of radius ε around x, inside the box `bounds` (foolbox's `L2PGD`, which
the paper uses): an optional uniform random start in the ball, then `steps` steps of size α along the
normalised gradient of the loss, each followed by projection onto the ball and clipping to the box (which keeps
the point in the ball). The default α = 2.5·ε/steps lets the attack cross the ball; foolbox's default
(α = 0.025·ε, the paper's setting) is `rel_stepsize=0.025`.

Certified accuracy: if N is L-Lipschitz in ℓ2, each logit difference f_y − f_j is √2·L-Lipschitz, so a correct
prediction whose margin f_y − max_{j≠y} f_j exceeds √2·L·ε cannot change within the ε-ball (Tsuzuku et al.
2018); this is the certificate of the non-expansive-odes code (`certified_robustness`).
"""

from __future__ import annotations

import math
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


@dataclasses.dataclass(frozen=True)
class _Logits:
  """f(params, x) -> logits of a module (its graph definition) or of a plain callable. Hashable and equal for equal
  graph definitions, so the jitted attacks (which take it as a static argument) compile once per architecture."""

  graphdef: Any = None
  function: Callable | None = None

  def __call__(self, params: Any, x: jax.Array) -> jax.Array:
    if self.function is not None:
      return self.function(x)
    return nnx.merge(self.graphdef, params)(x)


def _logits_fn(model: Any) -> tuple[_Logits, Any]:
  """(pure f(params, x) -> logits, params) for an nnx.Module or a plain callable."""
  if isinstance(model, nnx.Module):
    graphdef, state = nnx.split(model)
    return _Logits(graphdef=graphdef), state
  return _Logits(function=model), None


def margins(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """f_y − max_{j≠y} f_j for logits (batch, classes) and labels (batch,): > 0 iff correctly classified."""
  logits = jnp.asarray(logits)
  true = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
  others = jnp.where(jax.nn.one_hot(labels, logits.shape[1], dtype=bool), -jnp.inf, logits)
  return true - jnp.max(others, axis=1)


def attack_loss(logits: jax.Array, labels: jax.Array, kind: str = "ce") -> jax.Array:
  """Per-example loss the attack ascends: "ce" (cross-entropy, foolbox's) or "margin" (max_{j≠y} f_j − f_y)."""
  if kind == "ce":
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
  if kind == "margin":
    return -margins(logits, labels)
  raise ValueError(f"attack loss {kind!r}: use 'ce' or 'margin'.")


def _per_example_norm(v: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=1)).reshape((-1,) + (1,) * (v.ndim - 1))


def _project(delta: jax.Array, eps: jax.Array) -> jax.Array:
  norm = _per_example_norm(delta)
  return delta * jnp.minimum(1.0, eps / jnp.maximum(norm, 1e-12))


def _random_ball(key: jax.Array, shape: tuple[int, ...], eps: jax.Array, dtype) -> jax.Array:
  """Uniform samples in the L2 ball of radius eps (per example)."""
  kdir, krad = jax.random.split(key)
  direction = jax.random.normal(kdir, shape, dtype)
  direction = direction / jnp.maximum(_per_example_norm(direction), 1e-12)
  dim = int(np.prod(shape[1:]))
  radius = jax.random.uniform(krad, (shape[0],) + (1,) * (len(shape) - 1), dtype) ** (1.0 / dim)
  return direction * radius * eps


def _pgd(fn: Callable, params: Any, x: jax.Array, y: jax.Array, eps: jax.Array, key: jax.Array, *, steps: int,
         stepsize: jax.Array, random_start: bool, bounds: tuple[float, float], loss: str):
  """Returns (final point, correct at every iterate (batch,) bool, losses at x and at the final point)."""
  lo, hi = bounds
  eps_b = eps.reshape((-1,) + (1,) * (x.ndim - 1))
  step_b = stepsize.reshape((-1,) + (1,) * (x.ndim - 1))

  def total_loss(z):
    logits = fn(params, z)
    return jnp.sum(attack_loss(logits, y, loss)), logits

  def correct(logits):
    return jnp.argmax(logits, axis=1) == y

  clean = fn(params, x)
  start = x
  if random_start:
    start = jnp.clip(x + _random_ball(key, x.shape, eps_b, x.dtype), lo, hi)

  def body(_, carry):
    z, ok = carry
    g, logits = jax.grad(total_loss, has_aux=True)(z)  # logits at z: its correctness is recorded
    g = g / jnp.maximum(_per_example_norm(g), 1e-12)
    return jnp.clip(x + _project(z + step_b * g - x, eps_b), lo, hi), ok & correct(logits)

  z, ok = jax.lax.fori_loop(0, steps, body, (start, correct(clean)))
  final = fn(params, z)
  return z, ok & correct(final), attack_loss(clean, y, loss), attack_loss(final, y, loss)


_PGD = jax.jit(_pgd, static_argnames=("fn", "steps", "random_start", "bounds", "loss"))
_APPLY = jax.jit(lambda fn, params, x: fn(params, x), static_argnums=0)


def _run(model, x, y, eps, *, steps, rel_stepsize, random_start, bounds, loss, seed, batch_size):
  fn, params = _logits_fn(model)
  x = jnp.asarray(x)
  y = jnp.asarray(y)
  n = x.shape[0]
  eps = jnp.broadcast_to(jnp.asarray(eps, x.dtype), (n,))
  if rel_stepsize is None:
    rel_stepsize = 2.5 / steps
  stepsize = eps * rel_stepsize
  key = jax.random.key(seed)
  outs = []
  for i, start in enumerate(range(0, n, batch_size)):
    sl = slice(start, start + batch_size)
    outs.append(_PGD(fn, params, x[sl], y[sl], eps[sl], jax.random.fold_in(key, i), steps=steps,
                     stepsize=stepsize[sl], random_start=random_start, bounds=tuple(bounds), loss=loss))
  return [jnp.concatenate(parts) for parts in zip(*outs)]


def pgd_l2(model: Any, x: Any, y: Any, eps: float | Any, *, steps: int = 10, rel_stepsize: float | None = None,
           random_start: bool = True, bounds: tuple[float, float] = (0.0, 1.0), loss: str = "ce", seed: int = 0,
           batch_size: int = 512) -> jax.Array:
  """L2 projected gradient ascent on the classification loss.

  Arguments:
    model: classifier, (batch, ...) float -> logits (batch, classes). x: (batch, ...) inputs inside `bounds`.
    y: (batch,) integer labels. eps: radius, a scalar or (batch,). steps: gradient steps (paper: 10).
    rel_stepsize: step α = rel_stepsize·ε (default 2.5/steps; foolbox/paper: 0.025). random_start: start at a
    uniform point of the ball (foolbox's default). bounds: the input box. loss: "ce" or "margin".
  Returns: x_adv (batch, ...) with ‖x_adv − x‖₂ ≤ ε and x_adv inside `bounds`.
  """
  return _run(model, x, y, eps, steps=steps, rel_stepsize=rel_stepsize, random_start=random_start, bounds=bounds,
              loss=loss, seed=seed, batch_size=batch_size)[0]


def robust_accuracy(model: Any, x: Any, y: Any, eps: float, *, steps: int = 10, rel_stepsize: float | None = None,
                    random_start: bool = True, bounds: tuple[float, float] = (0.0, 1.0), loss: str = "ce",
                    seed: int = 0, batch_size: int = 512) -> float:
  """Fraction of examples classified correctly at x and at every PGD iterate (≤ clean accuracy by construction).

  Arguments as `pgd_l2`. Returns: a float in [0, 1]."""
  if eps == 0:
    return clean_accuracy(model, x, y, batch_size=batch_size)
  _, ok, _, _ = _run(model, x, y, eps, steps=steps, rel_stepsize=rel_stepsize, random_start=random_start,
                     bounds=bounds, loss=loss, seed=seed, batch_size=batch_size)
  return float(np.mean(np.asarray(ok)))


def predict(model: Any, x: Any, batch_size: int = 1024) -> np.ndarray:
  """Logits of `model` on x (batched, jitted): (batch, classes) numpy."""
  fn, params = _logits_fn(model)
  x = jnp.asarray(x)
  return np.concatenate([np.asarray(_APPLY(fn, params, x[i:i + batch_size])) for i in range(0, x.shape[0], batch_size)])


def clean_accuracy(model: Any, x: Any, y: Any, batch_size: int = 1024) -> float:
  return float(np.mean(np.argmax(predict(model, x, batch_size), axis=1) == np.asarray(y)))


def certified_accuracy(logits: Any, y: Any, lipschitz: float, eps: float) -> float:
  """Fraction of examples certified at radius ε: margin f_y − max_{j≠y} f_j > √2·L·ε (correct ones only).

  Arguments: logits (batch, classes) at the clean inputs; y (batch,); lipschitz: an upper bound L on the
  network's ℓ2 Lipschitz constant; eps: the radius. Returns a float in [0, 1]."""
  m = np.asarray(margins(jnp.asarray(logits), jnp.asarray(y)))
  return float(np.mean(m > math.sqrt(2.0) * lipschitz * eps))


def certified_radius(logits: Any, y: Any, lipschitz: float) -> np.ndarray:
  """Per-example certified radius max(0, margin)/(√2·L): (batch,)."""
  m = np.asarray(margins(jnp.asarray(logits), jnp.asarray(y)))
  return np.maximum(m, 0.0) / (math.sqrt(2.0) * lipschitz)
