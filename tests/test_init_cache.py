"""The initial-state cache (`zoo.init_cache`): a second `zoo.create` of the same name, kwargs and seed reads the state
back into an abstract module, bit for bit the uncached build; broken entries are rebuilt; ZOO_INIT_CACHE=0 turns it
off. (tests/conftest.py turns it off for the other tests, which test the build itself.)"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import zoo
from zoo import init_cache, registry

from tests.conftest import run_python
from tests.test_compiled_init import state_sha256


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
  monkeypatch.setenv("ZOO_INIT_CACHE", "1")
  monkeypatch.setenv("ZOO_INIT_CACHE_DIR", str(tmp_path / "init"))
  return tmp_path / "init"


def _entries(directory):
  return sorted(directory.glob("*.safetensors")) if directory.exists() else []


def _same_module(model, reference):
  """Same class, graph definition (static attributes) and provenance; `reference` gets `model`'s provenance."""
  assert type(model) is type(reference)
  registry.set_provenance(reference, zoo.provenance(model))
  assert nnx.graphdef(model) == nnx.graphdef(reference)


@pytest.mark.parametrize("name", ["massnet-sir", "neural-ode-spiral"] + [
    pytest.param(n, marks=pytest.mark.slow) for n in
    ("elcd-lasa2d-angle", "resnet18-digits-idkm-b2", "nonexpansive-resnet-digits", "wavemix-lite-digits-rotate-rtn4",
     "resnet18-digits")])
def test_a_hit_is_the_uncached_create(name, cache_dir):
  before = dict(init_cache.STATS)
  first = zoo.create(name, seed=0)   # a miss: built, then stored
  (entry,) = _entries(cache_dir)
  second = zoo.create(name, seed=0)  # a hit
  assert init_cache.STATS["hit"] == before.get("hit", 0) + 1
  assert init_cache.STATS["stored"] == before.get("stored", 0) + 1
  reference = registry.get_spec(name).construct(0)
  assert state_sha256(second) == state_sha256(first) == state_sha256(reference)
  _same_module(second, reference)
  assert zoo.provenance(second) == zoo.provenance(first)
  spec = registry.get_spec(name)
  x = np.full((2, *spec.input_shape), 0.25, np.float64 if spec.family.x64 else np.float32)
  with spec.family.precision():
    forward = nnx.jit(lambda m, x: m(x))
    got, want = np.asarray(forward(second, x)), np.asarray(forward(reference, x))
  np.testing.assert_array_equal(got, want)
  if name != "neural-ode-spiral":  # its verify takes a minute (the others' run in seconds)
    checked = nnx.clone(second)  # verify may advance state (e.g. power-iteration vectors): not the model compared above
    checked.eval()  # as a trained model is verified (a fresh create is in training mode, cached or not)
    assert all(c.passed for c in zoo.verify(checked)), zoo.verify(checked)
  assert entry.exists()


def test_a_corrupted_or_truncated_entry_is_rebuilt(cache_dir):
  reference = state_sha256(zoo.create("neural-ode-spiral", seed=3))
  (entry,) = _entries(cache_dir)
  good = entry.read_bytes()
  for broken in (good[:-7], good[:-40] + bytes(b ^ 0xFF for b in good[-40:]), good[:20], b""):
    entry.write_bytes(broken)
    rebuilt = init_cache.STATS["rebuilt"]
    assert state_sha256(zoo.create("neural-ode-spiral", seed=3)) == reference
    assert init_cache.STATS["rebuilt"] == rebuilt + 1
    assert init_cache._read(entry, entry.stem) is not None  # rewritten whole  # pylint: disable=protected-access
  hits = init_cache.STATS["hit"]
  assert state_sha256(zoo.create("neural-ode-spiral", seed=3)) == reference
  assert init_cache.STATS["hit"] == hits + 1


def test_an_entry_of_another_key_is_not_used(cache_dir):
  zoo.create("neural-ode-spiral", seed=1)
  zoo.create("neural-ode-spiral", seed=2)
  spec = registry.get_spec("neural-ode-spiral")
  one, two = (cache_dir / f"{init_cache.entry_key(spec, seed, {})}{init_cache.SUFFIX}" for seed in (1, 2))
  two.write_bytes(one.read_bytes())  # seed 1's entry under seed 2's name (its key says so)
  misses = init_cache.STATS["miss"]
  assert state_sha256(zoo.create("neural-ode-spiral", seed=2)) == state_sha256(
      registry.get_spec("neural-ode-spiral").construct(2))
  assert init_cache.STATS["miss"] == misses + 1


