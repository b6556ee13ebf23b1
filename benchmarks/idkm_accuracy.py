r"""Accuracy of ResNet18: float vs DKM vs IDKM vs IDKM-JFB at each b; re-exports and ships the models.

    python benchmarks/idkm_accuracy.py            # table from the runs: benchmarks/results/idkm_accuracy.{json,md}
    python benchmarks/idkm_accuracy.py --ship     # also: re-export every run with its card, `zoo ship` it
    python benchmarks/idkm_accuracy.py --recard   # re-render the embedded cards with the current tables
    python benchmarks/idkm_accuracy.py --dataset fashion-mnist --runs /path/to/runs --ship   # idkm_accuracy_fashion-mnist.*

Reads the runs that `configs/resnet.py` describes (RUNS/resnet18-DATASET for the float model,
RUNS/resnet18-DATASET-{idkm,dkm,jfb}-b{1,2,4} for the clustering-aware fine-tuning of it, same settings except the
gradient method; RUNS defaults to ./runs). Accuracy is on the dataset's test split with the snapped (hard-assigned)
weights, i.e. exactly what the packed checkpoint computes. Seconds per epoch are measured between consecutive
evaluations of one training process (compilation excluded, the evaluation of the test split included), on a
shared, busy CPU: compare them within one table only. Only runs named after a registered variant are shipped
(the dkm/jfb comparison runs of a dataset without their own variants are table rows only).

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
METHODS = {"dkm": "DKM", "idkm": "IDKM", "jfb": "IDKM-JFB"}
ACCURACY = "Accuracy: float vs DKM vs IDKM vs IDKM-JFB (benchmarks/idkm_accuracy.py)"
MEMORY = "Memory: DKM vs IDKM vs IDKM-JFB (benchmarks/idkm_memory.py)"
# per dataset: how its test split is described, and the card sections these benchmarks give its resnet18-DATASET*
# cards ({title: card-ready markdown in RESULTS}; the memory benchmark is measured on the digits' shapes)
DATASETS = {"digits": ("the digits test split (359 images)",
                       {ACCURACY: "idkm_accuracy.md", MEMORY: "idkm_memory_card.md"}),
            "fashion-mnist": ("the Fashion-MNIST test split (10,000 images, 28×28)",
                              {ACCURACY: "idkm_accuracy_fashion-mnist.md"})}


def results_name(dataset: str) -> str:
  return "idkm_accuracy" if dataset == "digits" else f"idkm_accuracy_{dataset}"


def benchmark_sections(dataset: str = "digits") -> dict[str, str]:
  """{title: markdown} of the benchmark results that exist, as `zoo ship --section TITLE=FILE` adds them (the
  file's own title dropped, its subsections nested one level deeper)."""
  out = {}
  for title, file in DATASETS[dataset][1].items():
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
  if epochs:
    return seconds / epochs
  # a one-evaluation run (e.g. a 1-epoch fine-tuning): its clock from the start, compilation included
  return evals[0]["seconds"] / (evals[0]["epoch"] + 1) if evals else None


def runs(runs_dir: pathlib.Path, dataset: str) -> list[tuple[pathlib.Path, str, int]]:
  """(run directory, method, bits) of every finished run of `dataset` (float: ("float", 32))."""
  out = []
  for run in sorted(runs_dir.glob(f"resnet18-{dataset}*")):
    rest = run.name[len(f"resnet18-{dataset}"):]
    if not (run / "export" / "manifest.json").is_file():
      continue
    if not rest:
      out.append((run, "float", 32))
    elif (parts := rest[1:].split("-")) and len(parts) == 2 and parts[0] in METHODS and parts[1][1:].isdigit():
      out.append((run, parts[0], int(parts[1][1:])))
  return out


def collect(runs_dir: pathlib.Path, dataset: str) -> dict:
  rows = []
  for run, method, bits in runs(runs_dir, dataset):
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    rows.append({"run": run.name, "method": method, "bits": bits, "accuracy": manifest["metrics"]["accuracy"],
                 "loss": manifest["metrics"]["loss"], "epochs": manifest["config"]["epochs"],
                 "batch_size": manifest["config"]["batch_size"], "width": manifest["model_kwargs"].get("width"),
                 "state_bytes": manifest["metrics"].get("state_bytes"), "seconds_per_epoch": seconds_per_epoch(run)})
  return {"dataset": dataset, "rows": rows}


def table(results: dict) -> str:
  rows = results["rows"]
  dataset = results.get("dataset", "digits")
  by = {(r["method"], r["bits"]): r for r in rows}
  base = by.get(("float", 32))
  quantized = [r for r in rows if r["method"] != "float"]
  bits_list = sorted({r["bits"] for r in quantized})
  q = quantized[0] if quantized else {}
  lines = [f"ResNet18 (width {(base or q).get('width', 16)}) on {DATASETS[dataset][0]}. The quantized models are the "
           f"float model fine-tuned clustering-aware for {q.get('epochs', '-')} epoch(s) with each method at the same "
           f"settings (d = 1, τ = 1e-4, t = 5, ε = 1e-4, Adam 1e-4 cosine, batch {q.get('batch_size', '-')}), "
           "evaluated with the snapped weights (what the packed checkpoint computes). Top-1 accuracy:", "",
           "| bits | float32 | DKM | IDKM | IDKM-JFB |", "|---|---|---|---|---|"]
  for bits in bits_list:
    cells = [f"{100 * by[(m, bits)]['accuracy']:.2f}%" if (m, bits) in by else "-" for m in METHODS]
    lines.append(f"| {bits} | {100 * base['accuracy']:.2f}% | " + " | ".join(cells) + " |" if base else "")
  steps = {"digits": "22 steps of 64 images", "fashion-mnist": "469 steps of 128 images"}[dataset]
  lines += ["", f"Training seconds per epoch ({steps}; shared 2-core CPU, compilation excluded; float: "
            f"{base['epochs'] if base else '-'} epochs from scratch; a run with a single evaluation counts its "
            "first epoch with its compilation):", "",
            "| bits | float32 | DKM | IDKM | IDKM-JFB |", "|---|---|---|---|---|"]
  fmt = lambda r: f"{r['seconds_per_epoch']:.1f}" if r and r.get("seconds_per_epoch") else "-"
  for bits in bits_list:
    lines.append(f"| {bits} | {fmt(base)} | " + " | ".join(fmt(by.get((m, bits))) for m in METHODS) + " |")
  if any(r.get("state_bytes") for r in rows):
    lines += ["", "Checkpoint state (KiB; the quantized models' packed b-bit indices + codebooks, float BatchNorms and "
              "biases):", "", "| bits | float32 | DKM | IDKM | IDKM-JFB |", "|---|---|---|---|---|"]
    kib = lambda r: f"{r['state_bytes'] / 1024:.1f}" if r and r.get("state_bytes") else "-"  # noqa: E731
    for bits in bits_list:
      lines.append(f"| {bits} | {kib(base)} | " + " | ".join(kib(by.get((m, bits))) for m in METHODS) + " |")
  return "\n".join(lines)


def reexport(run: pathlib.Path, dataset: str) -> pathlib.Path:
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
    sections.update(benchmark_sections(dataset))
    with tempfile.TemporaryDirectory() as tmp:
      plots = list(family.plot(model, data, pathlib.Path(tmp))) if family.plot else []
      return checkpoint.save(model, run / "shipped", name=name, model_kwargs=kwargs, config=config,
                             metrics=metrics, checks=checks, plots=plots, card_sections=sections)


def ship(names: list[str] | None, runs_dir: pathlib.Path, dataset: str) -> None:
  from zoo import hub, registry

  registered = set(registry.list_models())
  for run, _, _ in runs(runs_dir, dataset):
    if run.name not in registered or (names and run.name not in names):
      continue
    target, sha, _ = hub.ship(reexport(run.absolute(), dataset), replace=True)
    print(f'    "{run.name}": "{sha}",  # {target}', flush=True)


def recard(names: list[str] | None, dataset: str) -> None:
  """Replaces the benchmark tables in the cards of the embedded checkpoints (e.g. after the benchmarks were rerun);
  weights, plots and the storage section untouched. Pins the new manifests (checkpoints/pins.json)."""
  from zoo import checkpoint, hub, pins

  for directory in sorted(hub.checkpoints_dir().glob(f"resnet18-{dataset}*")):
    if names and directory.name not in names:
      continue
    sha = checkpoint.refresh_card(directory, benchmark_sections(dataset))
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
  parser.add_argument("--dataset", default="digits", choices=sorted(DATASETS))
  parser.add_argument("--runs", default=str(ROOT / "runs"), help="the folder holding the runs (default: %(default)s)")
  args = parser.parse_args()
  results = collect(pathlib.Path(args.runs), args.dataset)
  RESULTS.mkdir(parents=True, exist_ok=True)
  name = results_name(args.dataset)
  (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
  flag = "" if args.dataset == "digits" else f" --dataset {args.dataset}"
  text = (f"# ResNet18 on {args.dataset}: float vs DKM vs IDKM vs IDKM-JFB\n\n"
          f"Command: `python benchmarks/idkm_accuracy.py{flag}`.\n\n")
  (RESULTS / f"{name}.md").write_text(text + table(results) + "\n")
  print(table(results))
  if args.ship is not None:
    ship(args.ship, pathlib.Path(args.runs), args.dataset)
  if args.recard is not None:
    recard(args.recard, args.dataset)


if __name__ == "__main__":
  main()
