r"""ELCD training throughput: S seeds side by side in one program (`--config.num_seeds=S` with `--config.scan_epoch`)
vs S separate runs, and vs the official PyTorch code (CPU seconds per seed-epoch, compile time per config).

    .venv/bin/python benchmarks/seeds_side_by_side.py --variants lasa2d-angle,lasa4d,lasa8d --seeds 10 --epochs 6 \
        [--official-repo /tmp/elcd_official --torch-python /work/benchvenv/bin/python]   # the torch side: see below

For each variant (configs/elcd.py:VARIANT: Adam lr 1e-3, batch 100, the trainer's `batch_order`), XLA on one thread,
in this process one after the other, on the trainer's own functions:
  * `step`: one seed, one jitted call per batch (`make_train_step`; the trainer's default);
  * `scan`: one seed, each epoch one `nnx.scan` (`make_train_epoch`; `--config.scan_epoch=True`), i.e. one of S
    separate runs;
  * `scan x S`: seeds 0..S-1 side by side (`train.seeds.stack`, `make_train_epoch(loss, num_seeds=S)`), each seed
    its own initial weights and batch order.
Reported: the median CPU seconds of an epoch after the first, per seed (`scan x S` divided by S), and the compile
time, taken as the first epoch's CPU seconds minus a later epoch's (tracing + XLA compilation; no persistent
compilation cache here). The official PyTorch ELCD (one thread) trains seed 0 on the same batches when its
checkout and venv exist (`benchmarks/elcd_official.py`'s header says how to make them): its median CPU seconds per
epoch. A whole S-seed run of E epochs is then estimated from the measured figures: side by side
compile + E x epoch(S); S separate runs S x (compile + E x epoch(1)) (each process compiles; with the zoo's
persistent compilation cache only the first one does, noted apart); torch S x E x epoch.

Writes benchmarks/results/seeds_side_by_side.json and .md, with the load average before and after each
measurement (2 shared cores: CPU seconds are the steadier number; wall seconds are recorded too).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # pylint: disable=wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import elcd_official  # pylint: disable=wrong-import-position  # the torch worker, its data and batches
from scan_epoch import _load_config  # pylint: disable=wrong-import-position


def _load() -> float:
  return round(os.getloadavg()[0], 2)


def _epochs(run_epoch, orders: list, data: dict) -> dict:
  """Runs `run_epoch(batches) -> losses` for every epoch's orders; wall and CPU seconds per epoch."""
  wall, cpu, losses = [], [], []
  before = _load()
  for order in orders:
    w, c = time.perf_counter(), time.process_time()
    values = np.asarray(run_epoch({k: v[order] for k, v in data.items()}))
    wall.append(time.perf_counter() - w)
    cpu.append(time.process_time() - c)
    losses.append(values)
  return {"epoch_wall_s": wall, "epoch_cpu_s": cpu, "median_epoch_cpu_s": float(np.median(cpu[1:])),
          "median_epoch_wall_s": float(np.median(wall[1:])),
          "compile_cpu_s": cpu[0] - float(np.median(cpu[1:])), "compile_wall_s": wall[0] - float(np.median(wall[1:])),
          "load_average": [before, _load()], "losses": np.stack(losses)}


