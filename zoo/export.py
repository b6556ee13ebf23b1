"""Exports a zoo checkpoint for readers without JAX: `zoo export NAME --format safetensors`.

    zoo export massnet-sir --format safetensors --out massnet-sir-st/
    # massnet-sir-st/model.safetensors   every array of the model's state, named by its path ("blocks.0.kernel")
    # massnet-sir-st/config.json         the model's hyperparameters (as in the checkpoint)
    # massnet-sir-st/manifest.json       the checkpoint's manifest (metrics, checks, sha256 of its own files)

    from safetensors.numpy import load_file
    weights = load_file("massnet-sir-st/model.safetensors")   # {name: np.ndarray}, no JAX needed

Names are the `nnx.state(model)` paths joined by "."; typed PRNG keys are stored as their raw key data (uint32).
The file's metadata holds the model name, family, `model_kwargs` (JSON) and the format, so a reader can rebuild the
module with `zoo.create(name, **model_kwargs)` and `nnx.update` it. The sha256 of model.safetensors is written to
`model.safetensors.sha256`. No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
from typing import Any, Mapping

import numpy as np

from zoo import errors

FORMATS = ("safetensors",)
WEIGHTS = "model.safetensors"


def flat_state(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
  """A nested state dict as {"a.b.c": array} (C-contiguous numpy; bfloat16 becomes float32, which safetensors'
  numpy API cannot write)."""
  out: dict[str, np.ndarray] = {}
  for k, v in tree.items():
    key = f"{prefix}.{k}" if prefix else str(k)
    if isinstance(v, Mapping):
      out.update(flat_state(v, key))
    else:
      a = np.asarray(v)
      if a.dtype.name == "bfloat16":
        a = a.astype(np.float32)
      out[key] = np.ascontiguousarray(a)
  return out


def export(source: Any, out_dir: str | os.PathLike, fmt: str = "safetensors") -> pathlib.Path:
  """Writes the model of `source` (any `zoo.load` source, or a module made by `zoo.load` / `zoo.create`) as
  `out_dir/model.safetensors` with config.json and manifest.json beside it; returns the weights file."""
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel

  from zoo import checkpoint, hub, registry  # pylint: disable=import-outside-toplevel

  if fmt not in FORMATS:
    raise errors.InvalidSourceError(f"export format {fmt!r} is not supported; accepted: {', '.join(FORMATS)}.")
  out = pathlib.Path(out_dir)
  if out.exists() and not out.is_dir():
    raise errors.InvalidSourceError(f"{out} is an existing file; export writes a folder.")
  if isinstance(source, nnx.Module):
    model = source
    origin = registry.provenance(model)
    if origin is None:
      raise ValueError("export needs a module made by zoo.create / zoo.load (its name and kwargs are written).")
    manifest = dict(origin.manifest or {})
    name, kwargs = origin.name, dict(origin.kwargs)
    directory = None
  else:
    directory, pin, _ = hub.resolve(source)
    model, manifest = checkpoint.restore(directory, expected_sha256=pin)
    name, kwargs = manifest["name"], manifest["model_kwargs"]
  spec = registry.get_spec(name)
  tensors = flat_state(checkpoint.model_state(model))
  out.mkdir(parents=True, exist_ok=True)
  metadata = {"format": "nnx-zoo/safetensors-1", "name": name, "family": spec.family.name,
              "model_kwargs": json.dumps(registry.jsonable(kwargs), sort_keys=True),
              "state": "nnx.state(model) paths joined by '.'; PRNG keys as raw key data"}
  path = out / WEIGHTS
  save_file(tensors, str(path), metadata=metadata)
  (out / f"{WEIGHTS}.sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest() + f"  {WEIGHTS}\n")
  if directory is not None:
    for extra in ("config.json", checkpoint.MANIFEST):
      if (directory / extra).is_file():
        shutil.copyfile(directory / extra, out / extra)
  else:  # a module in memory: its config and (when it was loaded) manifest
    (out / "config.json").write_text(json.dumps(  # the layout checkpoint.save writes
        {"model": name, "family": spec.family.name, **registry.jsonable(kwargs)}, indent=2, sort_keys=True) + "\n")
    if manifest:
      (out / checkpoint.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
  return path
