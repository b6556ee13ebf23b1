"""Zoo checkpoints: orbax-saved NNX state plus a manifest that pins every file by sha256.

A checkpoint is a directory:

    manifest.json   format, model name, model kwargs, training config, metrics, verify checks, library
                    versions, and the sha256 of every other file (the registry pins the manifest's own hash)
    config.json     the model's hyperparameters (what the Hub counts downloads by)
    README.md       the model card (YAML metadata + text), written by `zoo.cards`
    state/          orbax checkpoint of `nnx.state(model)` (typed PRNG keys stored as raw key data)
    *.png           plots shown in the card

`save` is atomic: it writes a hidden temporary directory and renames it into place, so a save killed at any
point leaves the previous checkpoint intact. `restore` verifies every hash before reading a byte of state and
restores into `nnx.eval_shape` abstract state, so nothing is half-loaded. No pickle anywhere.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import pathlib
import platform
import shutil
import tempfile
from importlib import metadata as importlib_metadata
from typing import Any, Iterable, Mapping

import jax
import numpy as np
from flax import nnx

from zoo import errors, registry

FORMAT = "nnx-zoo/1"
MANIFEST = "manifest.json"
STATE_DIR = "state"


def sha256_file(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _files(directory: pathlib.Path) -> list[str]:
  """Every regular file below `directory` (symlinks followed) except the manifest, as posix paths."""
  out = []
  for root, _, names in os.walk(directory, followlinks=True):
    for n in names:
      rel = (pathlib.Path(root) / n).relative_to(directory).as_posix()
      if rel != MANIFEST:
        out.append(rel)
  return sorted(out)


def versions() -> dict[str, str]:
  out = {"python": platform.python_version()}
  for dist in ("nnx-zoo", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint"):
    try:
      out[dist] = importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
      pass
  return out


# --- PRNG keys: orbax stores plain arrays, so typed keys travel as their raw key data -----------------


def _is_key(x: Any) -> bool:
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def storable(tree: Any) -> Any:
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def storable_target(tree: Any) -> Any:
  # Restore onto the default device (not the saving run's mesh): jit caches then match freshly built models.
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def leaf(x):
    if _is_key(x):
      data = jax.eval_shape(jax.random.key_data, x)
      return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=device)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device)
  return jax.tree.map(leaf, tree)


def _key_impl(a: Any) -> Any:
  # jax.random.key_impl takes key arrays only; an abstract key (ShapeDtypeStruct) carries its impl in its dtype,
  # which is where key_impl itself reads it.
  return jax.random.key_impl(a) if isinstance(a, jax.Array) else a.dtype._impl


def from_storable(restored: Any, abstract: Any) -> Any:
  return jax.tree.map(
      lambda r, a: jax.random.wrap_key_data(r, impl=_key_impl(a)) if _is_key(a) else r, restored, abstract)


def model_state(model: nnx.Module) -> dict[str, Any]:
  """The module's whole state as a nested dict of arrays (what `state/` holds)."""
  return storable(nnx.state(model).to_pure_dict())


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


def replace_dir(tmp: pathlib.Path, directory: pathlib.Path) -> None:
  """Moves `tmp` to `directory`, replacing an existing one. The old copy is kept as `.NAME.old` until the
  new one is in place; `recover` puts it back if a crash happened between the two renames."""
  old = directory.parent / f".{directory.name}.old"
  if old.exists():
    shutil.rmtree(old)
  if directory.exists():
    os.rename(directory, old)
  os.rename(tmp, directory)
  if old.exists():
    shutil.rmtree(old)


def recover(directory: pathlib.Path) -> None:
  """Completes an interrupted replacement: puts `.NAME.old` back when `NAME` is missing."""
  directory = pathlib.Path(directory)
  old = directory.parent / f".{directory.name}.old"
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
) -> pathlib.Path:
  """Writes `model` as a zoo checkpoint at `directory` (atomically) and returns its path.

  Arguments:
    model: the module; its whole `nnx.state` is saved.
    name: the registered variant it instantiates (its spec builds the abstract model on restore).
    model_kwargs: the keyword arguments it was built with (default: the registry's).
    config: the training config (JSON-able), metrics: evaluation results, checks: `verify` results,
    plots: PNG files copied beside the card, card_sections: extra markdown sections {title: body}.
  """
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  from zoo import cards  # pylint: disable=import-outside-toplevel

  spec = registry.get_spec(name)
  directory = pathlib.Path(directory).absolute()
  directory.parent.mkdir(parents=True, exist_ok=True)
  recover(directory)
  kwargs = registry.jsonable(dict(spec.kwargs if model_kwargs is None else model_kwargs))
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
  try:
    with ocp.StandardCheckpointer() as ckptr:
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
        "versions": versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (tmp / "config.json").write_text(json.dumps(
        {"model": name, "family": spec.family.name, **kwargs}, indent=2, sort_keys=True) + "\n")
    cards.write_card(tmp, manifest, spec)
    manifest["files"] = {f: sha256_file(tmp / f) for f in _files(tmp)}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    replace_dir(tmp, directory)
  finally:
    if tmp.exists():
      shutil.rmtree(tmp, ignore_errors=True)
  return directory


