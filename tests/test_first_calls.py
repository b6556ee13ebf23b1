"""Fast first calls: `import zoo` and `zoo list/info` import no JAX/Flax/TFDS/matplotlib/diffrax, the registry index
is a cache that follows the sources, and the persistent compilation cache serves a second process."""

import json
import os

import pytest

import zoo
from zoo import cache, registry

from tests.conftest import run_python

HEAVY = ("jax", "flax", "orbax", "huggingface_hub", "tensorflow_datasets", "matplotlib", "diffrax", "qpax", "optax")


def _imported(code: str, env=None) -> list[str]:
  out = run_python(code + f"\nimport sys, json; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))",
                   env=env)
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_zoo_imports_no_heavy_library():
  assert _imported("import zoo") == []


def test_zoo_list_and_info_import_no_heavy_library(tmp_path):
  env = {"ZOO_CACHE_DIR": str(tmp_path)}
  assert "jax" in _imported("from zoo import cli; cli.main(['list'])", env)  # first: builds the index
  assert _imported("from zoo import cli; cli.main(['list', '--family', 'elcd'])", env) == []
  assert _imported("from zoo import cli; cli.main(['info', 'elcd-lasa8d'])", env) == []
  assert _imported("import zoo; zoo.list_models('mass*', pretrained=True); zoo.info('massnet-sir')", env) == []


def test_lazy_public_names_resolve():
  assert zoo.load.__module__ == "zoo.hub" and zoo.create.__module__ == "zoo.hub"
  assert {"load", "create", "push_to_hub"} <= set(dir(zoo))
  with pytest.raises(AttributeError):
    zoo.no_such_thing  # pylint: disable=pointless-statement


def test_registry_index_is_rebuilt_when_the_sources_change(tmp_path, monkeypatch):
  monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
  monkeypatch.setattr(registry._import_families, "cache_info", lambda: type("I", (), {"currsize": 0})())  # pylint: disable=protected-access
  live = registry.index()  # writes the index
  (written,) = tmp_path.glob("registry-*.json")
  assert live == json.loads(written.read_text())["models"]
  assert registry.index() == live
  monkeypatch.setattr(registry, "sources_digest", lambda: "0" * 64)  # a family changed: a new digest
  assert registry.index() == live and len(list(tmp_path.glob("registry-*.json"))) == 2
  assert registry.record("massnet-sir") == registry.get_spec("massnet-sir").as_dict()


def test_compilation_cache_location_override_and_off(tmp_path, monkeypatch):
  monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "c"))
  assert cache.compilation_cache_dir() == tmp_path / "c" / "jax-compilation"
  monkeypatch.setenv("ZOO_COMPILATION_CACHE_DIR", str(tmp_path / "elsewhere"))
  assert cache.compilation_cache_dir() == tmp_path / "elsewhere"
  monkeypatch.setenv("ZOO_COMPILATION_CACHE", "0")
  assert cache.compilation_cache_dir() is None


_SECOND_PROCESS = """
import jax, zoo
hits = []
jax.monitoring.register_event_listener(lambda event, **kw: hits.append(event))
model = zoo.create("massnet-sir")
import numpy as np
model(np.full((2, 3), 1 / 3, np.float32))
print("HITS", sum(e == "/jax/compilation_cache/cache_hits" for e in hits))
"""


@pytest.mark.slow  # heavy: `make test-slow` (issue 13: the default run stays under 8 minutes)
def test_a_second_process_reads_the_compilation_cache(tmp_path):
  env = {"ZOO_CACHE_DIR": str(tmp_path)}
  first = run_python(_SECOND_PROCESS, env=env)
  assert first.returncode == 0, first.stderr[-2000:]
  assert any((tmp_path / "jax-compilation").iterdir())
  second = run_python(_SECOND_PROCESS, env=env)
  assert int(second.stdout.split("HITS")[-1]) > 0
  off = run_python(_SECOND_PROCESS, env={**env, "ZOO_COMPILATION_CACHE": "0"})
  assert int(off.stdout.split("HITS")[-1]) == 0
