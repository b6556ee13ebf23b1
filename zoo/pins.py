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

# The manifests shipped before manifests carried a self-checksum (`manifest_sha256`): the sha256 each was pinned
# with. Frozen: every manifest written since is sealed, so this list never grows. A manifest without a
# self-checksum loads only when its sha256 is here or is the current pin of its name (zoo.checkpoint).
LEGACY_MANIFESTS = frozenset({
    "5280da2b0dc87f3d047ae8df5d82cb8061c14b19729744edbe9b7a460660df19",  # elcd-lasa2d-angle
    "a1a1ba36e811896647fab3d4ae7cc8cdd23d9e48cf030befedd56767ee47bb23",  # elcd-lasa2d-cshape
    "66e40a44bb99072fee34ae1ff2feb3183ec9dddb7116804e99b9bae653350f39",  # elcd-lasa2d-gshape
    "83cd5bceb77d23435fed484db171ed1f1c37d575933d17daf12a9d7ae637363f",  # elcd-lasa2d-jshape
    "79358fd907510a1cabcc4c7c0b9f22be8c256986d7575321f616ec2739889daf",  # elcd-lasa2d-multi-models-1
    "cafe5a8647bf42695e246f8798bb983f7e09e0bd5dd42dc9263781152697682c",  # elcd-lasa2d-nshape
    "099acc53b71ad4a8e893b118673bbd9b74b70ae793f2050bc282e8a48e1f8706",  # elcd-lasa2d-pshape
    "866418b83c8407a45f44fac32472f1c2d4f0bd78a3ae31cc22abfd5003e5fcc4",  # elcd-lasa2d-sine
    "3892963e29473187523fd6dca11746444631e5097641f39edb2c4494af481152",  # elcd-lasa2d-sshape
    "71519a012963fb79643d1edcb40ecef06e9339c2830861c85400230fde1fbf18",  # elcd-lasa2d-worm
    "801eade86335025fa5c205f4e6d3ea32854b5ced1e2521909073d49fd9023671",  # elcd-lasa4d
    "ae7199dcde461ffee783565779b47b3b6fc7f62017344fb293a8323694a40ee9",  # elcd-lasa8d
    "438da2cdeabdc7105aa23bd2cef2748724c45e43e3df8569f75b88e98355b0b8",  # invariance-node-spiral
    "d630a2e44bdde964dc8fbf4a49997d2a1bc6e2f2683e518238a5b3853470ed58",  # massnet-sir
    "336cd07671630e4a34178c7086cffcca38412934e671d4b11bc4fd4b623db538",  # neural-ode-spiral
    "06b71de0dd9c453147eeaaf6d5aee85563e978689356a462a6880f8307bb578c",  # nonexpansive-resnet-digits
    "67a3f3c3dc7a3e73610c309f34520e121e8851d0abe21762d7eb98bf648fe4e5",  # resnet-baseline-digits
    "d8279b9ba53fcf1825c140bc81670a0e0e40cff86a33d8178f03cbcf8a840363",  # resnet18-digits
    "76dc619f2562ea12c74e6288d0a5878cdc71cb0d3f323cbaff9a18aefd12ff73",  # resnet18-digits-dkm-b2
    "e5ff8e5d7e2ce0c664386f001c141e26217b6599a9d20c956c7edc31a5c56430",  # resnet18-digits-idkm-b1
    "01796493365227ddbdd40d467a8e899d260db6ac0c5949f54737028c1aa7db12",  # resnet18-digits-idkm-b2
    "88d8ce5772632df798fb1b72cc0eb83e8097a52b15e73bbbb3693d04bf3e74f5",  # resnet18-digits-idkm-b4
    "4effb1d9a6d5220e56aa2b39766b7f20c564a494b350bf1d67ff58a8b9aba4be",  # resnet18-digits-jfb-b2
    "7efde807bc591e0feab47d4638405c1abe7fd9fe4a1a3014cce9765bb0451ff9",  # volnet-pendulum
    "8a02a3df07debb8170fa58b51b844d84ee12728e198681a287db7d62ac81107e",  # wavemix-lite-digits
    "ff2ad9436018e0e296c262ced517f58caae0f7063faddb3183d99a025238011a",  # wavemix-lite-digits-rotate-rtn4
})
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
  p.parent.mkdir(parents=True, exist_ok=True)
  from zoo import checkpoint  # pylint: disable=import-outside-toplevel

  with checkpoint.locked(p):  # read-modify-write: concurrent ships of two models keep both pins
    raw: dict[str, Any] = json.loads(p.read_text()) if p.is_file() else {}
    pin = Pin(repo_id or f"{HUB_ORG}/{name}", revision, sha256)
    raw[name] = dataclasses.asdict(pin)
    fd, tmp = tempfile.mkstemp(prefix=f".{FILENAME}.", dir=p.parent)
    try:
      with os.fdopen(fd, "w") as f:
        f.write(json.dumps(dict(sorted(raw.items())), indent=2) + "\n")
      os.replace(tmp, p)
    finally:
      if os.path.exists(tmp):
        os.unlink(tmp)
  return pin
