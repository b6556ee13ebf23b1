r"""Trains a zoo model from a config file; resumes when WORKDIR already holds a run.

    python -m train --config configs/massnet.py:sir --workdir runs/massnet-sir
    python -m train --config configs/massnet.py:sir,smoke --workdir /tmp/smoke        # seconds
    python -m train --config configs/massnet.py:sir --config.optimizer.lr=3e-3 --workdir runs/lr3e-3

Several devices are used data-parallel when present (try `JAX_NUM_CPU_DEVICES=2` on a CPU). The same command runs
as N processes (one per host) when each is told the coordinator, the count and its index, by flags or by
$JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES, $JAX_PROCESS_ID; `--distributed` lets JAX detect them on a TPU pod
slice, under SLURM or Open MPI (README, "Training on many hosts"):

    python -m train --config configs/massnet.py:sir --workdir runs/m --coordinator_address=127.0.0.1:12345 \
        --num_processes=2 --process_id=0      # and the same with --process_id=1

The run ends by writing WORKDIR/export, a zoo
checkpoint with its model card: `zoo ship WORKDIR/export` embeds it, `zoo push WORKDIR/export --repo-id ORG/NAME`
publishes it.
"""

import ast
import json
import logging as logging_std
import os
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from train.trainer import train_and_evaluate
from zoo import errors

