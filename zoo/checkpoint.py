"""Zoo checkpoints: orbax-saved NNX state plus a manifest that pins every file by sha256.

A checkpoint is a directory:

    manifest.json   format, model name, model kwargs, training config, metrics, verify checks, library
                    versions, the sha256 of every other file (the registry pins the manifest's own hash), and
                    `manifest_sha256`: the sha256 of its canonical form (corruption check for unpinned copies)
    config.json     the model's hyperparameters (what the Hub counts downloads by)
    README.md       the model card (YAML metadata + text), written by `zoo.cards`
    state/          orbax checkpoint of `nnx.state(model)` (typed PRNG keys stored as raw key data)
    *.png           plots shown in the card

`save` is atomic: it writes a hidden temporary directory and renames it into place, so a save killed at any
point leaves the previous checkpoint intact. `restore` verifies every hash before reading a byte of state and
restores into `nnx.eval_shape` abstract state, so nothing is half-loaded. The manifest is validated against its
schema (`ManifestError` names the field) and its model_kwargs against the family module's signature; only regular
files inside the directory are read (bounded in number, depth and size). Writers and readers of a directory hold
its file lock (`locked`), so a reader never sees a half-swapped directory. No pickle anywhere.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import pathlib
import platform
import re
import shutil
import stat
import tempfile
from importlib import metadata as importlib_metadata
from typing import Any, Iterable, Iterator, Mapping, Sequence

import jax
import numpy as np
from flax import nnx

from zoo import errors, registry

FORMAT = "nnx-zoo/1"
MANIFEST = "manifest.json"
STATE_DIR = "state"
SELF_KEY = "manifest_sha256"  # sha256 of the manifest's canonical form without this key (corruption check)

# Bounds on what a checkpoint directory may hold (a hostile directory cannot make loading run forever).
MAX_MANIFEST_BYTES = 8 << 20
MAX_FILES = 10_000
MAX_DEPTH = 32            # directory depth and JSON nesting depth
_SHA256 = re.compile(r"[0-9a-f]{64}")


def max_file_bytes() -> int:
  """Largest file a checkpoint may hold: `$ZOO_MAX_FILE_BYTES`, default 8 GiB."""
  return int(os.environ.get("ZOO_MAX_FILE_BYTES") or 8 << 30)


def sha256_file(path: pathlib.Path, limit: int | None = None) -> str:
  """sha256 of the regular file at `path` (symlinks resolved); `CheckpointCorruptError` for anything else
  (FIFO, device, directory) or for a file longer than `limit` (default `max_file_bytes()`)."""
  limit = max_file_bytes() if limit is None else limit
  path = pathlib.Path(path)
  try:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
  except OSError as e:
    raise errors.CheckpointCorruptError(f"{path} cannot be read ({e.strerror}); re-download the checkpoint.") from e
  with os.fdopen(fd, "rb") as f:
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
      raise errors.CheckpointCorruptError(
          f"{path} is not a regular file (mode {stat.filemode(st.st_mode)}); a checkpoint holds regular files only.")
    if st.st_size > limit:
      raise errors.CheckpointCorruptError(f"{path} is {st.st_size} bytes, over the limit of {limit} "
                                          f"(ZOO_MAX_FILE_BYTES); not a zoo checkpoint file.")
    h, left = hashlib.sha256(), limit + 1
    for block in iter(lambda: f.read(min(1 << 20, left)), b""):
      h.update(block)
      left -= len(block)
      if left <= 0:
        raise errors.CheckpointCorruptError(f"{path} grew past {limit} bytes while being read.")
  return h.hexdigest()


def is_hf_snapshot(directory: str | os.PathLike) -> bool:
  """Whether `directory` is a snapshot folder of the Hugging Face cache (`models--ORG--NAME/snapshots/COMMIT`):
  its files are symlinks into the repo's `blobs/`, and it may hold files the manifest does not list
  (`.gitattributes`, files fetched by `snapshot_download`)."""
  d = pathlib.Path(directory)
  return d.parent.name == "snapshots" and d.parent.parent.name.startswith(("models--", "datasets--", "spaces--"))


def _files(directory: pathlib.Path) -> list[str]:
  """Every file below `directory` except the manifest, as posix paths. Links are never followed; anything but a
  regular file or a directory (symlink, FIFO, device, socket) is `CheckpointCorruptError`, as are more than
  MAX_FILES files or MAX_DEPTH levels."""
  out: list[str] = []

  def walk(d: pathlib.Path, depth: int) -> None:
    if depth > MAX_DEPTH:
      raise errors.CheckpointCorruptError(f"{d} is nested over {MAX_DEPTH} levels deep; not a zoo checkpoint.")
    with os.scandir(d) as it:
      entries = sorted(it, key=lambda e: e.name)
    for e in entries:
      path = pathlib.Path(e.path)
      if e.is_dir(follow_symlinks=False):
        walk(path, depth + 1)
      elif e.is_file(follow_symlinks=False):
        rel = path.relative_to(directory).as_posix()
        if rel != MANIFEST:
          out.append(rel)
        if len(out) > MAX_FILES:
          raise errors.CheckpointCorruptError(f"{directory} holds over {MAX_FILES} files; not a zoo checkpoint.")
      else:
        kind = "a symlink" if e.is_symlink() else "not a regular file"
        raise errors.CheckpointCorruptError(
            f"{path} is {kind}: a checkpoint directory holds only regular files and folders (links are never "
            f"followed). Remove it, or copy the checkpoint with `cp -rL`.")

  walk(pathlib.Path(directory), 0)
  return sorted(out)


def _snapshot_file(directory: pathlib.Path, rel: str) -> pathlib.Path:
  """The file `rel` of an HF cache snapshot, resolved; it must be a regular file inside the repo's cache folder."""
  path = directory / rel
  real = pathlib.Path(os.path.realpath(path))
  repo = pathlib.Path(os.path.realpath(directory.parent.parent))
  if not real.is_relative_to(repo):
    raise errors.CheckpointCorruptError(f"{path} points outside its cache folder {repo}; delete the snapshot.")
  return real


