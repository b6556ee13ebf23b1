"""The model registry: a name maps to a family, the family's keyword arguments and (as data) a pretrained pin.

A family package (`zoo/models/FAMILY/`) defines its `nnx.Module`, one `Family` record (loss, evaluation,
verification of its guarantee, plots) and its variants (`variants.py`):

    @register("massnet-sir", FAMILY, dataset="sir", input_shape=(3,), guarantee="...")
    def massnet_sir():
      "Mass-preserving net for the SIR time-1 flow map."
      return dict(dim=3, layers=4, step=0.25)

The decorated function returns the keyword arguments of `FAMILY.module`; `zoo.create(name, **overrides)`
builds `FAMILY.module(**{**kwargs, **overrides}, rngs=nnx.Rngs(seed))`. Which variants have pretrained weights,
where they live and the sha256 that pins them is data: `checkpoints/pins.json`, written by `zoo ship` (see
`zoo.pins`), never edited in code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import importlib
import pathlib
import pkgutil
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from zoo import errors, pins
from zoo.nn.precision import float64_scope


@dataclasses.dataclass(frozen=True)
class Check:
  """One verified property: `passed` iff `value <= bound` (or the family's own comparison). `kind` "guarantee" (what
  the model guarantees by construction: a failure is a broken model) or "measured" (a statistic measured by running
  the model against a stated bound, e.g. an RL policy's violation rate: a miss is reported, not a broken guarantee)."""

  name: str
  passed: bool
  value: float
  bound: float
  detail: str = ""
  kind: str = "guarantee"

  def __str__(self) -> str:
    mark = "PASS" if self.passed else "FAIL"
    return f"[{mark}] {self.name}: {self.value:.3g} (bound {self.bound:.3g}) {self.detail}".rstrip()


Batch = Mapping[str, Any]  # a dict of arrays whose leading axis is the batch (the dataset's features)
Split = Mapping[str, np.ndarray]  # a whole split of a dataset, as numpy arrays


# --- the hooks a family provides (typed: a family that drifts from these fails type checks) ----------------


class LossFn(Protocol):
  def __call__(self, model: Any, batch: Batch) -> tuple[Any, dict[str, Any]]:
    """(scalar loss, {name: scalar}) of one batch; jittable."""


class EvaluateFn(Protocol):
  def __call__(self, model: Any, data: Split) -> dict[str, float]:
    """{metric: value} on a whole split."""


class VerifyFn(Protocol):
  def __call__(self, model: Any) -> list[Check]:
    """The structural guarantee, checked on the given weights through what users call."""


class PlotFn(Protocol):
  def __call__(self, model: Any, data: Split, outdir: pathlib.Path) -> list[pathlib.Path]:
    """PNG files for the card, written into `outdir`."""


class DemoFn(Protocol):
  def __call__(self, model: Any, outdir: pathlib.Path, dataset: str) -> str:
    """What `zoo run NAME` shows: text to print (plots go into `outdir`); `dataset` is the variant's."""


class ExportFn(Protocol):
  def __call__(self, model: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The form that ships (e.g. packed quantized weights) and the kwargs that rebuild it."""


class CardSectionsFn(Protocol):
  def __call__(self, model: Any, metrics: Mapping[str, float], checks: Sequence[Check],
               siblings: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Extra card sections {title: markdown}: `metrics` and `checks` are this model's (its evaluate and verify).
    `siblings` maps each other shipped variant's name to its record
    {"metrics": {...}, "checks": [{"name", "passed", "value", "bound", "detail"}, ...]}, read from its manifest by
    the caller (`zoo.hub.shipped_records`): model code never reads the hub or sibling checkpoints."""


class Learner(Protocol):
  """A training loop that makes its own data (reinforcement learning), driven by the trainer (`python -m train`).

  The trainer owns the iteration count, resume, the orbax checkpoints, the metrics log, the evaluation schedule and
  the export; the learner owns the algorithm. An exact resume after a kill needs nothing but the state of the graph
  nodes `checkpointed()` returns after `iteration(k - 1)`: a learner derives its randomness from (config seed, k).
  `eval_data` is what the family's `evaluate(model, eval_data)` takes (for an RL family: the evaluation episodes'
  settings, not a dataset split).
  """

  model: Any
  eval_data: Any

  def checkpointed(self) -> dict[str, Any]:
    """{name: nnx graph node} (the model, its optimizers, ...) whose `nnx.state` is everything that changes."""

  def iteration(self, k: int) -> dict[str, float]:
    """Iteration k = 0, 1, ...: collect experience and update; returns its metrics (finite numbers)."""


class LearnerFn(Protocol):
  def __call__(self, model: Any, config: Any) -> Learner:
    """The learner of a freshly built `model` for the run's `config` (an ml_collections ConfigDict)."""


@dataclasses.dataclass(frozen=True)
class Family:
  """What the zoo needs to know of a model family.

  Attributes:
    name: the family's short name (its package's name).
    module: the `nnx.Module` class; called as `module(**kwargs, rngs=rngs)`.
    loss, evaluate, verify, plot, demo, export, card_sections: the hooks (see their Protocols above). Without a
      `demo`, `zoo run` evaluates on the test split and plots.
    measure: checks measured by running the model where one run takes minutes (an RL policy's episodes):
      `zoo verify` adds them to `verify`'s checks; the trainer's export records `verify`'s alone.
    learner: for a family that generates its own data (RL): the trainer runs `learner(model, config)`'s
      iterations instead of minibatches of a dataset through `loss` (see `Learner`).
    paper: citation of the paper the family follows.
    x64: the family computes in float64; the zoo builds, trains, evaluates and verifies it in `precision()`.
    compute_dtypes: the trainer's `compute_dtype` values the family takes. "bfloat16" (mixed precision) needs every
      layer to compute in the `dtype` its `dtype` attribute names (flax's Conv, Linear, BatchNorm; the zoo's
      `SpectralOperator`), set by `zoo.nn.precision.compute_view`; weights, optimizer state and loss stay float32.
  """

  name: str
  module: type[nnx.Module]
  loss: LossFn
  evaluate: EvaluateFn
  verify: VerifyFn
  plot: PlotFn | None = None
  demo: DemoFn | None = None
  export: ExportFn | None = None
  card_sections: CardSectionsFn | None = None
  measure: VerifyFn | None = None
  learner: LearnerFn | None = None
  paper: str = ""
  x64: bool = False
  compute_dtypes: tuple[str, ...] = ("float32",)

  def precision(self) -> contextlib.AbstractContextManager:
    """Context in which this family's arrays live (float64 where `x64`)."""
    return float64_scope(self.x64)


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
  license: str = "apache-2.0"
  deviations: str = ""
  reference: dict[str, str] = dataclasses.field(default_factory=dict)

  @property
  def pretrained(self) -> pins.Pin | None:
    """Where the shipped weights live and the manifest sha256 that pins them (from `checkpoints/pins.json`)."""
    return pins.get(self.name)

  def build(self, seed: int = 0, **overrides: Any) -> nnx.Module:
    """A freshly initialised module (random weights from `seed`): operation by operation (`construct`), or, with
    `ZOO_COMPILED_INIT=1`, under one compiled program (`zoo.compiled_init`, bit for bit the same weights). Eager
    is the default because it is the faster on CPU, measured in benchmarks/results/first_calls.md: its small
    programs are shared by every model and load quickly from the persistent cache, where one program per variant
    takes 2-2.5x the CPU to compile and 0-55% more to trace, lower and load."""
    import os  # pylint: disable=import-outside-toplevel

    if os.environ.get("ZOO_COMPILED_INIT", "").strip().lower() not in {"1", "true", "on", "yes"}:
      return self.construct(seed, **overrides)
    from zoo import compiled_init  # pylint: disable=import-outside-toplevel

    with self.family.precision():
      return compiled_init.build(self.family.module, {**self.kwargs, **overrides}, seed)

  def construct(self, seed: int = 0, **overrides: Any) -> nnx.Module:
    """The module built operation by operation (eager JAX): `build`'s default, and its reference."""
    from flax import nnx  # pylint: disable=import-outside-toplevel

    with self.family.precision():
      return self.family.module(**{**self.kwargs, **overrides}, rngs=nnx.Rngs(seed))

  def abstract(self, **overrides: Any) -> nnx.Module:
    """The module as shapes and dtypes only (`nnx.eval_shape`), for restoring into. Built in
    `zoo.nn.init.shapes_only_build()`: value-only initialisation work (k-means, rotations) is not even traced."""
    from flax import nnx  # pylint: disable=import-outside-toplevel

    from zoo.nn import init  # pylint: disable=import-outside-toplevel

    with self.family.precision(), init.shapes_only_build():
      return nnx.eval_shape(lambda: self.construct(0, **overrides))

  def as_dict(self) -> dict[str, Any]:
    """A JSON-ready record of the spec (what `zoo info` prints and the manifest stores)."""
    return with_pin(self.static_dict())

  def static_dict(self) -> dict[str, Any]:
    """`as_dict` without the pretrained pin (which is data in pins.json): what the registry's index caches."""
    return {
        "name": self.name,
        "family": self.family.name,
        "model_kwargs": jsonable(self.kwargs),
        "dataset": self.dataset,
        "input_shape": list(self.input_shape),
        "guarantee": self.guarantee,
        "description": self.description,
        "tags": list(self.tags),
        "license": self.license,
        "paper": self.family.paper,
        "deviations": self.deviations,
        "reference": dict(self.reference),
        "float64": self.family.x64,
    }


@dataclasses.dataclass(frozen=True)
class Provenance:
  """What a module was made from, carried on the module itself (`model.zoo_provenance`).

  `zoo.create` and `zoo.load` set it; `zoo.quantize` updates it; `push_to_hub`, `verify` and the CLI read it.
  Stored as JSON text so the module's graph definition stays hashable.

  Attributes:
    name: the registered variant the module instantiates.
    kwargs_json: the keyword arguments it was built with (JSON).
    source: where it came from ("create(seed=0)", "embedded /path", "hf://ORG/REPO@REV", "local directory D").
    manifest_json: the manifest of the checkpoint it was loaded from (JSON), "" for a freshly created one.
  """

  name: str
  kwargs_json: str
  source: str
  manifest_json: str = ""

  @property
  def kwargs(self) -> dict[str, Any]:
    import json  # pylint: disable=import-outside-toplevel
    return json.loads(self.kwargs_json)

  @property
  def manifest(self) -> dict[str, Any] | None:
    import json  # pylint: disable=import-outside-toplevel
    return json.loads(self.manifest_json) if self.manifest_json else None

  @classmethod
  def make(cls, name: str, kwargs: Mapping[str, Any], source: str,
           manifest: Mapping[str, Any] | None = None) -> "Provenance":
    import json  # pylint: disable=import-outside-toplevel
    canonical = lambda d: json.dumps(jsonable(dict(d)), sort_keys=True)  # noqa: E731
    return cls(name, canonical(kwargs), source, canonical(manifest) if manifest else "")

  def with_kwargs(self, **updates: Any) -> "Provenance":
    """The same provenance with `updates` merged into the kwargs (e.g. after quantization)."""
    return Provenance.make(self.name, {**self.kwargs, **updates}, self.source, self.manifest)


PROVENANCE_ATTR = "zoo_provenance"


def provenance(model: Any) -> Provenance | None:
  """The provenance `zoo.create` / `zoo.load` attached to `model`, or None for a module built otherwise."""
  value = getattr(model, PROVENANCE_ATTR, None)
  return value if isinstance(value, Provenance) else None


def set_provenance(model: nnx.Module, value: Provenance) -> nnx.Module:
  setattr(model, PROVENANCE_ATTR, value)
  return model


def with_pin(record: dict[str, Any]) -> dict[str, Any]:
  """A spec record with its pretrained reference and pinned manifest sha256 (read from pins.json now)."""
  pin = pins.get(record["name"])
  out = dict(record)
  keys = list(out)
  at = keys.index("tags") + 1 if "tags" in keys else len(keys)
  items = list(out.items())
  items[at:at] = [("pretrained", pin.uri if pin else None), ("manifest_sha256", pin.sha256 if pin else None)]
  return dict(items)


# --- registration and lookup --------------------------------------------------------------------------------

_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    family: Family,
    *,
    dataset: str,
    input_shape: tuple[int, ...],
    guarantee: str,
    tags: tuple[str, ...] = (),
    license: str = "apache-2.0",
    deviations: str = "",
    reference: dict[str, str] | None = None,
    description: str | None = None,
) -> Callable[[Callable[[], dict[str, Any]]], Callable[[], dict[str, Any]]]:
  """Registers the decorated function's keyword arguments as the variant `name` of `family`.

  `reference` maps a metric name to the paper's (or official code's) number for it, as text with its source;
  cards show it beside the measured value. `description` defaults to the function's docstring.
  """

  def decorator(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    if name in _REGISTRY:
      raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = ModelSpec(
        name=name, family=family, kwargs=dict(fn()), dataset=dataset,
        input_shape=tuple(input_shape), guarantee=guarantee,
        description=(description if description is not None else fn.__doc__ or "").strip(), tags=tuple(tags),
        license=license, deviations=deviations.strip(), reference=dict(reference or {}))
    return fn

  return decorator


def register_variant(name: str, family: Family, kwargs: Mapping[str, Any], *, description: str,
                     **fields: Any) -> None:
  """`register` for variants generated in a loop: `kwargs` are the module's arguments."""
  register(name, family, description=description, **fields)(lambda: dict(kwargs))


@functools.cache
def _import_families() -> None:
  """Imports every family package once (each registers its variants on import)."""
  import zoo.models  # pylint: disable=import-outside-toplevel

  for info in pkgutil.iter_modules(zoo.models.__path__):
    importlib.import_module(f"zoo.models.{info.name}")


def _registry() -> dict[str, ModelSpec]:
  _import_families()  # also when one family was imported directly first
  return _REGISTRY


def get_spec(name: str) -> ModelSpec:
  """The spec of `name`; `UnknownModelError` (with close matches) when there is none."""
  reg = _registry()
  if name not in reg:
    raise errors.UnknownModelError(name, sorted(reg))
  return reg[name]


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
  """Registered names matching a shell wildcard; with `pretrained=True` only those with weights."""
  names = index()
  return sorted(n for n in names
                if fnmatch.fnmatchcase(n, pattern) and (not pretrained or pins.get(n) is not None))


INDEX_SOURCES = ("registry.py", "models/**/*.py", "models/**/*.md")  # what a spec record is made of
PACKAGE_SOURCES = ("**/*.py",)  # all of the package's code (`zoo.init_cache` keys on it)


def sources_digest(patterns: tuple[str, ...] = INDEX_SOURCES) -> str:
  """sha256 of the zoo package's files matching `patterns` (globs relative to the package), each by its relative
  path and bytes. The default, everything a spec record is made of (this file and every .py / .md file of the
  families), keys the registry's index; `PACKAGE_SOURCES` keys `zoo.init_cache`'s initial states."""
  import hashlib  # pylint: disable=import-outside-toplevel

  root = pathlib.Path(__file__).resolve().parent
  h = hashlib.sha256(b"nnx-zoo registry index v1\0")
  for path in sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()}):
    h.update(path.relative_to(root).as_posix().encode() + b"\0")
    h.update(path.read_bytes() + b"\0")
  return h.hexdigest()


