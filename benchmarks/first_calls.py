r"""How long a user waits for the first calls, each in a fresh process on CPU (issue 16's goals).

    python benchmarks/first_calls.py --label after                 # this checkout
    PYTHONPATH=/tmp/before python benchmarks/first_calls.py --label before --root /tmp/before   # an older checkout

Rows (median of --repeat runs; wall seconds and the child's CPU seconds, user + system):
  import jax / import zoo  side by side (alternating), goal: zoo ≤ 1.5 × jax
  zoo list, zoo info       goal ≤ 1 s (the registry index is built by a first, unmeasured call)
  zoo.create(NAME)         every registered model, each in a fresh process (import not counted); cold: empty
                           compilation cache, warm: a second process; goal ≤ 1 s; and how many XLA programs the
                           create compiled or loaded from the cache (JAX's backend-compile event)
  ELCD rollout             `zoo.load("elcd-lasa8d").rollout(x0, steps=1000)` in a first and a second process;
                           goal: the second process's first rollout ≤ 3 s
Writes benchmarks/results/first_calls_LABEL.json and .md. The machine may be shared: CPU seconds are the steadier
figure, wall seconds what a user waits.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent


def run(code: str, root: pathlib.Path, env: dict[str, str]) -> tuple[float, float, str]:
  """(wall s, child CPU s, stdout) of `python -c code` in a fresh process."""
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  start = time.perf_counter()
  out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=1800)
  wall = time.perf_counter() - start
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  if out.returncode != 0:
    raise RuntimeError(f"{code!r} failed: {out.stderr[-2000:]}")
  return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), out.stdout


def timed(code: str, root, env) -> float:
  """The seconds a snippet reports itself (it prints `T=<wall seconds>`, optionally `C=<CPU seconds>` and
  `N=<programs compiled or loaded>`), e.g. excluding its imports; CPU seconds and counts go to CPU_SECONDS and
  PROGRAMS."""
  _, _, out = run(code, root, env)
  fields = dict(f.split("=", 1) for f in out.strip().splitlines()[-1].split() if "=" in f)
  CPU_SECONDS.append(float(fields.get("C", "nan")))
  HITS.append(int(fields.get("H", -1)))
  PROGRAMS.append(int(fields["N"]) if "N" in fields else -1)
  return float(fields["T"])


CPU_SECONDS: list[float] = []
HITS: list[int] = []  # zoo.create's initial-state cache hits (zoo.init_cache; -1: a checkout without it)
PROGRAMS: list[int] = []  # XLA programs compiled or loaded from the persistent cache (JAX's backend-compile event)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--label", default="after")
  parser.add_argument("--root", default=str(HERE.parent), help="the checkout to measure (its zoo is imported)")
  parser.add_argument("--repeat", type=int, default=5)
  parser.add_argument("--models", default="*", help="comma-separated wildcards of the models whose zoo.create is timed")
  args = parser.parse_args()
  root = pathlib.Path(args.root).resolve()
  cache = pathlib.Path(tempfile.mkdtemp(prefix="zoo-first-calls-"))
  env = {**os.environ, "PYTHONPATH": str(root), "ZOO_CACHE_DIR": str(cache), "JAX_PLATFORMS": "cpu",
         "TF_CPP_MIN_LOG_LEVEL": "3"}
  rows: dict[str, dict] = {}

  def record(key: str, samples: list[tuple[float, float]], goal: str = "") -> None:
    rows[key] = {"wall_s": statistics.median(s[0] for s in samples),
                 "cpu_s": statistics.median(s[1] for s in samples), "runs": len(samples), "goal": goal}
    print(f"{key:<40} wall {rows[key]['wall_s']:7.2f} s  cpu {rows[key]['cpu_s']:7.2f} s  {goal}", flush=True)

  jax_s, zoo_s = [], []
  for _ in range(args.repeat):  # side by side: alternate so both see the same load
    jax_s.append(run("import jax", root, env)[:2])
    zoo_s.append(run("import zoo", root, env)[:2])
  record("import jax", jax_s)
  record("import zoo", zoo_s, "≤ 1.5 × import jax")
  rows["import zoo"]["ratio_wall"] = rows["import zoo"]["wall_s"] / rows["import jax"]["wall_s"]
  rows["import zoo"]["ratio_cpu"] = rows["import zoo"]["cpu_s"] / rows["import jax"]["cpu_s"]

  cli = "import sys; from zoo.cli import main; sys.exit(main({argv!r}))"
  first = run(cli.format(argv=["list"]), root, env)  # builds the registry index (once per install / edit)
  rows["zoo list (first ever: builds the index)"] = {"wall_s": first[0], "cpu_s": first[1], "runs": 1, "goal": ""}
  record("zoo list", [run(cli.format(argv=["list"]), root, env)[:2] for _ in range(args.repeat)], "≤ 1 s")
  record("zoo info elcd-lasa8d", [run(cli.format(argv=["info", "elcd-lasa8d"]), root, env)[:2]
                                  for _ in range(args.repeat)], "≤ 1 s")

  patterns = args.models.split(",")
  names = json.loads(run(f"import json, zoo; print(json.dumps(sorted({{n for p in {patterns!r} "
                         f"for n in zoo.list_models(p)}})))", root, env)[2])
  create = ("import time, jax, zoo; zoo.get_spec({name!r}); n = []; "
            "jax.monitoring.register_event_duration_secs_listener(lambda e, s, **k: n.append(e) "
            "if e == '/jax/core/compile/backend_compile_duration' else None); "
            "t = time.perf_counter(); c = time.process_time(); "
            "zoo.create({name!r}); t, c = time.perf_counter() - t, time.process_time() - c; import sys; "
            "h = getattr(sys.modules.get('zoo.init_cache'), 'STATS', {{'hit': -1}})['hit']; "
            "print(f'T={{t}} C={{c}} N={{len(n)}} H={{h}}')")
  creates = {}
  for name in names:
    cold = timed(create.format(name=name), root, env)
    warm = timed(create.format(name=name), root, env)
    creates[name] = {"cold_s": cold, "warm_s": warm, "cold_cpu_s": CPU_SECONDS[-2], "warm_cpu_s": CPU_SECONDS[-1],
                     "programs": PROGRAMS[-1], "init_cache_hits": [HITS[-2], HITS[-1]]}
    print(f"zoo.create({name!r}){'':<{max(0, 30 - len(name))}} cold {cold:7.2f} s  warm {warm:7.2f} s  "
          f"(CPU {CPU_SECONDS[-2]:.2f} / {CPU_SECONDS[-1]:.2f} s; {PROGRAMS[-1]} programs; init-state cache hits "
          f"{HITS[-2]} / {HITS[-1]})", flush=True)
  rows["zoo.create"] = {"per_model": creates, "max_cold_s": max(c["cold_s"] for c in creates.values()),
                        "max_warm_cpu_s": max(c["warm_cpu_s"] for c in creates.values()),
                        "max_warm_s": max(c["warm_s"] for c in creates.values()),
                        "median_warm_s": statistics.median(c["warm_s"] for c in creates.values()), "goal": "≤ 1 s",
                        "warm_meeting_goal": sum(c["warm_s"] <= 1 for c in creates.values()),
                        "warm_cpu_meeting_goal": sum(c["warm_cpu_s"] <= 1 for c in creates.values())}

  rollout = ("import time, numpy as np, zoo; m = zoo.load('elcd-lasa8d'); x0 = np.zeros((4, 8), np.float32) + 0.5; "
             "t = time.perf_counter(); c = time.process_time(); np.asarray(m.rollout(x0, steps=1000)); "
             "print(f'T={time.perf_counter() - t} C={time.process_time() - c}')")
  rows["ELCD first rollout, first process"] = {"wall_s": timed(rollout, root, env), "cpu_s": CPU_SECONDS[-1],
                                               "goal": ""}
  rows["ELCD first rollout, second process"] = {"wall_s": timed(rollout, root, env), "cpu_s": CPU_SECONDS[-1],
                                                "goal": "≤ 3 s"}
  for k in ("ELCD first rollout, first process", "ELCD first rollout, second process"):
    print(f"{k:<40} {rows[k]['wall_s']:7.2f} s  cpu {rows[k]['cpu_s']:7.2f} s", flush=True)

  meta = {"label": args.label, "root": str(root), "python": platform.python_version(), "cpus": os.cpu_count(),
          "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
  out = HERE / "results" / f"first_calls_{args.label}"
  out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, ensure_ascii=False) + "\n")
  lines = [f"# First calls ({args.label})", "", f"{meta['date']}, {meta['cpus']} CPUs, load average "
           f"{', '.join(f'{x:.1f}' for x in meta['load_average'])} (shared machine). Fresh process per row; median "
           f"of {args.repeat}.", "", "| step | wall s | CPU s | goal |", "|---|---|---|---|"]
  for k, r in rows.items():
    if k == "zoo.create":
      lines.append(f"| zoo.create, slowest of {len(creates)} models (cold / warm cache) | {r['max_cold_s']:.2f} / "
                   f"{r['max_warm_s']:.2f} | - / {r['max_warm_cpu_s']:.2f} | {r['goal']} |")
    else:
      cpu = f"{r['cpu_s']:.2f}" if "cpu_s" in r else ""
      lines.append(f"| {k} | {r['wall_s']:.2f} | {cpu} | {r['goal']} |")
  lines += ["", f"import zoo / import jax: {rows['import zoo']['ratio_wall']:.2f} (wall), "
            f"{rows['import zoo']['ratio_cpu']:.2f} (CPU).", "",
            f"zoo.create warm ≤ 1 s: {rows['zoo.create']['warm_meeting_goal']} of {len(creates)} models (wall), "
            f"{rows['zoo.create']['warm_cpu_meeting_goal']} of {len(creates)} (CPU).", "",
            "| model | create cold: wall s (CPU s) | create warm: wall s (CPU s) | XLA programs per warm create | "
            "init-state cache hits cold / warm |", "|---|---|---|---|---|"]
  lines += [f"| {n} | {c['cold_s']:.2f} ({c['cold_cpu_s']:.2f}) | {c['warm_s']:.2f} ({c['warm_cpu_s']:.2f}) | "
            f"{c['programs']} | {c['init_cache_hits'][0]} / {c['init_cache_hits'][1]} |" for n, c in creates.items()]
  out.with_suffix(".md").write_text("\n".join(lines) + "\n")
  print(f"wrote {out}.json and .md")


if __name__ == "__main__":
  main()