_OVERRIDE = "--config.model_overrides."

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/FAMILY.py:VARIANT[,smoke]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics.jsonl, export/).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0 in a multi-process run (default $JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run (default $JAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0..num_processes-1 "
                                                       "(default $JAX_PROCESS_ID).")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() and let JAX detect the cluster (TPU pod slice, SLURM, "
                          "Open MPI); the flags above still win.")
_HEARTBEAT = flags.DEFINE_integer(
    "heartbeat_timeout", 100, "Seconds without a heartbeat after which a process counts as dead; every other "
                              "process then exits non-zero (multi-process runs).")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries(logging_std.Filter):
  """Keeps orbax's per-save INFO chatter out of the training log (its warnings still show)."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    if "orbax" not in record.pathname:
      return True
    return record.levelno >= logging_std.WARNING and "did not provide metrics" not in record.getMessage()


def _literal(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare word is a string


def split_model_overrides(argv: list[str]) -> tuple[list[str], dict]:
  """Takes `--config.model_overrides.KEY=VALUE` (or `... KEY VALUE`) out of `argv`: ml_collections can only
  override existing fields, and model_overrides starts empty. VALUE is a Python literal (20, 0.5, (8, 8),
  'x'), else a string. Returns (the other arguments, {KEY: VALUE})."""
  rest, overrides, i = [], {}, 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith(_OVERRIDE):
      key, sep, value = arg[len(_OVERRIDE):].partition("=")
      if not sep:
        if i + 1 >= len(argv):
          raise errors.ConfigError(f"model_overrides.{key}", f"{arg} needs a value ({arg}=VALUE).")
        value, i = argv[i + 1], i + 1
      if not key.isidentifier():
        raise errors.ConfigError("model_overrides", f"{arg}: {key!r} is not a keyword argument name.")
      overrides[key] = _literal(value)
    else:
      rest.append(arg)
    i += 1
  return rest, overrides


_MODEL_OVERRIDES: dict = {}


def format_result(result: dict, workdir: str) -> str:
  """The end of a run in a few lines: steps and time, the export's metrics, its checks, what to do next."""
  num = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
  lines = [f"done: {result.get('steps')} steps in {result.get('train_seconds', 0):.0f} s on "
           f"{result.get('devices')} device(s); best step {result.get('best_step')}"]
  metrics = result.get("metrics") or {}
  if metrics:
    lines.append("metrics: " + ", ".join(f"{k} {num(v)}" for k, v in metrics.items()))
  if result.get("seed_summary"):
    lines.append(f"seeds: {len(result.get('seeds', []))} side by side, exported seed {result.get('exported_seed')}; "
                 "mean ± std: " + ", ".join(f"{k} {num(s['mean'])} ± {num(s['std'])}"
                                            for k, s in result["seed_summary"].items()))
  if "export" in result:
    checks = result.get("checks") or []
    lines.append(f"checks: {'all ' + str(len(checks)) + ' passed' if result.get('checks_passed') else 'FAILED'}")
    lines.append(f"export: {result['export']}  (ship it: zoo ship {result['export']})")
  lines.append(f"result: {pathlib.Path(workdir) / 'result.json'}")
  return "\n".join(lines)


def _start_processes() -> bool:
  """jax.distributed.initialize from the flags / environment; returns whether this is a multi-process run."""
  from train import distributed  # pylint: disable=import-outside-toplevel

  parsed = flags.FLAGS.is_parsed()  # main() called directly (tests): the environment alone decides
  value = lambda holder: holder.value if parsed else holder.default  # pylint: disable=unnecessary-lambda-assignment
  try:
    return distributed.initialize(value(_COORDINATOR), value(_NUM_PROCESSES), value(_PROCESS_ID),
                                  auto=value(_DISTRIBUTED), heartbeat_timeout_s=value(_HEARTBEAT))
  except ValueError as e:
    print(f"error: ConfigError: {e}", file=sys.stderr)
    sys.exit(2)


def _fail_fast(code: int, message: str) -> None:
  """Ends a multi-process run's process at once: no atexit shutdown barrier waiting for peers that may be dead."""
  import jax  # pylint: disable=import-outside-toplevel

  print(f"error: process {jax.process_index()} of {jax.process_count()}: {message}", file=sys.stderr, flush=True)
  sys.stdout.flush()
  logging.flush()
  os._exit(code)  # pylint: disable=protected-access


def main(argv):
  del argv
  logging.get_absl_handler().addFilter(_QuietLibraries())
  config = _CONFIG.value
  multi = _start_processes()
  if multi:
    try:
      _main(config)
    except SystemExit as e:
      if e.code:  # the reason is printed above
        _fail_fast(e.code if isinstance(e.code, int) else 1, f"exiting with status {e.code}")
      raise
    except BaseException as e:  # pylint: disable=broad-except  # most often: a peer died inside a collective
      _fail_fast(3, f"{e.__class__.__name__}: {' '.join(str(e).split())[:600]}. If another process died, relaunch "
                    f"every process with the same command: the run resumes from its latest checkpoint.")
    return
  _main(config)


def _main(config):
  import jax  # pylint: disable=import-outside-toplevel

  try:
    if _MODEL_OVERRIDES:
      with config.unlocked():
        for key, value in _MODEL_OVERRIDES.items():
          config.model_overrides[key] = value
    result = train_and_evaluate(config, _WORKDIR.value)
  except errors.ZooError as e:  # a config or data problem: one line, exit 2 (--verbosity=1 keeps absl's logs)
    print(f"error: {e.__class__.__name__}: {' '.join(str(e).split())}", file=sys.stderr)
    sys.exit(2)
  if jax.process_index() == 0:  # the result, once, for people; WORKDIR/result.json for programs
    print(format_result(result, _WORKDIR.value))
  if result.get("checks_passed") is False:
    print(f"error: the export's checks failed ({'; '.join(result.get('checks', []))}); `zoo ship` refuses it.",
          file=sys.stderr)
    sys.exit(1)


def run(argv: list[str] | None = None) -> None:
  global _MODEL_OVERRIDES
  try:
    rest, _MODEL_OVERRIDES = split_model_overrides(list(sys.argv if argv is None else argv))
  except errors.ZooError as e:
    print(f"error: {e.__class__.__name__}: {e}", file=sys.stderr)
    sys.exit(2)
  app.run(main, argv=rest)


if __name__ == "__main__":
  run()