def index() -> dict[str, dict[str, Any]]:
  """{name: spec record without the pin} of every registered variant, without importing any family when the
  cached index (`zoo.cache.cache_dir()/registry-DIGEST.json`, keyed by the sha256 of the registry's sources) is
  current; else the families are imported and the index is (re)written. In a process that has already imported
  the families, the live registry is used (it may hold variants registered at run time)."""
  import json  # pylint: disable=import-outside-toplevel
  import os  # pylint: disable=import-outside-toplevel

  from zoo import cache  # pylint: disable=import-outside-toplevel

  if _import_families.cache_info().currsize:  # the families are loaded: the live registry is the truth
    return {s.name: s.static_dict() for s in specs()}
  digest = sources_digest()
  path = cache.cache_dir() / f"registry-{digest[:24]}.json"
  try:
    data = json.loads(path.read_text())
    if data.get("digest") == digest and isinstance(data.get("models"), dict):
      return data["models"]
  except (OSError, ValueError):
    pass
  records = {s.name: s.static_dict() for s in specs()}
  try:  # best effort: a read-only cache only costs speed
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"digest": digest, "models": records}, ensure_ascii=False))
    tmp.replace(path)
  except OSError:
    pass
  return records


def record(name: str) -> dict[str, Any]:
  """`get_spec(name).as_dict()` from the index (no model code imported); `UnknownModelError` with close matches."""
  records = index()
  if name not in records:
    raise errors.UnknownModelError(name, sorted(records))
  return with_pin(records[name])


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
  if shape[0] == 0:
    raise errors.InputShapeError(f"{name} has shape {shape}: an empty batch. Pass at least one example.")
  dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
  if not np.issubdtype(dtype, np.floating):
    raise errors.InputShapeError(f"{name} has dtype {dtype}; this model takes floating-point input.")


def check_steps(steps: Any, name: str = "steps") -> int:
  """`steps` as an int ≥ 0; `InvalidArgumentError` for a negative or non-integer count."""
  if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
    raise errors.InvalidArgumentError(f"{name} must be a whole number ≥ 0; got {steps!r}.")
  return int(steps)


def jsonable(value: Any) -> Any:
  """`value` with tuples as lists, numpy scalars as Python numbers and keys as strings (for JSON)."""
  if isinstance(value, Mapping):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [jsonable(v) for v in value]
  if isinstance(value, (np.generic,)):
    return value.item()
  return value
