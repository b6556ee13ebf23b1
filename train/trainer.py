"""The generic trainer: any registered zoo model, its family's loss, optax, orbax, data-parallel sharding.

Order of a run (`train_and_evaluate`):
  1. Data: the config's dataset splits as numpy arrays (zoo.data, TFDS array_record, offline).
  2. Model and optimizer from the config seed: `spec.build(seed)`, `nnx.Optimizer(model, tx, wrt=nnx.Param)`.
  3. Resume or initialise: if WORKDIR/checkpoints has a step, restore model + optimizer state + step from the
     latest one (orbax CheckpointManager) and continue exactly where it stopped.
  4. Train: epochs of batches in an order that depends only on (seed, epoch); a jitted step
     (`nnx.jit`, `nnx.value_and_grad`) with the batch sharded over every device on the "data" axis and the
     state replicated; metrics to WORKDIR/metrics.jsonl and absl logging; orbax saves every
     `checkpoint_every_steps` and at each evaluation, keeping the latest and the best (by `best_metric`).
  5. Export: the best checkpoint's model, evaluated, verified and plotted, as a zoo checkpoint with its card
     in WORKDIR/export (ready for `zoo ship` or `zoo push`).

A family that makes its own data (reinforcement learning) gives a `learner` hook (`zoo.registry.Learner`): the
trainer then runs the learner's iterations instead of steps 1 and 4 (`_train_learner`), and keeps resume, orbax
checkpoints, the metrics log, evaluation and export as above.

Many processes (`train.distributed`, README "Training on many hosts"): the mesh spans every process's devices;
each process reads only its rows of each global batch and feeds them with `jax.make_array_from_process_local_data`;
orbax saves and restores collectively, with explicit shardings on this run's mesh (so a checkpoint resumes on any
topology); process 0 alone evaluates (on its own copy of the weights, metrics broadcast to all), logs and exports.

Seeds side by side (`num_seeds = S > 1`, `train.seeds`): the model and optimizer hold S stacked copies (seed
config.seed + i, each built and batched as its own one-seed run); the train step is `nnx.vmap`ped over them and the
batches are (S, batch, ...). Evaluation runs per seed; the best checkpoint is the one with the best mean
`best_metric`; the export is the seed with the best `best_metric` there, its card and WORKDIR/result.json carry
every seed's metrics and their mean ± std.

Mixed precision (`compute_dtype = "bfloat16"`, image classifiers): the loss sees `zoo.nn.precision.compute_view`
of the model (layers compute in bfloat16); weights, gradients, optimizer state and the loss stay float32.
Evaluation, verification and the export compute in float32, as `zoo.load` gives the model to users.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import pathlib
import tempfile
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

import zoo.data
from train import distributed, seeds
from zoo import checkpoint, errors, registry


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int,
                   steps_per_epoch: int) -> optax.GradientTransformation:
  """optax.<name>(learning_rate=schedule, **kwargs), after optional clipping and coupled weight decay."""
  if cfg.schedule == "constant":
    lr = cfg.lr
  elif cfg.schedule == "cosine":
    lr = optax.cosine_decay_schedule(cfg.lr, max(total_steps, 1))
  elif cfg.schedule == "step":
    every = cfg.step_epochs * steps_per_epoch
    lr = optax.piecewise_constant_schedule(
        cfg.lr, {k * every: cfg.step_factor for k in range(1, total_steps // max(every, 1) + 1)})
  else:
    raise ValueError(f"optimizer.schedule {cfg.schedule!r}: use 'constant', 'cosine' or 'step'.")
  factory = getattr(optax, cfg.name, None)
  if factory is None:
    raise ValueError(f"optimizer.name {cfg.name!r} is not an optax optimizer (adam, adamw, sgd, rmsprop, ...).")
  parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip > 0 else []
  parts += [optax.add_decayed_weights(cfg.weight_decay)] if cfg.weight_decay > 0 else []
  return optax.chain(*parts, factory(learning_rate=lr, **cfg.kwargs.to_dict()))


def _truncate(data: dict[str, np.ndarray], limit: int) -> dict[str, np.ndarray]:
  return {k: v[:limit] for k, v in data.items()} if limit else data


class TrainExamples:
  """The training split as this process reads it: the rows `rows` of every global batch (its devices' part).

  Batches are drawn in an order that depends only on (seed, epoch) (`batch_order`), never on the number of
  processes or devices, so every topology trains on the same global batches. With one process the split is read
  once and kept; with several, each process reads, per epoch, only the records its rows of that epoch's batches
  need (1/num_processes of the examples) from the random-access array_record source, as grain's index sampler does
  when it shards a global permutation by process."""

  def __init__(self, dataset: str, split: str, limit: int, rows: slice):
    self.source = zoo.data.source(dataset, split)
    self.num_examples = min(len(self.source), limit) if limit else len(self.source)
    self.rows = rows
    self.whole = zoo.data.gather(self.source, range(self.num_examples)) if jax.process_count() == 1 else None
    self._table: dict[str, np.ndarray] = {}
    self._positions = np.zeros((0, 0), np.int64)

  def start_epoch(self, order: np.ndarray) -> None:
    """order: (steps, batch_size) global example indices of the epoch's batches, or (steps, seeds, batch_size) for
    seeds side by side (each seed its own order)."""
    local = order[..., self.rows]
    if self.whole is not None:
      self._table, self._positions = self.whole, local
    else:
      needed = np.unique(local)
      self._table, self._positions = zoo.data.gather(self.source, needed), np.searchsorted(needed, local)

  def batch(self, i: int) -> dict[str, np.ndarray]:
    """This process's rows of the epoch's batch `i`: {feature: ([seeds,] rows, ...)}."""
    return {k: v[self._positions[i]] for k, v in self._table.items()}

  def epoch(self) -> dict[str, np.ndarray]:
    """This process's rows of every batch of the epoch: {feature: (steps, [seeds,] rows, ...)}."""
    return {k: v[self._positions] for k, v in self._table.items()}


def mixed_precision(loss: Callable[..., tuple[jax.Array, dict]], dtype: str) -> Callable[..., tuple[jax.Array, dict]]:
  """`loss` computed by the model's layers in `dtype` (`zoo.nn.precision.compute_view`: bfloat16 compute, float32
  weights, so float32 gradients and optimizer state); the loss value and aux in float32."""
  from zoo.nn import precision  # pylint: disable=import-outside-toplevel

  def low_precision_loss(model: nnx.Module, batch: dict) -> tuple[jax.Array, dict]:
    value, aux = loss(precision.compute_view(model, dtype), batch)
    return value.astype(jnp.float32), {k: jnp.asarray(v, jnp.float32) for k, v in aux.items()}

  return low_precision_loss


def _gradient_step(loss: Callable[..., tuple[jax.Array, dict]], num_seeds: int) -> Callable[..., tuple[jax.Array, dict]]:
  """`step(optimizer, model, batch) -> (loss, aux)` (not jitted); with num_seeds > 1 `nnx.vmap`ped over the leading
  axis of the stacked optimizer, model and batch (`train.seeds`): each seed its own gradient step."""

  def step(optimizer: nnx.Optimizer, model: nnx.Module, batch: dict) -> tuple[jax.Array, dict]:
    (value, aux), grads = nnx.value_and_grad(loss, has_aux=True)(model, batch)
    optimizer.update(model, grads)
    return value, aux

  return nnx.vmap(step, in_axes=0, out_axes=0) if num_seeds > 1 else step


def make_train_step(loss: Callable[..., tuple[jax.Array, dict]], num_seeds: int = 1
                    ) -> Callable[..., tuple[jax.Array, dict]]:
  """`step(optimizer, model, batch) -> (loss, aux)`: one jitted gradient step of a family loss
  (`nnx.value_and_grad`, then `optimizer.update`); the trainer's step, also timed by the benchmarks. With
  num_seeds = S > 1: stacked optimizer and model (`train.seeds.stack`), batch {feature: (S, batch, ...)}, loss (S,)."""
  return nnx.jit(_gradient_step(loss, num_seeds))


def make_train_epoch(loss: Callable[..., tuple[jax.Array, dict]], num_seeds: int = 1
                     ) -> Callable[..., tuple[jax.Array, dict]]:
  """`epoch(optimizer, model, batches) -> (losses (steps,), aux {name: (steps,)})`: every step of an epoch as one
  compiled program (`nnx.scan` of `make_train_step`'s body over the batches' leading axis), the model and
  optimizer state donated (updated in place). One dispatch per epoch instead of one per step. With num_seeds =
  S > 1: batches {feature: (steps, S, batch, ...)}, losses (steps, S)."""
  step = _gradient_step(loss, num_seeds)

  @nnx.jit(donate_argnums=(0, 1))
  def train_epoch(optimizer: nnx.Optimizer, model: nnx.Module, batches: dict) -> tuple[jax.Array, dict]:
    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0))
    def body(carry, batch):
      opt, mdl = carry
      value, aux = step(opt, mdl, batch)
      return (opt, mdl), (value, aux)

    _, (values, aux) = body((optimizer, model), batches)
    return values, aux

  return train_epoch


