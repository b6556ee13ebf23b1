r"""The cost of the Lipschitz guarantee: training step, PGD throughput and verify time, constrained vs baseline.

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false .venv/bin/python benchmarks/nonexpansive_cost.py [--cifar]

For the digits models (`nonexpansive-resnet-digits` vs `resnet-baseline-digits`, same architecture) and, with
--cifar, the CIFAR-10-sized ones on random inputs:

* training step: one jitted `nnx.value_and_grad(loss)` + `nnx.Optimizer.update` (SGD, momentum 0.9) in training
  mode, batch 32; the constrained step adds one power-iteration step per normalised
  operator, the σ_min iteration of each contractive step, the normalisation and the orthogonality penalty.
* PGD: L2 PGD, 10 steps, on the 359 digits test images (or 32 random CIFAR-sized images): images per second.
* verify: `zoo.verify` on the shipped weights (nonexpansive: 1000 power iterations × 3 starts per operator,
  exact SVD of the ≤ 4096-input operators, 2000 random pairs, 64 × 200 ascent steps; volnet-pendulum: jacfwd
  determinant and inverse at 10 000 states), compilation included.

Each timing is the median of `--repeats` runs after one warm-up run (which holds the compilation, reported
apart); wall-clock and process CPU seconds. One XLA thread. Writes benchmarks/results/nonexpansive_cost.json
and nonexpansive_cost.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import zoo
import zoo.data
from train.trainer import make_train_step
from zoo import attacks
from zoo.models import nonexpansive as ne
from zoo.models import volume  # noqa: F401  (registers volnet-pendulum)

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _timed(fn, repeats: int) -> dict[str, float]:
  """First call (compile + run), then the median wall / CPU seconds of `repeats` calls."""
  t0, c0 = time.perf_counter(), time.process_time()
  fn()
  first = time.perf_counter() - t0
  del c0
  walls, cpus = [], []
  for _ in range(repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    walls.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
  return {"first_call_s": first, "median_wall_s": float(np.median(walls)), "median_cpu_s": float(np.median(cpus))}


def train_step_time(name: str, x: np.ndarray, y: np.ndarray, repeats: int, **overrides) -> dict[str, float]:
  model = zoo.create(name, **overrides)
  opt = nnx.Optimizer(model, optax.sgd(0.01, momentum=0.9), wrt=nnx.Param)
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}

  step = make_train_step(ne.loss)
  model.train()
  return _timed(lambda: jax.block_until_ready(step(opt, model, batch)), repeats)


def pgd_throughput(name: str, x: np.ndarray, y: np.ndarray, eps: float, repeats: int, **overrides) -> dict:
  model = zoo.create(name, **overrides)
  model.eval()
  out = _timed(lambda: attacks.robust_accuracy(model, x, y, eps, steps=10), repeats)
  out["images_per_s"] = len(x) / out["median_wall_s"]
  return out


def verify_time(name: str, **overrides) -> dict:
  """`zoo.verify` (the family's default settings, as `zoo verify NAME`) on the shipped weights when embedded,
  else on a fresh model; includes its compilations."""
  from zoo import hub  # pylint: disable=import-outside-toplevel

  shipped = (hub.checkpoints_dir() / name / "manifest.json").is_file()
  model = zoo.load(name) if shipped else zoo.create(name, **overrides)
  t0, c0 = time.perf_counter(), time.process_time()
  checks = zoo.verify(model, name)
  return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "weights": "shipped" if shipped
          else "random", "passed": sum(c.passed for c in checks), "checks": len(checks)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--cifar", action="store_true", help="also time the CIFAR-10-sized models")
  parser.add_argument("--table", action="store_true", help="only re-render the markdown from the stored JSON")
  args = parser.parse_args()
  if args.table:
    (RESULTS / "nonexpansive_cost.md").write_text(table(json.loads((RESULTS / "nonexpansive_cost.json").read_text())))
    return

  results: dict = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                               "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
                               "jax": jax.__version__, "device": str(jax.devices()[0])},
                   "repeats": args.repeats, "rows": []}
  test = zoo.data.load("digits", "test")
  train = zoo.data.load("digits", "train")
  setups = [("digits", "nonexpansive-resnet-digits", "resnet-baseline-digits", train["image"][:32],
             train["label"][:32], test["image"], test["label"], 0.5, {})]
  if args.cifar:
    rng = np.random.default_rng(0)
    setups.append(("cifar10-sized", "nonexpansive-resnet-cifar10", "resnet-baseline-cifar10",
                   rng.random((32, 32, 32, 3), np.float32), rng.integers(0, 10, 32),
                   rng.random((32, 32, 32, 3), np.float32), rng.integers(0, 10, 32), 0.5, {}))
  for label, constrained, baseline, xb, yb, xt, yt, eps, overrides in setups:
    for name in (constrained, baseline):
      row = {"setup": label, "model": name, "train_batch": len(xb), "pgd_images": len(xt)}
      small = label != "digits"  # CIFAR-sized steps take seconds on one core: fewer repeats
      row["train_step"] = train_step_time(name, xb, yb, 3 if small else args.repeats, **overrides)
      row["pgd"] = pgd_throughput(name, xt, yt, eps, 1 if small else max(3, args.repeats // 5), **overrides)
      if label == "digits":
        row["verify"] = verify_time(name, **overrides)
      results["rows"].append(row)
      print(json.dumps(row))
  results["verify_volnet"] = verify_time("volnet-pendulum")
  print(json.dumps(results["verify_volnet"]))

  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / "nonexpansive_cost.json").write_text(json.dumps(results, indent=2) + "\n")
  text = table(results)
  (RESULTS / "nonexpansive_cost.md").write_text(text)
  print(text)


def table(results: dict) -> str:
  """The markdown table of a results dict (as written to nonexpansive_cost.json)."""
  repeats = results["repeats"]
  lines = ["# Cost of the Lipschitz guarantee (benchmarks/nonexpansive_cost.py)", "",
           f"{results['machine']['device']}, one XLA thread, jax {results['machine']['jax']}; load average at start "
           f"{results['machine']['load_avg'][0]:.1f} on {results['machine']['cpus']} cores (a shared machine: "
           f"CPU seconds are the steadier number). Medians of {repeats} training steps and "
           f"{max(3, repeats // 5)} PGD runs after a warm-up (CIFAR-sized: 3 steps, 1 PGD run).", "",
           "| setup | model | train step wall (ms) | train step CPU (ms) | first step incl. compile (s) | "
           "PGD-10 images/s (wall) | PGD-10 images per CPU-s | verify (s) |", "|---|---|---|---|---|---|---|---|"]
  for r in results["rows"]:
    ver = (f"{r['verify']['wall_s']:.1f} wall / {r['verify']['cpu_s']:.1f} CPU ({r['verify'].get('weights', 'random')}"
           f" weights, {r['verify']['passed']}/{r['verify']['checks']} pass)" if "verify" in r else "-")
    lines.append(f"| {r['setup']} (batch {r['train_batch']}) | `{r['model']}` | "
                 f"{1e3 * r['train_step']['median_wall_s']:.1f} | {1e3 * r['train_step']['median_cpu_s']:.1f} | "
                 f"{r['train_step']['first_call_s']:.1f} | {r['pgd']['images_per_s']:.3g} | "
                 f"{r['pgd_images'] / r['pgd']['median_cpu_s']:.3g} | {ver} |")
  if "verify_volnet" in results:
    v = results["verify_volnet"]
    lines += ["", f"`zoo verify volnet-pendulum` ({v.get('weights', 'random')} weights; 10 000 states, jacfwd + "
              f"inverse, float64): {v['wall_s']:.1f} s wall, {v['cpu_s']:.1f} s CPU, {v['passed']}/{v['checks']} pass."]
  for label in dict.fromkeys(r["setup"] for r in results["rows"]):
    rows = [r for r in results["rows"] if r["setup"] == label]
    if len(rows) == 2:
      ratio = rows[0]["train_step"]["median_cpu_s"] / rows[1]["train_step"]["median_cpu_s"]
      lines += ["", f"{label}: the constrained training step costs {ratio:.2f}× the baseline's (CPU time)."]
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()
