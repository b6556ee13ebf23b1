"""Model cards (`huggingface_hub.ModelCard`) and the top-level MODEL_CARDS.md index.

A card is written from a checkpoint's manifest and the registry spec: YAML metadata (library_name, tags incl.
flax/jax/nnx and the guarantee, datasets, license, model-index with the measured metrics), then what the model
is, a usage snippet, its guarantee and how `zoo verify` checks it, the checks measured on these weights, the
training config, the metrics from the family's eval code, plots, and deviations from the paper.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Iterable, Mapping

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


# Numbers a training run records that are not measurements of the model's quality: kept out of the Hub's
# model-index (eval results) and shown as training facts / model size instead.
BOOKKEEPING = ("best_step", "train_steps", "rollout_steps", "steps", "epochs", "seed")
SIZE = ("state_bytes", "compression_vs_float32", "num_params")


# Where a float64 family runs (its card's Limitations; `zoo.nn.precision.check_float64_backend` enforces it).
FLOAT64_LIMITATION = ("- Computes in float64 (its guarantee is stated to float64 round-off): runs on CPUs and GPUs. "
                      "TPUs have no native float64, so there `zoo.load` and `zoo.create` raise "
                      "`Float64UnavailableError` instead of silently computing in float32.")


def is_bookkeeping(key: str) -> bool:
  """Whether the metric `key` is bookkeeping (a step count) rather than a measurement on the eval split."""
  leaf = key.rsplit("/", 1)[-1]
  return any(leaf == b or leaf.startswith(b + "_") for b in BOOKKEEPING)


def split_metrics(metrics: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
  """(eval metrics, model-size figures, bookkeeping) of a manifest's flat metrics."""
  flat = _flat_metrics(metrics or {})
  size = {k: v for k, v in flat.items() if k.rsplit("/", 1)[-1] in SIZE}
  book = {k: v for k, v in flat.items() if k not in size and is_bookkeeping(k)}
  return {k: v for k, v in flat.items() if k not in size and k not in book}, size, book


# The Hub's task of each family (its `pipeline_tag` and the eval results' task type).
TASKS = {
    "elcd": "robotics",                       # a motion policy learned from demonstrations
    "invariance_node": "robotics",            # a neural ODE that keeps out of obstacles
    "massnet": "time-series-forecasting",     # a flow map of a dynamical system (SIR)
    "volume": "time-series-forecasting",      # a flow map of a dynamical system (pendulum)
    "nonexpansive": "image-classification",
    "resnet": "image-classification",
    "wavemix": "image-classification",
}

