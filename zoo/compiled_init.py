"""One compiled initialisation: a module's random weights computed by ONE XLA program, bit for bit the eager ones.

    model = build(MassNet, dict(dim=3), seed=0)    # == MassNet(dim=3, rngs=nnx.Rngs(0)), the same bits

Built eagerly, a constructor runs every initialiser, `jnp.zeros`, QR, k-means++ ... as a program of its own: tens of
compilations per model (massnet-sir: 20, wavemix-lite-digits-rotate-rtn4: 235), or as many persistent-cache
look-ups. `build` traces the constructor once (`jax.make_jaxpr`, the seed an argument, not a constant) and evaluates
the traced operations under one `jax.jit`: one compilation per model and keyword arguments, one persistent-cache
entry that every seed and every later process reuses, and a second `build` of the same variant in a process reuses
the traced program (no trace, no compile). `zoo.create` uses it with `ZOO_COMPILED_INIT=1`; the default stays eager
because on XLA:CPU the one program is slower, measured in benchmarks/results/first_calls.md: it compiles in 2-2.5x
the CPU time of the eager build's programs (which every model shares), and tracing the constructor plus lowering the
program (which JAX needs for the cache key) cost more than the eager build's look-ups of its small programs.

The evaluator (below) keeps the eager bits: each floating-point operation is compiled as if alone (in its own
`lax.cond` branch), literals stay runtime arguments, and identical independent elementwise operations (the many
initialisers of a model) run batched, so the program holds each distinct operation once, as eager mode compiles it
once. `tests/test_compiled_init.py` compares the state of registered models with sha256s recorded from the eager
build before this existed (`ModelSpec.construct` is that build).

Host work at initialisation (e.g. a dense eigen-solve in scipy, which cannot run inside a compiled program): a
module defines `compiled_init_outputs(self) -> dict` (called inside the trace, right after construction: the
arrays it needs, computed in the same program) and `finish_compiled_init(self, outputs)` (called on the
materialised module with those arrays as concrete values); see `zoo.nn.lipschitz.SpectralOperator`. A constructor
that cannot be traced at all (it converts an array to a Python value) is built eagerly (logged).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from jax import lax
from jax.extend import core as jex_core

OUTPUTS_HOOK = "compiled_init_outputs"   # (self) -> dict of arrays, inside the trace
FINISH_HOOK = "finish_compiled_init"     # (self, outputs) -> None, on the materialised module


def build(module_type: type[nnx.Module], kwargs: dict[str, Any], seed: int) -> nnx.Module:
  """`module_type(**kwargs, rngs=nnx.Rngs(seed))`, computed by one compiled program (see the module docstring).

  Call it in the precision the module is built in (a float64 family inside `float64_scope()`)."""
  # jax.random.key(int) makes the key from int64(seed) in JAX's integer type (int32 unless float64 mode): passed
  # as a host array (an argument of the program, so every seed shares it; no program of its own to stage it).
  dtype = jax.dtypes.canonicalize_dtype(np.int64)
  if not np.iinfo(dtype).min <= seed <= np.iinfo(dtype).max:
    return module_type(**kwargs, rngs=nnx.Rngs(seed))  # JAX wraps such a seed in its own way: keep it
  seed_array = np.asarray(seed, dtype)
  try:
    program = _program(_Key(module_type, kwargs, dtype))
  except _Untraceable as e:
    logging.info("zoo.create: %s is built eagerly (its constructor cannot be traced: %s)", module_type.__name__, e)
    return module_type(**kwargs, rngs=nnx.Rngs(seed))
  state, outputs = jax.tree.unflatten(program.treedef, program.run(seed_array))
  module = nnx.merge(program.graphdef, state)
  if outputs:
    for path, m in nnx.iter_modules(module):
      key = _path_key(path)
      if key in outputs:
        getattr(m, FINISH_HOOK)(outputs[key])
  return module


class _Untraceable(Exception):
  pass


def _path_key(path: tuple[Any, ...]) -> str:
  return "/".join(map(str, path))


class _Key:
  """What a traced constructor depends on: the module type, its kwargs, the seed's dtype and the float64 mode.
  Kwargs of plain values (None, bools, numbers, strings, and tuples, lists and dicts of them) compare by their repr;
  any other value makes a key equal only to itself (such a constructor is traced afresh on every call)."""

  def __init__(self, module_type: type, kwargs: dict[str, Any], seed_dtype: Any):
    self.module_type, self.kwargs, self.seed_dtype = module_type, kwargs, np.dtype(seed_dtype)
    plain = _plain(kwargs)
    self._id: Any = ((module_type, repr(sorted(kwargs.items())), self.seed_dtype.name,
                      bool(jax.config.jax_enable_x64)) if plain else object())

  def __hash__(self) -> int:
    return hash(self._id)

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, _Key) and self._id == other._id


def _plain(value: Any) -> bool:
  if value is None or isinstance(value, (bool, int, float, str)):
    return True
  if isinstance(value, (tuple, list)):
    return all(_plain(v) for v in value)
  if isinstance(value, dict):
    return all(isinstance(k, str) and _plain(v) for k, v in value.items())
  return False


class _Program:
  """A traced constructor: its graph definition, constants, output structure, and the jitted evaluator."""

  def __init__(self, key: _Key):
    captured = {}

    def construct(seed):
      module = key.module_type(**key.kwargs, rngs=nnx.Rngs(jax.random.key(seed)))
      outputs = {_path_key(path): getattr(m, OUTPUTS_HOOK)() for path, m in nnx.iter_modules(module)
                 if hasattr(m, OUTPUTS_HOOK)}
      graphdef, state = nnx.split(module)
      captured["graphdef"] = graphdef
      return state, {path: values for path, values in outputs.items() if values}

    try:
      closed, shapes = jax.make_jaxpr(construct, return_shape=True)(jax.ShapeDtypeStruct((), key.seed_dtype))
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
            jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError) as e:
      raise _Untraceable(type(e).__name__) from e
    self.graphdef = captured["graphdef"]
    self.treedef = jax.tree.structure(shapes)
    jaxpr = closed.jaxpr
    literals = _literals(jaxpr)
    slots = [(i, j) for i, j, _ in literals]
    plan = _plan(jaxpr)
    self.args = (np.asarray(True), [v for _, _, v in literals], list(closed.consts))
    self.jitted = jax.jit(lambda flag, seed, literals, consts: _eval_isolated(jaxpr, consts, plan, slots, literals,
                                                                              flag, seed))

  def run(self, seed: np.ndarray) -> list[Any]:
    flag, literals, consts = self.args
    return self.jitted(flag, seed, literals, consts)


@functools.lru_cache(maxsize=64)  # a second zoo.create of the same variant in a process neither traces nor compiles
def _program(key: _Key) -> _Program:
  return _Program(key)


# --- the evaluator -------------------------------------------------------------------------------------------
#
# Eager mode compiles each top-level operation (a primitive, or a jitted function such as an initialiser) as a
# program of its own. The evaluator computes the same bits and keeps the program small:
#
# * Every operation with a floating-point result, except those that only move or convert values (MOVES), runs in a
#   branch of its own `lax.cond` on a runtime flag. XLA compiles a branch as a separate computation from its
#   parameters, as eager mode compiles the operation alone: nothing fuses into it or is rewritten across it. (Fused,
#   a reduction sums in another order (the norm of a random normal vector differs in the last bit), and XLA's
#   algebraic simplifier reassociates products ((a·c)·b → (a·b)·c); `lax.optimization_barrier` prevents neither on
#   XLA:CPU: it is removed before fusion.)
# * Identical ELEMENTWISE operations that do not depend on each other (the same primitive, parameters and input
#   types, scheduled by `_plan`: e.g. a MassNet's 45 key foldings and its initialisers of one shape, which differ
#   only in their keys) run as ONE batched (`jax.vmap`) operation, whose elements are computed exactly as alone.
#   Eager mode compiles one program per distinct operation and so does this, where a plain `jax.jit` of the
#   constructor inlines every copy (measured: 45 normal draws of 50×50 in one program take 7 s to compile and 1.1 s
#   to load from the persistent cache, batched 1 s and 0.03 s).
# * Literal inputs (Python and numpy scalars) enter the program as arguments, as eager mode passes them to each
#   operation: XLA cannot fold them (`x / 3.0` would become `x * (1/3)`).

MOVES = frozenset({
    "reshape", "broadcast_in_dim", "squeeze", "expand_dims", "transpose", "rev", "slice", "dynamic_slice",
    "dynamic_update_slice", "concatenate", "pad", "select_n", "convert_element_type", "copy", "copy_p", "iota",
    "bitcast_convert_type", "stop_gradient", "stage", "split",
})
ELEMENTWISE = MOVES | frozenset({
    # elementwise arithmetic and functions
    "add", "sub", "mul", "div", "neg", "max", "min", "abs", "sign", "sqrt", "rsqrt", "cbrt", "exp", "exp2", "log",
    "log1p", "expm1", "erf", "erfc", "erf_inv", "tanh", "logistic", "pow", "integer_pow", "square", "floor", "ceil",
    "round", "rem", "nextafter", "clamp", "is_finite", "sin", "cos", "tan", "atan2", "asin", "acos", "atan",
    "sinh", "cosh", "asinh", "acosh", "atanh", "real", "imag", "conj", "complex",
    # comparisons, logic, integers
    "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "xor", "not", "shift_left", "shift_right_logical",
    "shift_right_arithmetic", "population_count", "clz",
})
PRNG = frozenset({"random_bits", "random_fold_in", "random_split", "random_seed", "random_wrap", "random_unwrap",
                  "threefry2x32"})  # integer hashing of keys: elementwise, and hundreds of operations each
ELEMENTWISE = ELEMENTWISE | PRNG
NESTED = frozenset({"pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call"})


def _subjaxprs(eqn: Any) -> list[Any]:
  out = []
  for value in eqn.params.values():
    for v in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(v, jex_core.ClosedJaxpr):
        out.append(v.jaxpr)
      elif isinstance(v, jex_core.Jaxpr):
        out.append(v)
  return out


@functools.lru_cache(maxsize=None)
def _jaxpr_elementwise(jaxpr: Any) -> bool:
  return all(_elementwise(e) for e in jaxpr.eqns)


def _elementwise(eqn: Any) -> bool:
  """Whether the operation computes per element (however compiled, the same bits), recursively."""
  name = eqn.primitive.name
  if name in ELEMENTWISE:
    return True
  if name in NESTED:
    subs = _subjaxprs(eqn)
    return bool(subs) and all(_jaxpr_elementwise(j) for j in subs)
  return False


def _floating(eqn: Any) -> bool:
  return any(hasattr(v.aval, "dtype") and not jax.dtypes.issubdtype(v.aval.dtype, jax.dtypes.extended)
             and jnp.issubdtype(v.aval.dtype, jnp.inexact) for v in eqn.outvars)


def _placeholder(aval: Any) -> Any:
  if jax.dtypes.issubdtype(aval.dtype, jax.dtypes.extended):
    return jax.random.wrap_key_data(jnp.zeros((*aval.shape, 2), jnp.uint32))
  return jnp.zeros(aval.shape, aval.dtype)


def _literals(jaxpr: Any) -> list[tuple[int, int, Any]]:
  """(equation index, input index, value) of every literal input."""
  out = []
  for i, eqn in enumerate(jaxpr.eqns):
    for j, var in enumerate(eqn.invars):
      if isinstance(var, jex_core.Literal) and hasattr(var.aval, "dtype") and not jax.dtypes.issubdtype(
          var.aval.dtype, jax.dtypes.extended):
        value = var.val
        weak = getattr(var.aval, "weak_type", False) and isinstance(value, (bool, int, float, complex))
        out.append((i, j, value if weak else np.asarray(value, var.aval.dtype)))
  return out


def _signature(eqn: Any) -> Any:
  """What makes two equations the same operation (None: never batched)."""
  try:
    params = tuple(sorted((k, v if _hashable(v) else id(v)) for k, v in eqn.params.items()))
    avals = tuple((tuple(v.aval.shape), str(v.aval.dtype), getattr(v.aval, "weak_type", False))
                  for v in eqn.invars)
    key = (eqn.primitive, params, avals)
    hash(key)
    return key
  except (TypeError, AttributeError):
    return None


def _hashable(value: Any) -> bool:
  try:
    hash(value)
    return True
  except TypeError:
    return False


def _plan(jaxpr: Any) -> list[list[int]]:
  """The equations in an evaluation order, as groups; the equations of one group are the same elementwise operation
  and independent of each other: they run batched. A list schedule: light operations (integers, moves, scalar
  arithmetic: the PRNG counter) run as soon as their inputs exist; a heavy one (key folding, an initialiser, a
  floating-point operation on arrays) waits until nothing light is left, and then every ready operation with its
  signature runs at once. So a model's initialisers of one shape and kind, whose keys come from a counter that
  each draw increments, become one batch, as eager mode compiles one program for them."""
  eqns = jaxpr.eqns
  producer: dict[Any, int] = {}
  waiting = [0] * len(eqns)
  consumers: list[list[int]] = [[] for _ in eqns]
  for i, eqn in enumerate(eqns):
    deps = {producer[v] for v in eqn.invars if not isinstance(v, jex_core.Literal) and v in producer}
    waiting[i] = len(deps)
    for d in deps:
      consumers[d].append(i)
    for v in eqn.outvars:
      producer[v] = i
  signature = [_signature(e) if _elementwise(e) and not e.effects else None for e in eqns]
  heavy = [e.primitive.name in PRNG or (_floating(e) and (e.primitive.name in NESTED or any(
      np.prod(v.aval.shape) > 1 for v in e.outvars))) for e in eqns]
  ready_light = [i for i, w in enumerate(waiting) if w == 0 and not heavy[i]]
  ready_heavy = [i for i, w in enumerate(waiting) if w == 0 and heavy[i]]
  plan: list[list[int]] = []

  def done(group):
    for i in group:
      for c in consumers[i]:
        waiting[c] -= 1
        if waiting[c] == 0:
          (ready_heavy if heavy[c] else ready_light).append(c)

  def batches(items):
    by_sig: dict[Any, list[int]] = {}
    for i in sorted(items):
      by_sig.setdefault(signature[i] if signature[i] is not None else ("single", i), []).append(i)
    return list(by_sig.values())

  while ready_light or ready_heavy:
    if ready_light:
      items, ready_light[:] = list(ready_light), []
      for group in batches(items):
        plan.append(group)
        done(group)
      continue
    groups = batches(ready_heavy)
    group = max(groups, key=lambda g: (len(g), -g[0]))
    ready_heavy[:] = [i for i in ready_heavy if i not in set(group)]
    plan.append(group)
    done(group)
  assert sum(len(g) for g in plan) == len(eqns), "the dependency graph of a traced constructor is acyclic"
  return plan


def _eval_isolated(jaxpr: Any, consts: Any, plan: list[list[int]], literal_slots: list[tuple[int, int]],
                   literals: Any, flag: Any, seed: Any) -> list[Any]:
  """Evaluates `jaxpr` (one input: the seed; constants and literals arrive as arguments) by `plan`: groups of
  identical elementwise operations batched, order-sensitive floating-point operations in branches of their own."""
  env: dict[Any, Any] = {}
  for var, value in zip(jaxpr.constvars, consts):
    env[var] = value
  env[jaxpr.invars[0]] = seed
  given = dict(zip(literal_slots, literals))

  def inputs(i):
    return [given.get((i, j), v.val) if isinstance(v, jex_core.Literal) else env[v]
            for j, v in enumerate(jaxpr.eqns[i].invars)]

  def apply_fn(eqn):
    params = eqn.primitive.get_bind_params(eqn.params)

    def apply(*args):
      with eqn.ctx.manager:
        outs = eqn.primitive.bind(*args, **params)
      return list(outs) if eqn.primitive.multiple_results else [outs]
    return apply

  def isolated(fn, eqn, avals):
    if eqn.primitive.name in MOVES or not _floating(eqn):
      return fn
    return lambda *args: lax.cond(flag, fn, lambda *_: [_placeholder(a) for a in avals], *args)

  for group in plan:
    eqn = jaxpr.eqns[group[0]]
    apply = apply_fn(eqn)
    avals = [v.aval for v in eqn.outvars]
    if len(group) == 1:
      results = [isolated(apply, eqn, avals)(*inputs(group[0]))]
      for i, outs in zip(group, results):
        for var, value in zip(jaxpr.eqns[i].outvars, outs):
          env[var] = value
      continue
    per_eqn = [inputs(i) for i in group]
    axes, columns = [], []
    for j in range(len(eqn.invars)):
      vars_j = [jaxpr.eqns[i].invars[j] for i in group]
      shared = all(v is vars_j[0] for v in vars_j) and not isinstance(vars_j[0], jex_core.Literal)
      axes.append(None if shared else 0)
      columns.append(per_eqn[0][j] if shared else jnp.stack([jnp.asarray(a[j]) for a in per_eqn]))
    if all(a is None for a in axes):  # the same operation on the same inputs: one result for all
      outs = isolated(apply, eqn, avals)(*columns)
      results = [outs] * len(group)
    else:
      batched_avals = [a.update(shape=(len(group), *a.shape)) for a in avals]
      batched = isolated(jax.vmap(apply, in_axes=axes), eqn, batched_avals)(*columns)
      results = [[out[k] for out in batched] for k in range(len(group))]
    for i, outs in zip(group, results):
      for var, value in zip(jaxpr.eqns[i].outvars, outs):
        env[var] = value
  return [jnp.asarray(v.val, v.aval.dtype) if isinstance(v, jex_core.Literal) else env[v] for v in jaxpr.outvars]