# --- the manifest: canonical form, self-checksum, schema ---------------------------------------------


def canonical_digest(manifest: Mapping[str, Any]) -> str:
  """sha256 of the manifest's canonical JSON (sorted keys, no spaces, ASCII) without `SELF_KEY`."""
  body = {k: v for k, v in manifest.items() if k != SELF_KEY}
  text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
  return hashlib.sha256(text.encode()).hexdigest()


def _manifest_text(manifest: Mapping[str, Any]) -> str:
  """The manifest as written: sealed with its self-checksum."""
  sealed = {**manifest, SELF_KEY: canonical_digest(manifest)}
  return json.dumps(sealed, indent=2, sort_keys=True) + "\n"


def _bad(field: str, problem: str, where: Any) -> errors.ManifestError:
  return errors.ManifestError(
      field, f"{where}: manifest field {field!r} {problem}. The manifest is malformed; re-download or re-export "
             f"the checkpoint.")


def _depth(value: Any) -> int:
  deepest, stack = 0, [(value, 1)]
  while stack:
    v, d = stack.pop()
    deepest = max(deepest, d)
    if d > MAX_DEPTH:
      return d
    if isinstance(v, dict):
      stack.extend((x, d + 1) for x in v.values())
    elif isinstance(v, list):
      stack.extend((x, d + 1) for x in v)
  return deepest


