"""Pretrained pins as data: `checkpoints/pins.json`, written by `zoo ship`, read by the registry.

    {"massnet-sir": {"repo_id": "nnx-zoo/massnet-sir", "revision": "main", "sha256": "d630a2e4..."}, ...}

A pin names where a variant's weights live on the Hub and the sha256 of their `manifest.json`; the manifest
pins every other file, so the embedded copy, the HF cache and the Hub are checked alike. `ZOO_PINS` moves the
file (tests ship into temporary folders with it). Writes are atomic (temporary file + rename).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import tempfile
from typing import Any

from zoo import errors

FILENAME = "pins.json"
HUB_ORG = "nnx-zoo"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class Pin:
  """Where a variant's weights live: a Hub repo at a revision, and the sha256 of its `manifest.json`."""

  repo_id: str
  revision: str = "main"
  sha256: str | None = None

  @property
  def uri(self) -> str:
    return f"hf://{self.repo_id}@{self.revision}"


def path() -> pathlib.Path:
  """`$ZOO_PINS`, else `checkpoints/pins.json` beside the `zoo` package."""
  env = os.environ.get("ZOO_PINS")
  return pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parent.parent / "checkpoints" / FILENAME


def read() -> dict[str, Pin]:
  """Every pin, by model name ({} when the file does not exist)."""
  p = path()
  if not p.is_file():
    return {}
  try:
    raw = json.loads(p.read_text())
    out = {}
    for name, entry in raw.items():
      sha = entry.get("sha256")
      if sha is not None and not _SHA256.fullmatch(sha):
        raise ValueError(f"{name}: sha256 {sha!r} is not 64 lowercase hex digits")
      out[name] = Pin(str(entry["repo_id"]), str(entry.get("revision", "main")), sha)
    return out
  except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise errors.CheckpointCorruptError(
        f"{p} is not a valid pins file ({e.__class__.__name__}: {e}). Restore it (git checkout -- {p}).") from e


def get(name: str) -> Pin | None:
  return read().get(name)


def write(name: str, sha256: str, repo_id: str | None = None, revision: str = "main") -> Pin:
  """Pins `name` to the manifest `sha256` (at `repo_id`, default `nnx-zoo/NAME`); returns the new pin."""
  if not _SHA256.fullmatch(sha256):
    raise ValueError(f"sha256 {sha256!r} is not 64 lowercase hex digits")
  p = path()
  raw: dict[str, Any] = json.loads(p.read_text()) if p.is_file() else {}
  pin = Pin(repo_id or f"{HUB_ORG}/{name}", revision, sha256)
  raw[name] = dataclasses.asdict(pin)
  p.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{FILENAME}.", dir=p.parent)
  try:
    with os.fdopen(fd, "w") as f:
      f.write(json.dumps(dict(sorted(raw.items())), indent=2) + "\n")
    os.replace(tmp, p)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
  return pin
