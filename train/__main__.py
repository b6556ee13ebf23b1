r"""Trains a zoo model from a config file; resumes when WORKDIR already holds a run.

    python -m train --config configs/massnet.py:sir --workdir runs/massnet-sir
    python -m train --config configs/massnet.py:sir,smoke --workdir /tmp/smoke        # seconds
    python -m train --config configs/massnet.py:sir --config.optimizer.lr=3e-3 --workdir runs/lr3e-3

Several devices are used data-parallel when present (try
`XLA_FLAGS=--xla_force_host_platform_device_count=2` on a CPU). The run ends by writing WORKDIR/export, a zoo
checkpoint with its model card: `zoo ship WORKDIR/export` embeds it, `zoo push WORKDIR/export --repo-id ORG/NAME`
publishes it.
"""

import json
import logging as logging_std

from absl import app, flags, logging
from ml_collections import config_flags

from train.trainer import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/FAMILY.py:VARIANT[,smoke]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics.jsonl, export/).")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries(logging_std.Filter):
  """Keeps orbax's per-save INFO chatter out of the training log (its warnings still show)."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    if "orbax" not in record.pathname:
      return True
    return record.levelno >= logging_std.WARNING and "did not provide metrics" not in record.getMessage()


def main(argv):
  del argv
  logging.get_absl_handler().addFilter(_QuietLibraries())
  result = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  logging.info("done: %s", json.dumps(result, default=str))
  print(json.dumps(result, default=str, indent=2))


if __name__ == "__main__":
  app.run(main)
