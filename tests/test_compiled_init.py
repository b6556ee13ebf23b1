"""With `ZOO_COMPILED_INIT=1`, `zoo.create` builds a model under ONE compiled initialisation (`zoo.compiled_init`)
with the eager build's bits; by default it builds eagerly, with the same bits.

tests/create_sha256.json holds, for every registered model, the sha256 of its state from `zoo.create(name, seed=0)`
as it was before the compiled initialisation existed (eager, commit e3e0fec): the same seed must keep giving the same
weights. XLA's optimisation level changes the last bits of an eager build (the default test run compiles at -O0,
tests/conftest.py), so the recorded checksums are compared at the default level only: in `make test-slow`. So does
the CPU XLA compiles for: a model whose initialisation computes in floats (power iterations, rotations, folds) has
one checksum per CPU code generation seen (the first from an AMD EPYC machine; the second from an Intel Xeon with
AVX-512, where 12 of 45 models differ in the last bits), and must match one of them."""

import hashlib
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import zoo
from zoo import checkpoint, compiled_init, registry

from tests.conftest import run_python

XLA_DEFAULT_LEVEL = "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", "")
at_default_xla_level = pytest.mark.skipif(not XLA_DEFAULT_LEVEL, reason="recorded at XLA's default level: make test-slow")
RECORDED = json.loads((pathlib.Path(__file__).parent / "create_sha256.json").read_text())
FAST = ["massnet-sir", "elcd-lasa2d-angle"]
SLOW = ["invariance-node-spiral", "volnet-pendulum", "resnet18-digits", "nonexpansive-resnet-digits",
        "resnet-baseline-digits", "resnet18-digits-idkm-b2", "wavemix-lite-digits", "wavemix-lite-digits-rotate-rtn4"]


def state_arrays(model: nnx.Module) -> dict[str, np.ndarray]:
  """Every state leaf as a host array by its path "a/0/b" (PRNG keys as their key data)."""
  out = {}
  for path, v in nnx.to_flat_state(nnx.state(model)):
    x = v.get_value()
    out["/".join(map(str, path))] = np.asarray(jax.random.key_data(x) if checkpoint.is_key(x) else x)
  return out


def state_sha256(model: nnx.Module) -> str:
  """sha256 over every state leaf (path, dtype, shape, bytes; PRNG keys as their key data)."""
  leaves = {where: hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()[:16]
            for where, a in state_arrays(model).items()}
  return hashlib.sha256(json.dumps(leaves, sort_keys=True).encode()).hexdigest()


def test_every_registered_model_has_a_recorded_checksum():
  assert set(zoo.list_models()) <= set(RECORDED), "record the new model's checksum (see create_sha256.json)"


@pytest.fixture()
def compiled(monkeypatch):
  monkeypatch.setenv("ZOO_COMPILED_INIT", "1")


@pytest.mark.parametrize("name", FAST + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW])
def test_create_gives_the_weights_of_the_eager_build(name, compiled):  # pylint: disable=redefined-outer-name,unused-argument
  built = state_sha256(zoo.create(name, seed=0))
  assert built == state_sha256(registry.get_spec(name).construct(0)), f"{name}: compiled and eager builds differ"


@pytest.mark.slow
@at_default_xla_level
@pytest.mark.parametrize("name", sorted(RECORDED))
def test_create_gives_the_recorded_weights(name):
  assert state_sha256(zoo.create(name, seed=0)) in RECORDED[name], (
      f"{name}: zoo.create(seed=0) changed its weights, or this CPU rounds its initialisation differently from every "
      f"machine recorded (then its build matches the compiled one bit for bit and differs from a recorded machine's "
      f"in the last bits only: add its checksum to tests/create_sha256.json)")


class _Toy(nnx.Module):
  """Operations where fusing across eager operations changes the last bit: a norm of a freshly drawn vector (a
  reduction fused with its producer), a product whose factors are separate operations, a division by a literal,
  and eight identical draws (batched by the evaluator)."""

  def __init__(self, *, rngs: nnx.Rngs):
    x = jax.random.normal(rngs.params(), (1, 8, 8, 16))
    self.unit = nnx.Param(x / jnp.maximum(jnp.linalg.norm(x), 1e-30))
    scale = jnp.sqrt(2.0 / 9)
    self.scaled = nnx.Param(jax.random.normal(rngs.params(), (3, 3, 16, 16)) * scale / 3.0)
    self.draws = nnx.List([nnx.Param(jax.random.uniform(rngs.params(), (5, 7), minval=-0.3, maxval=0.3))
                           for _ in range(8)])


def test_the_evaluator_keeps_the_eager_bits_and_batches_identical_draws():
  eager, built = _Toy(rngs=nnx.Rngs(3)), compiled_init.build(_Toy, {}, 3)
  assert state_sha256(built) == state_sha256(eager)
  closed = jax.make_jaxpr(lambda s: nnx.split(_Toy(rngs=nnx.Rngs(jax.random.key(s))))[1])(np.int32(3))
  groups = compiled_init._plan(closed.jaxpr)  # pylint: disable=protected-access
  uniform = [g for g in groups if len(g) == 8 and closed.jaxpr.eqns[g[0]].primitive.name in compiled_init.NESTED]
  assert uniform, "the eight identical draws should run as one batched operation"


_COUNT = """
import json, sys, jax, zoo
events = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **kw: events.append(event) if event == "/jax/core/compile/backend_compile_duration" else None)
zoo.create("massnet-sir")  # JAX's own first programs (backend start-up) and the first model
out = {}
for name in sys.argv[1:]:
  before = len(events); zoo.create(name); first = len(events) - before
  before = len(events); zoo.create(name); again = len(events) - before
  before = len(events); zoo.create(name, seed=7); other_seed = len(events) - before
  out[name] = [first, again, other_seed]
print(json.dumps(out))
"""


@pytest.mark.parametrize("names", [["elcd-lasa2d-angle", "invariance-node-spiral", "volnet-pendulum"],
                                   pytest.param(["resnet18-digits", "nonexpansive-resnet-digits",
                                                 "resnet18-digits-idkm-b2"], marks=pytest.mark.slow)])
def test_create_compiles_one_program_per_model(names, tmp_path):
  """Counted in a fresh process (XLA compilations, or loads from the persistent cache: JAX's backend-compile
  event): one per model; none for a second create of it, nor for another seed (the seed is an argument)."""
  out = run_python(_COUNT.replace("sys.argv[1:]", repr(names)),
                   env={"ZOO_CACHE_DIR": str(tmp_path), "ZOO_COMPILED_INIT": "1"}, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  counts = json.loads(out.stdout.strip().splitlines()[-1])
  assert counts == {n: [1, 0, 0] for n in names}


@pytest.mark.parametrize("setting", [None, "0"])
def test_by_default_create_builds_eagerly_with_the_same_weights(setting, monkeypatch):
  if setting is None:
    monkeypatch.delenv("ZOO_COMPILED_INIT", raising=False)
  else:
    monkeypatch.setenv("ZOO_COMPILED_INIT", setting)
  monkeypatch.setattr(compiled_init, "build", lambda *a, **k: pytest.fail("the default build is eager"))
  assert state_sha256(zoo.create("massnet-sir", seed=0)) == state_sha256(registry.get_spec("massnet-sir").construct(0))