def _is_num(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _safe_rel(rel: Any) -> bool:
  if not isinstance(rel, str) or not rel or len(rel) > 1024 or "\\" in rel or "\0" in rel or rel.startswith("/"):
    return False
  parts = rel.split("/")
  return all(p not in ("", ".", "..") for p in parts) and rel != MANIFEST and len(parts) <= MAX_DEPTH


def validate_manifest(manifest: Any, where: Any = "manifest") -> dict[str, Any]:
  """Checks the manifest against its schema; the first problem raises `ManifestError` naming the field."""
  if not isinstance(manifest, dict):
    raise _bad("<root>", f"is a JSON {type(manifest).__name__}, not an object", where)
  if _depth(manifest) > MAX_DEPTH:
    raise _bad("<root>", f"is nested over {MAX_DEPTH} levels deep", where)
  required = {"format": str, "name": str, "family": str, "model_kwargs": dict, "files": dict}
  for key, typ in required.items():
    if key not in manifest:
      raise _bad(key, "is missing", where)
    if not isinstance(manifest[key], typ):
      raise _bad(key, f"should be a JSON {'object' if typ is dict else 'string'}, "
                      f"not {type(manifest[key]).__name__}", where)
  optional = {"dataset": str, "guarantee": str, "created": str, "config": (dict, type(None)), "metrics": dict,
              "checks": list, "plots": list, "card_sections": dict, "card_section_order": list, "versions": dict,
              "input_shape": list,
              "num_params": int, SELF_KEY: str}
  for key, typ in optional.items():
    if key in manifest and (not isinstance(manifest[key], typ) or isinstance(manifest[key], bool)):
      raise _bad(key, f"has the wrong type ({type(manifest[key]).__name__})", where)
  if SELF_KEY in manifest and not _SHA256.fullmatch(manifest[SELF_KEY]):
    raise _bad(SELF_KEY, "is not 64 lowercase hex digits", where)
  files = manifest["files"]
  if len(files) > MAX_FILES:
    raise _bad("files", f"lists {len(files)} files (at most {MAX_FILES})", where)
  for rel, sha in files.items():
    if not _safe_rel(rel):
      raise _bad(f"files.{rel}", "is not a relative path inside the checkpoint", where)
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
      raise _bad(f"files.{rel}", "is not a sha256 (64 lowercase hex digits)", where)
  if not any(r.startswith(STATE_DIR + "/") for r in files):
    raise _bad("files", f"lists no {STATE_DIR}/ file", where)
  for key in manifest["model_kwargs"]:
    if not key.isidentifier():
      raise _bad(f"model_kwargs.{key}", "is not a keyword argument name", where)
  for i, c in enumerate(manifest.get("checks") or []):
    if not isinstance(c, dict):
      raise _bad(f"checks.{i}", "is not an object", where)
    for key, ok in (("name", lambda v: isinstance(v, str)), ("passed", lambda v: isinstance(v, bool)),
                    ("value", _is_num), ("bound", _is_num), ("detail", lambda v: isinstance(v, str))):
      if key not in c or not ok(c[key]):
        raise _bad(f"checks.{i}.{key}", "is missing or has the wrong type", where)
  for key, value in (manifest.get("metrics") or {}).items():
    if not (_is_num(value) or value is None or isinstance(value, str)):
      raise _bad(f"metrics.{key}", "is not a number", where)
  for i, plot in enumerate(manifest.get("plots") or []):
    if not _safe_rel(plot) or "/" in plot:
      raise _bad(f"plots.{i}", "is not a file name", where)
  for key, value in (manifest.get("card_sections") or {}).items():
    if not isinstance(value, str):
      raise _bad(f"card_sections.{key}", "is not a string", where)
  for i, title in enumerate(manifest.get("card_section_order") or []):
    if not isinstance(title, str):
      raise _bad(f"card_section_order.{i}", "is not a string", where)
  for i, n in enumerate(manifest.get("input_shape") or []):
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
      raise _bad(f"input_shape.{i}", "is not a non-negative integer", where)
  return manifest


def _kind(value: Any) -> str:
  if isinstance(value, bool):
    return "bool"
  if isinstance(value, int):
    return "int"
  if isinstance(value, float):
    return "float"
  if isinstance(value, str):
    return "str"
  if isinstance(value, (list, tuple)):
    return "list"
  if isinstance(value, dict):
    return "dict"
  return "none" if value is None else type(value).__name__


def _numbers(value: Any) -> Iterable[int]:
  if isinstance(value, int) and not isinstance(value, bool):
    yield value
  elif isinstance(value, (list, tuple)):
    for v in value:
      yield from _numbers(v)


def kwargs_problem(spec: registry.ModelSpec, kwargs: Mapping[str, Any]) -> tuple[str, str] | None:
  """(argument, what is wrong) for the first keyword argument the family's module would not take as the
  variant intends, else None. Checked: the name is a parameter of `FAMILY.module.__init__`; the value has the
  JSON kind of the registered (or default) value (an int is accepted for a float); integers stay positive where
  the registered ones are, and within max(64 x the registered value, 4096), so a hostile manifest cannot make
  building run for hours."""
  import inspect  # pylint: disable=import-outside-toplevel

  try:
    params = dict(inspect.signature(spec.family.module.__init__).parameters)
  except (TypeError, ValueError):
    params = {}
  params.pop("self", None)
  params.pop("rngs", None)
  open_ended = not params or any(p.kind == p.VAR_KEYWORD for p in params.values())
  for key, value in kwargs.items():
    if key == "rngs" or (key not in params and not open_ended):
      return key, f"is not an argument of {spec.family.module.__name__} ({', '.join(params)})"
    ref = spec.kwargs.get(key, params[key].default if key in params else inspect.Parameter.empty)
    if ref is inspect.Parameter.empty or ref is None:
      continue
    want, got = _kind(ref), _kind(value)
    if got != want and not (want == "float" and got == "int"):
      return key, f"is a {got} ({value!r}); {spec.name} takes a {want} (like {ref!r})"
    if list(_numbers(ref)) and all(n > 0 for n in _numbers(ref)) and any(n <= 0 for n in _numbers(value)):
      return key, f"is {value!r}; {spec.name} takes positive integers here (like {ref!r})"
    cap = max([64 * abs(n) for n in _numbers(ref)] + [4096])
    if any(abs(n) > cap for n in _numbers(value)):
      return key, f"is {value!r}, outside the allowed range (|value| <= {cap})"
  return None


def versions() -> dict[str, str]:
  out = {"python": platform.python_version()}
  for dist in ("nnx-zoo", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint"):
    try:
      out[dist] = importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
      pass
  return out


# --- PRNG keys: orbax stores plain arrays, so typed keys travel as their raw key data -----------------


def is_key(x: Any) -> bool:
  """Whether `x` (an array or an abstract array) is a typed PRNG key array."""
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def storable(tree: Any) -> Any:
  return jax.tree.map(lambda x: jax.random.key_data(x) if is_key(x) else x, tree)


def storable_target(tree: Any, sharding: jax.sharding.Sharding | None = None) -> Any:
  """Abstract restore target of `tree` (typed PRNG keys as their raw key data), every leaf with an explicit
  `sharding`: by default this process's first local device (not the saving run's mesh, so a checkpoint written by
  any number of processes and devices restores anywhere, and jit caches match freshly built models); the trainer
  passes its global mesh's replicated sharding."""
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def leaf(x):
    if is_key(x):
      data = jax.eval_shape(jax.random.key_data, x)
      return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=sharding)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
  return jax.tree.map(leaf, tree)


def _host(x: Any) -> Any:
  """`x` as a host numpy array. A replicated array that spans other processes' devices gives this process's own
  copy. Host arrays keep devices and topology out of `state/`: an export is the same files whether it was
  trained on one device, a mesh or many processes (and orbax writes no jax.Array from one process of many)."""
  if isinstance(x, jax.Array):
    if not x.is_fully_addressable:
      if not x.is_fully_replicated:
        raise ValueError(f"cannot save an array sharded over other processes' devices ({x.sharding}); replicate "
                         f"it first.")
      x = x.addressable_shards[0].data
    return np.asarray(x)
  return x


def this_process_only() -> Any:
  """orbax options for a checkpointer used by this process alone (a zoo checkpoint is written and read by one
  process, even inside a multi-process run): no barrier waits for the other processes."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  me = jax.process_index()
  return ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me},
                                            barrier_sync_key_prefix=f"nnx-zoo-process-{me}")


def key_impl(a: Any) -> Any:
  """The PRNG implementation of a key array or an abstract key (`jax.random.key_impl` takes key arrays only; an
  abstract key carries its implementation in its dtype, which is where `key_impl` itself reads it)."""
  return jax.random.key_impl(a) if isinstance(a, jax.Array) else a.dtype._impl  # pylint: disable=protected-access


def from_storable(restored: Any, abstract: Any) -> Any:
  return jax.tree.map(
      lambda r, a: jax.random.wrap_key_data(r, impl=key_impl(a)) if is_key(a) else r, restored, abstract)


def model_state(model: nnx.Module) -> dict[str, Any]:
  """The module's whole state as a nested dict of host numpy arrays (what `state/` holds; PRNG keys as their raw
  key data)."""
  return jax.tree.map(_host, storable(nnx.state(model).to_pure_dict()))


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out: dict[str, Any] = {}
  for k, v in tree.items():
    path = f"{prefix}/{k}" if prefix else str(k)
    if isinstance(v, Mapping):
      out.update(_flat(v, path))
    else:
      out[path] = v
  return out


# --- saving ---------------------------------------------------------------------------------------


def lock_timeout() -> float:
  """Seconds a writer or reader waits for a checkpoint directory's lock: `$ZOO_LOCK_TIMEOUT`, default 300."""
  return float(os.environ.get("ZOO_LOCK_TIMEOUT") or 300)


