"""Many small ODE solves at once, for training losses: Dopri5 with diffrax's step-size control, a discrete adjoint.

`solve_windows(field, args, consts, y0, ts)` integrates B independent initial value problems
ẏ = field(args, consts, y) from y0[b] at ts[b, 0] and returns the states at every ts[b]: what `jax.vmap` of
`diffrax.diffeqsolve` with `Dopri5`, `PIDController(rtol, atol, dtmax)`, `SaveAt(ts=...)` and
`RecursiveCheckpointAdjoint` computes (the same tableau, first step, controller, end clipping and dense output, so
the same accepted steps up to rounding), in a form that is cheap to differentiate:

* lanes run in lockstep (one batched right-hand side per stage), and once few windows are still integrating the
  unfinished ones are gathered into narrower lanes (`widths`, e.g. 20 -> 5 -> 1): a vmapped while loop would keep
  evaluating every finished lane until the slowest window is done (a trained CBF model's batch of 20 windows takes
  on average 25 steps where its mean window takes 11);
* the gradient is the exact derivative of the computed solution with the step sizes held constant (diffrax also
  stops gradients through its controller): the forward pass records each iteration's stage inputs and step; the backward
  pass walks those iterations in reverse and takes the vector-Jacobian product of one Runge-Kutta step (and of the
  dense outputs saved in it) at a time. No checkpointing machinery: the stage inputs of small ODEs are tiny.

`field` is an autonomous vector field of one state: (args, consts, y: (D,)) -> (D,); `args` is a pytree of float
arrays (the weights) and gets gradients; `consts` (data the field reads, e.g. obstacles) and ts get none. A window
that needs more than `max_steps` steps stops there (diffrax `throw=False`): its later outputs are inf, so a loss
over them is not finite. Seeds side by side (`jax.vmap` over weights and windows) keep their own steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Dormand-Prince 5(4) with Shampine's dense output: diffrax's `Dopri5` tableau and `_Dopri5Interpolation`.
_A = (np.array([1 / 5]),
      np.array([3 / 40, 9 / 40]),
      np.array([44 / 45, -56 / 15, 32 / 9]),
      np.array([19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729]),
      np.array([9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656]),
      np.array([35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]))
_B_SOL = np.array([35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0])
_B_ERR = np.array([35 / 384 - 1951 / 21600, 0, 500 / 1113 - 22642 / 50085, 125 / 192 - 451 / 720,
                   -2187 / 6784 - -12231 / 42400, 11 / 84 - 649 / 6300, -1 / 60])
_C_MID = np.array([6025192743 / 30085553152, 0, 51252292925 / 65400821598, -2691868925 / 45128329728,
                   187940372067 / 1594534317056, -1776094331 / 19743644256, 11237099 / 235043384]) / 2
_A_SQUARE = np.zeros((7, 7))  # row s: stage s's coefficients of the increments k_0 .. k_{s-1}
for _s, _row in enumerate(_A, start=1):
  _A_SQUARE[_s, :_s] = _row
_ERROR_ORDER = 5  # diffrax Dopri5.error_order: the embedded pair (5, 4): min + 1
_SAFETY, _FACTORMIN, _FACTORMAX = 0.9, 0.2, 10.0  # diffrax PIDController defaults (an I controller)


def _rms(x):
  return jnp.sqrt(jnp.mean(x ** 2, axis=-1))


def _batched(field, consts):
  """field(args, consts, y) for a batch of states y: (W, D), args shared."""
  return jax.vmap(lambda a, y: field(a, consts, y), in_axes=(None, 0))


def _stages(batched_field, args, y, f0, h):
  """One Dopri5 step of width W: y, f0 = field(y): (W, D), h: (W,) -> increments K: (W, 7, D), field at the last
  stage (FSAL), the stages' inputs: (W, 7, D). A loop over the stages: one copy of the field to compile."""
  a = jnp.asarray(_A_SQUARE, y.dtype)
  hh = h[:, None]
  kk = jnp.zeros((y.shape[0], 7) + y.shape[1:], y.dtype).at[:, 0].set(f0 * hh)
  inputs = jnp.broadcast_to(y[:, None], kk.shape)

  def stage(s, carry):
    kk, inputs, _ = carry
    x = y + jnp.einsum("j,wjd->wd", a[s], kk)
    f = batched_field(args, x)
    return kk.at[:, s].set(f * hh), inputs.at[:, s].set(x), f

  return jax.lax.fori_loop(1, 7, stage, (kk, inputs, f0))


