"""Typed errors of the zoo. Each message says what went wrong and what to do next."""

from __future__ import annotations

import difflib


class ZooError(Exception):
  """Base class of every error the zoo raises on purpose."""


class UnknownModelError(ZooError, KeyError):
  """A model name that is not in the registry."""

  def __init__(self, name: str, known: list[str]):
    self.name = name
    lower = {k.lower(): k for k in known}
    close = [lower[c] for c in difflib.get_close_matches(str(name).lower(), list(lower), n=5, cutoff=0.5)]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    super().__init__(
        f"Unknown model {name!r}.{hint} `zoo list` (or zoo.list_models()) shows all "
        f"{len(known)} registered models; a Hub checkpoint loads as 'hf://ORG/REPO[@REVISION]'."
    )

  def __str__(self) -> str:  # KeyError would quote the message
    return self.args[0]


class CheckpointCorruptError(ZooError):
  """A checkpoint file whose bytes do not match the sha256 the manifest (or the registry) pins."""


class ManifestError(CheckpointCorruptError):
  """A manifest that does not follow the schema; `field` names the first offending field (dotted path)."""

  def __init__(self, field: str, message: str):
    self.field = field
    super().__init__(message)


class IncompatibleCheckpointError(ZooError):
  """A checkpoint whose parameter tree does not fit the model it is restored into."""


class HubUnavailableError(ZooError):
  """The Hugging Face Hub cannot be reached (offline, no network, server down, or past the deadline)."""


class HubAuthError(ZooError):
  """The Hub refused the request (401/403): a missing, invalid or underprivileged HF_TOKEN."""


class InvalidSourceError(ZooError, ValueError):
  """A source string (`hf://ORG/REPO[@REV]`, a repo id, a prefix) that is not well formed."""


class ConfigError(ZooError, ValueError):
  """A training config value outside what the trainer accepts; `field` names it (dotted path)."""

  def __init__(self, field: str, message: str):
    self.field = field
    super().__init__(message)


class TrainingDivergedError(ZooError):
  """Training produced a non-finite loss: the run stops instead of exporting NaN weights."""


class LockTimeoutError(ZooError):
  """Another process held a checkpoint directory's lock for longer than the timeout."""


class DataUnavailableError(ZooError):
  """A dataset that is not on this machine and cannot be downloaded now."""


class InputShapeError(ZooError, ValueError):
  """An input whose shape or dtype does not match what the model takes."""


class CheckpointNotFoundError(ZooError, FileNotFoundError):
  """No checkpoint where one was asked for (a model without pretrained weights, a missing Hub repo or file)."""


class UnsafeStateError(ZooError, ValueError):
  """A state outside the safe set where the model's forward-invariance guarantee needs it inside."""


class ShipConflictError(ZooError):
  """`zoo ship` refused: the model already ships (replace it explicitly) or its checks failed."""


class UnknownVariantError(ZooError, ValueError):
  """A config variant (`configs/FAMILY.py:VARIANT`) that the config file does not define."""

  def __init__(self, config_file: str, variant: str, known: list[str]):
    close = difflib.get_close_matches(variant, known, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    super().__init__(f"{config_file} has no variant {variant!r}.{hint} Variants: {', '.join(known)}.")


class InvalidArgumentError(ZooError, ValueError):
  """An argument outside what a model method accepts (e.g. a negative number of rollout steps)."""


class MissingExtraError(ZooError, ImportError):
  """Code that needs an optional extra (e.g. `rl`: mujoco, mujoco-mjx, crax-bench) that is not installed."""

  def __init__(self, extra: str, module: str, what: str):
    self.extra = extra
    super().__init__(
        f"{what} needs the optional extra '{extra}' ({module} is not installed). Install it with "
        f"`pip install -e '.[{extra}]'` from a checkout (or `pip install 'nnx-zoo[{extra}]'`).")


class Float64UnavailableError(ZooError):
  """A float64 family on a backend without native float64 (TPU): it would not compute what its guarantee says."""
