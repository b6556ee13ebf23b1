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

With several seeds of a model (runs whose config names the same model), the Markdown starts with the side-by-side
table over seeds (mean ± std over seeds of each run's figure; `--by-seed` also plots the mean over seeds with the
seeds' range shaded), the authors' reference numbers (a different environment, labelled) and, with `--crax
FILE.json,...` (benchmarks/acs_crax_ppo_lag.py, one file per seed), crax-bench's own PPO-Lagrangian's training speed
on the same layout and, where the files hold its evaluation, its return and cost per episode in our units beside our
PPO-Lagrangian's evaluation.

    python benchmarks/acs_curves.py --by-seed --name acs_seeds --note NOTE.md --crax CRAX_S0.json,CRAX_S1.json,... \
        --runs acs-s0=runs/acs-s0,acs-s1=runs/acs-s1,...,ppo-s2=runs/ppo-s2

`--from-json benchmarks/results/NAME.json` instead of `--runs` re-renders NAME.md and NAME_card.md from the run
summaries an earlier call kept there (the workdirs need not exist any more; the plot is left as it is).
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


METHODS = {"acs-pointgoal1": "ACS", "ppo-lag-pointgoal1": "PPO-Lagrangian", "ppo-pointgoal1": "PPO"}

# The authors' research-code logs (github BillChan226/SafeRLZoo, "paper data/safetyrun/*/progress.txt"; notes in
# ../shared/papers/acs.md): SafetyAntRun-v0 (Bullet-Safety-Gym), 1 seed, 1e6 steps, TD3-based, last-10-evaluation
# means. A different environment and algorithm base: a reference, not a comparison.
REFERENCE = [("ACS", 1013, 3.96, 26.2e3), ("USL", 1003, 1.48, 24.4e3), ("QPSL", 924, 83.2, 14.6e3),
             ("Recovery RL", 1132, 443, 15.5e3), ("TD3", 1483, 484, 10.5e3)]


def _mean_std(values: list[float | None]) -> tuple[float, float] | None:
  v = [x for x in values if x is not None]
  return (float(np.mean(v)), float(np.std(v))) if v else None


def by_model(runs: dict[str, dict]) -> dict[str, dict]:
  """Runs grouped by model: per figure the mean and std over the seeds (population std, ddof 0)."""
  groups: dict[str, list[dict]] = {}
  for r in runs.values():
    groups.setdefault(r["model"], []).append(r)
  out = {}
  for model, rs in groups.items():
    ev = [r.get("last_eval", {}) for r in rs]
    out[model] = {
        "seeds": sorted(r["seed"] for r in rs), "env_steps": sorted({r["env_steps"] for r in rs}),
        **{k: _mean_std([r[k] for r in rs]) for k in (
            "violation_rate", "cumulative_cost", "final_return", "final_cost", "seconds_per_1e5_steps_steady",
            "seconds_per_1e5_steps_total")},
        "eval_return": _mean_std([e.get("return") for e in ev]),
        "eval_cost": _mean_std([e.get("cost") for e in ev]),
        "eval_violation_rate": _mean_std([e.get("violation_rate") for e in ev]),
        "steps_per_second_steady": _mean_std([1e5 / r["seconds_per_1e5_steps_steady"] for r in rs
                                              if r["seconds_per_1e5_steps_steady"]]),
    }
  return out


def seeds_table(groups: dict[str, dict]) -> str:
  pm = lambda ms, f="{:.3g}": "–" if ms is None else f"{f.format(ms[0])} ± {f.format(ms[1])}"  # noqa: E731
  lines = ["| method | model | seeds | env steps per seed | violation rate (training) | cumulative training cost "
           "(steps in a hazard) | return / episode (last iteration) | cost / episode (last iteration) | eval return "
           "/ episode | eval cost / episode | s per 1e5 steps (training; whole run) | env steps / s (training) |",
           "|" + "---|" * 12]
  for model, g in groups.items():
    lines.append(
        f"| {METHODS.get(model, model)} | `{model}` | {', '.join(map(str, g['seeds']))} | "
        f"{', '.join(f'{s:.3g}' for s in g['env_steps'])} | {pm(g['violation_rate'], '{:.4f}')} | "
        f"{pm(g['cumulative_cost'], '{:.0f}')} | {pm(g['final_return'])} | {pm(g['final_cost'])} | "
        f"{pm(g['eval_return'])} | {pm(g['eval_cost'])} | {pm(g['seconds_per_1e5_steps_steady'], '{:.0f}')}; "
        f"{pm(g['seconds_per_1e5_steps_total'], '{:.0f}')} | {pm(g['steps_per_second_steady'], '{:.0f}')} |")
  return "\n".join(lines)


def reference_table() -> str:
  lines = ["A different environment (SafetyAntRun-v0, Bullet-Safety-Gym: Ant, 500-step episodes, cost for leaving the "
           "track or speeding), a TD3-based ACS, 1 seed, 1e6 steps, last-10-evaluation means, from the authors' "
           "research-code logs (github BillChan226/SafeRLZoo, `paper data/safetyrun/*/progress.txt`): a reference "
           "for scale, not comparable with the PointGoal1 numbers above.", "",
           "| method (SafetyAntRun-v0, NOT PointGoal1) | return / episode | cost / episode | wall-clock for 1e6 "
           "steps (s, their machine) |", "|---|---|---|---|"]
  lines += [f"| {m} | {r:g} | {c:g} | {w:.3g} |" for m, r, c, w in REFERENCE]
  return "\n".join(lines)


def crax_steps_per_second(crax: dict) -> dict:
  """crax's PPO-Lag speed from its progress records: `wall` = environment steps / wall-clock between consecutive
  epochs after the first (which compiles; the restart of the environments between epochs included), `timer` = crax's
  own `training/sps` divided by its `num_resets_per_eval` (crax 0.1.0 times one epoch but multiplies its steps by
  the number of epochs per evaluation, so its raw figure is `epochs` times too high)."""
  ep = crax["epochs"]
  wall = [(b["env_steps"] - a["env_steps"]) / (b["seconds"] - a["seconds"]) for a, b in zip(ep, ep[1:])]
  per_run = crax.get("epochs_per_run", len(ep))  # one progress record per epoch
  timer = [e["training/sps"] / per_run for e in ep[1:] if "training/sps" in e]
  return {"wall": wall, "timer": timer}


def crax_table(craxes: list[dict], groups: dict[str, dict], runs: dict[str, dict], reruns: list[dict] = ()) -> str:
  """Training speed: one row per crax run (seed), the mean ± std over the evaluated crax runs when there are
  several, `reruns` of ours beside them (benchmarks/results/acs_ppo_lag_s0_same_machine.json's form), ours."""
  ours = groups.get("ppo-lag-pointgoal1", {}).get("steps_per_second_steady")
  lines = ["| PPO-Lagrangian | env steps / s of training (steady) | whole run (s), compilation included | first epoch "
           "(s), compilation included | load (1 min) |", "|---|---|---|---|---|"]
  steady, whole = [], []
  for crax in craxes:
    sps = crax_steps_per_second(crax)
    loads = [e["load_1min"] for e in crax["epochs"]]
    steady.append(float(np.median(sps["wall"])))
    whole.append(crax["wall_seconds"])
    lines.append(f"| crax-bench 0.1.0 `ppo_lag.train` (seed {crax['seed']}, {crax['steps']:.3g} steps, "
                 f"{crax['num_envs']} envs, {len(crax['epochs'])} epochs"
                 f"{'' if 'eval' in crax else '; an earlier run, speed only'}) | {steady[-1]:.0f} (median over epochs "
                 f"2-{len(crax['epochs'])}, wall-clock; its own timer, corrected: {np.median(sps['timer']):.0f}) | "
                 f"{crax['wall_seconds']:.0f} | {crax['epochs'][0]['seconds']:.0f} | {min(loads):.1f}-{max(loads):.1f} |")
  series = [i for i, c in enumerate(craxes) if "eval" in c] or list(range(len(craxes)))  # the evaluated runs
  if len(series) > 1:
    lines.append(f"| crax-bench, mean ± std over seeds {', '.join(str(craxes[i]['seed']) for i in series)}"
                 f"{' (the evaluated runs)' if len(series) < len(craxes) else ''} | "
                 f"{np.mean([steady[i] for i in series]):.0f} ± {np.std([steady[i] for i in series]):.0f} | "
                 f"{np.mean([whole[i] for i in series]):.0f} ± {np.std([whole[i] for i in series]):.0f} | | |")
  for rerun in reruns:
    r = rerun["run"]
    lines.append(f"| ours (`{r['model']}`, seed {r['seed']}, {r['env_steps']:.3g} steps), rerun beside the crax runs "
                 f"(same machine) | {rerun['steps_per_second_steady']:.0f} (median iteration, collection + update) | "
                 f"{r['wall_seconds']:.0f} | {r['first_iteration_seconds']:.0f} (first iteration, 1.6e4 steps) | "
                 f"{r['load_1min']['min']:.1f}-{r['load_1min']['max']:.1f} |")
  if ours:
    rs = groups["ppo-lag-pointgoal1"]
    first = [r["first_iteration_seconds"] for r in runs.values() if r["model"] == "ppo-lag-pointgoal1"]
    lines.append(f"| ours (`ppo-lag-pointgoal1`, seeds {', '.join(map(str, rs['seeds']))}, 3.2e5 steps) | "
                 f"{ours[0]:.0f} ± {ours[1]:.0f} (median iteration of each run, collection + update) | "
                 f"{rs['seconds_per_1e5_steps_total'][0] * 3.2:.0f} ± {rs['seconds_per_1e5_steps_total'][1] * 3.2:.0f}"
                 f" | {np.mean(first):.0f} ± {np.std(first):.0f} (first iteration, 1.6e4 steps) | see every run below |")
  return "\n".join(lines)


def crax_eval_table(craxes: list[dict], groups: dict[str, dict], runs: dict[str, dict]) -> str:
  """Return and cost per episode in our units (benchmarks/acs_crax_ppo_lag.py's evaluation: our wrapper's reward
  and binary cost on the layouts of our evaluation for the same seed): crax's policy deterministic and stochastic,
  ours (deterministic); mean ± std over seeds of each run's mean over its episodes. crax's own reward and continuous
  cost sums, and its last training-time log (`episodic/*`, its units), for reference."""
  f = lambda ms, fmt="{:.3g}": "–" if ms is None else f"{fmt.format(ms[0])} ± {fmt.format(ms[1])}"  # noqa: E731
  ms = lambda values: (float(np.mean(values)), float(np.std(values)))  # noqa: E731
  lines = ["| PPO-Lagrangian, 3.2e5 steps | seeds | eval return / episode | eval cost / episode (steps in a hazard) | "
           "eval violation rate | crax's own reward / episode (eval) | crax's own cost / episode (eval, continuous) "
           "| end of training, each in its own units (crax: its last log's episodic/sum_reward and continuous "
           "episodic/cost; ours: the last iteration's return and steps in a hazard): return; cost per episode; "
           "multiplier λ |", "|" + "---|" * 8]
  observations = {"crax": "its own observation (goal compass included)",
                  "ours": "our observation (no goal compass: `--observation ours`)"}
  for observation, seen in observations.items():
    group = [c for c in craxes if c.get("observation", "crax") == observation]
    if not group:
      continue
    seeds = ", ".join(str(c["seed"]) for c in group)
    episodes = sorted({c["eval"]["episodes"] for c in group})
    logs = [c["crax_training_log"][-1] for c in group if c.get("crax_training_log")]
    log = (f"{f(ms([r['episodic/sum_reward'] for r in logs]))}; {f(ms([r['episodic/cost'] for r in logs]))}; "
           f"λ {f(ms([r['training/lambda_lagr'] for r in logs]), '{:.2g}')}"
           if logs and all("episodic/cost" in r and "training/lambda_lagr" in r for r in logs) else "–")
    for mode, what in (("deterministic", "deterministic (tanh of the mean)"), ("stochastic", "sampled actions")):
      e = [c["eval"][mode] for c in group]
      lines.append(f"| crax-bench `ppo_lag.train` on {seen}, {what}, {'/'.join(map(str, episodes))} episodes per "
                   f"seed | {seeds} | {f(ms([x['return_mean'] for x in e]))} | {f(ms([x['cost_mean'] for x in e]))} | "
                   f"{f(ms([x['violation_rate'] for x in e]), '{:.4f}')} | "
                   f"{f(ms([x['crax_reward_mean'] for x in e]))} | {f(ms([x['crax_cost_mean'] for x in e]))} | "
                   f"{log if mode == 'deterministic' else ''} |")
  g = groups.get("ppo-lag-pointgoal1")
  if g:
    lam = [r["curve"][-1].get("multiplier") for r in runs.values() if r["model"] == "ppo-lag-pointgoal1"]
    lam = f"; λ {f(ms(lam), '{:.3g}')}" if lam and None not in lam else ""
    lines.append(f"| ours (`ppo-lag-pointgoal1`), deterministic (policy mean), 16 episodes per seed | "
                 f"{', '.join(map(str, g['seeds']))} | {f(g['eval_return'])} | {f(g['eval_cost'])} | "
                 f"{f(g['eval_violation_rate'], '{:.4f}')} | – | – | {f(g['final_return'])}; {f(g['final_cost'])}"
                 f"{lam} |")
  ours = {r["seed"]: r.get("last_eval", {}) for r in runs.values() if r["model"] == "ppo-lag-pointgoal1"}
  per_seed = []
  for c in craxes:
    d, st, o = c["eval"]["deterministic"], c["eval"]["stochastic"], ours.get(c["seed"], {})
    mine = f"; ours {o['return']:.3g} / {o['cost']:.3g}" if "return" in o else ""
    crax = "crax" if c.get("observation", "crax") == "crax" else "crax on our observation"
    per_seed.append(f"seed {c['seed']}: {crax} deterministic {d['return_mean']:.3g} / {d['cost_mean']:.3g}, sampled "
                    f"{st['return_mean']:.3g} / {st['cost_mean']:.3g}{mine}")
  lines += ["", "Per seed (return / cost per episode, mean over the seed's episodes; crax's evaluation uses the layouts "
            "of our evaluation for the same seed): " + "; ".join(per_seed) + "."]
  return "\n".join(lines)


def plot_seeds(runs: dict[str, dict], path: pathlib.Path, budget: float) -> None:
  """Mean over seeds per model (line) with the seeds' min-max range shaded: return, cost per episode, cumulative
  cost, each against environment steps."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  groups: dict[str, list[dict]] = {}
  for r in runs.values():
    groups.setdefault(r["model"], []).append(r)
  fig, axes = plt.subplots(1, 3, figsize=(15, 3.9))
  for i, (model, rs) in enumerate(groups.items()):
    n = min(len(r["curve"]) for r in rs)
    x = np.asarray([p["env_steps"] for p in rs[0]["curve"][:n]])
    series = [np.asarray([[p["return"] for p in r["curve"][:n]] for r in rs]),
              np.asarray([[p["cost"] for p in r["curve"][:n]] for r in rs]),
              np.asarray([np.cumsum([p["violation_rate"] for p in r["curve"][:n]]) * r["steps_per_iteration"]
                          for r in rs])]
    label = f"{METHODS.get(model, model)} ({len(rs)} seeds)"
    for ax, y in zip(axes, series):
      ax.plot(x, y.mean(0), color=f"C{i}", lw=1.8, label=label)
      ax.fill_between(x, y.min(0), y.max(0), color=f"C{i}", alpha=0.15)
  axes[1].axhline(budget, color="k", ls="--", lw=1, label=f"budget d = {budget:g}")
  axes[0].set(xlabel="environment steps", ylabel="return per episode (training)",
              title="mean over seeds; shaded: min-max")
  axes[1].set(xlabel="environment steps", ylabel="cost per episode (steps in a hazard)",
              title="mean over seeds; shaded: min-max")
  axes[2].set(xlabel="environment steps", ylabel="cumulative training cost (steps in a hazard)",
              title="mean over seeds; shaded: min-max")
  for ax in axes:
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--runs", default="", help="LABEL=WORKDIR,LABEL=WORKDIR,...")
  parser.add_argument("--from-json", default="", help="instead of --runs: the runs' summaries kept in an earlier "
                      "NAME.json (its `runs`), to re-render the Markdown without the workdirs (the plot is kept as is)")
  parser.add_argument("--name", default="acs_curves")
  parser.add_argument("--note", default="", help="a Markdown file whose text goes above the table (commands, context)")
  parser.add_argument("--by-seed", action="store_true", help="the table over seeds first; plot means over seeds")
  parser.add_argument("--card-intro", default="", help="with --by-seed: the text above the card's table "
                      "(NAME_card.md, for zoo ship --section)")
  parser.add_argument("--crax", default="", help="benchmarks/acs_crax_ppo_lag.py's JSON files, comma-separated "
                      "(one per seed): crax's PPO-Lag speed, and its evaluation in our units where the file has one")
  parser.add_argument("--ours-rerun", default="", help="with --crax: JSON files of our runs rerun beside crax's "
                      "(benchmarks/results/acs_ppo_lag_s0_same_machine.json), rows of the speed table")
  args = parser.parse_args()
  if bool(args.runs) == bool(args.from_json):
    parser.error("give exactly one of --runs and --from-json")
  RESULTS.mkdir(parents=True, exist_ok=True)
  if args.from_json:
    kept = json.loads(pathlib.Path(args.from_json).read_text())
    runs, budget, machine = kept["runs"], None, kept["machine"]
  else:
    runs = {}
    for item in args.runs.split(","):
      label, _, workdir = item.partition("=")
      runs[label] = summarise(pathlib.Path(workdir))
    budget = json.loads((pathlib.Path(args.runs.split(",")[0].partition("=")[2]) / "config.json").read_text())[
        "env"]["budget"]
    machine = platform.platform()
  groups = by_model(runs)
  (RESULTS / f"{args.name}.json").write_text(json.dumps({"machine": machine, "by_model": groups,
                                                         "runs": runs}, indent=2) + "\n")
  craxes = [json.loads(pathlib.Path(f).read_text()) for f in args.crax.split(",") if f]
  reruns = [json.loads(pathlib.Path(f).read_text()) for f in args.ours_rerun.split(",") if f]
  note = pathlib.Path(args.note).read_text().rstrip() + "\n\n" if args.note else ""
  if args.by_seed:
    if budget is not None:
      plot_seeds(runs, RESULTS / f"{args.name}.png", budget)
    text = (note + "## Over seeds (mean ± std)\n\n" + seeds_table(groups) + "\n\n"
            + f"![learning curves: mean over seeds]({args.name}.png)\n\n")
    if craxes:
      text += ("## Training speed against crax-bench's own PPO-Lagrangian\n\n"
               + crax_table([c for c in craxes if c.get("observation", "crax") == "crax"], groups, runs, reruns)
               + "\n\n")
      if any("eval" in c for c in craxes):
        text += ("## Return and cost against crax-bench's own PPO-Lagrangian\n\n"
                 + crax_eval_table([c for c in craxes if "eval" in c], groups, runs) + "\n\n")
    text += "## Reference: the authors' logs on a different task\n\n" + reference_table() + "\n\n"
    card = (f"# ACS, PPO-Lagrangian and PPO over seeds\n\n{args.card_intro}\n\n".replace("\n\n\n\n", "\n\n")
            + text[len(note):].replace(f"![learning curves: mean over seeds]({args.name}.png)",
                                       f"Learning curves (mean over seeds, seeds' range shaded): "
                                       f"`benchmarks/results/{args.name}.png` in the nnx-zoo repository; every run "
                                       f"and the commands: `benchmarks/results/{args.name}.md`."))
    (RESULTS / f"{args.name}_card.md").write_text(card)
    text += "## Every run\n\n" + table(runs) + "\n"
  else:
    if budget is not None:
      plot(runs, RESULTS / f"{args.name}.png", budget)
    text = note + table(runs) + f"\n\n![learning curves]({args.name}.png)\n"
  (RESULTS / f"{args.name}.md").write_text(text)
  print(text)


if __name__ == "__main__":
  main()
