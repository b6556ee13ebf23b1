r"""Accuracy of ResNet18 on digits: float vs DKM vs IDKM vs IDKM-JFB at each b; re-exports and ships the models.

    python benchmarks/idkm_accuracy.py            # table from the runs: benchmarks/results/idkm_accuracy.{json,md}
    python benchmarks/idkm_accuracy.py --ship     # also: re-export every run with its card, `zoo ship` it
    python benchmarks/idkm_accuracy.py --recard   # re-render the embedded cards with the current tables

Reads the runs that `configs/resnet.py` describes (runs/resnet18-digits for the float model,
runs/resnet18-digits-{idkm,dkm,jfb}-b{1,2,4} for the clustering-aware fine-tuning of it, same settings except the
gradient method). Accuracy is on the digits test split with the snapped (hard-assigned) weights, i.e. exactly
what the packed checkpoint computes. Seconds per epoch are measured between consecutive evaluations of one
training process (compilation excluded, the evaluation of the 359 test images included), on a shared, busy
CPU: compare them within one table only.

`--ship` restores each run's export, applies the family's `export` hook (training form → b-bit packed indices +
codebooks; runs trained before the hook existed hold the training form), re-evaluates, re-verifies, re-plots
and saves it under the run's registered name with the family's card section (storage), this table and the memory
benchmark's table (from benchmarks/results; its plot stays there, linked from the section and MODEL_CARDS.md, never
copied into the cards) to runs/NAME/shipped, then embeds it with `zoo ship`, which
pins its manifest sha256 in checkpoints/pins.json. `--recard` replaces the tables in the embedded cards and pins
the new manifests.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs"
METHODS = {"dkm": "DKM", "idkm": "IDKM", "jfb": "IDKM-JFB"}
# the card sections these benchmarks give the resnet18-digits* cards: {title: card-ready markdown in RESULTS}
SECTIONS = {"Accuracy: float vs DKM vs IDKM vs IDKM-JFB (benchmarks/idkm_accuracy.py)": "idkm_accuracy.md",
            "Memory: DKM vs IDKM vs IDKM-JFB (benchmarks/idkm_memory.py)": "idkm_memory_card.md"}


def benchmark_sections() -> dict[str, str]:
  """{title: markdown} of the benchmark results that exist, as `zoo ship --section TITLE=FILE` adds them (the
  file's own title dropped, its subsections nested one level deeper)."""
  out = {}
  for title, file in SECTIONS.items():
    path = RESULTS / file
    if path.is_file():
      out[title] = path.read_text().split("\n", 1)[1].replace("\n## ", "\n### ").strip()
  return out


def seconds_per_epoch(run: pathlib.Path) -> float | None:
  """Training seconds per epoch between consecutive evaluations of the same process (a resumed run restarts
  its clock: pairs across the restart are skipped)."""
  evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"seconds"' in line]
  seconds = epochs = 0.0
  for a, b in zip(evals, evals[1:]):
    if b["step"] > a["step"] and b["seconds"] > a["seconds"]:
      seconds += b["seconds"] - a["seconds"]
      epochs += b["epoch"] - a["epoch"]
  return seconds / epochs if epochs else None


def collect() -> dict:
  rows = []
  for run in sorted(RUNS.glob("resnet18-digits*")):
    manifest_path = run / "export" / "manifest.json"
    if not manifest_path.is_file():
      continue
    manifest = json.loads(manifest_path.read_text())
    parts = run.name.split("-")
    method, bits = (parts[2], int(parts[3][1:])) if len(parts) == 4 else ("float", 32)
    rows.append({"run": run.name, "method": method, "bits": bits, "accuracy": manifest["metrics"]["accuracy"],
                 "loss": manifest["metrics"]["loss"], "epochs": manifest["config"]["epochs"],
                 "seconds_per_epoch": seconds_per_epoch(run)})
  return {"rows": rows}


def table(results: dict) -> str:
  rows = results["rows"]
  by = {(r["method"], r["bits"]): r for r in rows}
  base = by.get(("float", 32))
  bits_list = sorted({r["bits"] for r in rows if r["method"] != "float"})
  lines = ["ResNet18 (width 16) on the digits test split (359 images). The quantized models are the float model "
           "fine-tuned clustering-aware for 8 epochs with each method at the same settings (d = 1, τ = 1e-4, t = 5, "
           "ε = 1e-4, Adam 1e-4 cosine, batch 64), evaluated with the snapped weights (what the packed checkpoint "
           "computes). Top-1 accuracy:", "",
           "| bits | float32 | DKM | IDKM | IDKM-JFB |", "|---|---|---|---|---|"]
  for bits in bits_list:
    cells = [f"{100 * by[(m, bits)]['accuracy']:.2f}%" if (m, bits) in by else "-" for m in METHODS]
    lines.append(f"| {bits} | {100 * base['accuracy']:.2f}% | " + " | ".join(cells) + " |" if base else "")
  lines += ["", "Training seconds per epoch (22 steps of 64 images; shared 2-core CPU, compilation excluded; float: "
            "30 epochs from scratch):", "",
            "| bits | float32 | DKM | IDKM | IDKM-JFB |", "|---|---|---|---|---|"]
  fmt = lambda r: f"{r['seconds_per_epoch']:.1f}" if r and r.get("seconds_per_epoch") else "-"
  for bits in bits_list:
    lines.append(f"| {bits} | {fmt(base)} | " + " | ".join(fmt(by.get((m, bits))) for m in METHODS) + " |")
  return "\n".join(lines)


def reexport(run: pathlib.Path) -> pathlib.Path:
  """runs/NAME/export (any form) → runs/NAME/shipped: the family's export form, metrics, checks, plots, card."""
  import zoo.data
  from zoo import checkpoint, hub, registry

  model, manifest = checkpoint.restore(run / "export")
  name = run.name  # the run directories are named after the registered variants
  spec = registry.get_spec(name)
  family = spec.family
  with family.precision():
    model, kwargs = family.export(model, dict(manifest["model_kwargs"])) if family.export else (
        model, manifest["model_kwargs"])
    model.eval()
    config = dict(manifest.get("config") or {}, model=name)
    data = zoo.data.load(spec.dataset, config.get("eval_split", "test"))
    metrics = {k: v for k, v in (manifest.get("metrics") or {}).items() if k in ("train_steps", "best_step")}
    metrics.update(family.evaluate(model, data))
    if abs(metrics["accuracy"] - manifest["metrics"]["accuracy"]) > 1e-9:
      raise RuntimeError(f"{name}: the exported form's accuracy {metrics['accuracy']} differs from the training "
                         f"form's {manifest['metrics']['accuracy']}")
    checks = list(family.verify(model))
    sections = dict(family.card_sections(model, metrics, checks, hub.shipped_records(exclude=name))
                    if family.card_sections else {})
    sections.update(benchmark_sections())
    with tempfile.TemporaryDirectory() as tmp:
      plots = list(family.plot(model, data, pathlib.Path(tmp))) if family.plot else []
      return checkpoint.save(model, run / "shipped", name=name, model_kwargs=kwargs, config=config,
                             metrics=metrics, checks=checks, plots=plots, card_sections=sections)


def ship(names: list[str] | None) -> None:
  from zoo import hub

  for run in sorted(RUNS.glob("resnet18-digits*")):
    if not (run / "export" / "manifest.json").is_file() or (names and run.name not in names):
      continue
    target, sha = hub.ship(reexport(run.absolute()))
    print(f'    "{run.name}": "{sha}",  # {target}', flush=True)


def recard(names: list[str] | None) -> None:
  """Replaces the benchmark tables in the cards of the embedded checkpoints (e.g. after the benchmarks were rerun);
  weights, plots and the storage section untouched. Pins the new manifests (checkpoints/pins.json)."""
  from zoo import checkpoint, hub, pins

  for directory in sorted(hub.checkpoints_dir().glob("resnet18-digits*")):
    if names and directory.name not in names:
      continue
    sha = checkpoint.refresh_card(directory, benchmark_sections())
    previous = pins.get(directory.name)
    pins.write(directory.name, sha, repo_id=previous.repo_id if previous else None,
               revision=previous.revision if previous else "main")
    print(f'    "{directory.name}": "{sha}",', flush=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ship", nargs="*", default=None, metavar="NAME",
                      help="re-export and embed the runs (all, or the named ones)")
  parser.add_argument("--recard", nargs="*", default=None, metavar="NAME",
                      help="re-render the embedded checkpoints' cards with the current tables (weights untouched)")
  args = parser.parse_args()
  results = collect()
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / "idkm_accuracy.json").write_text(json.dumps(results, indent=2) + "\n")
  text = "# ResNet18 on digits: float vs DKM vs IDKM vs IDKM-JFB\n\nCommand: `python benchmarks/idkm_accuracy.py`.\n\n"
  (RESULTS / "idkm_accuracy.md").write_text(text + table(results) + "\n")
  print(table(results))
  if args.ship is not None:
    ship(args.ship)
  if args.recard is not None:
    recard(args.recard)


if __name__ == "__main__":
  main()