def _dense(y0, y1, kk, theta):
  """Dense output at fractions theta: (W, T) of each step -> (W, T, D) (diffrax's fourth-order polynomial)."""
  ymid = y0 + jnp.tensordot(kk, _C_MID.astype(kk.dtype), axes=((1,), (0,)))
  f0, f1 = kk[:, 0], kk[:, -1]
  coefs = (2 * (f1 - f0) - 8 * (y1 + y0) + 16 * ymid, 5 * f0 - 3 * f1 + 18 * y0 + 14 * y1 - 32 * ymid,
           f1 - 4 * f0 - 11 * y0 - 5 * y1 + 16 * ymid, f0, y0)
  th = theta[:, :, None]
  out = coefs[0][:, None]
  for c in coefs[1:]:
    out = out * th + c[:, None]
  return out


# diffrax's first step with dt0=None: `_select_initial_step` returns 0.01 unless its terms are a bare `ODETerm`, and
# diffeqsolve passes them wrapped, so every solve starts with min(0.01, dtmax) (checked against diffrax in
# tests/test_dopri5.py).
_FIRST_STEP = 0.01


def _step_outputs(y, kk, theta):
  """What a step's increments give: y1: (W, D) and the dense output at fractions theta: (W, T) -> (W, T, D)."""
  y1 = y + jnp.tensordot(kk, _B_SOL.astype(kk.dtype), axes=((1,), (0,)))
  return y1, _dense(y, y1, kk, theta)


def _lanes_active(ops, c, max_steps):
  return (c["tprev"] < ops["t1"]) & (c["steps"] < max_steps) & ops["valid"]


def _lanes_busy(ops, c, *, max_steps, next_width):
  """Whether the phase goes on: more lanes still integrating than the next phase has."""
  return jnp.sum(_lanes_active(ops, c, max_steps)) > next_width


def _lanes_step(field, ops, c, i, *, rtol, atol, dtmax, max_steps):
  """One iteration of every lane: a Dopri5 step, diffrax's accept/reject and next step, the saves it passes.
  Returns the new lane state and the row the backward pass needs (stage inputs, step, accepted)."""
  bf = _batched(field, ops["consts"])
  ts, t1, floor = ops["ts"], ops["t1"], ops["floor"]
  active = _lanes_active(ops, c, max_steps)
  tprev, tnext, y = c["tprev"], c["tnext"], c["y"]
  dtype = y.dtype
  h = tnext - tprev
  kk, inputs, f1 = _stages(bf, ops["args"], y, c["f"], h)
  same = (tnext == tprev)[:, None]
  theta = jnp.where(same, 0, ts - tprev[:, None]) / jnp.where(same, 1, (tnext - tprev)[:, None])
  y1, dense = _step_outputs(y, kk, theta)
  err = jnp.tensordot(kk, _B_ERR.astype(dtype), axes=((1,), (0,)))
  err = jnp.where(jnp.isnan(err), jnp.inf, err)
  y1s = jnp.where(jnp.isnan(y1).any(-1, keepdims=True), y, y1)
  scaled = _rms(err / (atol + jnp.maximum(jnp.abs(y), jnp.abs(y1s)) * rtol))
  keep = scaled < 1
  factor = jnp.clip(_SAFETY * (1 / scaled) ** (1 / _ERROR_ORDER), jnp.where(keep, 1.0, _FACTORMIN),
                    jnp.where(keep, _FACTORMAX, _SAFETY))
  ntprev = jnp.where(keep, tnext, tprev)
  ntnext = ntprev + jnp.minimum(h * factor, dtmax)
  ntprev = jnp.minimum(ntprev, t1)
  ntnext = jnp.where(ntnext > floor, jnp.where(keep, t1, ntprev + 0.5 * (t1 - ntprev)), ntnext)
  acc = keep & active
  saves = acc[:, None] & (np.arange(ts.shape[1])[None] >= c["j"][:, None]) & (ts <= tnext[:, None])
  sel = lambda m, a, b: jnp.where(m.reshape(m.shape + (1,) * (jnp.ndim(a) - m.ndim)), a, b)
  new = dict(tprev=sel(active, ntprev, tprev), tnext=sel(active, ntnext, tnext), y=sel(acc, y1, y),
             f=sel(acc, f1, c["f"]), j=c["j"] + jnp.sum(saves, axis=1, dtype=jnp.int32),
             ys=sel(saves, dense, c["ys"]), save_iter=sel(saves, ops["start"] + i, c["save_iter"]),
             theta=sel(saves, theta, c["theta"]), steps=c["steps"] + active.astype(jnp.int32))
  return new, dict(inputs=inputs, h=h, acc=acc)