def test_the_seed_and_the_kwargs_are_in_the_key(cache_dir):
  spec = registry.get_spec("massnet-sir")
  keys = {init_cache.entry_key(spec, seed, kwargs) for seed, kwargs in
          [(0, {}), (1, {}), (0, {"hidden": 20}), (0, {"hidden": 20.0}), (0, {"widths": [10, 10, 15]})]}
  assert len(keys) == 5 and None not in keys
  assert init_cache.entry_key(spec, 0, {"widths": (10, 10, 15)}) == init_cache.entry_key(spec, 0, {})
  assert init_cache.entry_key(spec, jax.random.key(0), {}) is None  # not plain data: never cached
  assert init_cache.entry_key(spec, 0, {"hidden": np.int64(20)}) is None
  misses = init_cache.STATS["miss"]
  zoo.create("neural-ode-spiral", seed=0)
  zoo.create("neural-ode-spiral", seed=1)
  zoo.create("neural-ode-spiral", seed=0, hidden=8)
  assert init_cache.STATS["miss"] == misses + 3 and len(_entries(cache_dir)) == 3


def test_zoo_init_cache_0_turns_it_off(cache_dir, monkeypatch):
  monkeypatch.setenv("ZOO_INIT_CACHE", "0")
  off = init_cache.STATS["off"]
  zoo.create("neural-ode-spiral")
  zoo.create("neural-ode-spiral")
  assert init_cache.STATS["off"] == off + 2 and _entries(cache_dir) == []


class _Toy(nnx.Module):
  """State of every kind a state leaf can be: a PRNG key (an nnx.Rngs kept on the module), its uint32 counter,
  bfloat16, int8, bool and a 0-d float32; plus a python attribute."""

  def __init__(self, width: int = 3, *, rngs: nnx.Rngs):
    self.rngs = rngs.fork()
    self.w = nnx.Param(jax.random.normal(rngs.params(), (width, 2), jnp.bfloat16))
    self.codes = nnx.Variable(jax.random.randint(rngs.params(), (5,), -100, 100, jnp.int8))
    self.mask = nnx.Variable(jax.random.bernoulli(rngs.params(), 0.5, (4,)))
    self.scale = nnx.Param(jax.random.uniform(rngs.params(), ()))
    self.label = f"toy-{width}"


_Toy.__module__ = "zoo.toy_for_tests"  # the cache only keys modules whose code is the zoo's


def test_keys_bfloat16_integers_and_booleans_round_trip(cache_dir):
  family = registry.Family(name="toy", module=_Toy, loss=None, evaluate=None, verify=None)
  spec = registry.ModelSpec(name="toy", family=family, kwargs={"width": 3}, dataset="none", input_shape=(2,),
                            guarantee="none")
  first = init_cache.build(spec, 7, {})
  hits = init_cache.STATS["hit"]
  second = init_cache.build(spec, 7, {})
  assert init_cache.STATS["hit"] == hits + 1
  assert state_sha256(second) == state_sha256(first) == state_sha256(spec.construct(7))
  assert nnx.graphdef(second) == nnx.graphdef(first) and second.label == "toy-3"
  assert second.rngs.params.key[...].dtype == first.rngs.params.key[...].dtype
  np.testing.assert_array_equal(jax.random.key_data(second.rngs.params()), jax.random.key_data(first.rngs.params()))


_SUBPROCESS = """
import json, zoo
from zoo import init_cache
model = zoo.create("neural-ode-spiral", seed=5)
from tests.test_compiled_init import state_sha256
print(json.dumps({"stats": dict(init_cache.STATS), "sha": state_sha256(model)}))
"""


def test_a_second_process_reads_the_entry(cache_dir):
  env = {"ZOO_INIT_CACHE": "1", "ZOO_INIT_CACHE_DIR": str(cache_dir)}
  runs = []
  for _ in range(2):
    out = run_python(_SUBPROCESS, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
  assert runs[0]["stats"] == {"miss": 1, "stored": 1}
  assert runs[1]["stats"] == {"hit": 1}
  assert runs[0]["sha"] == runs[1]["sha"] == state_sha256(registry.get_spec("neural-ode-spiral").construct(5))
