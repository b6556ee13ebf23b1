"""The lower layer of ACS: correct a proposed action by gradient steps on the safety advantage A_s until the relaxed
chance constraint holds.

Constraint (authors' research code): A_s(s, a) ≥ h(s) = −η (V_s(s) − (1 − ε_k)), η = 0.8, with the progressive
threshold ε_k = max(4 − 0.3 (k + 1), 0.3) over epochs k. Equivalently Q_s(s, a) − (1 − ε) ≥ (1 − η)(V_s(s) − (1 − ε)):
a discrete barrier condition on B(s) = P_safe(s) − (1 − ε) with recovery rate η.

Correction: up to `steps` (20) iterations of a ← clip(a + 0.05 · ∇_a A_s / max|∇_a A_s|), stopping per sample as
soon as the constraint holds. The research code steps *against* the gradient (a line copied from USL, where the
critic is a cost to lower); here A_s must rise, so the default `direction=+1` ascends. `direction=-1` reproduces the
research code's sign; tests/test_acs.py measures which one raises A_s.

Shapes: `obs: (batch, obs_dim)`, `action: (batch, act_dim)`, `threshold: (batch,)`. The advantage function must
treat batch rows independently (an MLP does): the per-sample gradients are taken as the gradient of the batch sum.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

ETA = 0.8  # recovery rate η of the relaxed constraint
STEPS = 20  # most correction steps per action
STEP_SIZE = 0.05  # size of one normalised correction step


class Correction(NamedTuple):
  """What the safeguard did: the corrected `action (batch, act_dim)`, the number of steps taken
  `iterations (batch,)`, the final `residual (batch,)` = A_s(s, clip(a)) − h (≥ 0: the constraint holds)."""

  action: jax.Array
  iterations: jax.Array
  residual: jax.Array


def epsilon_schedule(epoch: jax.Array | int, start: float = 4.0, decay: float = 0.3, floor: float = 0.3) -> jax.Array:
  """ε_k = max(start − decay (k + 1), floor): loose early (ε > 1 makes the constraint vacuous), 0.3 from epoch 12."""
  return jnp.maximum(start - decay * (jnp.asarray(epoch, jnp.float32) + 1.0), floor)


def threshold(safe_value: jax.Array, epsilon: jax.Array | float, eta: float = ETA) -> jax.Array:
  """h(s) = −η (V_s(s) − (1 − ε)): `(batch,)` from V_s `(batch,)`."""
  return -eta * (safe_value - (1.0 - epsilon))


def correct(advantage: Callable[[jax.Array, jax.Array], jax.Array], obs: jax.Array, action: jax.Array,
            bound: jax.Array, *, steps: int = STEPS, step_size: float = STEP_SIZE, low: float = -1.0,
            high: float = 1.0, direction: float = 1.0, enabled: jax.Array | bool = True) -> Correction:
  """Moves each `action` row by normalised gradient steps on `advantage(obs, clip(a))` until it reaches `bound`.

  A row that already satisfies A_s(s, clip(a)) ≥ bound is returned unchanged (not even clipped: the environment
  clips, and the policy's log-probability stays that of the sample); a corrected row lies in [low, high].
  `direction=+1` ascends A_s, `-1` descends (the research code's literal sign). `enabled=False` (a bool, traced or
  not) returns every row unchanged with its residual (the same compiled program with the safeguard off).
  """

  def values_and_grads(a):
    def total(a):
      values = advantage(obs, jnp.clip(a, low, high))
      return jnp.sum(values), values

    grads, values = jax.grad(total, has_aux=True)(a)
    return values, grads

  def body(_, carry):
    a, active, iterations = carry
    values, grads = values_and_grads(a)
    active = active & (values < bound)
    scale = jnp.max(jnp.abs(grads), axis=-1, keepdims=True) + 1e-8
    moved = jnp.clip(a + direction * step_size * grads / scale, low, high)
    a = jnp.where(active[:, None], moved, a)
    return a, active, iterations + active.astype(jnp.int32)

  start = (action, jnp.broadcast_to(jnp.asarray(enabled, bool), action.shape[:1]),
           jnp.zeros(action.shape[:1], jnp.int32))
  corrected, _, iterations = jax.lax.fori_loop(0, steps, body, start)
  residual = advantage(obs, jnp.clip(corrected, low, high)) - bound
  return Correction(corrected, iterations, residual)