@contextlib.contextmanager
def locked(directory: str | os.PathLike) -> Iterator[None]:
  """Holds the inter-process lock of `directory` (a `filelock` file in `$ZOO_LOCK_DIR`, default
  TMPDIR/nnx-zoo-locks, named by the hash of the directory's absolute path, so read-only and git-tracked folders
  stay untouched). Writers (save, ship) hold it while they swap a directory in; readers (restore) while they
  verify and read it, so no reader ever sees a half-swapped directory. Re-entrant within a thread."""
  from filelock import FileLock, Timeout  # pylint: disable=import-outside-toplevel

  key = hashlib.sha256(os.path.abspath(os.fspath(directory)).encode()).hexdigest()[:32]
  root = pathlib.Path(os.environ.get("ZOO_LOCK_DIR") or pathlib.Path(tempfile.gettempdir()) / "nnx-zoo-locks")
  try:
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / f"{key}.lock"), is_singleton=True)
    lock.acquire(timeout=lock_timeout())
  except Timeout as e:
    raise errors.LockTimeoutError(
        f"{directory} stayed locked by another process for {lock_timeout():.0f} s (ZOO_LOCK_TIMEOUT); is a "
        f"`zoo ship` or save still running?") from e
  except OSError:  # no writable lock folder: proceed unlocked (single-user read-only installs)
    yield
    return
  try:
    yield
  finally:
    lock.release()


