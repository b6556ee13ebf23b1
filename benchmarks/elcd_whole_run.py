r"""A whole ELCD training run, compilation included, in a fresh process: `python -m train` vs the official code.

    .venv/bin/python benchmarks/elcd_whole_run.py --variants lasa2d-angle --epochs 10 \
        [--official-repo /tmp/elcd_official --torch-python /work/benchvenv/bin/python] [--modes step,scan]

The official side is `benchmarks/elcd_official.py`'s torch worker (its header says how to make the checkout and
venv) run as its own process: import torch and the official `utils`, build ELCD, train `--epochs` epochs on the
zoo's LASA data in the trainer's `batch_order` (seed 0), then the RK4 rollouts from every demonstration's start.
Its data file is written beforehand by this process (not timed).

The zoo side is the user's command, `python -m train --config configs/elcd.py:VARIANT --config.epochs=E
--workdir NEW` (seed 0, the same data and batches), in a fresh process, per mode: `step` (the default, one
dispatch per step) and `scan` (`--config.scan_epoch=True`), each run
  * cold: an empty zoo cache (`ZOO_CACHE_DIR` = a new folder: no compiled programs, registry index or remembered
    `best_metric` probe),
  * warm: a second process with the cache the cold one filled (a new workdir), and
  * warm, `--config.export=False`: no export, checks, plots or card (the official run writes none).
A zoo run does more than the official loop: it checks `best_metric` on a few examples first, saves orbax
checkpoints, evaluates (rollouts of every demonstration) and by default exports a verified checkpoint with plots and
card. Every zoo process runs under a small wrapper that records JAX's monitoring events (sums and counts: tracing,
lowering, XLA compilation, cache hits/misses, time saved) and the seconds its imports took.

Wall-clock and CPU seconds (the child's user + system time, `resource.getrusage(RUSAGE_CHILDREN)`) of each whole
process; XLA and torch on one thread. Writes benchmarks/results/elcd_whole_run.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

import elcd_official  # pylint: disable=wrong-import-position  # the torch worker and its data

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}

# Runs `python -m train ARGS` in this process after noting the import time, with listeners on JAX's monitoring
# events; their sums and counts go to $BENCH_EVENTS at exit.
WRAPPER = r"""
import atexit, collections, json, os, sys, time
w0, c0 = time.perf_counter(), time.process_time()
import train.__main__ as entry
imports = {"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0}
import jax.monitoring as monitoring
durations, events = collections.defaultdict(lambda: [0.0, 0]), collections.Counter()
by_fun = collections.defaultdict(lambda: [0.0, 0])
def on_duration(name, seconds, **kw):
  for key, table in ((name, durations), (name + " " + str(kw.get("fun_name", "")), by_fun)):
    table[key][0] += seconds
    table[key][1] += 1
monitoring.register_event_duration_secs_listener(on_duration)
monitoring.register_event_listener(lambda name, **kw: events.update([name]))
def dump():
  with open(os.environ["BENCH_EVENTS"], "w") as f:
    json.dump({"imports": imports, "durations": {k: {"s": v[0], "n": v[1]} for k, v in durations.items()},
               "events": dict(events),
               "by_function": {k: {"s": v[0], "n": v[1]} for k, v in sorted(by_fun.items(), key=lambda kv: -kv[1][0])
                               if "/jax/core/compile/" in k}}, f)
atexit.register(dump)
entry.run(sys.argv)
"""


def _timed(cmd: list[str], env: dict, log) -> dict:
  """Runs cmd to the end; its wall-clock and CPU (user + system) seconds."""
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  load = os.getloadavg()[0]
  w = time.perf_counter()
  proc = subprocess.run(cmd, env=env, cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT)
  wall = time.perf_counter() - w
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  if proc.returncode:
    raise RuntimeError(f"{cmd[:4]}... failed (exit {proc.returncode}); see {log.name}")
  cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
  return {"wall_s": wall, "cpu_s": cpu, "load_average": [round(load, 2), round(os.getloadavg()[0], 2)]}


def official_run(variant: str, epochs: int, args, tmp: pathlib.Path, log) -> dict | None:
  if not (pathlib.Path(args.official_repo).is_dir() and pathlib.Path(args.torch_python).is_file()):
    print(f"(no official checkout at {args.official_repo} or no {args.torch_python}: the torch side is not run)")
    return None
  npz, out = tmp / f"{variant}.npz", tmp / f"{variant}-torch.npz"
  elcd_official._prepare(variant, epochs, 0, npz)  # pylint: disable=protected-access
  cmd = [args.torch_python, str(ROOT / "benchmarks" / "elcd_official.py"), "--worker", "torch", "--model", "ELCD",
         "--seed", "0", "--epochs", str(epochs), "--npz", str(npz), "--out", str(out), "--official-repo",
         args.official_repo]
  row = _timed(cmd, {**os.environ, **ONE_THREAD}, log)
  import numpy as np  # pylint: disable=import-outside-toplevel

  res = np.load(out)
  row.update(train_cpu_s=float(res["cpu"].sum()), train_wall_s=float(res["wall"].sum()),
             final_loss=float(res["losses"][-1]),
             official_commit=elcd_official._official_commit(args.official_repo))  # pylint: disable=protected-access
  return row


def zoo_run(variant: str, epochs: int, mode: str, cache: pathlib.Path, workdir: pathlib.Path, export: bool,
            log) -> dict:
  events = workdir.with_suffix(".events.json")
  cmd = [sys.executable, "-c", WRAPPER, f"--config={ROOT / 'configs' / 'elcd.py'}:{variant}",
         f"--config.epochs={epochs}", f"--config.scan_epoch={mode == 'scan'}", f"--config.export={export}",
         f"--workdir={workdir}"]
  env = {**os.environ, **ONE_THREAD, "ZOO_CACHE_DIR": str(cache), "BENCH_EVENTS": str(events),
         "PYTHONPATH": str(ROOT)}  # the zoo's whole cache: compiled programs, registry index, metric names
  for name in ("JAX_COMPILATION_CACHE_DIR", "ZOO_COMPILATION_CACHE_DIR", "ZOO_COMPILATION_CACHE"):
    env.pop(name, None)
  row = _timed(cmd, env, log)
  recorded = json.loads(events.read_text())
  result = json.loads((workdir / "result.json").read_text())
  d = recorded["durations"]
  pick = lambda name: d.get(name, {"s": 0.0, "n": 0})  # noqa: E731
  row.update(
      imports_wall_s=recorded["imports"]["wall_s"], imports_cpu_s=recorded["imports"]["cpu_s"],
      train_seconds=result["train_seconds"], final_loss=result["metrics"].get("loss"),
      metrics=result["metrics"],
      trace_s=pick("/jax/core/compile/jaxpr_trace_duration")["s"],
      lower_s=pick("/jax/core/compile/jaxpr_to_mlir_module_duration")["s"],
      backend_compile_s=pick("/jax/core/compile/backend_compile_duration")["s"],
      backend_compiles=pick("/jax/core/compile/backend_compile_duration")["n"],
      cache_retrieval_s=pick("/jax/compilation_cache/cache_retrieval_time_sec")["s"],
      cache_hits=recorded["events"].get("/jax/compilation_cache/cache_hits", 0),
      cache_misses=recorded["events"].get("/jax/compilation_cache/cache_misses", 0),
      compile_time_saved_s=pick("/jax/compilation_cache/compile_time_saved_sec")["s"],
      durations=d, events=recorded["events"], by_function=dict(list(recorded["by_function"].items())[:40]))
  return row


def markdown(meta: dict, rows: list[dict]) -> str:
  lines = ["# A whole ELCD run, compilation included, vs the official PyTorch code", "",
           f"`{meta['command']}`  ", f"Machine: {meta['machine']}; XLA and torch on one thread each; "
           f"{meta['versions']}.", "",
           "Each row is one fresh process, timed whole (wall clock; CPU = user + system of the process). Zoo: "
           "`python -m train --config configs/elcd.py:VARIANT --config.epochs=E` (seed 0), cold = empty zoo cache "
           "(`ZOO_CACHE_DIR`: compiled programs, registry index, remembered `best_metric` probe), warm = a second "
           "process on the cache the cold one filled. Official: the ELCD torch "
           "worker of `benchmarks/elcd_official.py` (same data and batches), training + rollouts. Trace / lower / "
           "XLA: sums of JAX's monitoring durations (`/jax/core/compile/jaxpr_trace_duration`, "
           "`.../jaxpr_to_mlir_module_duration`, `.../backend_compile_duration`); hits/misses: persistent-cache "
           "events.", "",
           "| variant | run | wall s | CPU s | vs official (wall / CPU) | imports s | training loop s | trace s | "
           "lower s | XLA compile s (programs) | cache hits / misses | final loss | load avg |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    off = r.get("official")
    if off:
      lines.append(f"| {r['variant']} | official torch, {r['epochs']} epochs + rollouts | {off['wall_s']:.1f} | "
                   f"{off['cpu_s']:.1f} | 1× | | {off['train_wall_s']:.1f} | | | | | {off['final_loss']:.4g} | "
                   f"{off['load_average'][0]:.1f}–{off['load_average'][1]:.1f} |")
    for z in r["zoo"]:
      ratio = f"{off['wall_s'] / z['wall_s']:.2f}× / {off['cpu_s'] / z['cpu_s']:.2f}×" if off else "n/a"
      lines.append(
          f"| {r['variant']} | zoo {z['mode']}, {z['cache']}{'' if z['export'] else ', no export'} | "
          f"{z['wall_s']:.1f} | {z['cpu_s']:.1f} | {ratio} | {z['imports_wall_s']:.1f} | {z['train_seconds']:.1f} | "
          f"{z['trace_s']:.1f} | {z['lower_s']:.1f} | {z['backend_compile_s']:.1f} ({z['backend_compiles']}) | "
          f"{z['cache_hits']} / {z['cache_misses']} | {z['final_loss']:.4g} | "
          f"{z['load_average'][0]:.1f}–{z['load_average'][1]:.1f} |")
  for r in rows:
    pairs = [(a, b) for a, b in zip(r["zoo"], r["zoo"][1:]) if "forgotten" in a["cache"]]
    if pairs:
      cpu = lambda zs: sum(z["cpu_s"] for z in zs) / len(zs)  # noqa: E731  # mean
      for mode in sorted({a["mode"] for a, _ in pairs}):
        fa, fb = [a for a, _ in pairs if a["mode"] == mode], [b for a, b in pairs if a["mode"] == mode]
        lines += ["", f"{r['variant']} {mode}, warm with export, the best_metric probe forgotten vs remembered "
                      f"({len(fa)} alternating pairs): mean {cpu(fa):.1f} vs {cpu(fb):.1f} CPU s, programs "
                      f"{fa[0]['backend_compiles']} vs {fb[0]['backend_compiles']}."]
  same = all(z["metrics"] == r["zoo"][0]["metrics"] for r in rows for z in r["zoo"] if z["mode"] == r["zoo"][0]["mode"])
  lines += ["", f"Every zoo run of a mode ends with the same metrics (all {len(rows[0]['zoo'][0]['metrics'])} keys "
                f"of result.json compared exactly): {'yes' if same else 'NO'}."]
  lines += ["", "Ratios > 1× mean the zoo run is faster. The zoo's final loss is its evaluation's `loss` (MSE on the "
                "test velocities); the official figure is its last epoch's mean training loss."]
  for r in rows:
    off = r.get("official")
    if off:
      lines += ["", f"{r['variant']}, training alone (no imports, no rollouts): official {off['train_cpu_s']:.1f} CPU s /"
                    f" {off['train_wall_s']:.1f} wall s for {r['epochs']} epochs; the official process spends the rest "
                    f"({off['cpu_s'] - off['train_cpu_s']:.1f} CPU s) importing torch and in its RK4 rollouts."]
    for z in r["zoo"]:
      if z["cache"] == "cold" and "by_function" in z:
        top = sorted(((v["s"], v["n"], k.split(" ", 1)[1]) for k, v in z["by_function"].items()
                      if "backend_compile" in k), reverse=True)[:6]
        lines += ["", f"Compile time of a cold `{z['mode']}` run by program (XLA seconds, wall, programs): " + "; ".join(
            f"{name} {s:.1f} s ({n})" for s, n, name in top) + "."]
      if z["cache"] != "warm" or not z["export"] or "by_function" not in z or z.get("shown"):
        continue
      z["shown"] = True  # the first warm run with export of each mode
      top = sorted(((v["s"], v["n"], k.split(" ", 1)) for k, v in z["by_function"].items()), reverse=True)[:8]
      lines += ["", f"Where a warm `{z['mode']}` run's compile-side seconds go (top 8 of trace / lower / XLA-or-cache "
                    f"by function, wall seconds, calls): " + "; ".join(
                        f"{k[0].rsplit('/', 1)[-1].replace('_duration', '')} {k[1]} {s:.1f} s ({n})" for s, n, k in top)]
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--variants", default="lasa2d-angle")
  parser.add_argument("--epochs", type=int, default=10)
  parser.add_argument("--modes", default="step,scan")
  parser.add_argument("--official-repo", default="/tmp/elcd_official")
  parser.add_argument("--torch-python", default="/work/benchvenv/bin/python")
  parser.add_argument("--results", default=str(RESULTS))
  parser.add_argument("--probe-ab", type=int, default=0, help="then this many pairs of warm runs, the best_metric "
                      "probe forgotten (metric-names.json removed) and remembered, alternating")
  parser.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the existing .json")
  args = parser.parse_args()
  if args.markdown_only:
    saved = json.loads((pathlib.Path(args.results) / "elcd_whole_run.json").read_text())
    (pathlib.Path(args.results) / "elcd_whole_run.md").write_text(markdown(saved["meta"], saved["rows"]))
    return
  rows = []
  with tempfile.TemporaryDirectory() as tmp_name, open(pathlib.Path(tmp_name) / "runs.log", "w+") as log:
    tmp = pathlib.Path(tmp_name)
    for variant in args.variants.split(","):
      row = {"variant": variant, "epochs": args.epochs, "zoo": []}
      row["official"] = official_run(variant, args.epochs, args, tmp, log)
      print(variant, "official", row["official"], flush=True)
      for mode in args.modes.split(","):
        cache = tmp / f"cache-{variant}-{mode}"  # empty: the first run compiles and probes everything
        runs = [("cold", True), ("warm", True), ("warm", False)]
        runs += [("warm, probe forgotten", True), ("warm", True)] * args.probe_ab
        for i, (label, export) in enumerate(runs):
          workdir = tmp / f"run-{variant}-{mode}-{i}"
          if "forgotten" in label:  # the same warm run, but the best_metric probe evaluates again
            (cache / "metric-names.json").unlink(missing_ok=True)
          z = zoo_run(variant, args.epochs, mode, cache, workdir, export, log)
          z.update(mode=mode, cache=label, export=export)
          row["zoo"].append(z)
          print(variant, mode, label, "export" if export else "no export",
                {k: round(v, 2) if isinstance(v, float) else v for k, v in z.items()
                 if k not in ("durations", "events", "metrics", "by_function")}, flush=True)
      rows.append(row)
    log.seek(0)
    tail = log.read()[-3000:]
  import flax  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel

  torch_version = subprocess.run([args.torch_python, "-c", "import torch; print(torch.__version__)"],
                                 capture_output=True, text=True).stdout.strip() or "not run"
  cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
                   platform.processor())
  meta = {"command": " ".join(["python", "benchmarks/elcd_whole_run.py", *sys.argv[1:]]),
          "machine": f"{cpu_model}, {os.cpu_count()} cores (shared)", "xla_flags": ONE_THREAD["XLA_FLAGS"],
          "versions": f"jax {jax.__version__}, flax {flax.__version__}, torch {torch_version}, "
                      f"python {platform.python_version()}", "log_tail": tail}
  results = pathlib.Path(args.results)
  results.mkdir(parents=True, exist_ok=True)
  (results / "elcd_whole_run.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
  text = markdown(meta, rows)
  (results / "elcd_whole_run.md").write_text(text)
  print(text)


if __name__ == "__main__":
  main()