# BibTeX of each family's paper(s) (as `Family.paper` names them).
BIBTEX = {
    "elcd": """@inproceedings{jaffe2024elcd,
  title     = {Learning Neural Contracting Dynamics: Extended Linearization and Global Guarantees},
  author    = {Jaffe, Sean and Davydov, Alexander and Lapsekili, Deniz and Singh, Ambuj and Bullo, Francesco},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2024},
  eprint    = {2402.08090},
  archivePrefix = {arXiv}
}""",
    "invariance_node": """@inproceedings{xiao2023invariance,
  title     = {On the Forward Invariance of Neural {ODE}s},
  author    = {Xiao, Wei and Wang, Tsun-Hsuan and Hasani, Ramin and Lechner, Mathias and Ban, Yutong and Gan, Chuang and Rus, Daniela},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2023},
  eprint    = {2210.04763},
  archivePrefix = {arXiv}
}""",
    "celledoni": """@article{celledoni2023dynamical,
  title   = {Dynamical Systems' Based Neural Networks},
  author  = {Celledoni, Elena and Murari, Davide and Owren, Brynjulf and Sch{\\"o}nlieb, Carola-Bibiane and Sherry, Ferdia},
  journal = {SIAM Journal on Scientific Computing},
  year    = {2023},
  eprint  = {2210.02373},
  archivePrefix = {arXiv}
}""",
    "sherry": """@article{sherry2024designing,
  title   = {Designing Stable Neural Networks using Convex Analysis and {ODE}s},
  author  = {Sherry, Ferdia and Celledoni, Elena and Ehrhardt, Matthias J. and Murari, Davide and Owren, Brynjulf and Sch{\\"o}nlieb, Carola-Bibiane},
  journal = {Physica D: Nonlinear Phenomena},
  year    = {2024},
  eprint  = {2306.17332},
  archivePrefix = {arXiv}
}""",
    "resnet": """@inproceedings{he2016resnet,
  title     = {Deep Residual Learning for Image Recognition},
  author    = {He, Kaiming and Zhang, Xiangyu and Ren, Shaoqing and Sun, Jian},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2016}
}""",
    "idkm": """@misc{jaffe2023idkm,
  title  = {{IDKM}: Memory Efficient Neural Network Quantization via Implicit, Differentiable k-Means},
  author = {Jaffe, Sean and Singh, Ambuj K. and Bullo, Francesco},
  year   = {2023},
  eprint = {2312.07759},
  archivePrefix = {arXiv}
}""",
    "dkm": """@inproceedings{cho2022dkm,
  title     = {{DKM}: Differentiable k-Means Clustering Layer for Neural Network Compression},
  author    = {Cho, Minsik and Alizadeh-Vahid, Keivan and Adya, Saurabh and Rastegari, Mohammad},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2022},
  eprint    = {2108.12659},
  archivePrefix = {arXiv}
}""",
    "wavemix": """@misc{jeevan2022wavemix,
  title  = {{WaveMix}: A Resource-efficient Neural Network for Image Analysis},
  author = {Jeevan, Pranav and Viswanathan, Kavitha and Anandhu, A. S. and Sethi, Amit},
  year   = {2022},
  eprint = {2205.14375},
  archivePrefix = {arXiv}
}""",
    "quarot": """@inproceedings{ashkboos2024quarot,
  title     = {{QuaRot}: Outlier-Free 4-Bit Inference in Rotated {LLM}s},
  author    = {Ashkboos, Saleh and Mohtashami, Amirkeivan and Croci, Maximilian L. and Li, Bo and Cameron, Pashmina and Jaggi, Martin and Alistarh, Dan and Hoefler, Torsten and Hensman, James},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2024},
  eprint    = {2404.00456},
  archivePrefix = {arXiv}
}""",
}
_FAMILY_BIB = {"elcd": ["elcd"], "invariance_node": ["invariance_node"], "massnet": ["celledoni"],
               "volume": ["celledoni"], "nonexpansive": ["celledoni", "sherry"], "resnet": ["resnet"],
               "wavemix": ["wavemix"]}


def bibtex(spec: registry.ModelSpec) -> str:
  """The BibTeX entries to cite for `spec` (the family's paper, plus the quantization method's when it has one)."""
  keys = list(_FAMILY_BIB.get(spec.family.name, []))
  tags = set(spec.tags)
  keys += [k for k, tag in (("idkm", "idkm"), ("idkm", "jfb"), ("dkm", "dkm")) if tag in tags and k not in keys]
  if "rotate" in spec.name or "quarot" in tags:
    keys.append("quarot")
  return "\n\n".join(BIBTEX[k] for k in dict.fromkeys(keys))


def base_model(spec: registry.ModelSpec) -> str | None:
  """The Hub repo of the float model a quantized variant derives from (the longest registered name that prefixes
  it and is not itself quantized), or None."""
  if "quantization" not in spec.tags and "rotate" not in spec.name:
    return None
  names = sorted(registry.list_models(), key=len, reverse=True)
  for n in names:
    if n != spec.name and spec.name.startswith(n + "-"):
      from zoo import pins  # pylint: disable=import-outside-toplevel
      pin = pins.get(n)
      return pin.repo_id if pin else f"nnx-zoo/{n}"
  return None