def batch_order(seed: int, epoch: int, num_examples: int, batch_size: int) -> np.ndarray:
  """Indices of the epoch's batches, (steps_per_epoch, batch_size): a function of (seed, epoch) only."""
  perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
  steps = num_examples // batch_size
  return perm[: steps * batch_size].reshape(steps, batch_size)


class _Run:
  """State of one training run: model, optimizer, sharding, checkpoint manager."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: pathlib.Path):
    self.config = config
    self.workdir = workdir
    self.spec = registry.get_spec(config.model)
    self.family = self.spec.family
    devices = jax.devices()  # every process's devices, in process order
    if config.batch_size % len(devices):
      raise ValueError(f"batch_size {config.batch_size} must be divisible by the {len(devices)} devices.")
    self.mesh = jax.make_mesh((len(devices),), ("data",), devices=devices,
                              axis_types=(jax.sharding.AxisType.Auto,))
    self.seeds = seeds.of(config)
    self.stacked = len(self.seeds) > 1  # seeds side by side: a leading seed axis on the state and the batches
    lead = (None,) if self.stacked else ()
    self.data_sharding = jax.NamedSharding(self.mesh, jax.P("data"))
    self.batch_sharding = jax.NamedSharding(self.mesh, jax.P(*lead, "data"))  # ([seeds,] batch, ...)
    self.epoch_sharding = jax.NamedSharding(self.mesh, jax.P(None, *lead, "data"))  # (steps, [seeds,] batch, ...)
    self.replicated = jax.NamedSharding(self.mesh, jax.P())

    # Process 0 prepares the dataset first (a shared ZOO_DATA_DIR must not be written by two processes at once);
    # the others then find it prepared, or prepare their own copy when their data directory is not shared.
    if distributed.is_primary():
      zoo.data.prepare(config.dataset)
    distributed.barrier("data-prepared", timeout_s=float(os.environ.get("ZOO_DATA_TIMEOUT") or 3600))
    self.train_data = TrainExamples(config.dataset, config.train_split, config.max_train_examples,
                                    distributed.local_rows(self.data_sharding, config.batch_size))
    # Evaluation runs in process 0 alone, on its own copy of the weights: only it reads the eval split.
    self.eval_data = (_truncate(zoo.data.load(config.dataset, config.eval_split), config.max_eval_examples)
                      if distributed.is_primary() else None)
    self.num_train = self.train_data.num_examples
    if config.batch_size > self.num_train:
      raise ValueError(f"batch_size {config.batch_size} exceeds the {self.num_train} training examples.")
    self.steps_per_epoch = self.num_train // config.batch_size
    self.total_steps = self.steps_per_epoch * config.epochs

    self.model_kwargs = {**self.spec.kwargs, **config.model_overrides.to_dict()}
    tx = make_optimizer(config.optimizer, self.total_steps, self.steps_per_epoch)
    models = [self.spec.build(seed, **config.model_overrides.to_dict()) for seed in self.seeds]
    optimizers = [nnx.Optimizer(model, tx, wrt=nnx.Param) for model in models]
    self.model, self.optimizer = ((seeds.stack(models), seeds.stack(optimizers)) if self.stacked
                                  else (models[0], optimizers[0]))
    self._replicate()

    sign = -1.0 if config.best_mode == "min" else 1.0
    policy = ocp.checkpoint_managers.AnyPreservationPolicy([
        ocp.checkpoint_managers.LatestN(1),
        ocp.checkpoint_managers.BestN(get_metric_fn=lambda m: sign * m[config.best_metric], n=1,
                                      keep_checkpoints_without_metrics=False)])
    self.manager = ocp.CheckpointManager(
        (workdir / "checkpoints").absolute(),
        options=ocp.CheckpointManagerOptions(
            preservation_policy=policy, enable_async_checkpointing=False, create=True,
            best_fn=lambda m: m[config.best_metric], best_mode=config.best_mode))

  # -- checkpoint state: model + optimizer (incl. step and PRNG state) ------------------------------

  def _states(self) -> dict[str, nnx.State]:
    return {"model": nnx.state(self.model), "optimizer": nnx.state(self.optimizer)}

  def _replicate(self) -> None:
    """Model and optimizer state replicated over the global mesh (every process built the same values from the
    config seed, or restored the same checkpoint)."""
    for obj in (self.model, self.optimizer):
      nnx.update(obj, jax.tree.map(self._replicated_leaf, nnx.state(obj)))

  def _replicated_leaf(self, x: Any) -> Any:
    if isinstance(x, jax.Array) and x.sharding == self.replicated:
      return x
    if jax.process_count() == 1:
      return jax.device_put(x, self.replicated)
    local = distributed.local_copy(x)  # this process's value; the same on every process
    if checkpoint.is_key(local):
      data = jax.random.key_data(local)
      return jax.random.wrap_key_data(self._replicated_leaf(data), impl=jax.random.key_impl(local))
    host = np.asarray(local)
    return jax.make_array_from_callback(host.shape, self.replicated, lambda index: host[index])

  def local_models(self) -> list[nnx.Module]:
    """Each seed's model as this process's own copy on its first local device: what evaluation, verification,
    plots and the export use (no collective, so process 0 runs them alone; the same arrays on any topology)."""
    graphdef, state = nnx.split(self.model)
    local = nnx.merge(graphdef, distributed.local_copy(state))
    return seeds.unstack(local) if self.stacked else [local]

  def save(self, step: int, metrics: dict[str, float] | None) -> None:
    tree = {k: checkpoint.storable(v.to_pure_dict()) for k, v in self._states().items()}
    self.manager.save(step, args=ocp.args.StandardSave(tree), metrics=metrics, force=True)

  def restore(self, step: int) -> None:
    """Model weights, optimizer moments and step, PRNG state: everything a bit-exact resume needs."""
    states = self._states()
    abstract = {k: v.to_pure_dict() for k, v in states.items()}
    # Explicit shardings on this run's mesh: a checkpoint written by any number of processes and devices restores
    # onto any other (orbax would otherwise take the saving run's topology from the checkpoint's metadata).
    target = checkpoint.storable_target(abstract, self.replicated)
    restored = self.manager.restore(step, args=ocp.args.StandardRestore(target))
    restored = checkpoint.from_storable(restored, abstract)
    for key, obj in (("model", self.model), ("optimizer", self.optimizer)):
      nnx.replace_by_pure_dict(states[key], restored[key])
      nnx.update(obj, states[key])

  def init_from(self, source: str) -> None:
    """Starts from the weights of a zoo model (matching paths and shapes; through quantization wrappers)."""
    from zoo import hub, quant  # pylint: disable=import-outside-toplevel

    models = seeds.unstack(self.model) if self.stacked else [self.model]
    shipped = hub.load(source)
    copied = [quant.transfer(shipped, model) for model in models][0]  # every seed starts from these weights
    if not copied:
      raise ValueError(f"init_from={source!r}: no variable of it matches {self.config.model} (paths and shapes).")
    if self.stacked:
      nnx.update(self.model, nnx.state(seeds.stack(models)))
    self._replicate()
    logging.info("Initialised %d variables from %s", len(copied), source)

  # -- the loop -----------------------------------------------------------------------------------

  def evaluate(self) -> list[dict[str, float]]:
    """Each seed's metrics (the family's evaluate), computed by process 0 on its own copy of the weights and sent
    to every process (each needs them to keep the same best checkpoint)."""
    out = None
    if distributed.is_primary():
      out = []
      for model in self.local_models():
        model.eval()
        out.append({k: float(v) for k, v in self.family.evaluate(model, self.eval_data).items()})
    return distributed.broadcast_json(out)


MAX_SEEDS = 1024
COMPUTE_DTYPES = ("float32", "bfloat16")  # config.compute_dtype; a family lists the ones it takes


def _field(config: Any, dotted: str) -> Any:
  value = config
  for part in dotted.split("."):
    value = value.get(part) if hasattr(value, "get") else None
  return value


def validate_config(config: ml_collections.ConfigDict, workdir: str | pathlib.Path | None = None) -> None:
  """Checks every field the trainer reads before any work; the first bad one raises `ConfigError` naming the
  field and what it accepts."""

  def bad(field: str, accepted: str) -> errors.ConfigError:
    return errors.ConfigError(field, f"config.{field} = {_field(config, field)!r}: {accepted} "
                                     f"(set it in the config file or with --config.{field}=...).")

  def number(field: str, low: float, high: float, *, integer: bool = False, low_open: bool = False) -> None:
    v = _field(config, field)
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(v, bool) or not isinstance(v, kind) or not math.isfinite(v) or v > high or (
        v <= low if low_open else v < low):
      fmt = lambda x: str(int(x)) if float(x).is_integer() else f"{x:g}"  # pylint: disable=unnecessary-lambda-assignment
      rng = f"{'(' if low_open else '['}{fmt(low)}, {fmt(high)}]"
      raise bad(field, f"must be a{'n integer' if integer else ' finite number'} in {rng}")

  if not isinstance(_field(config, "model"), str):
    raise bad("model", "must be a registered model name (zoo list)")
  spec = registry.get_spec(config.model)
  number("seed", 0, 2**32 - 1, integer=True)
  number("checkpoint_every_steps", 1, 1 << 30, integer=True)
  if spec.family.learner is not None:  # a family that makes its own data (RL): iterations of its learner
    number("iterations", 1, 1 << 30, integer=True)
    number("eval_every_steps", 0, 1 << 30, integer=True)
  else:
    for field in ("dataset", "train_split", "eval_split"):
      if not isinstance(_field(config, field), str) or not _field(config, field):
        raise bad(field, "must be a non-empty string")
    number("batch_size", 1, 1 << 20, integer=True)
    number("epochs", 1, 1 << 20, integer=True)
    number("optimizer.lr", 0, 10)  # 0 keeps the weights (a pure evaluation run from init_from)
    number("optimizer.weight_decay", 0, 10)
    number("optimizer.grad_clip", 0, 1e12)
    number("optimizer.step_factor", 0, 10, low_open=True)
    number("optimizer.step_epochs", 0, 1 << 20, integer=True)
    number("eval_every_epochs", 0, 1 << 20, integer=True)
    number("max_train_examples", 0, 1 << 40, integer=True)
    number("max_eval_examples", 0, 1 << 40, integer=True)
    if _field(config, "optimizer.schedule") not in ("constant", "cosine", "step"):
      raise bad("optimizer.schedule", "must be 'constant', 'cosine' or 'step'")
    if config.optimizer.schedule == "step" and config.optimizer.step_epochs < 1:
      raise bad("optimizer.step_epochs", "must be >= 1 with schedule 'step'")
    if not isinstance(_field(config, "optimizer.name"), str) or not callable(getattr(optax, config.optimizer.name, None)):
      raise bad("optimizer.name", "must name an optax optimizer (adam, adamw, sgd, rmsprop, ...)")
    if not isinstance(config.get("scan_epoch", False), bool):
      raise bad("scan_epoch", "must be True or False")
    if _field(config, "best_mode") not in ("min", "max"):
      raise bad("best_mode", "must be 'min' or 'max'")
    if not isinstance(_field(config, "best_metric"), str) or not config.best_metric:
      raise bad("best_metric", "must name a metric of the family's evaluate()")
  if "num_seeds" in config:  # configs written before it existed train one seed
    number("num_seeds", 1, MAX_SEEDS, integer=True)
  if config.get("num_seeds", 1) > 1 and spec.family.learner is not None:
    raise bad("num_seeds", f"must be 1 for {spec.family.name}: its learner trains one seed per run")
  if config.get("num_seeds", 1) > 1 and jax.process_count() > 1:
    raise bad("num_seeds", f"must be 1 in a run of several processes ({jax.process_count()} here): seeds side by "
                           f"side run in one process, on all of its devices; run one multi-process job per seed")
  compute_dtype = config.get("compute_dtype", "float32")
  if compute_dtype not in COMPUTE_DTYPES:
    raise bad("compute_dtype", f"must be one of {', '.join(map(repr, COMPUTE_DTYPES))}")
  if compute_dtype not in spec.family.compute_dtypes:
    if spec.family.x64:
      why = (f"{spec.family.name} computes in float64 (its guarantee holds to float64 round-off), so it has no "
             f"reduced-precision mode; keep 'float32' (which trains it in its own float64)")
    else:
      taking = sorted(f.name for f in {s.family for s in registry.specs()} if compute_dtype in f.compute_dtypes)
      why = (f"the {spec.family.name} family computes in float32 only (its layers take no compute dtype); "
             f"{compute_dtype!r} is for the families {', '.join(taking)}")
    raise bad("compute_dtype", f"{why}")
  overrides = config.model_overrides.to_dict() if hasattr(config.model_overrides, "to_dict") else None
  if not isinstance(overrides, dict):
    raise bad("model_overrides", "must be a mapping of model keyword arguments")
  problem = checkpoint.kwargs_problem(spec, overrides)
  if problem:
    raise errors.ConfigError(f"model_overrides.{problem[0]}",
                             f"config.model_overrides.{problem[0]} {problem[1]}.")
  if workdir is not None and pathlib.Path(workdir).exists() and not pathlib.Path(workdir).is_dir():
    raise errors.ConfigError("workdir", f"--workdir {workdir} is an existing file; give a directory.")


def _truncate_log(path: pathlib.Path, step: int) -> None:
  """Keeps the records of `path` (JSON lines) up to `step`; a torn last line is dropped too."""
  if not path.is_file():
    return
  kept = []
  for line in path.read_text().splitlines():
    try:
      record = json.loads(line)
    except ValueError:
      continue
    if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
      kept.append(line)
  tmp = path.with_name(f".{path.name}.tmp")
  tmp.write_text("".join(f"{line}\n" for line in kept))
  tmp.replace(path)


def export_checkpoint(model: nnx.Module, name: str, eval_data: dict[str, Any], metrics: dict[str, float],
                      directory: pathlib.Path, *, model_kwargs: dict[str, Any], config: dict[str, Any],
                      bookkeeping: dict[str, Any], sections: dict[str, str] | None = None
                      ) -> tuple[pathlib.Path, list[registry.Check]]:
  """Verifies `model` (its family's `verify`), adds the family's card sections (over `sections`) and plots, and
  saves it as a zoo checkpoint at `directory` with `metrics` and the run's `bookkeeping` values. What the trainer
  and `train.reexport` export. Returns (the checkpoint's path, the checks)."""
  family = registry.get_spec(name).family
  checks = list(family.verify(model))
  sections = dict(sections or {})
  if family.card_sections:
    from zoo import hub  # pylint: disable=import-outside-toplevel
    sections.update(family.card_sections(model, metrics, checks, hub.shipped_records(exclude=name)))
  with tempfile.TemporaryDirectory() as tmp:
    plots = list(family.plot(model, eval_data, pathlib.Path(tmp))) if family.plot else []
    path = checkpoint.save(model, directory, name=name, model_kwargs=model_kwargs, config=config,
                           metrics={**metrics, **bookkeeping}, checks=checks, plots=plots, card_sections=sections)
  return path, checks


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, Any]:
  """Trains `config.model` as configured, resuming from WORKDIR if it holds a checkpoint; returns the export's
  metrics (and its path under "export", and whether every recorded check passed under "checks_passed"); the same
  is written to WORKDIR/result.json.

  The config is validated first (`ConfigError` naming the field); a non-finite loss stops the run with
  `TrainingDivergedError` (no export)."""
  validate_config(config, workdir)
  from zoo import cache  # pylint: disable=import-outside-toplevel
  cache.enable_compilation_cache()  # a rerun or resume compiles nothing it compiled before
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if distributed.is_primary():
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
  spec = registry.get_spec(config.model)
  with spec.family.precision():
    result = _train_learner(config, workdir) if spec.family.learner else _train(config, workdir)
  if distributed.is_primary():  # for programs; written whole (a reader never sees half a file)
    tmp = workdir / ".result.json.tmp"
    tmp.write_text(json.dumps(result, default=str, indent=2) + "\n")
    tmp.replace(workdir / "result.json")
  return result


def metric_names(config: ml_collections.ConfigDict, family: Any, run: Any) -> list[str]:
  """The keys of `family.evaluate` (sorted), from an evaluation of the untrained model on `batch_size` examples.

  Remembered in the zoo's cache (`zoo.cache.cache_dir()/metric-names.json`) under the sha256 of the evaluating
  module's source, the model, dataset, eval split and probe size: a second run of the same config skips the probe,
  whose programs (rollouts of another shape than the final evaluation's) cost a warm run much of its tracing."""
  import hashlib  # pylint: disable=import-outside-toplevel
  import inspect  # pylint: disable=import-outside-toplevel

  from zoo import cache  # pylint: disable=import-outside-toplevel

  try:
    source = pathlib.Path(inspect.getsourcefile(family.evaluate)).read_bytes()
  except (TypeError, OSError):
    source = None  # no source to key on (e.g. defined interactively): probe every time
  rows = {k: v[: min(len(v), config.batch_size)] for k, v in run.eval_data.items()}
  path = cache.cache_dir() / "metric-names.json"
  key = None
  if source is not None:
    shapes = sorted((k, list(np.shape(v))) for k, v in rows.items())
    key = hashlib.sha256(json.dumps([hashlib.sha256(source).hexdigest(), family.name, config.model,
                                     config.dataset, config.eval_split, shapes, config.model_overrides.to_dict(),
                                     jax.__version__], sort_keys=True, default=str).encode()).hexdigest()
    try:
      known = json.loads(path.read_text())
      if isinstance(known.get(key), list):
        return known[key]
    except (OSError, ValueError, AttributeError):
      pass
  model = run.local_models()[0]
  model.eval()
  names = sorted(family.evaluate(model, rows))
  if key is not None:
    try:
      path.parent.mkdir(parents=True, exist_ok=True)
      try:
        known = json.loads(path.read_text())
      except (OSError, ValueError):
        known = {}
      known = {**(known if isinstance(known, dict) else {}), key: names}
      tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
      tmp.write_text(json.dumps(known))
      tmp.replace(path)  # whole or not at all
    except OSError:
      pass  # an unwritable cache only costs the probe next time
  return names


def _train(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
  from tqdm.auto import tqdm  # pylint: disable=import-outside-toplevel

  run = _Run(config, workdir)
  family = run.family
  num_seeds = len(run.seeds)
  loss = family.loss
  if config.get("compute_dtype", "float32") != "float32":
    loss = mixed_precision(loss, config.compute_dtype)
  train_step = make_train_step(loss, num_seeds=num_seeds) if run.stacked else make_train_step(loss)
  train_epoch = make_train_epoch(loss, num_seeds=num_seeds) if config.get("scan_epoch") else None
  probe = None  # best_metric must be one of evaluate()'s keys: checked on a few examples, before training
  if distributed.is_primary():
    probe = metric_names(config, family, run)
  probe = distributed.broadcast_json(probe)  # every process stops alike on a bad config
  if config.best_metric not in probe:
    raise errors.ConfigError("best_metric", f"config.best_metric = {config.best_metric!r} is not a metric of "
                                            f"{family.name}'s evaluate(); choose one of {sorted(probe)}.")

  # 3. resume or initialise
  step = 0
  latest = run.manager.latest_step()
  if latest is not None:
    run.restore(latest)
    step = latest
    logging.info("Resumed %s from step %d in %s", config.model, step, workdir)
  else:
    logging.info("Training %s from scratch (seed%s %s) on %d device(s) in %d process(es)", config.model,
                 "s" if run.stacked else "", ", ".join(map(str, run.seeds)), len(jax.devices()), jax.process_count())
    if config.get("init_from"):
      run.init_from(config.init_from)

  # 4. train
  run.model.train()
  # the step with its optimizer and model bound: NNX walks their graph once here instead of at every call (1-1.5 ms
  # a step on these small models); their arrays still change in place, their structure does not until the export
  train_step = nnx.cached_partial(train_step, run.optimizer, run.model)
  primary = distributed.is_primary()  # process 0 alone writes the log, the progress bar and the export
  log_path = workdir / "metrics.jsonl"
  if primary:
    _truncate_log(log_path, step)  # a resume repeats the steps after its checkpoint: drop their old records
  eval_every = max(1, config.eval_every_epochs) * run.steps_per_epoch
  batch_shape = (num_seeds, config.batch_size) if run.stacked else (config.batch_size,)
  start = time.perf_counter()
  with open(log_path if primary else os.devnull, "a") as log, tqdm(
      total=run.total_steps, initial=step, desc=config.model, disable=None if primary else True,
      mininterval=2.0) as bar:
    def finish(step: int, epoch: int, loss: Any, aux: dict, may_save: bool = True, save: bool = False) -> None:
      """After `step`: divergence check, the log record, evaluation and checkpoint when due. `loss` and `aux`'s
      values are scalars, or one per seed side by side (S,): the record then holds their means and, under
      "seeds", every seed's values."""
      bar.update(1)
      losses = np.atleast_1d(np.asarray(loss, np.float64))
      if not np.all(np.isfinite(losses)):
        which = f" of seed {', '.join(str(run.seeds[i]) for i in np.flatnonzero(~np.isfinite(losses)))}" \
            if run.stacked else ""
        raise errors.TrainingDivergedError(
            f"{config.model}: the loss{which} is {losses[~np.isfinite(losses)][0]} at step {step} (epoch {epoch}); "
            f"training stopped and nothing was exported. Lower config.optimizer.lr (now {config.optimizer.lr}) or "
            f"set config.optimizer.grad_clip.")
      record: dict[str, Any] = {"step": step, "epoch": epoch, "loss": float(losses.mean()),
                                **{k: float(np.mean(v)) for k, v in aux.items()}}
      if run.stacked:
        record["seeds"] = {"seed": run.seeds, "loss": losses.tolist(),
                           **{k: np.asarray(v, np.float64).tolist() for k, v in aux.items()}}
      metrics = None
      if step % eval_every == 0 or step == run.total_steps:
        per_seed = run.evaluate()
        metrics = {k: float(np.mean([m[k] for m in per_seed])) for k in per_seed[0]}  # one seed: its metrics
        record.update({f"eval/{k}": v for k, v in metrics.items()})
        if run.stacked:
          record["eval_seeds"] = {k: [m[k] for m in per_seed] for k in per_seed[0]}
        record["seconds"] = time.perf_counter() - start
        logging.info("step %d epoch %d loss %.4g %s%s", step, epoch, record["loss"],
                     " ".join(f"{k}={v:.4g}" for k, v in metrics.items()),
                     f" (means over {num_seeds} seeds)" if run.stacked else "")
      log.write(json.dumps(record) + "\n")
      log.flush()
      if may_save and (save or metrics is not None or step % config.checkpoint_every_steps == 0):
        run.save(step, metrics)  # the best checkpoint: by the seeds' mean best_metric

    for epoch in range(step // run.steps_per_epoch, config.epochs):
      orders = [batch_order(seed, epoch, run.num_train, config.batch_size) for seed in run.seeds]
      run.train_data.start_epoch(np.stack(orders, axis=1) if run.stacked else orders[0])  # (steps, [S,] batch)
      first = step - epoch * run.steps_per_epoch
      if train_epoch is not None and first == 0:  # the whole epoch as one compiled scan
        rows = run.train_data.epoch()
        batches = {k: jax.make_array_from_process_local_data(
            run.epoch_sharding, v, (run.steps_per_epoch, *batch_shape, *v.shape[len(batch_shape) + 1:]))
            for k, v in rows.items()}
        losses, auxs = train_epoch(run.optimizer, run.model, batches)
        losses, auxs = np.asarray(losses), {k: np.asarray(v) for k, v in auxs.items()}
        crossed = (step + run.steps_per_epoch) // config.checkpoint_every_steps > step // config.checkpoint_every_steps
        for i in range(run.steps_per_epoch):  # the state exists only at the epoch's end: save only there
          last = i == run.steps_per_epoch - 1
          finish(step + i + 1, epoch, losses[i], {k: v[i] for k, v in auxs.items()}, may_save=last,
                 save=last and crossed)
        step += run.steps_per_epoch
        continue
      for i in range(first, run.steps_per_epoch):
        rows = run.train_data.batch(i)  # this process's rows of the global batch, assembled into global arrays
        batch = {k: jax.make_array_from_process_local_data(run.batch_sharding, v,
                                                           (*batch_shape, *v.shape[len(batch_shape):]))
                 for k, v in rows.items()}
        loss, aux = train_step(batch)
        step += 1
        finish(step, epoch, loss, aux)
  run.manager.wait_until_finished()

  # 5. export the best
  result: dict[str, Any] = {"steps": step, "train_seconds": time.perf_counter() - start,
                            "devices": int(run.mesh.devices.size), "processes": jax.process_count()}
  best = run.manager.best_step()
  if best is not None and best != step:
    run.restore(best)  # a collective: every process restores
  if not primary:  # process 0 evaluates, verifies, plots and exports alone; the others wait for it, then end
    distributed.barrier("export", timeout_s=float(os.environ.get("ZOO_EXPORT_TIMEOUT") or 3600))
    run.manager.close()
    return {**result, "process": jax.process_index(), "best_step": best}
  exported, per_seed = [], []
  for model in run.local_models():
    model_kwargs = run.model_kwargs
    model.eval()
    if family.export:
      model, model_kwargs = family.export(model, dict(model_kwargs))
      model.eval()
    exported.append((model, model_kwargs))
    per_seed.append({k: float(v) for k, v in family.evaluate(model, run.eval_data).items()})
  chosen = seeds.best_index(per_seed, config.best_metric, config.best_mode) if run.stacked else 0
  model, model_kwargs = exported[chosen]
  metrics = per_seed[chosen]
  result.update(metrics=metrics, best_step=best)
  bookkeeping: dict[str, Any] = {"train_steps": step, "best_step": best}
  sections = None
  if run.stacked:  # every seed's metrics, their mean ± std, and which seed the export is
    result.update(seeds=[{"seed": s, "metrics": m} for s, m in zip(run.seeds, per_seed)],
                  seed_summary=seeds.summary(per_seed), exported_seed=run.seeds[chosen])
    bookkeeping["seed"] = run.seeds[chosen]
    sections = {"Seeds": seeds.card_section(run.seeds, per_seed, chosen, config.best_metric, config.best_mode, best)}
  if config.export:
    export, checks = export_checkpoint(model, config.model, run.eval_data, metrics, workdir / "export",
                                       model_kwargs=model_kwargs, config=config.to_dict(),
                                       bookkeeping=bookkeeping, sections=sections)
    result["export"] = str(export)
    result["checks"] = [str(c) for c in checks]
    result["checks_passed"] = all(c.passed for c in checks)  # `zoo ship` refuses an export whose checks failed
    for c in checks:
      logging.info("verify: %s", c)
  distributed.barrier("export", timeout_s=float(os.environ.get("ZOO_EXPORT_TIMEOUT") or 3600))
  run.manager.close()
  return result


def _train_learner(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
  """The loop for a family with a `learner` hook (RL): the learner makes its own data, the trainer keeps the rest.

  Order: 1. model from the config seed (`spec.build`), the learner from it and the config; 2. resume or initialise:
  restore every node of `learner.checkpointed()` from the latest orbax checkpoint (its step = iterations done);
  3. iterations k = step, ..., config.iterations − 1: `learner.iteration(k)`, a record per iteration in
  WORKDIR/metrics.jsonl (step = k + 1), the family's evaluation every `eval_every_steps` iterations and after the
  last, a checkpoint every `checkpoint_every_steps` iterations and after the last; 4. export the final iteration's
  model (evaluated, verified) as a zoo checkpoint. One process, the learner's own batching (vmapped environments).
  """
  from tqdm.auto import tqdm  # pylint: disable=import-outside-toplevel

  if jax.process_count() > 1:
    raise errors.ConfigError("num_processes", f"{config.model} trains with a learner (RL), which runs in one process "
                                              f"for now; start it without --num_processes / --distributed.")
  spec = registry.get_spec(config.model)
  family = spec.family
  overrides = config.model_overrides.to_dict()
  model_kwargs = {**spec.kwargs, **overrides}
  model = spec.build(config.seed, **overrides)
  learner = family.learner(model, config)
  nodes = learner.checkpointed()
  # Explicit placement, as a restore places arrays: a fresh and a resumed run then compile the same programs (jit keys
  # and HLO depend on whether arguments are committed to a device), so a resume hits the compilation caches.
  device = jax.local_devices()[0]
  for node in nodes.values():
    nnx.update(node, jax.device_put(nnx.state(node), device))
  manager = ocp.CheckpointManager(
      (workdir / "checkpoints").absolute(),
      options=ocp.CheckpointManagerOptions(
          preservation_policy=ocp.checkpoint_managers.LatestN(1), enable_async_checkpointing=False, create=True))

  def save(step: int) -> None:
    tree = {k: checkpoint.storable(nnx.state(v).to_pure_dict()) for k, v in nodes.items()}
    manager.save(step, args=ocp.args.StandardSave(tree), force=True)

  # resume or initialise
  step = manager.latest_step() or 0
  if step:
    states = {k: nnx.state(v) for k, v in nodes.items()}
    abstract = {k: v.to_pure_dict() for k, v in states.items()}
    restored = manager.restore(step, args=ocp.args.StandardRestore(checkpoint.storable_target(abstract)))
    restored = checkpoint.from_storable(restored, abstract)
    for key, node in nodes.items():
      nnx.replace_by_pure_dict(states[key], restored[key])
      nnx.update(node, states[key])
    logging.info("Resumed %s from iteration %d in %s", config.model, step, workdir)
  else:
    logging.info("Training %s from scratch (seed %d), %d iterations", config.model, config.seed, config.iterations)

  log_path = workdir / "metrics.jsonl"
  _truncate_log(log_path, step)  # a resume repeats the iterations after its checkpoint: drop their old records
  eval_every = config.eval_every_steps
  metrics: dict[str, float] | None = None
  start = time.perf_counter()
  with open(log_path, "a") as log, tqdm(total=config.iterations, initial=step, desc=config.model, mininterval=2.0,
                                        disable=None) as bar:
    for k in range(step, config.iterations):
      began = time.perf_counter()
      record: dict[str, Any] = {"step": k + 1, **learner.iteration(k)}
      bad = sorted(name for name, v in record.items() if not math.isfinite(v))
      if bad:
        raise errors.TrainingDivergedError(
            f"{config.model}: {', '.join(bad)} not finite at iteration {k + 1}; training stopped and nothing was "
            f"exported. Lower the learning rates in config.ppo.")
      record["iteration_seconds"] = time.perf_counter() - began
      last = k + 1 == config.iterations
      metrics = None
      if last or (eval_every and (k + 1) % eval_every == 0):
        model.eval()
        metrics = {name: float(v) for name, v in family.evaluate(model, learner.eval_data).items()}
        model.train()
        record.update({f"eval/{name}": v for name, v in metrics.items()})
        logging.info("iteration %d: %s", k + 1, " ".join(f"{name}={v:.4g}" for name, v in metrics.items()))
      record["seconds"] = time.perf_counter() - start
      log.write(json.dumps(record) + "\n")
      log.flush()
      bar.update(1)
      if last or (k + 1) % config.checkpoint_every_steps == 0:
        save(k + 1)
      step = k + 1
  manager.wait_until_finished()

  result: dict[str, Any] = {"steps": step, "train_seconds": time.perf_counter() - start, "devices": 1,
                            "processes": 1}
  model.eval()
  if metrics is None:  # resumed after the last iteration's checkpoint (e.g. killed while exporting)
    metrics = {name: float(v) for name, v in family.evaluate(model, learner.eval_data).items()}
  result.update(metrics=metrics, best_step=step)
  if config.export:
    export, checks = export_checkpoint(model, config.model, learner.eval_data, metrics, workdir / "export",
                                       model_kwargs=model_kwargs, config=config.to_dict(),
                                       bookkeeping={"train_steps": step})
    result["export"] = str(export)
    result["checks"] = [str(c) for c in checks]
    result["checks_passed"] = all(c.passed for c in checks)
    for c in checks:
      logging.info("verify: %s", c)
  manager.close()
  return result