def replace_dir(tmp: pathlib.Path, directory: pathlib.Path) -> None:
  """Moves `tmp` to `directory`, replacing an existing one, under the directory's lock. The old copy is kept
  as `.NAME.old` until the new one is in place; `recover` puts it back if a crash happened between the two
  renames."""
  with locked(directory):
    old = directory.parent / f".{directory.name}.old"
    if old.exists():
      shutil.rmtree(old)
    if directory.exists():
      os.rename(directory, old)
    os.rename(tmp, directory)
    if old.exists():
      shutil.rmtree(old)


def make_tmp(directory: pathlib.Path) -> pathlib.Path:
  """A new hidden temporary folder beside `directory`, named with this process id (`.NAME.tmp-PID-XXXX`)."""
  return pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-{os.getpid()}-", dir=directory.parent))


def clean_stale_tmp(directory: pathlib.Path) -> None:
  """Removes temporary folders beside `directory` left by a killed process (its pid no longer runs)."""
  for tmp in pathlib.Path(directory).parent.glob(f".{pathlib.Path(directory).name}.tmp-*"):
    pid = tmp.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
    if not pid.isdigit():
      continue
    try:
      os.kill(int(pid), 0)
    except ProcessLookupError:
      shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
      pass


def recover(directory: pathlib.Path) -> None:
  """Completes an interrupted replacement: puts `.NAME.old` back when `NAME` is missing (under the lock, so it
  never races a writer between its two renames)."""
  directory = pathlib.Path(directory)
  old = directory.parent / f".{directory.name}.old"
  if not old.exists():
    return
  with locked(directory):
    if old.exists() and not directory.exists():
      os.rename(old, directory)


def save(
    model: nnx.Module,
    directory: str | os.PathLike,
    *,
    name: str,
    model_kwargs: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    checks: Iterable[registry.Check] = (),
    plots: Iterable[str | os.PathLike] = (),
    card_sections: Mapping[str, str] | None = None,
    card_repo_id: str | None = None,
) -> pathlib.Path:
  """Writes `model` as a zoo checkpoint at `directory` (atomically) and returns its path.

  Arguments:
    model: the module; its whole `nnx.state` is saved.
    name: the registered variant it instantiates (its spec builds the abstract model on restore).
    model_kwargs: the keyword arguments it was built with (default: the registry's).
    config: the training config (JSON-able), metrics: evaluation results, checks: `verify` results,
    plots: PNG files copied beside the card, card_sections: extra markdown sections {title: body}, in the
      card in this order,
    card_repo_id: the Hub repo it is about to be pushed to (the card's usage loads `hf://REPO`).
  """
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  from zoo import cards  # pylint: disable=import-outside-toplevel

  spec = registry.get_spec(name)
  problem = kwargs_problem(spec, dict(spec.kwargs if model_kwargs is None else model_kwargs))
  if problem:
    raise errors.ManifestError(f"model_kwargs.{problem[0]}", f"save({name!r}): model_kwargs.{problem[0]} {problem[1]}.")
  directory = pathlib.Path(directory).absolute()
  directory.parent.mkdir(parents=True, exist_ok=True)
  recover(directory)
  kwargs = registry.jsonable(dict(spec.kwargs if model_kwargs is None else model_kwargs))
  clean_stale_tmp(directory)
  tmp = make_tmp(directory)
  try:
    with ocp.StandardCheckpointer(multiprocessing_options=this_process_only()) as ckptr:
      ckptr.save(tmp / STATE_DIR, model_state(model))
      ckptr.wait_until_finished()
    plot_names = []
    for p in plots:
      p = pathlib.Path(p)
      shutil.copyfile(p, tmp / p.name)
      plot_names.append(p.name)
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "name": name,
        "family": spec.family.name,
        "model_kwargs": kwargs,
        "input_shape": list(spec.input_shape),
        "dataset": spec.dataset,
        "guarantee": spec.guarantee,
        "config": registry.jsonable(dict(config)) if config else None,
        "metrics": registry.jsonable(dict(metrics or {})),
        "checks": [
            {"name": c.name, "passed": bool(c.passed), "value": float(c.value), "bound": float(c.bound),
             "detail": c.detail} for c in checks],
        "num_params": int(sum(np.size(x) for x in leaves)),
        "plots": plot_names,
        "card_sections": dict(card_sections or {}),
        "card_section_order": list(card_sections or {}),  # the manifest's keys are written sorted
        "versions": versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (tmp / "config.json").write_text(json.dumps(
        {"model": name, "family": spec.family.name, **kwargs}, indent=2, sort_keys=True) + "\n")
    cards.write_card(tmp, manifest, spec, repo_id=card_repo_id)
    manifest["files"] = {f: sha256_file(tmp / f) for f in _files(tmp)}
    (tmp / MANIFEST).write_text(_manifest_text(manifest))
    replace_dir(tmp, directory)
  finally:
    if tmp.exists():
      shutil.rmtree(tmp, ignore_errors=True)
  return directory


