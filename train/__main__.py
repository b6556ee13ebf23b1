r"""Trains a zoo model from a config file; resumes when WORKDIR already holds a run.

    python -m train --config configs/massnet.py:sir --workdir runs/massnet-sir
    python -m train --config configs/massnet.py:sir,smoke --workdir /tmp/smoke        # seconds
    python -m train --config configs/massnet.py:sir --config.optimizer.lr=3e-3 --workdir runs/lr3e-3

Several devices are used data-parallel when present (try
`XLA_FLAGS=--xla_force_host_platform_device_count=2` on a CPU). The run ends by writing WORKDIR/export, a zoo
checkpoint with its model card: `zoo ship WORKDIR/export` embeds it, `zoo push WORKDIR/export --repo-id ORG/NAME`
publishes it.
"""

import ast
import json
import logging as logging_std
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from train.trainer import train_and_evaluate
from zoo import errors

_OVERRIDE = "--config.model_overrides."

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/FAMILY.py:VARIANT[,smoke]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics.jsonl, export/).")
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
  if "export" in result:
    checks = result.get("checks") or []
    lines.append(f"checks: {'all ' + str(len(checks)) + ' passed' if result.get('checks_passed') else 'FAILED'}")
    lines.append(f"export: {result['export']}  (ship it: zoo ship {result['export']})")
  lines.append(f"result: {pathlib.Path(workdir) / 'result.json'}")
  return "\n".join(lines)


def main(argv):
  del argv
  logging.get_absl_handler().addFilter(_QuietLibraries())
  config = _CONFIG.value
  try:
    if _MODEL_OVERRIDES:
      with config.unlocked():
        for key, value in _MODEL_OVERRIDES.items():
          config.model_overrides[key] = value
    result = train_and_evaluate(config, _WORKDIR.value)
  except errors.ZooError as e:  # a config or data problem: one line, exit 2 (--verbosity=1 keeps absl's logs)
    print(f"error: {e.__class__.__name__}: {' '.join(str(e).split())}", file=sys.stderr)
    sys.exit(2)
  print(format_result(result, _WORKDIR.value))  # the result, once, for people; WORKDIR/result.json for programs
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