def _record_loop(cond, body, ops, carry, rows, size):
  """`while cond(ops, carry): carry, row = body(ops, carry, i)`, row i written to buffers of `size` rows.

  Returns (carry, buffers, iterations). Under `jax.vmap` (seeds side by side) a plain while loop with a batched
  condition selects its whole carry, buffers included, every iteration; this loop's batching rule instead writes
  each row in place, keeping the old row for the batch members that are done (their loop has stopped)."""
  def run(ops, carry):
    def step(state):
      c, bufs, i = state
      c, row = body(ops, c, i)
      return c, jax.tree.map(lambda b, r: b.at[i].set(r), bufs, row), i + 1

    bufs = jax.tree.map(lambda r: jnp.zeros((size,) + r.shape, r.dtype), rows)
    return jax.lax.while_loop(lambda s: (s[2] < size) & cond(ops, s[0]), step, (carry, bufs, jnp.int32(0)))

  def run_batched(axis_size, in_batched, ops, carry):
    ops, carry = jax.tree.map(lambda x, b: x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x)),
                              (ops, carry), tuple(in_batched))
    live = lambda c, i: jax.vmap(lambda o, c: cond(o, c))(ops, c) & (i < size)
    expand = lambda m, x: m.reshape(m.shape + (1,) * (x.ndim - 1))

    def step(state):
      c, bufs, i, n = state
      alive = live(c, i)  # (S,): the members whose own loop makes iteration i (their counter equals i)
      new, row = jax.vmap(lambda o, c: body(o, c, i))(ops, c)
      c = jax.tree.map(lambda a, b: jnp.where(expand(alive, a), a, b), new, c)
      bufs = jax.tree.map(lambda b, r: b.at[:, i].set(jnp.where(expand(alive, r), r, b[:, i])), bufs, row)
      return c, bufs, i + 1, n + alive.astype(jnp.int32)

    bufs = jax.tree.map(lambda r: jnp.zeros((axis_size, size) + r.shape, r.dtype), rows)
    c, bufs, _, n = jax.lax.while_loop(lambda s: jnp.any(live(s[0], s[2])), step,
                                       (carry, bufs, jnp.int32(0), jnp.zeros((axis_size,), jnp.int32)))
    out = (c, bufs, n)
    return out, jax.tree.map(lambda _: True, out)

  loop = jax.custom_batching.custom_vmap(run)
  loop.def_vmap(run_batched)
  return loop(ops, carry)


