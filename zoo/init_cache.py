"""The initial-state cache: `zoo.create`'s random weights computed once, then read back (like compiled programs).

    $ZOO_CACHE_DIR/init-state/KEY.safetensors    ($ZOO_INIT_CACHE_DIR moves it, ZOO_INIT_CACHE=0 turns it off)

`zoo.create(name, seed, **kwargs)` is a deterministic function of the registered name, the module's keyword
arguments, the seed, the zoo's code and the library versions, so its state is memoised under KEY, the sha256 of:
the name, the family's module, the canonical JSON of the merged kwargs (tuples kept apart from lists), the seed, the
sha256 of every .py file of the package (`registry.sources_digest(PACKAGE_SOURCES)`: any code edit misses), the
versions of jax, jaxlib, flax, numpy and ml_dtypes, the JAX settings that change random draws or rounding (x64, PRNG
implementation, threefry partitioning, matmul precision), the platform and device kind, and `XLA_FLAGS`.

A hit builds the module abstractly (`ModelSpec.abstract`: `nnx.eval_shape`, as `zoo.load` restores into; no
initialiser, k-means, power iteration or rotation is computed) and fills it with the stored arrays: the state is
bit for bit the uncached one (PRNG keys stored as key data and re-wrapped with the abstract key's implementation;
every dtype stored as its raw bytes), the module the same class with the same graph definition (its static Python
attributes), so it jits, trains and verifies alike. A miss builds as before (`ModelSpec.build`) and stores the state
when the abstract build has the eager one's graph definition and every state leaf is a plain uncommitted,
strongly typed `jax.Array`; otherwise it stores a marker naming the reason, and that key is always built
(`STATS["uncacheable"]`).

The file is safetensors (no pickle): every leaf as raw bytes (uint8), the metadata (key, each leaf's path, dtype,
shape and key implementation) in its header, and a sha256 over key, metadata and bytes checked on every read. A
missing, truncated, corrupted or mismatched entry is deleted and rebuilt (never an error, never a wrong model);
entries are written to a temporary file and renamed, so a concurrent reader never sees half of one. Entries are not
pruned: `rm -rf $ZOO_CACHE_DIR/init-state` frees the space (about the size of the float32 weights per entry).

`STATS` counts what happened in this process ("hit", "miss", "stored", "rebuilt", "uncacheable", "off").
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import os
import pathlib
import tempfile
from typing import Any, Mapping

import jax
import numpy as np
from absl import logging
from flax import nnx

from zoo import cache, checkpoint, registry

FORMAT = "nnx-zoo init-state 1"
SUFFIX = ".safetensors"
STATS: collections.Counter = collections.Counter()  # this process's hits, misses, ... (diagnostics and tests)


def build(spec: registry.ModelSpec, seed: Any, overrides: Mapping[str, Any]) -> nnx.Module:
  """`spec.build(seed, **overrides)`, from the cache when this key was built before (see the module docstring)."""
  directory = cache.init_cache_dir()
  key = entry_key(spec, seed, overrides) if directory is not None else None
  if key is None:
    STATS["off"] += 1
    return spec.build(seed, **overrides)
  path = directory / f"{key}{SUFFIX}"
  entry = _read(path, key)
  if entry is not None:
    meta, arrays = entry
    if meta["status"] == "uncacheable":
      STATS["uncacheable"] += 1
      return spec.build(seed, **overrides)
    try:
      model = _restore(spec, overrides, meta["leaves"], arrays)
    except Exception as e:  # pylint: disable=broad-except  # a cache never fails a create: it is rebuilt
      logging.info("zoo.create(%r): restoring the cached state failed (%s: %s)", spec.name, type(e).__name__, e)
      model = None
    if model is not None:
      STATS["hit"] += 1
      logging.debug("zoo.create(%r): initial state read from %s", spec.name, path)
      return model
    _discard(path, "its leaves do not match the abstract module")
  STATS["miss"] += 1
  model = spec.build(seed, **overrides)
  try:
    _store(spec, overrides, model, path, key)
  except Exception as e:  # pylint: disable=broad-except  # a cache never fails a create
    logging.info("zoo.create(%r): initial state not stored (%s: %s)", spec.name, type(e).__name__, e)
  return model


# --- the key -------------------------------------------------------------------------------------------------


def entry_key(spec: registry.ModelSpec, seed: Any, overrides: Mapping[str, Any]) -> str | None:
  """The sha256 naming `zoo.create(spec.name, seed, **overrides)`'s entry, or None when it is not cacheable: a
  seed that is not a plain int (a key array), a kwarg that is not plain JSON data (None, bool, int, float, str and
  lists, tuples, str-keyed dicts of them), or a family module defined outside the zoo (its code is not hashed)."""
  module = spec.family.module
  if not module.__module__.startswith("zoo.") or isinstance(seed, bool) or not isinstance(seed, int):
    return None
  kwargs = {**spec.kwargs, **overrides}
  try:
    canonical = json.dumps(_tagged(kwargs), sort_keys=True, separators=(",", ":"))
  except (TypeError, ValueError):
    return None
  fields = {"format": FORMAT, "name": spec.name, "module": f"{module.__module__}.{module.__qualname__}",
            "kwargs": canonical, "seed": seed, "sources": _package_digest(), **_environment()}
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _tagged(value: Any) -> Any:
  """`value` as JSON data that keeps tuples apart from lists; TypeError for anything but plain data."""
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, tuple):
    return {"tuple": [_tagged(v) for v in value]}
  if isinstance(value, list):
    return [_tagged(v) for v in value]
  if isinstance(value, dict) and all(isinstance(k, str) for k in value):
    return {"dict": {k: _tagged(v) for k, v in value.items()}}
  raise TypeError(f"not plain data: {type(value).__name__}")


@functools.cache  # once per process: the code this process runs is the code it imported
def _package_digest() -> str:
  return registry.sources_digest(registry.PACKAGE_SOURCES)


def _environment() -> dict[str, Any]:
  """What besides the code changes the bits of an eager build."""
  from importlib import metadata  # pylint: disable=import-outside-toplevel

  def version(dist):
    try:
      return metadata.version(dist)
    except metadata.PackageNotFoundError:
      return None

  device = jax.devices()[0]
  config = jax.config
  return {"versions": {d: version(d) for d in ("jax", "jaxlib", "flax", "numpy", "ml_dtypes")},
          "x64": bool(config.jax_enable_x64), "prng": str(config.jax_default_prng_impl),
          "threefry_partitionable": bool(config.jax_threefry_partitionable),
          "matmul_precision": str(config.jax_default_matmul_precision),
          "platform": device.platform, "device_kind": device.device_kind, "xla_flags": os.environ.get("XLA_FLAGS", "")}


# --- storing -------------------------------------------------------------------------------------------------


def _leaf_path(path: tuple[Any, ...]) -> list[Any]:
  return [p if isinstance(p, (int, str)) else str(p) for p in path]


def _impl_name(x: Any) -> str:
  """The PRNG implementation's name of a key array or an abstract key."""
  impl = checkpoint.key_impl(x)  # a name (of a key array) or an implementation (of an abstract key)
  return str(getattr(impl, "name", impl))