def is_custom(manifest: Mapping[str, Any], spec: registry.ModelSpec) -> bool:
  """Whether the checkpoint's arguments differ from the registered variant's."""
  return registry.jsonable(dict(manifest.get("model_kwargs") or {})) != registry.jsonable(dict(spec.kwargs))


def is_untrained(manifest: Mapping[str, Any]) -> bool:
  """A checkpoint with neither a training config nor metrics: random weights (e.g. straight from zoo.create)."""
  return not manifest.get("config") and not (manifest.get("metrics") or {})


def eval_split(manifest: Mapping[str, Any]) -> str:
  return str((manifest.get("config") or {}).get("eval_split", "test"))


def ordered_sections(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
  """The manifest's extra card sections as (title, markdown), in `card_section_order` (a manifest without it, or
  titles it misses, follow in the order the manifest holds them)."""
  sections = manifest.get("card_sections") or {}
  order = [t for t in dict.fromkeys(manifest.get("card_section_order") or []) if t in sections]
  return [(t, sections[t]) for t in order + [t for t in sections if t not in order]]


def card_data(manifest: Mapping[str, Any], spec: registry.ModelSpec) -> Any:
  from huggingface_hub import EvalResult, ModelCardData  # pylint: disable=import-outside-toplevel

  task = TASKS.get(spec.family.name, "other")
  evals, _, _ = split_metrics(manifest.get("metrics") or {})
  split = eval_split(manifest)
  results = [
      EvalResult(task_type=task, dataset_type=spec.dataset, dataset_name=spec.dataset, dataset_split=split,
                 metric_type=k, metric_name=k, metric_value=float(v))
      for k, v in sorted(evals.items())]
  extra = {}
  base = base_model(spec)
  if base:
    extra.update(base_model=base, base_model_relation="quantized")
  return ModelCardData(
      library_name=LIBRARY_NAME,
      license=spec.license,
      pipeline_tag=task,
      tags=sorted({"flax", "jax", "nnx", "nnx-zoo", spec.family.name, *spec.tags}
                  | ({"untrained"} if is_untrained(manifest) else set())),
      datasets=[spec.dataset],
      model_name=spec.name,
      eval_results=results or None,
      **extra,
  )


def _kwargs_diff(manifest: Mapping[str, Any], spec: registry.ModelSpec) -> dict[str, Any]:
  mine = registry.jsonable(dict(manifest.get("model_kwargs") or {}))
  ref = registry.jsonable(dict(spec.kwargs))
  return {k: v for k, v in mine.items() if ref.get(k) != v}


def render(manifest: Mapping[str, Any], spec: registry.ModelSpec, repo_id: str | None = None) -> str:
  """The card's markdown body (below the YAML header). `repo_id`: the Hub repo it is pushed to (its usage line)."""
  custom, untrained = is_custom(manifest, spec), is_untrained(manifest)
  changed = _kwargs_diff(manifest, spec)
  title = spec.name + (" (custom: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in changed.items()) + ")"
                       if custom else "")
  lines = [f"# {title}", "", spec.description or spec.family.name, ""]
  if untrained or custom:
    what = []
    if custom:
      what.append(f"a `{spec.family.name}` model built with other arguments than the registered `{spec.name}` "
                  f"(changed: {', '.join(f'`{k}`' for k in changed)})")
    if untrained:
      what.append("**untrained**: random initial weights (no training config, no metrics)")
    lines += [f"> This checkpoint is {'; '.join(what)}. It is not the pretrained `{spec.name}` of the zoo "
              f"(`zoo.load(\"{spec.name}\")`).", ""]
  source = f"hf://{repo_id}" if repo_id else spec.name
  where = ("from the Hub (or the HF cache)" if repo_id else "embedded copy, then the HF cache, then the Hub")
  lines += ["## Usage", "", "```python", "import zoo", "", f'model = zoo.load("{source}")  # {where}',
            f"# x: (batch, {', '.join(map(str, spec.input_shape))})", "y = model(x)", "```", "",
            f"Command line: `zoo info {spec.name}`, `zoo verify {source}`, `zoo run {source}`.", ""]
  lines += ["## Guarantee", "", spec.guarantee, "",
            f"`zoo verify {source}` re-checks it on the weights it loads. Measured on these weights:", ""]
  checks = manifest.get("checks") or []
  if checks:
    lines += ["| check | passed | value | bound |", "|---|---|---|---|"]
    lines += [f"| {_cell(c['name'])} | {'yes' if c['passed'] else '**NO**'} | {_fmt(c['value'])} | "
              f"{_fmt(c['bound'])} |" for c in checks]
  else:
    lines += ["(no checks recorded)"]
  lines += [""]
  evals, size, book = split_metrics(manifest.get("metrics") or {})
  split = eval_split(manifest)
  lines += ["## Metrics", ""]
  if evals:
    lines += [f"Measured by the family's eval code (`zoo.models.{spec.family.name}.evaluate`) on the `{split}` split "
              f"of `{spec.dataset}`.", ""]
    ref = spec.reference
    lines += ["| metric | split | value | paper / reference |", "|---|---|---|---|"]
    lines += [f"| {k} | {split} | {_fmt(v)} | {_cell(ref.get(k, NO_REFERENCE))} |" for k, v in sorted(evals.items())]
    lines += ["", REFERENCE_NOTE.format(none=NO_REFERENCE), ""]
  else:
    lines += ["None: this checkpoint was not evaluated." if untrained else "(no metrics recorded)", ""]
  if size:
    lines += ["Size: " + ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(size.items())) + ".", ""]
  if book:
    lines += ["Training run (bookkeeping, not evaluation): " + ", ".join(f"{k} {_fmt(v)}" for k, v in
                                                                         sorted(book.items())) + ".", ""]
  for title_, body in ordered_sections(manifest):
    lines += [f"## {title_}", "", body.strip(), ""]
  for png in manifest.get("plots") or []:
    lines += [f"![{png}]({png})", ""]
  lines += ["## Model", "", f"- family: `{spec.family.name}` ({manifest.get('num_params', '?')} parameters)",
            f"- input: one example has shape `{tuple(spec.input_shape)}`; call on `(batch, ...)`",
            f"- arguments: `{json.dumps(manifest.get('model_kwargs') or {}, sort_keys=True)}`",
            f"- paper: {spec.family.paper}", ""]
  base = base_model(spec)
  if base:
    lines.insert(len(lines) - 1, f"- quantized from: [`{base}`](https://huggingface.co/{base})")
  lines += ["## Limitations", ""]
  if untrained:
    lines += ["- Untrained: its outputs mean nothing yet; train it (`python -m train`) before use."]
  lines += [f"- Trained and evaluated on `{spec.dataset}` only; the metrics say nothing about other data.",
            "- The guarantee is a property of the architecture on these weights (checked by `zoo verify`); it does "
            "not make the predictions accurate.",
            "- Where this implementation departs from the paper is listed below (Deviations)." if spec.deviations
            else "- No deviations from the paper are recorded."]
  if spec.family.x64:
    lines += [FLOAT64_LIMITATION]
  lines += [""]
  if spec.deviations:
    lines += ["## Deviations from the paper", "", spec.deviations, ""]
  config = manifest.get("config")
  if config:
    lines += ["## Training config", "", "```json", json.dumps(config, indent=2, sort_keys=True), "```", ""]
  bib = bibtex(spec)
  if bib:
    lines += ["## Citation", "", "```bibtex", bib, "```", ""]
  lines += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in sorted((manifest.get("versions") or {}).items())),
            ""]
  return "\n".join(lines)


