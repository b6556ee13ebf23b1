"""Plots and card sections: accuracy vs L2 radius (clean, PGD, certified), per-layer bounds, and the table
constrained vs baseline; the paper's CIFAR-10 numbers (one margin, 0.07) beside it only at the CIFAR-10 size, and
as separate context, marked not comparable, for other datasets."""

from __future__ import annotations

import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

from zoo import attacks
from zoo import plotting
from zoo.models.nonexpansive.evaluate import PAPER_CIFAR10, PAPER_EPSILONS, PAPER_FILES, PAPER_SOURCE, epsilons
from zoo.models.nonexpansive.model import NonexpansiveResNet, lipschitz_bound
from zoo.models.nonexpansive.verify import VERIFY_TOL
from zoo.tasks.classification import unit_float

PAIRS = {8: ("nonexpansive-resnet-digits", "resnet-baseline-digits"),   # image size -> (constrained, baseline)
         28: ("nonexpansive-resnet-fashion-mnist", "resnet-baseline-fashion-mnist"),
         32: ("nonexpansive-resnet-cifar10", "resnet-baseline-cifar10")}
ADVERSARIAL_CHECK = "adversarial pairs"   # the verify check whose value is the measured adversarial ratio

HOW_MEASURED = (
    "On the whole test split, or its first `max_eval_examples` images where the training config below sets it "
    "(the official robustness runs use 1024 test images). *PGD*: L2 projected gradient ascent on the cross-entropy (`zoo.attacks`), 10 steps "
    "of size 2.5ε/10 from a uniform random start in the ball, inputs clipped to [0, 1]; an example counts as "
    "robust only if it is classified correctly at x and at every iterate. *Certified*: the prediction's margin "
    "f_y − max_{j≠y} f_j exceeds √2·L·ε, with L = Π of the per-layer bounds measured on these weights (operator "
    "norms by power iteration on the convolution operator and by exact SVD, step sizes; `zoo verify`). A "
    "certified example cannot be attacked by any method within the radius; PGD only gives an upper bound on "
    "robust accuracy. The baseline's L (a product of unconstrained per-layer norms) is loose, so its certified "
    "accuracy says little about its true robustness, which PGD bounds from above.")


PLOT_FILE = "accuracy_vs_l2_radius_and_layer_bounds.png"


def plot(model: NonexpansiveResNet, data, outdir) -> list[pathlib.Path]:
  """`accuracy_vs_l2_radius_and_layer_bounds.png`: accuracy against the L2 radius of the perturbation (clean, PGD,
  certified) and the per-layer Lipschitz bounds."""
  plt = plotting.pyplot()

  x, y = unit_float(data["image"]), np.asarray(data["label"], np.int64)
  logits = attacks.predict(model, x)
  records = model.layer_bounds(iters=1000, random_starts=0)
  lipschitz = lipschitz_bound(records)
  top = max(epsilons(model.input_shape))
  grid = np.linspace(0, top, 11)
  pgd = [attacks.robust_accuracy(model, x, y, float(e)) for e in grid]
  cert = [attacks.certified_accuracy(logits, y, lipschitz, float(e)) for e in grid]
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
  axes[0].plot(grid, pgd, "o-", label="L2 PGD (10 steps): an upper bound")
  axes[0].plot(grid, cert, "s-", label=f"certified (L = {lipschitz:.3g}): a lower bound")
  axes[0].axhline(float(np.mean(np.argmax(logits, 1) == y)), color="gray", ls=":", label="clean (ε = 0)")
  axes[0].set(xlabel="ε, L2 radius of the perturbation (pixel values in [0, 1])",
              ylabel="accuracy (fraction of the test split)", ylim=(0, 1.02),
              title=("non-expansive" if model.constrained else "unconstrained baseline") + " — test split")
  axes[0].legend(fontsize=8)
  names = [r["name"] for r in records]
  bounds = [r["bound"] for r in records]
  within = [b <= 1 + VERIFY_TOL for b in bounds]
  for ok, label, color in ((True, "bound ≤ 1 (non-expansive)", "C0"), (False, "bound > 1", "C3")):
    idx = [i for i, w in enumerate(within) if w == ok]
    if idx:
      axes[1].bar(idx, [bounds[i] for i in idx], color=color, label=label)
  axes[1].axhline(1.0, color="k", lw=0.8, label="1 (non-expansive)")
  axes[1].set_yscale("log")
  axes[1].set_xticks(range(len(records)), names, rotation=45, ha="right", fontsize=8)
  axes[1].set(xlabel="layer (in forward order)", ylabel="Lipschitz bound (L2 → L2, dimensionless; log scale)",
              title=f"per-layer bounds, product L = {lipschitz:.4g}")
  axes[1].legend(fontsize=8)
  path = plotting.save(fig, outdir, PLOT_FILE)
  return [path]


