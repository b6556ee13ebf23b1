r"""Far-away starts on every shipped ELCD variant: the guaranteed `rollout` vs the paper's data-space RK4.

    taskset -c 1 .venv/bin/python benchmarks/elcd_far_starts.py [--models elcd-lasa8d,...] [--radii 1,10,100,1000] \
        [--starts 200] [--steps 10000] [--cut 1000] [--dt 0.01] [--tol 1e-5] [--force]

For each model and each R: `--starts` directions u uniform on the sphere (seed 0, the same u for every R and both
integrators; `zoo.models.elcd.verify.sphere_starts`), starts x0 = x* + R·u in normalised units (the data live within
‖x‖ ≲ 5), float32, `--dt` (default 0.01) and `--tol` (default 1e-5), one call of each integrator with `--steps`
steps:
  * `rollout`: the public `model.rollout` (linearly implicit step in latent space, ‖z_{k+1} − z*‖ ≤
    ‖z_k − z*‖/(1 + ε dt) for any dt), data-space states x_k = φ⁻¹(z_k);
  * `rollout_rk4_data`: the paper's rollout (classical RK4 on ẋ = J_{φ⁻¹} f in data space, as the official code).
"converged ≤ N steps" = every state up to N finite and ‖x_N − x*‖ ≤ 1e-2 ‖x0 − x*‖ (the state N of the `--steps`
run is the final state of an N-step run: a rollout's prefix does not depend on its length); "finite" = every state
of the `--steps` run finite; "worst final distance" = max ‖x_end − x*‖ after `--steps` steps (non-finite if any
start ends non-finite); "max excursion" = max_k ‖x_k − x*‖ / R over the finite trajectories; "steps taken" = median
and max number of steps before ‖Δx‖ < tol (the official stopping rule; `--steps` if never).

Runs on the CPU with XLA on one thread (pin the process to one core with taskset for steady timings). Writes
benchmarks/results/elcd_far_starts.json (one record per model × integrator × dt × R; an existing file is merged,
records already there are kept unless --force) and elcd_far_starts.md (the table). The committed results, in
order (the RK4 runs take ~5-15 min per model on one core; the file is rewritten after each model):
    B="taskset -c 1 .venv/bin/python benchmarks/elcd_far_starts.py"
    $B --integrators rollout
    $B --integrators rollout_rk4_data --radii 10,100
    $B --integrators rollout_rk4_data --radii 1,1000
    $B --integrators rollout --dt 0.1
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # pylint: disable=wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
INTEGRATORS = ("rollout", "rollout_rk4_data")
CONVERGED = 1e-2


def measure(model, integrator: str, starts: np.ndarray, radii, steps: int, cut: int, dt: float = 0.01,
            tol: float = 1e-5) -> list[dict]:
  """One call of `model.<integrator>` on all starts (grouped by R); one record per R."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  target = np.asarray(model.target, np.float64)
  run = getattr(model, integrator)
  wall = time.perf_counter()
  xs, taken = run(jnp.asarray(starts, jnp.float32), steps=steps, dt=dt, tol=tol, return_steps=True)
  xs, taken = np.asarray(xs), np.asarray(taken)
  wall = time.perf_counter() - wall
  per = len(starts) // len(radii)
  records = []
  with np.errstate(all="ignore"):
    dist = np.linalg.norm(xs.astype(np.float64) - target, axis=-1)  # (n, steps + 1)
    finite_to = np.logical_and.accumulate(np.isfinite(dist), axis=1)  # every state up to k finite
  for i, r in enumerate(radii):
    sl = slice(i * per, (i + 1) * per)
    d, f = dist[sl], finite_to[sl]
    start = d[:, 0]

    def converged(k, d=d, f=f, start=start):
      return float(np.mean(f[:, k] & (d[:, k] <= CONVERGED * start)))

    finite = f[:, -1]
    with np.errstate(all="ignore"):
      excursion = float(np.max(np.where(f, d, 0.0)) / r)
    records.append({
        "integrator": integrator, "R": float(r), "starts": per, "steps": steps, "cut": cut, "dt": dt, "tol": tol,
        "converged_cut": converged(min(cut, steps)), "converged": converged(steps),
        "finite": float(np.mean(finite)),
        "worst_final_distance": float(np.max(d[:, -1])) if finite.all() else None,
        "worst_final_distance_cut": float(np.max(d[:, min(cut, steps)])) if f[:, min(cut, steps)].all() else None,
        "max_excursion_over_R": excursion,
        "steps_taken_median": float(np.median(taken[sl])), "steps_taken_max": int(np.max(taken[sl])),
        "seconds_all_radii": wall})
  return records


def _cpu_name() -> str:
  try:
    return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo", encoding="utf-8")
                if line.startswith("model name"))
  except (OSError, StopIteration):
    return platform.machine()


def _fmt_dist(v) -> str:
  return "non-finite" if v is None else f"{v:.2g}"