def refresh_card(directory: str | os.PathLike, sections: Mapping[str, str] | None = None) -> str:
  """Re-renders README.md from the manifest and the current registry text, re-hashes, and returns the new
  manifest sha256 (to pin). The weights are untouched; the checkpoint is verified first.

  `sections` ({title: markdown}, e.g. a benchmark's table) are added to the manifest's card sections (a title
  already there is replaced)."""
  from zoo import cards  # pylint: disable=import-outside-toplevel

  directory = pathlib.Path(directory)
  manifest = read_manifest(directory)
  verify_files(directory, manifest)
  if sections:
    manifest["card_sections"] = {**(manifest.get("card_sections") or {}), **sections}
  cards.write_card(directory, manifest, registry.get_spec(manifest["name"]))
  manifest["files"] = {f: sha256_file(directory / f) for f in _files(directory)}
  tmp = directory / f".{MANIFEST}.tmp"
  tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
  os.replace(tmp, directory / MANIFEST)
  return sha256_file(directory / MANIFEST)


# --- verifying and restoring ----------------------------------------------------------------------


def read_manifest(directory: str | os.PathLike, expected_sha256: str | None = None) -> dict[str, Any]:
  """The manifest of `directory`, after checking its sha256 against `expected_sha256` (if given)."""
  path = pathlib.Path(directory) / MANIFEST
  if not path.is_file():
    raise errors.CheckpointCorruptError(
        f"{directory} is not a zoo checkpoint: it has no {MANIFEST}. Re-download it, or save one with "
        f"zoo.checkpoint.save(model, DIR, name=...).")
  digest = sha256_file(path)
  if expected_sha256 and digest != expected_sha256:
    raise errors.CheckpointCorruptError(
        f"{path} has sha256 {digest}, but the registry pins {expected_sha256}. The checkpoint is corrupt or "
        f"not the published one: restore it (git checkout -- {directory}, or delete it to re-download).")
  try:
    manifest = json.loads(path.read_text())
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise errors.CheckpointCorruptError(f"{path} is not valid JSON ({e}); re-download the checkpoint.") from e
  if manifest.get("format") != FORMAT:
    raise errors.IncompatibleCheckpointError(
        f"{path} has format {manifest.get('format')!r}; this zoo reads {FORMAT!r}. Upgrade nnx-zoo.")
  return manifest


def verify_files(directory: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
  """Checks that the files below `directory` are exactly the manifest's, byte for byte."""
  directory = pathlib.Path(directory)
  listed = dict(manifest["files"])
  present = set(_files(directory))
  missing = sorted(set(listed) - present)
  extra = sorted(present - set(listed))
  if missing or extra:
    raise errors.CheckpointCorruptError(
        f"{directory} does not match its manifest: missing {missing}, unexpected {extra}. "
        f"Re-download or re-export the checkpoint.")
  for rel, want in listed.items():
    got = sha256_file(directory / rel)
    if got != want:
      raise errors.CheckpointCorruptError(
          f"{directory / rel} has sha256 {got}, the manifest says {want}: the file is corrupt. "
          f"Re-download the checkpoint (or `git checkout -- {directory}` for an embedded one).")


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
  manifest = read_manifest(directory, expected_sha256)
  verify_files(directory, manifest)
  spec = registry.get_spec(manifest["name"])
  kwargs = {**manifest["model_kwargs"], **(model_overrides or {})}
  with spec.family.precision():
    abstract = nnx.eval_shape(lambda: spec.family.module(**kwargs, rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)
    abstract_tree = abstract_state.to_pure_dict()
    target = storable_target(abstract_tree)
    with ocp.StandardCheckpointer() as ckptr:
      meta = ckptr.metadata(directory / STATE_DIR)
      tree_meta = getattr(meta, "item_metadata", meta)
      tree_meta = getattr(tree_meta, "tree", tree_meta)
      _compare(tree_meta, target, directory)
      restored = ckptr.restore(directory / STATE_DIR, target)
    nnx.replace_by_pure_dict(abstract_state, from_storable(restored, abstract_tree))
    model = nnx.merge(graphdef, abstract_state)
  model.eval()
  return model, manifest