def refresh_card(directory: str | os.PathLike, sections: Mapping[str, str] | None = None,
                 order: Sequence[str] | None = None) -> str:
  """Re-renders README.md from the manifest and the current registry text, re-hashes, re-seals the manifest
  (its self-checksum) and returns the new manifest sha256 (to pin). The weights are untouched: every listed file
  is verified first. A manifest edited by hand (stale self-checksum) is accepted here and sealed again: this is
  the one call that re-seals, so use it only on a directory you produced.

  `sections` ({title: markdown}, e.g. a benchmark's table) are added to the manifest's card sections (a title
  already there is replaced in place, a new one goes last); `order` (every title) reorders them."""
  from zoo import cards  # pylint: disable=import-outside-toplevel

  directory = pathlib.Path(directory)
  manifest = read_manifest(directory, reseal=True)
  verify_files(directory, manifest)
  current = dict(cards.ordered_sections(manifest))
  current.update(sections or {})
  if order is not None:
    if sorted(order) != sorted(current):
      raise ValueError(f"order must list every card section once: {sorted(current)}, got {list(order)}.")
    current = {title: current[title] for title in order}
  manifest["card_sections"], manifest["card_section_order"] = current, list(current)
  cards.write_card(directory, manifest, registry.get_spec(manifest["name"]))
  manifest.pop(SELF_KEY, None)
  manifest["files"] = {f: sha256_file(directory / f) for f in _files(directory)}
  tmp = directory / f".{MANIFEST}.tmp"
  tmp.write_text(_manifest_text(manifest))
  os.replace(tmp, directory / MANIFEST)
  return sha256_file(directory / MANIFEST)


# --- verifying and restoring ----------------------------------------------------------------------


