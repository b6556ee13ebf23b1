"""Training configuration shared by every family's `configs/FAMILY.py`.

A config file defines `get_config(arg)`; `arg` is `VARIANT` or `VARIANT,smoke` (big_vision style: `smoke`
shrinks the run to seconds for tests). It starts from `base_config()` and overrides what its paper sets:

    def get_config(arg="sir"):
      variant, smoke = zoo.training.parse_arg(arg, "sir")
      model = zoo.training.choose(variant, {"sir": "massnet-sir"}, "configs/massnet.py")
      c = zoo.training.base_config(model=model, dataset="sir")
      c.optimizer.lr = 1e-2
      c.epochs = 150
      return zoo.training.shrink(c) if smoke else c
"""

from __future__ import annotations

from typing import Mapping, TypeVar

import ml_collections

from zoo import errors

T = TypeVar("T")


def parse_arg(arg: str | None, default: str = "") -> tuple[str, bool]:
  """`"VARIANT[,smoke]"` -> (variant, smoke)."""
  parts = [p for p in (arg or default).split(",") if p]
  smoke = "smoke" in parts
  rest = [p for p in parts if p != "smoke"]
  return (rest[0] if rest else default), smoke


def choose(variant: str, table: Mapping[str, T], config_file: str) -> T:
  """`table[variant]`; `UnknownVariantError` (close matches, every variant) when the config has no such variant."""
  if variant not in table:
    raise errors.UnknownVariantError(config_file, variant, sorted(table))
  return table[variant]


def base_config(model: str, dataset: str) -> ml_collections.ConfigDict:
  """Defaults of the generic trainer (`python -m train`). Every field can be overridden on the command line."""
  c = ml_collections.ConfigDict()
  c.model = model                      # registered zoo name; the exported checkpoint carries this name
  c.model_overrides = ml_collections.ConfigDict()  # keyword arguments overriding the registry's
  c.dataset = dataset                  # zoo.data name ("builder" or "builder/config")
  c.train_split = "train"
  c.eval_split = "test"
  c.seed = 0                           # weights, data order and every other random choice
  c.batch_size = 100
  c.epochs = 10
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"            # any optax optimizer taking learning_rate
  c.optimizer.lr = 1e-3
  c.optimizer.kwargs = ml_collections.ConfigDict()  # extra optax arguments (momentum, weight_decay, ...)
  c.optimizer.schedule = "constant"    # "constant" | "cosine" | "step" (× step_factor every step_epochs)
  c.optimizer.step_epochs = 0
  c.optimizer.step_factor = 0.1
  c.optimizer.weight_decay = 0.0       # coupled L2 added to the gradient (torch's Adam/SGD weight_decay)
  c.optimizer.grad_clip = 0.0          # global-norm clip; 0 = off
  c.eval_every_epochs = 1
  c.checkpoint_every_steps = 50        # orbax CheckpointManager save interval (resume granularity)
  c.best_metric = "loss"               # metric from the family's evaluate() that picks the best checkpoint
  c.best_mode = "min"
  c.max_train_examples = 0             # 0 = the whole split; smoke runs take a few
  c.max_eval_examples = 0
  c.init_from = ""                     # a zoo source (name, hf://, local-dir:) whose weights start a fresh run
  c.scan_epoch = False                 # compile each epoch as one scan over its batches (one dispatch per epoch);
                                       # checkpoints then fall on epoch ends
  c.num_seeds = 1                      # S > 1: train seeds seed .. seed+S-1 side by side in one compiled program
                                       # (vmapped model and optimizer states); the export is the best seed, its card
                                       # and WORKDIR/result.json give every seed's metrics and their mean ± std
  c.compute_dtype = "float32"          # "bfloat16": mixed precision for the families that take it (image
                                       # classifiers): bf16 layer compute, float32 weights, optimizer and loss
  c.export = True                      # write WORKDIR/export (a zoo checkpoint with card) at the end
  c.smoke = False
  return c


def override(c: ml_collections.ConfigDict, changes: Mapping[str, object], sep: str = ".") -> ml_collections.ConfigDict:
  """Sets each dotted field of `changes` (`{"optimizer.lr": 1e-3}`) in `c`, as `--config.optimizer.lr` does; returns `c`."""
  for dotted, value in changes.items():
    *parents, leaf = dotted.split(sep)
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def shrink(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A smoke-test version of `c`: one short epoch, frequent checkpoints."""
  c.epochs = 1
  c.batch_size = min(c.batch_size, 16)
  c.checkpoint_every_steps = 2
  c.max_train_examples = 64
  c.max_eval_examples = 64
  c.smoke = True
  return c


def rl_base_config(model: str) -> ml_collections.ConfigDict:
  """Defaults of the trainer's loop for a family with a `learner` (reinforcement learning): no dataset, `iterations`
  of the learner instead of epochs of batches; a trainer step is one iteration. The family's config adds the
  learner's own fields (e.g. configs/acs.py: env, ppo, ...)."""
  c = ml_collections.ConfigDict()
  c.model = model                      # registered zoo name; the exported checkpoint carries this name
  c.model_overrides = ml_collections.ConfigDict()
  c.seed = 0                           # weights and every random choice of the learner (environment layouts, actions)
  c.iterations = 10
  c.eval_every_steps = 5               # evaluate every this many iterations (and after the last)
  c.checkpoint_every_steps = 1         # orbax CheckpointManager save interval in iterations (resume granularity)
  c.export = True                      # write WORKDIR/export (a zoo checkpoint with card) from the final iteration
  c.smoke = False
  return c
