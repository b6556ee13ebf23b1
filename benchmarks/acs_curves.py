r"""Learning curves and training cost of ACS, PPO-Lagrangian and PPO runs of the zoo's trainer (configs/acs.py).

    python benchmarks/acs_curves.py --runs acs=runs/acs-s0,ppo-lag=runs/ppo-lag-s0,ppo=runs/ppo-s0 --name acs_curves_s0

Reads each WORKDIR's metrics.jsonl (one record per iteration) and config.json, and WORKDIR/loadavg.log when the run
was started by benchmarks/acs_run.sh (lines "UNIX_TIME 1MIN 5MIN 15MIN" every 30 s). Reported per run: environment
steps, the training episodes' mean return and cost per episode in the first and last iteration, the training-time
violation rate (share of all steps with c = 1) and cumulative cost, the last evaluation, wall-clock per 1e5
environment steps (the median iteration without the first, which holds the compilation; and the whole run's
wall-clock, evaluations and each process's compilation included, over its steps), and the 1-minute load average
during the run (min/median/max).
Writes benchmarks/results/NAME.json, NAME.md and NAME.png (return and cost per episode against environment steps).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def summarise(workdir: pathlib.Path) -> dict:
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
  config = json.loads((workdir / "config.json").read_text())
  steps_per_iteration = config["env"]["num_envs"] * config["env"]["steps"]
  seconds = np.asarray([r["iteration_seconds"] for r in records])
  evals = [r for r in records if "eval/return" in r]
  wall, previous, processes = 0.0, 0.0, 1  # "seconds" restarts in a resumed run's new process: add the segments
  for r in records:
    if r["seconds"] < previous:
      wall, processes = wall + previous, processes + 1
    previous = r["seconds"]
  wall += previous
  out = {
      "model": config["model"], "seed": config["seed"], "iterations": len(records),
      "env_steps": records[-1]["env_steps"], "steps_per_iteration": steps_per_iteration,
      "first_return": records[0]["return"], "first_cost": records[0]["cost"],
      "final_return": records[-1]["return"], "final_return_std": records[-1]["return_std"],
      "final_cost": records[-1]["cost"], "final_cost_std": records[-1]["cost_std"],
      "violation_rate": float(sum(r["cost_sum"] for r in records) / records[-1]["env_steps"]),
      "cumulative_cost": float(sum(r["cost_sum"] for r in records)),
      "seconds_per_1e5_steps_steady": float(np.median(seconds[1:]) * 1e5 / steps_per_iteration) if len(seconds) > 1
                                      else None,
      "seconds_per_1e5_steps_total": float(wall * 1e5 / records[-1]["env_steps"]),
      "wall_seconds": wall, "processes": processes,
      "first_iteration_seconds": float(seconds[0]),
      "curve": [{k: r.get(k) for k in ("env_steps", "return", "cost", "violation_rate", "multiplier", "epsilon",
                                        "guard_corrected", "eval/return", "eval/cost")} for r in records],
  }
  if evals:
    out["last_eval"] = {k[5:]: v for k, v in evals[-1].items() if k.startswith("eval/")}
  log = workdir / "loadavg.log"
  if log.is_file():
    loads = np.asarray([float(line.split()[1]) for line in log.read_text().splitlines() if len(line.split()) >= 2])
    if loads.size:
      out["load_1min"] = {"min": float(loads.min()), "median": float(np.median(loads)), "max": float(loads.max()),
                          "samples": int(loads.size)}
  return out


def _smooth(values: list[float], width: int = 5) -> np.ndarray:
  """Trailing moving average over `width` iterations (fewer at the start)."""
  v = np.asarray(values, float)
  return np.asarray([v[max(0, i - width + 1):i + 1].mean() for i in range(len(v))])


def plot(runs: dict[str, dict], path: pathlib.Path, budget: float) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, axes = plt.subplots(1, 3, figsize=(15, 3.9))
  for i, (label, run) in enumerate(runs.items()):
    x = np.asarray([p["env_steps"] for p in run["curve"]])
    ret, cost = [p["return"] for p in run["curve"]], [p["cost"] for p in run["curve"]]
    axes[0].plot(x, ret, color=f"C{i}", lw=0.6, alpha=0.4)
    axes[0].plot(x, _smooth(ret), color=f"C{i}", lw=1.8, label=label)
    axes[1].plot(x, cost, color=f"C{i}", lw=0.6, alpha=0.4)
    axes[1].plot(x, _smooth(cost), color=f"C{i}", lw=1.8, label=label)
    axes[2].plot(x, np.cumsum([p["violation_rate"] for p in run["curve"]]) * run["steps_per_iteration"],
                 color=f"C{i}", lw=1.8, label=label)
  axes[1].axhline(budget, color="k", ls="--", lw=1, label=f"budget d = {budget:g}")
  axes[0].set(xlabel="environment steps", ylabel="return per episode (training)",
              title="thin: per iteration; thick: mean of 5")
  axes[1].set(xlabel="environment steps", ylabel="cost per episode (training)",
              title="thin: per iteration; thick: mean of 5")
  axes[2].set(xlabel="environment steps", ylabel="cumulative cost (steps in a hazard)")
  for ax in axes:
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def table(runs: dict[str, dict]) -> str:
  num = lambda v: "–" if v is None else f"{v:.3g}"  # noqa: E731
  lines = ["| run | model | seed | env steps | return (first → last iteration) | cost/episode (first → last) | "
           "violation rate (training) | cumulative cost | last eval return / cost | s per 1e5 steps (steady; total) | "
           "load (1 min, median [min, max]) |", "|" + "---|" * 11]
  for label, r in runs.items():
    ev = r.get("last_eval", {})
    load = r.get("load_1min")
    lines.append(
        f"| {label} | `{r['model']}` | {r['seed']} | {r['env_steps']:.3g} | {num(r['first_return'])} → "
        f"{num(r['final_return'])} ± {num(r['final_return_std'])} | {num(r['first_cost'])} → {num(r['final_cost'])} ± "
        f"{num(r['final_cost_std'])} | {r['violation_rate']:.4f} | {r['cumulative_cost']:.0f} | "
        f"{num(ev.get('return'))} / {num(ev.get('cost'))} | {num(r['seconds_per_1e5_steps_steady'])}; "
        f"{num(r['seconds_per_1e5_steps_total'])} | "
        + (f"{load['median']:.2f} [{load['min']:.2f}, {load['max']:.2f}] |" if load else "– |"))
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--runs", required=True, help="LABEL=WORKDIR,LABEL=WORKDIR,...")
  parser.add_argument("--name", default="acs_curves")
  parser.add_argument("--note", default="", help="a Markdown file whose text goes above the table (commands, context)")
  args = parser.parse_args()
  runs = {}
  for item in args.runs.split(","):
    label, _, workdir = item.partition("=")
    runs[label] = summarise(pathlib.Path(workdir))
  budget = json.loads((pathlib.Path(args.runs.split(",")[0].partition("=")[2]) / "config.json").read_text())["env"][
      "budget"]
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / f"{args.name}.json").write_text(json.dumps({"machine": platform.platform(), "runs": runs}, indent=2)
                                             + "\n")
  plot(runs, RESULTS / f"{args.name}.png", budget)
  note = pathlib.Path(args.note).read_text().rstrip() + "\n\n" if args.note else ""
  (RESULTS / f"{args.name}.md").write_text(note + table(runs) + f"\n\n![learning curves]({args.name}.png)\n")
  print(table(runs))


if __name__ == "__main__":
  main()