def read_manifest(directory: str | os.PathLike, expected_sha256: str | None = None, *,
                  reseal: bool = False) -> dict[str, Any]:
  """The manifest of `directory`, checked: against `expected_sha256` (the pin) when given; against its own
  self-checksum (`manifest_sha256`, over its canonical form); against the schema (`ManifestError` names the
  field). A manifest without a self-checksum (written before it existed) is accepted only when a pin covers it:
  `expected_sha256`, the registered pin of the name it carries, or the frozen list of manifests shipped before
  the self-checksum existed (`zoo.pins.LEGACY_MANIFESTS`). `reseal=True` (refresh_card) skips the
  self-checksum, never the schema."""
  directory = pathlib.Path(directory)
  path = directory / MANIFEST
  if not os.path.lexists(path):
    raise errors.CheckpointCorruptError(
        f"{directory} is not a zoo checkpoint: it has no {MANIFEST}. Re-download it, or save one with "
        f"zoo.checkpoint.save(model, DIR, name=...).")
  if path.is_symlink() and not is_hf_snapshot(directory):
    raise errors.CheckpointCorruptError(f"{path} is a symlink; a checkpoint holds regular files only.")
  real = _snapshot_file(directory, MANIFEST) if is_hf_snapshot(directory) else path
  digest = sha256_file(real, limit=MAX_MANIFEST_BYTES)
  if expected_sha256 and digest != expected_sha256:
    raise errors.CheckpointCorruptError(
        f"{path} has sha256 {digest}, but the registry pins {expected_sha256}. The checkpoint is corrupt or "
        f"not the published one: restore it (git checkout -- {directory}, or delete it to re-download).")
  try:
    manifest = json.loads(real.read_bytes().decode("utf-8"))
  except (UnicodeDecodeError, ValueError, RecursionError) as e:
    raise errors.CheckpointCorruptError(
        f"{path} is not valid JSON ({e.__class__.__name__}: {str(e)[:200]}); re-download the checkpoint.") from e
  if not isinstance(manifest, dict):
    raise _bad("<root>", f"is a JSON {type(manifest).__name__}, not an object", path)
  if manifest.get("format") != FORMAT:
    if not isinstance(manifest.get("format"), str):
      raise _bad("format", "is missing or not a string", path)
    raise errors.IncompatibleCheckpointError(
        f"{path} has format {manifest.get('format')!r}; this zoo reads {FORMAT!r}. Upgrade nnx-zoo.")
  if not reseal:
    if SELF_KEY in manifest:
      if manifest[SELF_KEY] != canonical_digest(manifest):
        raise errors.CheckpointCorruptError(
            f"{path} fails its self-checksum ({SELF_KEY}): it was edited or corrupted after it was written. "
            f"Re-download or re-export the checkpoint (refresh_card re-seals a manifest you edited on purpose).")
    else:
      from zoo import pins  # pylint: disable=import-outside-toplevel

      if digest not in pins.LEGACY_MANIFESTS and digest != (expected_sha256 or _registered_pin(manifest.get("name"))):
        raise errors.CheckpointCorruptError(
            f"{path} has no self-checksum ({SELF_KEY}; written before it existed) and no pin covers it (sha256 "
            f"{digest}): it cannot be checked. Re-save it with this zoo, or load it by its registered name.")
  return validate_manifest(manifest, path)


def _registered_pin(name: Any) -> str | None:
  from zoo import pins  # pylint: disable=import-outside-toplevel

  pin = pins.read().get(name) if isinstance(name, str) else None
  return pin.sha256 if pin else None