def measure_jax(variant: str, seeds: int, epochs: int) -> dict:
  from flax import nnx  # pylint: disable=import-outside-toplevel

  import zoo.data  # pylint: disable=import-outside-toplevel
  from train import seeds as side_by_side  # pylint: disable=import-outside-toplevel
  from train import trainer  # pylint: disable=import-outside-toplevel
  from zoo import registry  # pylint: disable=import-outside-toplevel

  config = _load_config(f"configs/elcd.py:{variant}")
  spec = registry.get_spec(config.model)
  family = spec.family
  out: dict = {}
  with family.precision():
    data = trainer._truncate(zoo.data.load(config.dataset, config.train_split),  # pylint: disable=protected-access
                             config.max_train_examples)
    n = len(next(iter(data.values())))
    steps = n // config.batch_size
    tx = trainer.make_optimizer(config.optimizer, steps * epochs, steps)
    out.update(model=config.model, steps_per_epoch=steps, batch_size=config.batch_size)

    def one_seed(seed: int):
      model = spec.build(seed)
      optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
      model.train()
      return model, optimizer

    orders = [trainer.batch_order(0, e, n, config.batch_size) for e in range(epochs)]
    model, optimizer = one_seed(0)
    step_fn = trainer.make_train_step(family.loss)
    out["step"] = _epochs(lambda b: [float(step_fn(optimizer, model, {k: v[i] for k, v in b.items()})[0])
                                     for i in range(steps)], orders, data)  # as the trainer: a float per step
    model, optimizer = one_seed(0)
    epoch_fn = trainer.make_train_epoch(family.loss)
    out["scan"] = _epochs(lambda b: epoch_fn(optimizer, model, b)[0], orders, data)

    models, optimizers = zip(*(one_seed(s) for s in range(seeds)))
    model, optimizer = side_by_side.stack(models), side_by_side.stack(optimizers)
    model.train()
    seeds_fn = trainer.make_train_epoch(family.loss, num_seeds=seeds)
    stacked_orders = [np.stack([trainer.batch_order(s, e, n, config.batch_size) for s in range(seeds)], axis=1)
                      for e in range(epochs)]  # (steps, S, batch)
    out["scan_seeds"] = _epochs(lambda b: seeds_fn(optimizer, model, b)[0], stacked_orders, data)
  loss_gap = float(np.max(np.abs(out["scan_seeds"]["losses"][:, :, 0] - out["scan"]["losses"])))
  for way in ("step", "scan", "scan_seeds"):
    out[way]["losses"] = out[way]["losses"].tolist()
  out["seed0_loss_gap_scan_vs_side_by_side"] = loss_gap
  out["seeds"] = seeds
  return out


def measure_torch(variant: str, epochs: int, official_repo: str, torch_python: str) -> dict | None:
  if not (pathlib.Path(official_repo).is_dir() and pathlib.Path(torch_python).is_file()):
    print(f"(no official checkout at {official_repo} or no {torch_python}: the torch side is not measured)")
    return None
  with tempfile.TemporaryDirectory() as tmp, open(pathlib.Path(tmp) / "worker.log", "w+") as log:
    npz, result = pathlib.Path(tmp) / "data.npz", pathlib.Path(tmp) / "torch.npz"
    elcd_official._prepare(variant, epochs, 0, npz)  # pylint: disable=protected-access
    before = _load()
    elcd_official._launch("torch", torch_python, "ELCD", 0, epochs, npz, result, official_repo,  # pylint: disable=protected-access
                          log)
    res = np.load(result)
    cpu, wall = res["cpu"].tolist(), res["wall"].tolist()
  return {"epoch_cpu_s": cpu, "epoch_wall_s": wall, "median_epoch_cpu_s": float(np.median(cpu[1:])),
          "median_epoch_wall_s": float(np.median(wall[1:])), "load_average": [before, _load()],
          "official_commit": elcd_official._official_commit(official_repo)}  # pylint: disable=protected-access


def whole_runs(row: dict, epochs: int) -> dict:
  """Estimated CPU seconds of S seeds x `epochs` epochs, from the measured compile and per-epoch figures."""
  s = row["seeds"]
  scan, many = row["scan"], row["scan_seeds"]
  out = {"side_by_side": many["compile_cpu_s"] + epochs * many["median_epoch_cpu_s"],
         "separate_scan": s * (scan["compile_cpu_s"] + epochs * scan["median_epoch_cpu_s"]),
         "separate_scan_cached": scan["compile_cpu_s"] + s * epochs * scan["median_epoch_cpu_s"],
         "separate_step": s * (row["step"]["compile_cpu_s"] + epochs * row["step"]["median_epoch_cpu_s"])}
  if row.get("torch"):
    out["torch"] = s * epochs * row["torch"]["median_epoch_cpu_s"]
  return out


