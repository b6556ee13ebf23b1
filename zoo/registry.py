"""The model registry: a name maps to a family, the family's keyword arguments and a pretrained reference.

A family module (`zoo/models/FAMILY.py`) defines its `nnx.Module`, one `Family` record (loss, evaluation,
verification of its guarantee, plots) and ends with its variants:

    @register("massnet-sir", FAMILY, dataset="sir", input_shape=(3,), guarantee="...",
              pretrained=Pretrained("nnx-zoo/massnet-sir", sha256="..."))
    def massnet_sir():
      "Mass-preserving net for the SIR time-1 flow map."
      return dict(dim=3, layers=4, step=0.25)

The decorated function returns the keyword arguments of `FAMILY.module`; `zoo.create(name, **overrides)`
builds `FAMILY.module(**{**kwargs, **overrides}, rngs=nnx.Rngs(seed))`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import importlib
import pkgutil
from typing import Any, Callable, Iterator

import jax
import numpy as np
from flax import nnx

from zoo import errors


@dataclasses.dataclass(frozen=True)
class Check:
  """One verified property: `passed` iff `value <= bound` (or the family's own comparison)."""

  name: str
  passed: bool
  value: float
  bound: float
  detail: str = ""

  def __str__(self) -> str:
    mark = "PASS" if self.passed else "FAIL"
    return f"[{mark}] {self.name}: {self.value:.3g} (bound {self.bound:.3g}) {self.detail}".rstrip()


@dataclasses.dataclass(frozen=True)
class Family:
  """What the zoo needs to know of a model family.

  Attributes:
    name: the family's short name (the module's name).
    module: the `nnx.Module` class; called as `module(**kwargs, rngs=rngs)`.
    loss: `loss(model, batch) -> (scalar, {name: scalar})`, jittable; `batch` is a dict of arrays whose
      leading axis is the batch (the dataset's features).
    evaluate: `evaluate(model, data) -> {metric: float}` on a whole split (dict of numpy arrays).
    verify: `verify(model) -> list[Check]`: the structural guarantee, checked on the given weights.
    plot: optional `plot(model, data, outdir) -> list[pathlib.Path]` (PNG files for the card).
    demo: optional `demo(model, outdir, dataset) -> str`: what `zoo run NAME` shows (text; plots into outdir). Without
      it, `zoo run` evaluates on the test split and plots.
    export: optional `export(model, kwargs) -> (model, kwargs)`: the form that ships (e.g. packed quantized
      weights), applied by the trainer to the best model before it is evaluated, verified and saved.
    card_sections: optional `card_sections(model, metrics) -> {title: markdown}`: extra card sections.
    paper: citation of the paper the family follows.
    x64: the family computes in float64; the zoo builds, trains and evaluates it under `jax.enable_x64`.
  """

  name: str
  module: type[nnx.Module]
  loss: Callable[..., Any]
  evaluate: Callable[..., dict[str, float]]
  verify: Callable[..., list[Check]]
  plot: Callable[..., list[Any]] | None = None
  demo: Callable[..., str] | None = None
  export: Callable[..., tuple[Any, dict]] | None = None
  card_sections: Callable[..., dict[str, str]] | None = None
  paper: str = ""
  x64: bool = False

  def precision(self) -> contextlib.AbstractContextManager:
    """Context in which this family's arrays live (float64 where `x64`)."""
    return jax.enable_x64(True) if self.x64 else contextlib.nullcontext()


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """Where a variant's weights live: a Hub repo at a revision, and the sha256 of its `manifest.json`.

  The same hash pins the embedded copy in `checkpoints/NAME/`, so every source is checked alike.
  """

  repo_id: str
  revision: str = "main"
  sha256: str | None = None

  @property
  def uri(self) -> str:
    return f"hf://{self.repo_id}@{self.revision}"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A registered variant. `input_shape` is the shape of ONE example (no batch axis)."""

  name: str
  family: Family
  kwargs: dict[str, Any]
  dataset: str
  input_shape: tuple[int, ...]
  guarantee: str
  description: str = ""
  tags: tuple[str, ...] = ()
  pretrained: Pretrained | None = None
  license: str = "apache-2.0"
  deviations: str = ""
  reference: dict[str, str] = dataclasses.field(default_factory=dict)

  def build(self, seed: int = 0, **overrides: Any) -> nnx.Module:
    """A freshly initialised module (random weights from `seed`)."""
    with self.family.precision():
      return self.family.module(**{**self.kwargs, **overrides}, rngs=nnx.Rngs(seed))

  def abstract(self, **overrides: Any) -> nnx.Module:
    """The module as shapes and dtypes only (`nnx.eval_shape`), for restoring into."""
    with self.family.precision():
      return nnx.eval_shape(lambda: self.build(0, **overrides))

  def as_dict(self) -> dict[str, Any]:
    """A JSON-ready record of the spec (what `zoo info` prints and the manifest stores)."""
    return {
        "name": self.name,
        "family": self.family.name,
        "model_kwargs": _jsonable(self.kwargs),
        "dataset": self.dataset,
        "input_shape": list(self.input_shape),
        "guarantee": self.guarantee,
        "description": self.description,
        "tags": list(self.tags),
        "pretrained": self.pretrained.uri if self.pretrained else None,
        "manifest_sha256": self.pretrained.sha256 if self.pretrained else None,
        "license": self.license,
        "paper": self.family.paper,
        "deviations": self.deviations,
        "reference": dict(self.reference),
        "float64": self.family.x64,
    }


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    family: Family,
    *,
    dataset: str,
    input_shape: tuple[int, ...],
    guarantee: str,
    tags: tuple[str, ...] = (),
    pretrained: Pretrained | None = None,
    license: str = "apache-2.0",
    deviations: str = "",
    reference: dict[str, str] | None = None,
) -> Callable[[Callable[[], dict[str, Any]]], Callable[[], dict[str, Any]]]:
  """Registers the decorated function's keyword arguments as the variant `name` of `family`.

  `reference` maps a metric name to the paper's (or official code's) number for it, as text with its source;
  cards show it beside the measured value.
  """

  def decorator(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    if name in _REGISTRY:
      raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = ModelSpec(
        name=name, family=family, kwargs=dict(fn()), dataset=dataset,
        input_shape=tuple(input_shape), guarantee=guarantee,
        description=(fn.__doc__ or "").strip(), tags=tuple(tags), pretrained=pretrained,
        license=license, deviations=deviations.strip(), reference=dict(reference or {}))
    return fn

  return decorator


def _import_families() -> None:
  import zoo.models  # pylint: disable=import-outside-toplevel

  for info in pkgutil.iter_modules(zoo.models.__path__):
    importlib.import_module(f"zoo.models.{info.name}")


def _registry() -> dict[str, ModelSpec]:
  if not _REGISTRY:
    _import_families()
  return _REGISTRY


def get_spec(name: str) -> ModelSpec:
  """The spec of `name`; `UnknownModelError` (with close matches) when there is none."""
  reg = _registry()
  if name not in reg:
    raise errors.UnknownModelError(name, sorted(reg))
  return reg[name]


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
  """Registered names matching a shell wildcard; with `pretrained=True` only those with weights."""
  return sorted(
      n for n, s in _registry().items()
      if fnmatch.fnmatchcase(n, pattern) and (not pretrained or s.pretrained is not None))


def specs() -> Iterator[ModelSpec]:
  reg = _registry()
  return iter(reg[n] for n in sorted(reg))


def check_input(x: Any, input_shape: tuple[int, ...], name: str = "x") -> None:
  """Raises `InputShapeError` unless `x` is a float array of shape `(batch, *input_shape)`."""
  shape = tuple(np.shape(x))
  want = "(" + ", ".join(["batch", *map(str, input_shape)]) + ")"
  if len(shape) != len(input_shape) + 1 or shape[1:] != tuple(input_shape):
    raise errors.InputShapeError(
        f"{name} has shape {shape}; this model takes {name}: {want}. Add a batch axis for one example "
        f"({name}[None]) or reshape the input.")
  dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
  if not np.issubdtype(dtype, np.floating):
    raise errors.InputShapeError(f"{name} has dtype {dtype}; this model takes floating-point input.")


def _jsonable(value: Any) -> Any:
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, (np.generic,)):
    return value.item()
  return value