def _forward(field, args, consts, y0, ts, rtol, atol, dtmax, max_steps, widths):
  """The solve: ys and what the backward pass needs (per phase: its windows, iterations, states, steps,
  acceptance; per window and save time: the iteration that saved it and where in the step)."""
  bf = _batched(field, consts)
  n, t_len = ts.shape
  dim, dtype = y0.shape[1], y0.dtype
  f0 = bf(args, y0)
  dt0 = min(_FIRST_STEP, dtmax)
  # Per window (one padding row n, which lanes without a window point at): the results.
  out = dict(ys=jnp.full((n + 1, t_len, dim), jnp.inf, dtype), save_iter=jnp.full((n + 1, t_len), -1, jnp.int32),
             theta=jnp.zeros((n + 1, t_len), dtype), steps=jnp.zeros((n + 1,), jnp.int32))
  ts_x = jnp.concatenate([ts, ts[:1]])
  floor_x = ts_x[:, -1]  # tnext beyond t1 - 100 ulp is rounded to t1 (diffrax `_clip_to_end`)
  for _ in range(100):
    floor_x = jnp.nextafter(floor_x, jnp.asarray(-jnp.inf, dtype))
  # Per lane: the window's integration state and its results (scattered back to `out` between phases).
  lanes = dict(win=jnp.arange(n), tprev=ts[:, 0], tnext=jnp.minimum(ts[:, 0] + dt0, ts[:, -1]), y=y0, f=f0,
               j=jnp.zeros((n,), jnp.int32), **{k: v[:n] for k, v in out.items()})
  results = tuple(out)
  g = jnp.int32(0)  # iterations over all phases: the clock of save_iter
  phases = []
  for p, width in enumerate(widths):
    next_width = widths[p + 1] if p + 1 < len(widths) else 0
    if p:  # the windows still integrating (at most `width`) move into the first lanes; the others pad
      alive = _lanes_active(ops, lanes, max_steps)  # the previous phase's lanes
      order = jnp.argsort(~alive, stable=True)[:width]
      win = jnp.where(alive[order], lanes["win"][order], n)
      lanes = {k: v[order] for k, v in lanes.items()}
      lanes.update(win=win, **{k: out[k][win] for k in results})
    win = lanes["win"]
    ts_l, t1_l, floor_l = ts_x[win], ts_x[win, -1], floor_x[win]

    ops = dict(args=args, consts=consts, ts=ts_l, t1=t1_l, floor=floor_l, valid=win < n, start=g)
    carry = {k: v for k, v in lanes.items() if k != "win"}
    rows = dict(inputs=jax.ShapeDtypeStruct((width, 7, dim), dtype), h=jax.ShapeDtypeStruct((width,), dtype),
                acc=jax.ShapeDtypeStruct((width,), jnp.bool_))
    c, rec, count = _record_loop(functools.partial(_lanes_busy, max_steps=max_steps, next_width=next_width),
                                 functools.partial(_lanes_step, field, rtol=rtol, atol=atol, dtmax=dtmax,
                                                   max_steps=max_steps), ops, carry, rows, max_steps)
    phases.append(dict(win=win, start=g, count=count, **rec))
    g = g + count
    lanes = dict(win=win, **{k: c[k] for k in ("tprev", "tnext", "y", "f", "j", *results)})
    out = {k: out[k].at[win].set(lanes[k]) for k in results}  # padding lanes all write row n, never read
  return out["ys"][:n], (phases, out["save_iter"], out["theta"])


def _step_vjp(bf, args, inputs, h, theta, y1_bar, dense_bar):
  """Cotangents (args, y) of one step's outputs (`_step_outputs`) from its stage inputs: (W, 7, D): the linear
  combinations by hand, each stage's field through its own VJP, last stage first (stage s feeds stages > s only)."""
  a = jnp.asarray(_A_SQUARE, inputs.dtype)
  hh = h[:, None]
  y = inputs[:, 0]
  # the outputs are linear in (y, K): their VJP needs no increments, zeros stand in (no field evaluations)
  _, lin = jax.vjp(lambda y, kk: _step_outputs(y, kk, theta), y, jnp.zeros(inputs.shape, inputs.dtype))
  y_bar, k_bar = lin((y1_bar, dense_bar))

  def stage(i, carry):
    s = 6 - i
    y_bar, k_bar, args_bar = carry
    _, vjp = jax.vjp(bf, args, inputs[:, s])
    a_bar, in_bar = vjp(k_bar[:, s] * hh)
    k_bar = k_bar + a[s][None, :, None] * in_bar[:, None]  # to the increments k_j, j < s, that formed input s
    return y_bar + in_bar, k_bar, jax.tree.map(jnp.add, args_bar, a_bar)

  y_bar, _, args_bar = jax.lax.fori_loop(0, 7, stage, (y_bar, k_bar, jax.tree.map(jnp.zeros_like, args)))
  return args_bar, y_bar


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 5, 6, 7, 8, 9))
def _solve(field, args, consts, y0, ts, rtol, atol, dtmax, max_steps, widths):
  return _forward(field, args, consts, y0, ts, rtol, atol, dtmax, max_steps, widths)[0]