def write_card(directory: pathlib.Path, manifest: Mapping[str, Any], spec: registry.ModelSpec,
               repo_id: str | None = None) -> pathlib.Path:
  """Writes README.md (the Hub's model card) into `directory`; `repo_id`: the Hub repo it is pushed to."""
  from huggingface_hub import ModelCard  # pylint: disable=import-outside-toplevel

  card = ModelCard(f"---\n{card_data(manifest, spec).to_yaml()}\n---\n\n{render(manifest, spec, repo_id)}")
  path = pathlib.Path(directory) / "README.md"
  path.write_text(str(card) + ("\n" if not str(card).endswith("\n") else ""))
  return path


# Benchmark tables that MODEL_CARDS.md carries below the index (paths relative to the repository root; each is
# written by the benchmark script its first lines name).
INDEX_TABLES = ("benchmarks/results/elcd_generalisation.md", "benchmarks/results/acs_seeds_card.md")
# Benchmark plots that MODEL_CARDS.md links, {path relative to the repository root: what it shows}. A plot that
# compares several models lives with its benchmark, never copied into each model's card.
INDEX_PLOTS = {"benchmarks/results/idkm_memory.png": "DKM vs IDKM vs IDKM-JFB: peak memory and backward time "
                                                      "against the soft k-means iterations t (benchmarks/idkm_memory.py; "
                                                      "the `resnet18-digits*` cards' Memory section)",
               "benchmarks/results/acs_seeds.png": "ACS vs PPO-Lagrangian vs PPO on PointGoal1: return, cost per "
                                                   "episode and cumulative training cost against environment steps, "
                                                   "mean over 3 seeds with their range (benchmarks/acs_curves.py)"}


