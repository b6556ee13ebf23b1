r"""A/B of the training solve's backward checkpoints (`InvariantNeuralODE.trajectory_loss(checkpoints=...)`).

    .venv/bin/python benchmarks/invariance_node_checkpoints.py [--values none,16,32] [--epochs 3]

For each model and value, in a fresh process (XLA on one thread): seed 0's first `--epochs` epochs with the
trainer's scanned epoch (`make_train_epoch`, `batch_order`), CPU seconds per step (median epoch after the first / 49)
and the last loss, printed with all its digits: equal losses across values show that only the time changes.
Writes benchmarks/results/invariance_node_checkpoints.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def worker(name: str, value: str, epochs: int) -> dict:
  import statistics  # pylint: disable=import-outside-toplevel

  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel

  sys.path.insert(0, str(ROOT))
  import zoo.data  # pylint: disable=import-outside-toplevel
  from train import trainer  # pylint: disable=import-outside-toplevel
  from zoo import registry  # pylint: disable=import-outside-toplevel
  from zoo.models.invariance_node.model import InvariantNeuralODE  # pylint: disable=import-outside-toplevel

  InvariantNeuralODE.trajectory_loss.__defaults__ = (None if value == "none" else int(value),)
  spec = registry.get_spec(name)
  with jax.enable_x64(True):
    data = zoo.data.load("spiral", "train")
    model = spec.build(0)
    model.train()
    import optax  # pylint: disable=import-outside-toplevel
    opt = nnx.Optimizer(model, optax.rmsprop(1e-3, decay=0.99, eps=1e-8, eps_in_sqrt=False), wrt=nnx.Param)
    epoch_fn = trainer.make_train_epoch(spec.family.loss)
    cpu, losses = [], None
    for e in range(epochs):
      order = trainer.batch_order(0, e, len(data["y0"]), 20)
      c = time.process_time()
      losses = np.asarray(epoch_fn(opt, model, {k: v[order] for k, v in data.items()})[0])
      cpu.append(time.process_time() - c)
  return {"model": name, "checkpoints": value, "step_cpu_s": statistics.median(cpu[1:]) / len(order),
          "first_epoch_cpu_s": cpu[0], "last_loss": repr(float(losses[-1]))}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--values", default="none,16,32")
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--models", default="neural-ode-spiral,invariance-node-spiral")
  parser.add_argument("--worker", nargs=2, default=None)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(worker(*args.worker, args.epochs)))
    return
  rows = []
  for name in args.models.split(","):
    for value in args.values.split(","):
      load = os.getloadavg()[0]
      out = subprocess.run([sys.executable, __file__, "--worker", name, value, "--epochs", str(args.epochs)],
                           capture_output=True, text=True, check=True, env={**os.environ, "XLA_FLAGS": ONE_THREAD})
      rows.append({**json.loads(out.stdout.strip().splitlines()[-1]), "load_average": [load, os.getloadavg()[0]]})
      print(rows[-1], flush=True)
  command = " ".join(["python", "benchmarks/invariance_node_checkpoints.py", *sys.argv[1:]])
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / "invariance_node_checkpoints.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1)
                                                            + "\n")
  lines = ["# Backward checkpoints of the invariance-node training solve", "", f"`{command}` (XLA on one thread; "
           f"`none` = diffrax's default, a checkpoint for each of the 4096 `max_steps`)", "",
           "| model | checkpoints | CPU s per step (scanned epoch) | first epoch CPU s | last loss | load avg |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['model']} | {r['checkpoints']} | {r['step_cpu_s']:.5f} | {r['first_epoch_cpu_s']:.1f} | "
                 f"{r['last_loss']} | {r['load_average'][0]:.1f}–{r['load_average'][1]:.1f} |")
  (RESULTS / "invariance_node_checkpoints.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
