r"""After training: each run's exported policy over 128 deterministic PointGoal1 episodes, what `zoo verify` measures.

    python benchmarks/acs_after_training.py --name acs_after_training \
        --runs acs-s0=runs/acs-s0,acs-s1=runs/acs-s1,...,ppo-s2=runs/ppo-s2

For each WORKDIR/export: `zoo.models.acs.report.episode_costs` (128 episodes = 8 rounds of 16 environments × 1000
steps, layouts from report.MEASURE_SEED, apart from training's and evaluation's; policy mean), with the safeguard on
and, for ACS, off. Reported per run and as mean ± std over seeds per model: violation rate (share of steps in a
hazard), cost and return per episode, share of episodes with cost < d. Writes benchmarks/results/NAME.json and NAME.md.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))  # zoo from this checkout


def measure(workdir: pathlib.Path) -> dict:
  from zoo import checkpoint  # pylint: disable=import-outside-toplevel
  from zoo.models.acs import env as acs_env  # pylint: disable=import-outside-toplevel
  from zoo.models.acs import report  # pylint: disable=import-outside-toplevel

  model, manifest = checkpoint.restore(workdir / "export")
  out = {"model": manifest["name"], "seed": json.loads((workdir / "config.json").read_text())["seed"]}
  for guard in ([True, False] if model.guarded else [True]):
    r = report.episode_costs(model, guard=guard)
    out["on" if guard else "off"] = {
        "episodes": int(len(r["cost"])), "violation_rate": float(r["violation_rate"]),
        "cost": float(r["cost"].mean()), "cost_std": float(r["cost"].std()),
        "return": float(r["reward"].mean()), "return_std": float(r["reward"].std()),
        "share_below_budget": float(np.mean(r["cost"] < acs_env.BUDGET))}
    print(workdir.name, "guard" if guard else "no guard", out["on" if guard else "off"], flush=True)
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--runs", required=True, help="LABEL=WORKDIR,LABEL=WORKDIR,...")
  parser.add_argument("--name", default="acs_after_training")
  args = parser.parse_args()
  from zoo import cache  # pylint: disable=import-outside-toplevel
  cache.enable_compilation_cache()
  runs = {}
  for item in args.runs.split(","):
    label, _, workdir = item.partition("=")
    runs[label] = measure(pathlib.Path(workdir))
  groups: dict[str, list[dict]] = {}
  for r in runs.values():
    groups.setdefault(r["model"], []).append(r)
  pm = lambda v, f="{:.3g}": f"{f.format(np.mean(v))} ± {f.format(np.std(v))}"  # noqa: E731
  lines = ["| model | safeguard | seeds | episodes per seed | violation rate | cost / episode | return / episode | "
           "share of episodes with cost < 25 |", "|" + "---|" * 8]
  for model, rs in groups.items():
    for mode in ("on", "off"):
      got = [r[mode] for r in rs if mode in r]
      if not got:
        continue
      guard = ("on" if mode == "on" else "off (raw policy mean)") if "off" in rs[0] else "– (policy mean)"
      lines.append(f"| `{model}` | {guard} | {', '.join(str(r['seed']) for r in rs)} | {got[0]['episodes']} | "
                   f"{pm([g['violation_rate'] for g in got], '{:.4f}')} | {pm([g['cost'] for g in got])} | "
                   f"{pm([g['return'] for g in got])} | {pm([g['share_below_budget'] for g in got], '{:.3f}')} |")
  lines += ["", "| run | safeguard | violation rate | cost / episode (± std over episodes) | return / episode | "
            "share below d |", "|" + "---|" * 6]
  for label, r in runs.items():
    for mode in ("on", "off"):
      if mode in r:
        g = r[mode]
        lines.append(f"| {label} | {mode if 'off' in r else '–'} | {g['violation_rate']:.4f} | {g['cost']:.3g} ± "
                     f"{g['cost_std']:.3g} | {g['return']:.3g} ± {g['return_std']:.3g} | {g['share_below_budget']:.3f} |")
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / f"{args.name}.json").write_text(json.dumps(runs, indent=2) + "\n")
  (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