def verify_files(directory: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
  """Checks the files below `directory` against the manifest, byte for byte. A plain directory must hold
  exactly the listed files, all regular (no links, FIFOs, devices). A Hugging Face cache snapshot may hold
  files the manifest does not list outside `state/` (`.gitattributes`, ...): those are ignored; each listed
  file must resolve to a regular file inside the repo's cache folder."""
  directory = pathlib.Path(directory)
  listed = dict(manifest["files"])
  if is_hf_snapshot(directory):
    state = directory / STATE_DIR
    present = {f"{STATE_DIR}/{r}" for r in _snapshot_state(state)} if state.is_dir() else set()
    present |= {r for r in listed if os.path.lexists(directory / r)}
    paths = {r: _snapshot_file(directory, r) for r in listed if r in present}
  else:
    present = set(_files(directory))
    paths = {r: directory / r for r in listed}
  missing = sorted(set(listed) - present)
  extra = sorted(present - set(listed))
  if missing or extra:
    raise errors.CheckpointCorruptError(
        f"{directory} does not match its manifest: missing {missing}, unexpected {extra}. "
        f"Re-download or re-export the checkpoint.")
  for rel, want in listed.items():
    got = sha256_file(paths[rel])
    if got != want:
      raise errors.CheckpointCorruptError(
          f"{directory / rel} has sha256 {got}, the manifest says {want}: the file is corrupt. "
          f"Re-download the checkpoint (or `git checkout -- {directory}` for an embedded one).")


def _snapshot_state(state: pathlib.Path) -> list[str]:
  """Files below a snapshot's state/ (they are symlinks into blobs/), never following directory links."""
  out = []
  for root, dirs, names in os.walk(state, followlinks=False):
    if pathlib.Path(root).relative_to(state).parts.__len__() > MAX_DEPTH:
      raise errors.CheckpointCorruptError(f"{root} is nested too deep; delete the snapshot.")
    out += [(pathlib.Path(root) / n).relative_to(state).as_posix() for n in names]
    out += [(pathlib.Path(root) / d).relative_to(state).as_posix() for d in dirs if os.path.islink(os.path.join(root, d))]
    if len(out) > MAX_FILES:
      raise errors.CheckpointCorruptError(f"{state} holds over {MAX_FILES} files; delete the snapshot.")
  return out


def _compare(found: Mapping[str, Any], expected: Mapping[str, Any], where: pathlib.Path) -> None:
  f, e = _flat(found), _flat(expected)
  problems = [f"missing in checkpoint: {k}" for k in sorted(set(e) - set(f))]
  problems += [f"not in model: {k}" for k in sorted(set(f) - set(e))]
  for k in sorted(set(f) & set(e)):
    fs, es = tuple(getattr(f[k], "shape", ())), tuple(e[k].shape)
    fd, ed = getattr(f[k], "dtype", None), e[k].dtype
    if fs != es or (fd is not None and np.dtype(fd) != np.dtype(ed)):
      problems.append(f"{k}: checkpoint has {fd}{list(fs)}, model expects {ed}{list(es)}")
  if problems:
    shown = "; ".join(problems[:12]) + (f"; ... ({len(problems)} in all)" if len(problems) > 12 else "")
    raise errors.IncompatibleCheckpointError(
        f"{where} does not fit the model: {shown}. Was it saved with other model arguments or another "
        f"zoo version? Build the model with the checkpoint's manifest model_kwargs.")


def restore(
    directory: str | os.PathLike,
    *,
    expected_sha256: str | None = None,
    model_overrides: Mapping[str, Any] | None = None,
) -> tuple[nnx.Module, dict[str, Any]]:
  """Verifies and restores the checkpoint at `directory`; returns `(model in eval mode, manifest)`."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  directory = pathlib.Path(directory).absolute()  # orbax's metadata() needs an absolute path
  recover(directory)
  with contextlib.nullcontext() if is_hf_snapshot(directory) else locked(directory):
    return _restore(ocp, directory, expected_sha256, model_overrides)


def _restore(ocp, directory, expected_sha256, model_overrides):
  manifest = read_manifest(directory, expected_sha256)
  verify_files(directory, manifest)
  try:
    spec = registry.get_spec(manifest["name"])
  except errors.UnknownModelError as e:
    raise errors.IncompatibleCheckpointError(
        f"{directory}: manifest field 'name' is {manifest['name']!r}, which this zoo does not register ({e}). "
        f"Upgrade nnx-zoo, or check the checkpoint.") from e
  if manifest["family"] != spec.family.name:
    raise _bad("family", f"is {manifest['family']!r}, but {spec.name} is a {spec.family.name} model", directory)
  problem = kwargs_problem(spec, manifest["model_kwargs"])
  if problem:
    raise _bad(f"model_kwargs.{problem[0]}", problem[1], directory)
  problem = kwargs_problem(spec, model_overrides or {})
  if problem:
    raise errors.IncompatibleCheckpointError(f"override {problem[0]} {problem[1]}.")
  kwargs = {**manifest["model_kwargs"], **(model_overrides or {})}
  with spec.family.precision():
    try:
      abstract = nnx.eval_shape(lambda: spec.family.module(**kwargs, rngs=nnx.Rngs(0)))
    except Exception as e:  # pylint: disable=broad-except  # the kwargs come from an unpinned file
      raise errors.IncompatibleCheckpointError(
          f"{directory}: {spec.family.module.__name__}(**model_kwargs) cannot be built from the manifest's "
          f"model_kwargs {kwargs} ({e.__class__.__name__}: {str(e)[:300]}).") from e
    graphdef, abstract_state = nnx.split(abstract)
    abstract_tree = abstract_state.to_pure_dict()
    target = storable_target(abstract_tree)
    with ocp.StandardCheckpointer(multiprocessing_options=this_process_only()) as ckptr:
      try:
        meta = ckptr.metadata(directory / STATE_DIR)
      except Exception as e:  # pylint: disable=broad-except
        raise errors.CheckpointCorruptError(f"{directory / STATE_DIR} is not a readable orbax checkpoint "
                                            f"({e.__class__.__name__}: {str(e)[:300]}).") from e
      tree_meta = getattr(meta, "item_metadata", meta)
      tree_meta = getattr(tree_meta, "tree", tree_meta)
      _compare(tree_meta, target, directory)
      try:
        restored = ckptr.restore(directory / STATE_DIR, target)
      except Exception as e:  # pylint: disable=broad-except
        raise errors.CheckpointCorruptError(f"{directory / STATE_DIR} could not be restored "
                                            f"({e.__class__.__name__}: {str(e)[:300]}).") from e
    nnx.replace_by_pure_dict(abstract_state, from_storable(restored, abstract_tree))
    model = nnx.merge(graphdef, abstract_state)
  model.eval()
  return model, manifest
