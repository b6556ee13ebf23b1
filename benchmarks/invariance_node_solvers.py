r"""A/B of the spiral models' training-loss solvers: loss + gradient of 20 windows, diffrax vs `solve_windows`.

    .venv/bin/python benchmarks/invariance_node_solvers.py [--rounds 8] [--batches 10]

`InvariantNeuralODE.trajectory_loss(y, t, solver)` with solver="diffrax" (a vmap of diffrax.diffeqsolve, Dopri5,
RecursiveCheckpointAdjoint: what training used before) and "windows" (zoo.nn.dopri5.solve_windows: the same steps,
a discrete adjoint, unfinished windows gathered into narrower lanes), each `jax.jit(nnx.value_and_grad(...))`, on
the first training batches of seed 0's epoch 0, for the initial weights (seed 0: most windows take 10 steps) and the
shipped weights (trained: windows near the obstacles take up to 55). The two solvers alternate round by round, so
the machine's drift hits both; CPU seconds per batch (one thread), the median over rounds, and the loss and
gradient differences. Writes benchmarks/results/invariance_node_solvers.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

import numpy as np

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=8)
  parser.add_argument("--batches", type=int, default=10)
  args = parser.parse_args()
  sys.path.insert(0, str(ROOT))
  import jax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel

  import zoo  # pylint: disable=import-outside-toplevel
  import zoo.data  # pylint: disable=import-outside-toplevel
  from train import trainer  # pylint: disable=import-outside-toplevel
  from zoo import registry  # pylint: disable=import-outside-toplevel

  rows = []
  for name in ("invariance-node-spiral", "neural-ode-spiral"):
    spec = registry.get_spec(name)
    for weights in ("initial", "shipped"):
      model = spec.build(0) if weights == "initial" else zoo.load(name)
      with spec.family.precision():
        data = zoo.data.load("spiral", "train")
        order = trainer.batch_order(0, 0, len(data["y0"]), 20)[:args.batches]
        batches = [(jax.numpy.asarray(data["y"][o]), jax.numpy.asarray(data["t"][o])) for o in order]
        fns, compile_s, times = {}, {}, {}
        for solver in ("diffrax", "windows"):
          fns[solver] = nnx.jit(nnx.value_and_grad(lambda m, y, t, s=solver: m.trajectory_loss(y, t, s)))
          c = time.process_time()
          jax.block_until_ready(fns[solver](model, *batches[0]))
          compile_s[solver] = time.process_time() - c
          times[solver] = []
        for _ in range(args.rounds):
          for solver, fn in fns.items():
            c = time.process_time()
            for b in batches:
              jax.block_until_ready(fn(model, *b))
            times[solver].append((time.process_time() - c) / len(batches))
        dv, dg = [], []
        for b in batches:
          (v0, g0), (v1, g1) = fns["diffrax"](model, *b), fns["windows"](model, *b)
          dv.append(abs(float(v1) - float(v0)) / abs(float(v0)))
          g0, g1 = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(nnx.to_pure_dict(g))]) for g in (g0, g1))
          dg.append(float(np.max(np.abs(g1 - g0)) / np.max(np.abs(g0))))
      row = {"model": name, "weights": weights, **{f"{s}_ms": 1e3 * statistics.median(t) for s, t in times.items()},
             **{f"{s}_compile_s": c for s, c in compile_s.items()},
             "speedup": statistics.median(times["diffrax"]) / statistics.median(times["windows"]),
             "max_rel_loss_diff": max(dv), "median_rel_grad_diff": statistics.median(dg), "max_rel_grad_diff": max(dg),
             "rounds": {s: t for s, t in times.items()}}
      rows.append(row)
      print(json.dumps({k: v for k, v in row.items() if k != "rounds"}), flush=True)
  command = " ".join(["python", "benchmarks/invariance_node_solvers.py", *sys.argv[1:]])
  out = ROOT / "benchmarks" / "results"
  (out / "invariance_node_solvers.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1) + "\n")
  lines = ["| model | weights | diffrax ms / batch | solve_windows ms / batch | speed-up | compile s (diffrax / windows) "
           "| max rel. loss diff | rel. grad diff (median / max) |", "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['model']} | {r['weights']} | {r['diffrax_ms']:.2f} | {r['windows_ms']:.2f} | "
                 f"{r['speedup']:.1f}x | {r['diffrax_compile_s']:.0f} / {r['windows_compile_s']:.0f} | "
                 f"{r['max_rel_loss_diff']:.1e} | {r['median_rel_grad_diff']:.1e} / {r['max_rel_grad_diff']:.1e} |")
  lines.append(f"\n`{command}`: loss + gradient of 20 windows x 10 samples (jit, float64, one thread, CPU time), "
               f"the median over {args.rounds} rounds of {args.batches} batches, the solvers alternating. A gradient "
               "differs beyond rounding where one accept/reject decision of the step-size controller falls the other "
               "way (a window near an obstacle, where the CBF-QP's active set switches).")
  (out / "invariance_node_solvers.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
