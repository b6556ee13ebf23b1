"""Model cards (`huggingface_hub.ModelCard`) and the top-level MODEL_CARDS.md index.

A card is written from a checkpoint's manifest and the registry spec: YAML metadata (library_name, tags incl.
flax/jax/nnx and the guarantee, datasets, license, model-index with the measured metrics), then what the model
is, a usage snippet, its guarantee and how `zoo verify` checks it, the checks measured on these weights, the
training config, the metrics from the family's eval code, plots, and deviations from the paper.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Mapping

from zoo import registry

LIBRARY_NAME = "nnx-zoo"
NO_REFERENCE = "—"
REFERENCE_NOTE = ("*Paper / reference*: a published number for the same metric, with its source (paper, table/figure "
                  "or file, dataset and setting); {none}: no published number exists for that metric in this "
                  "setting.")
MODEL_CARDS = "MODEL_CARDS.md"


def _fmt(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


def _cell(text: str) -> str:
  """Text safe inside a markdown table cell."""
  return str(text).replace("|", "\\|").replace("\n", " ")


def _flat_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out: dict[str, Any] = {}
  for k, v in metrics.items():
    key = f"{prefix}{k}"
    if isinstance(v, Mapping):
      out.update(_flat_metrics(v, key + "/"))
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
      out[key] = v
  return out


def card_data(manifest: Mapping[str, Any], spec: registry.ModelSpec) -> Any:
  from huggingface_hub import EvalResult, ModelCardData  # pylint: disable=import-outside-toplevel

  metrics = _flat_metrics(manifest.get("metrics") or {})
  results = [
      EvalResult(task_type="other", dataset_type=spec.dataset, dataset_name=spec.dataset,
                 metric_type=k, metric_name=k, metric_value=float(v))
      for k, v in sorted(metrics.items())]
  return ModelCardData(
      library_name=LIBRARY_NAME,
      license=spec.license,
      tags=sorted({"flax", "jax", "nnx", "nnx-zoo", spec.family.name, *spec.tags}),
      datasets=[spec.dataset],
      model_name=spec.name,
      eval_results=results or None,
  )


def render(manifest: Mapping[str, Any], spec: registry.ModelSpec) -> str:
  """The card's markdown body (below the YAML header)."""
  lines = [f"# {spec.name}", "", spec.description or spec.family.name, ""]
  lines += ["## Usage", "", "```python", "import zoo", "",
            f'model = zoo.load("{spec.name}")  # embedded copy, then the HF cache, then the Hub',
            f"# x: (batch, {', '.join(map(str, spec.input_shape))})", "y = model(x)", "```", "",
            f"Command line: `zoo info {spec.name}`, `zoo verify {spec.name}`, `zoo run {spec.name}`.", ""]
  lines += ["## Guarantee", "", spec.guarantee, "",
            f"`zoo verify {spec.name}` re-checks it on the weights it loads. Measured on these weights:", ""]
  checks = manifest.get("checks") or []
  if checks:
    lines += ["| check | passed | value | bound |", "|---|---|---|---|"]
    lines += [f"| {_cell(c['name'])} | {'yes' if c['passed'] else '**NO**'} | {_fmt(c['value'])} | "
              f"{_fmt(c['bound'])} |" for c in checks]
  else:
    lines += ["(no checks recorded)"]
  lines += [""]
  metrics = _flat_metrics(manifest.get("metrics") or {})
  lines += ["## Metrics", "",
            f"Measured by the family's eval code (`zoo.models.{spec.family.name}.evaluate`) on the "
            f"`{(manifest.get('config') or {}).get('eval_split', 'test')}` split of `{spec.dataset}`.", ""]
  if metrics:
    ref = spec.reference
    lines += ["| metric | value | paper / reference |", "|---|---|---|"]
    lines += [f"| {k} | {_fmt(v)} | {_cell(ref.get(k, NO_REFERENCE))} |" for k, v in sorted(metrics.items())]
    lines += ["", REFERENCE_NOTE.format(none=NO_REFERENCE)]
  lines += [""]
  for title, body in (manifest.get("card_sections") or {}).items():
    lines += [f"## {title}", "", body.strip(), ""]
  for png in manifest.get("plots") or []:
    lines += [f"![{png}]({png})", ""]
  lines += ["## Model", "", f"- family: `{spec.family.name}` ({manifest.get('num_params', '?')} parameters)",
            f"- input: one example has shape `{tuple(spec.input_shape)}`; call on `(batch, ...)`",
            f"- arguments: `{json.dumps(manifest.get('model_kwargs') or {}, sort_keys=True)}`",
            f"- paper: {spec.family.paper}", ""]
  if spec.deviations:
    lines += ["## Deviations from the paper", "", spec.deviations, ""]
  config = manifest.get("config")
  if config:
    lines += ["## Training config", "", "```json", json.dumps(config, indent=2, sort_keys=True), "```", ""]
  lines += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in sorted((manifest.get("versions") or {}).items())),
            ""]
  return "\n".join(lines)


def write_card(directory: pathlib.Path, manifest: Mapping[str, Any], spec: registry.ModelSpec) -> pathlib.Path:
  """Writes README.md (the Hub's model card) into `directory`."""
  from huggingface_hub import ModelCard  # pylint: disable=import-outside-toplevel

  card = ModelCard(f"---\n{card_data(manifest, spec).to_yaml()}\n---\n\n{render(manifest, spec)}")
  path = pathlib.Path(directory) / "README.md"
  path.write_text(str(card) + ("\n" if not str(card).endswith("\n") else ""))
  return path


def index_markdown(checkpoints: pathlib.Path | None) -> str:
  """MODEL_CARDS.md: every registered model, its guarantee, its measured metrics and its card."""
  lines = ["# Model cards", "",
           "Generated from the registry and the shipped checkpoints by `zoo cards`; do not edit by hand.", "",
           "| model | family | dataset | guarantee | verified | metrics | card |", "|---|---|---|---|---|---|---|"]
  for spec in registry.specs():
    manifest_path = checkpoints / spec.name / "manifest.json" if checkpoints else None
    if manifest_path and manifest_path.is_file():
      manifest = json.loads(manifest_path.read_text())
      metrics = _flat_metrics(manifest.get("metrics") or {})
      shown = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(metrics.items())[:6])
      checks = manifest.get("checks") or []
      verified = f"{sum(c['passed'] for c in checks)}/{len(checks)} checks" if checks else "-"
      card = f"[card](checkpoints/{spec.name}/README.md)"
    else:
      shown, verified, card = "not trained yet" if spec.pretrained is None else "not embedded", "-", "-"
    lines.append(f"| `{spec.name}` | {spec.family.name} | {spec.dataset} | {_cell(spec.guarantee)} | {verified} | "
                 f"{shown} | {card} |")
  return "\n".join(lines) + "\n"