def _solve_fwd(field, args, consts, y0, ts, rtol, atol, dtmax, max_steps, widths):
  ys, (phases, save_iter, theta) = _forward(field, args, consts, y0, ts, rtol, atol, dtmax, max_steps, widths)
  return ys, (args, consts, y0, ts, phases, save_iter, theta)


def _solve_bwd(field, rtol, atol, dtmax, max_steps, widths, res, ys_bar):
  del rtol, atol, dtmax, max_steps, widths
  args, consts, y0, ts, phases, save_iter, theta = res
  bf = _batched(field, consts)
  n = y0.shape[0]
  ys_bar = jnp.concatenate([jnp.where(jnp.isfinite(ys_bar), ys_bar, 0), jnp.zeros_like(ys_bar[:1])])
  lam = jnp.zeros((n + 1,) + y0.shape[1:], y0.dtype)  # d loss / d (each window's state at the current iteration)
  args_bar = jax.tree.map(jnp.zeros_like, args)
  for ph in reversed(phases):
    win = ph["win"]
    bar_l, it_l, th_l = ys_bar[win], save_iter[win], theta[win]

    def body(c, ph=ph, bar_l=bar_l, it_l=it_l, th_l=th_l):
      i, lam_l, a_bar = c
      i = i - 1
      acc = ph["acc"][i][:, None]
      saved = (it_l == ph["start"] + i)[:, :, None]
      da, dy = _step_vjp(bf, args, ph["inputs"][i], ph["h"][i], th_l, jnp.where(acc, lam_l, 0),
                         jnp.where(saved, bar_l, 0))
      return i, jnp.where(acc, dy, lam_l), jax.tree.map(jnp.add, a_bar, da)

    _, lam_l, args_bar = jax.lax.while_loop(lambda c: c[0] > 0, body, (ph["count"], lam[win], args_bar))
    lam = lam.at[win].set(lam_l)  # padding lanes all write row n, which nothing reads
  return args_bar, jax.tree.map(jnp.zeros_like, consts), lam[:n], jnp.zeros_like(ts)


_solve.defvjp(_solve_fwd, _solve_bwd)


def default_widths(batch: int) -> tuple[int, ...]:
  """Lane widths of the phases for a batch of windows: all, a quarter, one (20 -> 5 -> 1)."""
  return tuple(sorted({batch, max(1, batch // 4), 1}, reverse=True))


def solve_windows(field: Callable, args, consts, y0: jax.Array, ts: jax.Array, *, rtol: float, atol: float,
                  dtmax: float,
                  max_steps: int = 4096, widths: Sequence[int] | None = None) -> jax.Array:
  """States of B independent solves of ẏ = field(args, consts, y) at their save times.

  Arguments:
    field: (args, consts, y: (D,)) -> ẏ: (D,), autonomous; a module-level function (a static argument).
    args: pytree of float arrays the field reads, differentiated (the weights).
    consts: pytree the field reads, not differentiated (zero cotangents; e.g. obstacles; None allowed).
    y0: (B, D) initial states at ts[:, 0].
    ts: (B, T) save times, increasing along each row (not differentiated).
    rtol, atol, dtmax: diffrax `PIDController(rtol, atol, dtmax=dtmax)`.
    max_steps: steps (accepted and rejected) allowed per window; beyond them its outputs are inf.
    widths: lane widths of the phases, decreasing, the first = B (default `default_widths(B)`).

  Returns:
    ys: (B, T, D), ys[:, 0] = y0.
  """
  if y0.ndim != 2 or ts.ndim != 2 or ts.shape[0] != y0.shape[0]:
    raise ValueError(f"solve_windows takes y0: (B, D) and ts: (B, T); got {y0.shape} and {ts.shape}.")
  widths = tuple(widths or default_widths(y0.shape[0]))
  if widths[0] != y0.shape[0] or list(widths) != sorted(set(widths), reverse=True) or widths[-1] < 1:
    raise ValueError(f"widths must decrease strictly from the batch size {y0.shape[0]} to >= 1; got {widths}.")
  return _solve(field, args, consts, y0, ts.astype(y0.dtype), float(rtol), float(atol), float(dtmax), int(max_steps),
                widths)