def markdown(meta: dict, rows: list[dict]) -> str:
  s = rows[0]["seeds"]
  lines = ["# ELCD: seeds side by side vs separate runs vs the official PyTorch code", "",
           f"`{meta['command']}`  ", f"Machine: {meta['machine']}; XLA and torch on one thread each; "
           f"{meta['versions']}.", "",
           f"CPU seconds per seed-epoch: the median epoch after the first (of {meta['epochs']}), divided by the seeds "
           f"it trains. Compile: the first epoch's CPU seconds minus a later epoch's (tracing + XLA, no persistent "
           f"cache). Load average (1 min) before → after each measurement, on 2 cores shared with other work.", "",
           "| variant | steps/epoch | torch (official) | step (1 seed) | scan (1 seed) | "
           f"scan × {s} side by side | side by side vs torch | vs 1-seed scan | compile: step / scan / × {s} (CPU s) "
           "| load avg |", "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    per_seed = r["scan_seeds"]["median_epoch_cpu_s"] / s
    torch = r.get("torch")
    loads = [r[w]["load_average"] for w in ("step", "scan", "scan_seeds")] + ([torch["load_average"]] if torch else [])
    lo, hi = min(min(x) for x in loads), max(max(x) for x in loads)
    torch_epoch = f"{torch['median_epoch_cpu_s']:.3f}" if torch else "n/a"
    torch_ratio = f"{torch['median_epoch_cpu_s'] / per_seed:.0f}×" if torch else "n/a"
    lines.append(
        f"| {r['variant']} | {r['steps_per_epoch']} | {torch_epoch} | "
        f"{r['step']['median_epoch_cpu_s']:.3f} | {r['scan']['median_epoch_cpu_s']:.4f} | {per_seed:.4f} | "
        f"{torch_ratio} | "
        f"{r['scan']['median_epoch_cpu_s'] / per_seed:.1f}× | {r['step']['compile_cpu_s']:.1f} / "
        f"{r['scan']['compile_cpu_s']:.1f} / {r['scan_seeds']['compile_cpu_s']:.1f} | {lo:.1f}–{hi:.1f} |")
  epochs = meta["whole_run_epochs"]
  lines += ["", f"Whole runs of {s} seeds × {epochs} epochs (the paper's protocol), CPU seconds estimated from the "
                f"figures above (compile + epochs; the torch side has no compile):", "",
            f"| variant | side by side (× {s}) | {s} separate scan runs | same, persistent compilation cache | "
            f"{s} separate per-step runs | torch (official) |", "|---|---|---|---|---|---|"]
  for r in rows:
    w = r["whole_run_cpu_s"]
    torch_run = f"{w['torch']:.0f}" if "torch" in w else "n/a"
    lines.append(f"| {r['variant']} | {w['side_by_side']:.0f} | {w['separate_scan']:.0f} | "
                 f"{w['separate_scan_cached']:.0f} | {w['separate_step']:.0f} | {torch_run} |")
  gaps = ", ".join(f"{r['variant']} {r['seed0_loss_gap_scan_vs_side_by_side']:.1e}" for r in rows)
  lines += ["", f"Seed 0's losses, side by side vs alone (max |difference| over every step): {gaps}."]
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--variants", default="lasa2d-angle,lasa4d,lasa8d")
  parser.add_argument("--seeds", type=int, default=10)
  parser.add_argument("--epochs", type=int, default=6, help="measured epochs (the first holds the compilation)")
  parser.add_argument("--whole-run-epochs", type=int, default=100, help="epochs of the estimated whole runs")
  parser.add_argument("--official-repo", default="/tmp/elcd_official")
  parser.add_argument("--torch-python", default="/work/benchvenv/bin/python")
  parser.add_argument("--results", default=str(RESULTS), help="where the .json and .md go")
  args = parser.parse_args()
  import flax  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel

  rows = []
  for variant in args.variants.split(","):
    row = {"variant": variant, **measure_jax(variant, args.seeds, args.epochs)}
    row["torch"] = measure_torch(variant, args.epochs, args.official_repo, args.torch_python)
    row["whole_run_cpu_s"] = whole_runs(row, args.whole_run_epochs)
    rows.append(row)
    print(json.dumps({k: v for k, v in row.items() if k in ("variant", "whole_run_cpu_s")}), flush=True)
    partial = pathlib.Path(tempfile.gettempdir()) / "seeds_side_by_side.partial.json"
    partial.write_text(json.dumps(rows, default=str) + "\n")  # the rows so far, should a later variant fail
  torch_version = "not measured"
  if any(r["torch"] for r in rows):
    torch_version = subprocess.run([args.torch_python, "-c", "import torch; print(torch.__version__)"],
                                   capture_output=True, text=True).stdout.strip()
  cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
                   platform.processor())
  meta = {"command": " ".join(["python", "benchmarks/seeds_side_by_side.py", *sys.argv[1:]]),
          "machine": f"{cpu_model}, {os.cpu_count()} cores", "epochs": args.epochs,
          "whole_run_epochs": args.whole_run_epochs, "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "versions": f"jax {jax.__version__}, flax {flax.__version__}, torch {torch_version}, "
                      f"python {platform.python_version()}"}
  results = pathlib.Path(args.results)
  results.mkdir(parents=True, exist_ok=True)
  (results / "seeds_side_by_side.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
  text = markdown(meta, rows)
  (results / "seeds_side_by_side.md").write_text(text)
  print(text)


if __name__ == "__main__":
  main()
