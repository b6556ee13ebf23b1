r"""Re-evaluates a shipped model's weights with the current code and writes a fresh export, without training.

    python -m train.reexport --model elcd-lasa8d --workdir runs/reexport/elcd-lasa8d
    zoo ship --replace runs/reexport/elcd-lasa8d/export

For when a family's `evaluate`, `verify` or card changes (a new check, a new metric) and the shipped weights
should be re-verified and re-carded as they are. The weights are the pinned embedded checkpoint's, bit for bit
(`zoo.load(NAME)`); the evaluation data are the ones its training config names (dataset, eval split, example
limit); `train_steps`, `best_step` and the config are carried over from the shipped manifest, and so are card
sections the family does not produce itself (e.g. a benchmark table added by `zoo ship --section`). Exits 1
when a check fails (`zoo ship` refuses such an export), 2 on a usage or data error.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

from absl import app, flags, logging

from zoo import errors



def _define_flags() -> None:
  """Only when run as a program: importing this module (tests, the trainer) defines no absl flags."""
  flags.DEFINE_string("model", None, "A shipped (embedded) model name, e.g. elcd-lasa8d.")
  flags.DEFINE_string("workdir", None, "Where to write WORKDIR/export.")
  flags.mark_flags_as_required(["model", "workdir"])


def reexport(name: str, workdir: str | pathlib.Path) -> dict[str, Any]:
  """Loads the embedded `name`, re-runs its family's evaluate / verify / card sections / plots and saves
  WORKDIR/export. Returns {"export", "metrics", "checks", "checks_passed"}."""
  import zoo  # pylint: disable=import-outside-toplevel
  import zoo.data  # pylint: disable=import-outside-toplevel
  from train.trainer import export_checkpoint  # pylint: disable=import-outside-toplevel
  from zoo import checkpoint, hub, registry  # pylint: disable=import-outside-toplevel

  spec = registry.get_spec(name)
  source = hub.checkpoints_dir() / spec.name
  if spec.pretrained is None or not (source / checkpoint.MANIFEST).is_file():
    raise errors.CheckpointNotFoundError(f"{name} has no embedded checkpoint under {hub.checkpoints_dir()}: "
                                         f"train it (python -m train) and ship it (zoo ship) first.")
  old = checkpoint.read_manifest(source, spec.pretrained.sha256)  # the pinned manifest
  config = old.get("config") or {}
  for key in ("dataset", "eval_split"):
    if not isinstance(config.get(key), str):
      raise errors.ManifestError(f"config.{key}", f"{source}: the shipped config has no {key}; cannot re-evaluate.")
  family = spec.family
  with family.precision():
    model = zoo.load(name)
    model.eval()
    eval_data = zoo.data.load(config["dataset"], config["eval_split"])
    limit = config.get("max_eval_examples") or 0
    if limit:
      eval_data = {k: v[:limit] for k, v in eval_data.items()}
    metrics = {k: float(v) for k, v in family.evaluate(model, eval_data).items()}
    kept = {k: old["metrics"][k] for k in ("train_steps", "best_step") if k in (old.get("metrics") or {})}
    export, checks = export_checkpoint(model, name, eval_data, metrics, pathlib.Path(workdir) / "export",
                                       model_kwargs=old["model_kwargs"], config=config, bookkeeping=kept,
                                       sections=old.get("card_sections"))
  return {"export": str(export), "metrics": metrics, "checks": [str(c) for c in checks],
          "checks_passed": all(c.passed for c in checks)}


def main(argv):
  del argv
  try:
    result = reexport(flags.FLAGS.model, flags.FLAGS.workdir)
  except errors.ZooError as e:
    print(f"error: {e.__class__.__name__}: {' '.join(str(e).split())}", file=sys.stderr)
    sys.exit(2)
  for c in result["checks"]:
    logging.info("verify: %s", c)
  print(json.dumps(result, indent=2))
  if not result["checks_passed"]:
    print("error: a check failed; `zoo ship` refuses this export.", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