def _uncacheable_reason(spec: registry.ModelSpec, overrides: Mapping[str, Any], model: nnx.Module) -> str | None:
  """Why the module could not be restored from its state alone, or None."""
  for path, variable in nnx.to_flat_state(nnx.state(model)):
    x = variable.get_value()
    where = "/".join(map(str, path))
    if not isinstance(x, jax.Array):
      return f"state leaf {where} is a {type(x).__name__}, not a jax.Array"
    if getattr(x, "weak_type", False) or x.committed or len(x.sharding.device_set) != 1:
      return f"state leaf {where} is weakly typed, committed or spread over devices"
  try:
    abstract = spec.abstract(**overrides)
  except Exception as e:  # pylint: disable=broad-except  # a constructor that cannot be traced
    return f"nnx.eval_shape of the constructor fails ({type(e).__name__})"
  if nnx.graphdef(abstract) != nnx.graphdef(model):
    return "the abstract module's graph definition (static attributes) differs from the eager one"
  return None


def _store(spec: registry.ModelSpec, overrides: Mapping[str, Any], model: nnx.Module, path: pathlib.Path,
           key: str) -> None:
  reason = _uncacheable_reason(spec, overrides, model)
  leaves, arrays = [], {}
  if reason is None:
    for i, (p, variable) in enumerate(nnx.to_flat_state(nnx.state(model))):
      x = variable.get_value()
      impl = None
      if checkpoint.is_key(x):
        impl = _impl_name(x)
        x = jax.random.key_data(x)
      a = np.asarray(x)
      leaves.append({"path": _leaf_path(p), "dtype": a.dtype.name, "shape": list(a.shape), "key_impl": impl})
      arrays[f"{i:05d}"] = np.ascontiguousarray(a).reshape(-1).view(np.uint8)  # (0-d arrays become 1-d here)
  else:
    logging.info("zoo.create(%r): initial state not cached: %s", spec.name, reason)
  meta = {"format": FORMAT, "key": key, "status": "uncacheable" if reason else "state", "reason": reason or "",
          "leaves": json.dumps(leaves)}
  meta["sha256"] = _digest(meta, arrays)
  try:
    from safetensors.numpy import save  # pylint: disable=import-outside-toplevel

    data = save(arrays, metadata=meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
      with os.fdopen(fd, "wb") as f:
        f.write(data)
      umask = os.umask(0)
      os.umask(umask)
      os.chmod(tmp, 0o666 & ~umask)  # as any file the user writes (mkstemp makes it 0600)
      os.replace(tmp, path)  # atomic: readers see the old entry, none, or this whole one
    except BaseException:
      pathlib.Path(tmp).unlink(missing_ok=True)
      raise
  except OSError as e:  # best effort: a read-only or full cache only costs speed
    logging.info("zoo.create(%r): initial state not written to %s (%s)", spec.name, path, e)
    return
  STATS["stored" if reason is None else "uncacheable"] += 1


def _digest(meta: Mapping[str, str], arrays: Mapping[str, np.ndarray]) -> str:
  h = hashlib.sha256(json.dumps({k: meta[k] for k in ("format", "key", "status", "reason", "leaves")},
                                sort_keys=True).encode())
  for name in sorted(arrays):
    h.update(name.encode() + b"\0" + arrays[name].tobytes())
  return h.hexdigest()


# --- reading -------------------------------------------------------------------------------------------------


def _discard(path: pathlib.Path, why: str) -> None:
  STATS["rebuilt"] += 1
  logging.info("zoo.create: initial-state cache entry %s discarded (%s); rebuilding it", path, why)
  try:
    path.unlink(missing_ok=True)
  except OSError:
    pass


def _read(path: pathlib.Path, key: str) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
  """(metadata with its leaves decoded, {name: uint8 bytes}) of a sound entry for `key`; None when there is none
  (a broken or mismatched one is deleted)."""
  try:
    data = path.read_bytes()
  except OSError:
    return None
  try:
    from safetensors.numpy import load  # pylint: disable=import-outside-toplevel

    size = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8:8 + size])["__metadata__"]
    arrays = load(data)
    if meta.get("format") != FORMAT or meta.get("key") != key or meta.get("status") not in ("state",
                                                                                           "uncacheable"):
      raise ValueError("another format or key")
    if meta.get("sha256") != _digest(meta, arrays):
      raise ValueError("sha256 mismatch")
    meta = {**meta, "leaves": json.loads(meta["leaves"])}
    if len(meta["leaves"]) != len(arrays):
      raise ValueError("leaf count")
  except Exception as e:  # pylint: disable=broad-except  # whatever is wrong with it, it is rebuilt
    _discard(path, f"{type(e).__name__}: {str(e)[:200]}")
    return None
  return meta, arrays