def index_markdown(checkpoints: pathlib.Path | None, tables: Iterable[str | os.PathLike] = (),
                   plots: Mapping[str, str] | None = None) -> str:
  """MODEL_CARDS.md: every registered model, its guarantee, its measured metrics and its card; then each markdown
  file of `tables` (a benchmark's table, its title demoted one level); then links to the benchmark `plots`
  ({path: caption}, default `INDEX_PLOTS`)."""
  guarantees: dict[str, str] = {}  # each guarantee text once (variants of a family share theirs)
  rows = []
  for spec in registry.specs():
    label = guarantees.setdefault(spec.guarantee, f"G{len(guarantees) + 1}")
    manifest_path = checkpoints / spec.name / "manifest.json" if checkpoints else None
    if manifest_path and manifest_path.is_file():
      manifest = json.loads(manifest_path.read_text())
      evals, _, _ = split_metrics(manifest.get("metrics") or {})
      shown = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(evals.items())[:6])
      checks = manifest.get("checks") or []
      verified = f"{sum(c['passed'] for c in checks)}/{len(checks)} checks" if checks else "-"
      card = f"[card](checkpoints/{spec.name}/README.md)"
    else:
      shown, verified, card = "not trained yet" if spec.pretrained is None else "not embedded", "-", "-"
    rows.append(f"| `{spec.name}` | {spec.family.name} | {spec.dataset} | {label} | {verified} | {shown} | {card} |")
  lines = ["# Model cards", "",
           "Generated from the registry and the shipped checkpoints by `zoo cards`; do not edit by hand. Metrics: "
           "the first six evaluation metrics of each card (its test split); every number, with its reference, is in "
           "the card.", "",
           "| model | family | dataset | guarantee | verified | metrics | card |", "|---|---|---|---|---|---|---|",
           *rows, "", "## Guarantees", "",
           "Each enforced by construction and re-checked on the shipped weights by `zoo verify NAME`.", ""]
  lines += [f"- **{label}**: {text}" for text, label in guarantees.items()]
  for table in tables:
    text = pathlib.Path(table).read_text().strip()
    lines += ["", "#" + text if text.startswith("# ") else text]
  plots = INDEX_PLOTS if plots is None else plots
  if plots:
    lines += ["", "## Benchmark plots", ""] + [f"- [{caption}]({path})" for path, caption in plots.items()]
  return "\n".join(lines) + "\n"