def _adversarial_ratio(checks: Sequence[Any]) -> float:
  """The empirical ‖N(x) − N(y)‖/‖x − y‖ on adversarial pairs recorded by `verify` (nan when absent)."""
  for c in checks or ():
    name = c["name"] if isinstance(c, Mapping) else c.name
    if ADVERSARIAL_CHECK in name:
      return float(c["value"] if isinstance(c, Mapping) else c.value)
  return float("nan")


def paper_markdown() -> str:
  """The official code's CIFAR-10 numbers (one margin, 0.07, every row) with their source files."""
  lines = ["| official run (CIFAR-10, margin 0.07) | clean | ε=36/255 | ε=0.5 | ε=1.0 | stored in |",
           "|---|---|---|---|---|---|"]
  lines += [f"| {k} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | `{PAPER_FILES[k]}` |"
            for k, vals in PAPER_CIFAR10.items()]
  return "\n".join(lines)


def comparison_markdown(metrics: Mapping[str, Mapping[str, float]], input_shape: Sequence[int],
                        checks: Mapping[str, Sequence[Any]] | None = None) -> str:
  """A markdown table constrained vs baseline (clean / PGD / certified at each radius, the Lipschitz bound L, the
  measured adversarial ratio) and the paper's CIFAR-10 numbers: beside ours at the CIFAR-10 size, otherwise as
  context marked not comparable. `metrics`: {model name: its evaluate() dict}; `checks`: {model name: its
  verify() checks} (for the adversarial ratio)."""
  checks = checks or {}
  eps = epsilons(input_shape)
  head = ("| model | L (certificate) | adversarial ratio | clean | "
          + " | ".join(f"PGD ε={e:g} | cert. ε={e:g}" for e in eps) + " | median cert. radius |")
  lines = [head, "|" + "---|" * (5 + 2 * len(eps))]
  for name, m in metrics.items():
    cells = [f"{m.get('lipschitz_bound', float('nan')):.4g}", f"{_adversarial_ratio(checks.get(name)):.4g}",
             f"{m['accuracy']:.3f}"]
    cells += [f"{m.get(f'pgd_acc_eps{e:g}', float('nan')):.3f} | {m.get(f'certified_acc_eps{e:g}', float('nan')):.3f}"
              for e in eps]
    cells.append(f"{m.get('median_certified_radius', float('nan')):.3g}")
    lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
  lines += ["", "*L*: the Lipschitz certificate (Π of the per-layer bounds on these weights). *Adversarial ratio*: "
            "the largest ‖N(x) − N(y)‖/‖x − y‖ that gradient ascent found (`zoo verify`); it must stay ≤ L.", ""]
  source = PAPER_SOURCE.format(file="in the files named in the table's last column")
  if eps == PAPER_EPSILONS:
    lines += [f"Paper: {source}; no certificate reported.", "", paper_markdown()]
  else:
    lines += [f"No published number exists for this dataset and these radii. For context only — **not comparable** "
              f"(another dataset: CIFAR-10, 3072 inputs; another network and margin) — the official CIFAR-10 runs: "
              f"{source}; no certificate reported.", "", paper_markdown()]
  return "\n".join(lines)


def card_sections(model: NonexpansiveResNet, metrics: Mapping[str, float], checks: Sequence[Check],
                  siblings: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
  """Card sections: the table constrained vs baseline (this model's metrics and checks and its partner's, from its
  record in `siblings` {name: {"metrics": ..., "checks": ...}} when the partner is shipped), the paper's CIFAR-10
  numbers (beside it only at the CIFAR-10 size), and how the numbers are measured."""
  constrained, baseline = PAIRS.get(model.image_size, ("this model (constrained)", "this model (baseline)"))
  own, other = (constrained, baseline) if model.constrained else (baseline, constrained)
  rows, row_checks = {own: metrics}, {own: list(checks)}
  partner = siblings.get(other)
  if partner is not None:
    rows[other] = partner["metrics"]
    row_checks[other] = list(partner.get("checks") or ())
  rows = dict(sorted(rows.items(), key=lambda kv: kv[0] != constrained))
  table = comparison_markdown(rows, model.input_shape, row_checks)
  if partner is None:
    table += f"\n\n(`{other}` was not shipped when this card was written.)"
  return {"Constrained vs baseline": table, "How robustness is measured": HOW_MEASURED}