def _restore(spec: registry.ModelSpec, overrides: Mapping[str, Any], leaves: list[dict[str, Any]],
             arrays: Mapping[str, np.ndarray]) -> nnx.Module | None:
  """The abstract module filled with the stored leaves; None when they do not match its state."""
  with spec.family.precision():
    abstract = spec.abstract(**overrides)
    graphdef, state = nnx.split(abstract)
    flat = nnx.to_flat_state(state)
    if len(flat) != len(leaves):
      return None
    for i, ((path, variable), leaf) in enumerate(zip(flat, leaves)):
      want = variable.get_value()
      impl = None
      if checkpoint.is_key(want):
        impl = _impl_name(want)
        want = jax.eval_shape(jax.random.key_data, want)
      if (leaf["path"] != _leaf_path(path) or leaf["dtype"] != np.dtype(want.dtype).name
          or leaf["shape"] != list(want.shape) or leaf["key_impl"] != impl):
        return None
      raw = arrays[f"{i:05d}"]
      if raw.size != np.dtype(want.dtype).itemsize * int(np.prod(want.shape)):
        return None
      value = jax.device_put(raw.view(np.dtype(want.dtype)).reshape(want.shape))
      if impl is not None:
        value = jax.random.wrap_key_data(value, impl=impl)
      variable.set_value(value)
    return nnx.merge(graphdef, state)
