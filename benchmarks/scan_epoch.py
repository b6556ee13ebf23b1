r"""One dispatch per step vs one compiled scan per epoch (`--config.scan_epoch`), on the trainer's own functions.

    .venv/bin/python benchmarks/scan_epoch.py --configs configs/elcd.py:lasa2d-angle,configs/massnet.py:sir --epochs 6

For each config: the same model (config seed), optimizer and batches (`train.trainer.batch_order`), trained
`--epochs` epochs by `make_train_step` (one jitted call per batch) and by `make_train_epoch` (each epoch one
`nnx.scan`, state donated). XLA on one thread. Reported: the first epoch (it holds the compilation), the median
wall-clock and process CPU seconds of the later epochs, and the largest loss difference between the two ways.
Writes benchmarks/results/scan_epoch.json and scan_epoch.md. On a shared machine CPU time is the steadier number.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # pylint: disable=wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _load_config(spec: str):
  import importlib.util  # pylint: disable=import-outside-toplevel

  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("bench_config", ROOT / path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def measure(config_spec: str, epochs: int) -> dict:
  import jax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel

  sys.path.insert(0, str(ROOT))
  import zoo.data  # pylint: disable=import-outside-toplevel
  from train import trainer  # pylint: disable=import-outside-toplevel
  from zoo import registry  # pylint: disable=import-outside-toplevel

  config = _load_config(config_spec)
  spec = registry.get_spec(config.model)
  family = spec.family
  out: dict = {"config": config_spec, "model": config.model, "epochs": epochs, "batch_size": config.batch_size}
  with family.precision():
    data = trainer._truncate(zoo.data.load(config.dataset, config.train_split),  # pylint: disable=protected-access
                             config.max_train_examples)
    n = len(next(iter(data.values())))
    steps = n // config.batch_size
    out["steps_per_epoch"] = steps
    orders = [trainer.batch_order(config.seed, e, n, config.batch_size) for e in range(epochs)]
    losses = {}
    for way in ("step", "scan"):
      model = spec.build(config.seed)
      optimizer = nnx.Optimizer(model, trainer.make_optimizer(config.optimizer, steps * epochs, steps), wrt=nnx.Param)
      model.train()
      step_fn, epoch_fn = trainer.make_train_step(family.loss), trainer.make_train_epoch(family.loss)
      wall, cpu, seen = [], [], []
      for order in orders:
        w, c = time.perf_counter(), time.process_time()
        if way == "step":
          seen += [float(step_fn(optimizer, model, {k: v[idx] for k, v in data.items()})[0]) for idx in order]
        else:
          values, _ = epoch_fn(optimizer, model, {k: v[order] for k, v in data.items()})
          seen += [float(x) for x in np.asarray(values)]
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
      losses[way] = np.asarray(seen)
      out[way] = {"first_epoch_wall_s": wall[0], "first_epoch_cpu_s": cpu[0],
                  "median_epoch_wall_s": float(np.median(wall[1:])), "median_epoch_cpu_s": float(np.median(cpu[1:]))}
      print(f"{config.model} {way}: first epoch {wall[0]:.2f}s, then median {out[way]['median_epoch_wall_s']:.3f}s "
            f"wall / {out[way]['median_epoch_cpu_s']:.3f}s CPU per epoch", flush=True)
  out["max_abs_loss_difference"] = float(np.max(np.abs(losses["step"] - losses["scan"])))
  out["speedup_cpu"] = out["step"]["median_epoch_cpu_s"] / max(out["scan"]["median_epoch_cpu_s"], 1e-9)
  out["jax"] = jax.__version__
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--configs", default="configs/elcd.py:lasa2d-angle,configs/massnet.py:sir")
  parser.add_argument("--epochs", type=int, default=6)
  args = parser.parse_args()
  rows = [measure(c, args.epochs) for c in args.configs.split(",")]
  meta = {"machine": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
          "xla_flags": os.environ.get("XLA_FLAGS", ""), "command": " ".join(["benchmarks/scan_epoch.py", *sys.argv[1:]])}
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / "scan_epoch.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
  lines = ["# One dispatch per step vs one scan per epoch (`--config.scan_epoch`)", "",
           f"`{meta['command']}` on {meta['cpus']} shared CPU cores, XLA on one thread; epochs after the first "
           f"(median), and the first epoch (compilation included).", "",
           "| config | steps/epoch | per step: epoch CPU s | scan: epoch CPU s | CPU speed-up | per step: 1st epoch s "
           "| scan: 1st epoch s | max loss difference |", "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| `{r['config']}` | {r['steps_per_epoch']} | {r['step']['median_epoch_cpu_s']:.3f} | "
                 f"{r['scan']['median_epoch_cpu_s']:.3f} | {r['speedup_cpu']:.1f}× | "
                 f"{r['step']['first_epoch_wall_s']:.2f} | {r['scan']['first_epoch_wall_s']:.2f} | "
                 f"{r['max_abs_loss_difference']:.1e} |")
  (RESULTS / "scan_epoch.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