def write_markdown(data: dict, path: pathlib.Path) -> None:
  meta = data["meta"]
  cut, steps = meta["cut"], meta["steps"]
  lines = [
      "# ELCD: far-away starts, the guaranteed `rollout` vs the paper's data-space RK4", "",
      f"Command (the last run; each record in the .json names its own): `{meta['command']}`  ",
      f"Machine: {meta['machine']}; XLA on one thread; {meta['date']}  ",
      f"Versions: {meta['versions']}", "",
      f"{meta['starts']} starts per R on the sphere ‖x0 − x*‖ = R (normalised units, the same directions for both "
      "integrators), float32, tol 1e-5 (the default; dt as listed, 0.01 the default). Converged ≤ N: all states up to "
      "N finite and ‖x_N − x*‖ ≤ 1e-2·R. "
      "`rollout` = the public `model.rollout` (linearly implicit latent step, ‖z_(k+1) − z*‖ ≤ ‖z_k − z*‖/(1 + ε dt)); "
      "`rollout_rk4_data` = the paper's RK4 in data space. Worst final distance after "
      f"{steps} steps; max excursion = max over steps of ‖x_k − x*‖/R; steps taken = median / max before ‖Δx‖ < tol.",
      "",
      f"| model | integrator | dt | R | converged ≤ {cut} steps | ≤ {steps} steps | finite | worst final distance | "
      f"max excursion / R | steps taken | s (all R, incl. compile) |",
      "|---|---|---|---|---|---|---|---|---|---|---|"]
  for rec in sorted(data["records"], key=lambda r: (r["model"], INTEGRATORS.index(r["integrator"]), r["dt"], r["R"])):
    lines.append(
        f"| {rec['model']} | {rec['integrator']} | {rec['dt']:g} | {rec['R']:g} | {rec['converged_cut']:.1%} | "
        f"{rec['converged']:.1%} | {rec['finite']:.1%} | {_fmt_dist(rec['worst_final_distance'])} | "
        f"{rec['max_excursion_over_R']:.3g} | {rec['steps_taken_median']:g} / {rec['steps_taken_max']} | "
        f"{rec['seconds_all_radii']:.0f} |")
  for integrator in INTEGRATORS:
    for dt in sorted({r["dt"] for r in data["records"] if r["integrator"] == integrator}):
      recs = [r for r in data["records"] if r["integrator"] == integrator and r["dt"] == dt]
      full = sum(r["converged"] == 1.0 and r["finite"] == 1.0 for r in recs)
      lines.append(f"\n`{integrator}` at dt {dt:g}: {full} of {len(recs)} (model, R) rows 100% finite and converged "
                   f"≤ {steps} steps; {sum(r['converged_cut'] == 1.0 for r in recs)} converged ≤ {cut} steps.")
  path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", default="", help="comma-separated; default every shipped elcd-* variant")
  parser.add_argument("--radii", default="1,10,100,1000")
  parser.add_argument("--starts", type=int, default=200)
  parser.add_argument("--steps", type=int, default=10_000)
  parser.add_argument("--cut", type=int, default=1000)
  parser.add_argument("--integrators", default=",".join(INTEGRATORS))
  parser.add_argument("--dt", type=float, default=0.01, help="step (0.01, the default of both integrators)")
  parser.add_argument("--tol", type=float, default=1e-5, help="stopping tolerance (1e-5, the default)")
  parser.add_argument("--force", action="store_true", help="recompute records already in the results file")
  parser.add_argument("--out", default=str(RESULTS / "elcd_far_starts"))
  args = parser.parse_args(argv)

  sys.path.insert(0, str(ROOT))
  import jax  # pylint: disable=import-outside-toplevel
  import flax  # pylint: disable=import-outside-toplevel
  import zoo  # pylint: disable=import-outside-toplevel
  from zoo.models.elcd.verify import sphere_starts  # pylint: disable=import-outside-toplevel

  models = [m for m in args.models.split(",") if m] or zoo.list_models("elcd-*", pretrained=True)
  radii = [float(r) for r in args.radii.split(",")]
  out = pathlib.Path(args.out)
  json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
  data = json.loads(json_path.read_text()) if json_path.is_file() else {"records": []}
  for rec in data["records"]:  # records written before --dt / --tol existed used the defaults
    rec.setdefault("dt", 0.01)
    rec.setdefault("tol", 1e-5)
  data["meta"] = {
      "command": "python benchmarks/elcd_far_starts.py " + " ".join(argv if argv is not None else sys.argv[1:]),
      "machine": f"{_cpu_name()}, {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at start)",
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
      "versions": f"jax {jax.__version__}, flax {flax.__version__}, python {platform.python_version()}",
      "starts": args.starts, "steps": args.steps, "cut": args.cut, "radii": radii}
  for name in models:
    model = zoo.load(name)
    starts = sphere_starts(np.asarray(model.target), radii, args.starts, seed=0)
    for integrator in args.integrators.split(","):
      key = (name, integrator, args.dt, args.tol)
      have = [r for r in data["records"] if (r["model"], r["integrator"], r["dt"], r["tol"]) == key
              and r["R"] in radii and (r["starts"], r["steps"]) == (args.starts, args.steps)]
      if len(have) == len(radii) and not args.force:
        continue
      data["records"] = [r for r in data["records"]
                         if not ((r["model"], r["integrator"], r["dt"], r["tol"]) == key and r["R"] in radii)]
      for rec in measure(model, integrator, starts, radii, args.steps, args.cut, args.dt, args.tol):
        data["records"].append({"model": name, **rec, "command": data["meta"]["command"]})
        print(f"{name} {integrator} R {rec['R']:g}: converged ≤{args.cut} {rec['converged_cut']:.1%}, "
              f"≤{args.steps} {rec['converged']:.1%}, finite {rec['finite']:.1%}, "
              f"worst {_fmt_dist(rec['worst_final_distance'])} ({rec['seconds_all_radii']:.0f} s)", flush=True)
      json_path.write_text(json.dumps(data, indent=1) + "\n")
      write_markdown(data, md_path)
  write_markdown(data, md_path)
  print(md_path.read_text())
  return 0


if __name__ == "__main__":
  sys.exit(main())
