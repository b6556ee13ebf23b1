"""Non-expansive (1-Lipschitz) convolutional ResNets with certified robustness, and their unconstrained baseline.

The network is a composition of integrator steps of gradient and non-gradient vector fields (the paper's
"switching" architecture): per stage, a lifting convolution (+ ReLU), then pairs Ψ_C^{h_C} ∘ Ψ_E^{h_E} of an
expansive step x ↦ x + h_E σ(Wx + v) and a contractive step x ↦ x − h_C Aᵀσ(Ax + b) (σ(t) = max(t, t/2)), then
2×2 max pooling; finally a dense layer. Every linear map has ℓ2 operator norm ≤ 1 (power iteration on the
convolution operator) and the step sizes are tied, √(1 − h_C + h_C²)(1 + h_E) ≤ 1, so each pair, the ReLUs and
the pooling are 1-Lipschitz: ‖N(x) − N(y)‖₂ ≤ ‖x − y‖₂ for all inputs (see `zoo.nn.lipschitz` for the bounds).
A prediction with margin f_y − max_{j≠y} f_j > √2·L·ε is then certified at radius ε (L the measured product of
the per-layer bounds, ≤ 1). `constrained=False` is the same architecture with raw weights and free step sizes.

Celledoni, Murari, Owren, Schönlieb, Sherry, "Dynamical systems' based neural networks", SIAM J. Sci. Comput.
2023 (official code: davidemurari/StructuredNeuralNetworks, "Adversarial Robustness"); Sherry et al., "Designing
stable neural networks using convex analysis and ODEs", Physica D 2024 (fsherry/non-expansive-odes).
"""

from __future__ import annotations

import math
import pathlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo import attacks
from zoo.nn import lipschitz as lip
from zoo.registry import Check, Family, check_input, register

NEGATIVE_SLOPE = 0.5            # σ(t) = max(t, t/2)
PAPER_EPSILONS = (36 / 255, 0.5, 1.0)   # the paper's L2 radii on CIFAR-10 images in [0, 1]^3072
CIFAR_DIM = 32 * 32 * 3
VERIFY_TOL = 1e-3               # float32 and power-iteration accuracy (~1e-6 per layer after refresh)
PAPER_CIFAR10 = {                # davidemurari/StructuredNeuralNetworks, 1024 test images, L2 PGD 10 steps
    "unconstrained baseline": (0.909, 0.808, 0.413, 0.072),
    "non-expansive": (0.839, 0.794, 0.661, 0.482),
    "switch (flexible)": (0.822, 0.790, 0.687, 0.513),
}


def maxpool2(x: jax.Array) -> jax.Array:
  """2×2 max pooling, stride 2 (NHWC): 1-Lipschitz in ℓ2 (disjoint windows, |max a − max b| ≤ max |a − b|)."""
  b, h, w, c = x.shape
  return x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class Stage(nnx.Module):
  """Lifting convolution (+ ReLU) then `pairs` NonexpansivePairs at one resolution, then 2×2 max pooling."""

  def __init__(self, in_channels: int, channels: int, size: Sequence[int], pairs: int, kernel_size: int, *,
               constrained: bool, init_iters: int, rngs: nnx.Rngs):
    self.lift = lip.SpectralConv(in_channels, channels, (kernel_size, kernel_size), size, normalize=constrained,
                                 use_bias=False, init_iters=init_iters, rngs=rngs)
    gain = lip.leaky_relu_gain(NEGATIVE_SLOPE)
    self.pairs = nnx.List([
        lip.NonexpansivePair(channels, size, (kernel_size, kernel_size), constrained=constrained, gain=gain,
                             rngs=rngs) for _ in range(pairs)])

  def __call__(self, x: jax.Array) -> jax.Array:
    x = jax.nn.relu(self.lift(x))
    for pair in self.pairs:
      x = pair(x)
    return maxpool2(x)


class NonexpansiveResNet(nnx.Module):
  """Convolutional ResNet of non-expansive integrator steps (or its unconstrained baseline).

  Guarantee (`constrained=True`): ‖N(x) − N(y)‖₂ ≤ ‖x − y‖₂ for all inputs (logits vs the flattened image).

  Arguments:
    image_size: H = W of the input. in_channels: C. widths: channels of each stage (the resolution halves after
    each). pairs_per_stage: expansive+contractive pairs per stage (2 pairs = the paper's 4 residual layers).
    num_classes: logits. kernel_size: of every convolution. constrained: the non-expansive net (False: baseline).
    margin: multi-class hinge margin and orth_weight: weight of the orthogonality penalty (training
    hyperparameters read by the family's loss). init_iters: power iterations at initialisation.
  Call: x: (batch, image_size, image_size, in_channels) float in [0, 1] -> logits (batch, num_classes).
  """

  def __init__(self, image_size: int = 8, in_channels: int = 1, widths: Sequence[int] = (16, 32),
               pairs_per_stage: int = 2, num_classes: int = 10, kernel_size: int = 3, constrained: bool = True,
               margin: float = 0.3, orth_weight: float = 0.1, init_iters: int = 1000, *, rngs: nnx.Rngs):
    self.image_size, self.in_channels, self.num_classes = image_size, in_channels, num_classes
    self.constrained = constrained
    self.margin, self.orth_weight = float(margin), float(orth_weight)
    stages, c, size = [], in_channels, image_size
    for width in widths:
      stages.append(Stage(c, width, (size, size), pairs_per_stage, kernel_size, constrained=constrained,
                          init_iters=init_iters, rngs=rngs))
      c, size = width, size // 2
    self.stages = nnx.List(stages)
    self.head = lip.SpectralDense(size * size * c, num_classes, normalize=constrained, init_iters=init_iters,
                                  rngs=rngs)

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return (self.image_size, self.image_size, self.in_channels)

  def __call__(self, x: jax.Array) -> jax.Array:
    check_input(x, self.input_shape)
    x = jnp.asarray(x, jnp.float32)
    for stage in self.stages:
      x = stage(x)
    return self.head(x.reshape(x.shape[0], -1))

  def orthogonality_penalty(self) -> jax.Array:
    """Σ ‖K ⋆ K − δ⊗I‖_F over the residual convolutions (raw kernels), as the official `reg()`."""
    return sum(lip.orthogonality_penalty(step.conv.kernel[...])
               for stage in self.stages for pair in stage.pairs for step in (pair.expansive, pair.contractive))

  def layer_bounds(self, iters: int = 1000, random_starts: int = 2, seed: int = 0) -> list[dict[str, Any]]:
    """Per-layer ℓ2 Lipschitz bounds of the network as it computes now (eval mode, stored estimates).

    Each record: name, kind ("linear" or "pair"), bound, and the measurements it is made of (operator norms by
    power iteration and, for operators of ≤ 4096 inputs, exactly; step sizes). ReLU and max pooling: 1.
    """
    records = []

    def measure(layer):
      return layer.measure(iters=iters, seed=seed) if random_starts else _measure_warm(layer, iters)

    for k, stage in enumerate(self.stages):
      m = measure(stage.lift)
      records.append({"name": f"stage{k}.lift", "kind": "linear", "bound": m["sigma"], "sigma": m})
      for j, pair in enumerate(stage.pairs):
        h_c, h_e = pair.current_step_sizes()
        mw, ma = measure(pair.expansive.conv), measure(pair.contractive.conv)
        bound = float(lip.contractive_bound(h_c, ma["sigma"], ma["sigma_min"]) * lip.expansive_bound(h_e, mw["sigma"]))
        records.append({"name": f"stage{k}.pair{j}", "kind": "pair", "bound": bound, "h_c": h_c, "h_e": h_e,
                        "sigma_W": mw, "sigma_A": ma})
    m = measure(self.head)
    records.append({"name": "head", "kind": "linear", "bound": m["sigma"], "sigma": m})
    return records


def _measure_warm(layer: lip.SpectralOperator, iters: int) -> dict[str, Any]:
  """Cheap measurement for evaluation: exact where small, else power iteration from the stored vectors only."""
  if layer.exact_feasible():
    return layer.measure(iters=1, seed=0) | {"note": "exact"}
  return layer.measure(iters=iters, seed=0)


def lipschitz_bound(records: list[dict[str, Any]]) -> float:
  return float(np.prod([r["bound"] for r in records]))


def epsilons(input_shape: Sequence[int]) -> tuple[float, ...]:
  """The radii evaluated: the paper's (36/255, 0.5, 1.0) for CIFAR-sized inputs; for smaller inputs in [0, 1]^d
  the same radii scaled by √(d/3072) (the same root-mean-square change per pixel), then 0.5 and 1.0 unscaled."""
  d = int(np.prod(input_shape))
  if d >= CIFAR_DIM:
    return PAPER_EPSILONS
  scale = math.sqrt(d / CIFAR_DIM)
  return tuple(round(e * scale, 4) for e in PAPER_EPSILONS) + (0.5, 1.0)


# --- task: image classification with the multi-class hinge loss ---------------------------------------------


def _images(x: Any) -> jax.Array:
  """Images as float32 in [0, 1] (uint8 TFDS images are divided by 255)."""
  x = jnp.asarray(x)
  return x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)


def multiclass_hinge(logits: jax.Array, labels: jax.Array, margin: float) -> jax.Array:
  """mean over the batch of Σ_{j≠y} max(0, f_j − f_y + margin) (the official `multiClassHingeLoss`)."""
  true = jnp.take_along_axis(logits, labels[:, None], axis=1)
  terms = jnp.maximum(0.0, logits - true + margin)
  terms = jnp.where(jax.nn.one_hot(labels, logits.shape[1], dtype=bool), 0.0, terms)
  return jnp.mean(jnp.sum(terms, axis=1))


def loss(model: NonexpansiveResNet, batch) -> tuple[jax.Array, dict]:
  """Hinge loss (margin `model.margin`) + `model.orth_weight` × orthogonality penalty."""
  logits = model(_images(batch["image"]))
  labels = jnp.asarray(batch["label"], jnp.int32)
  hinge = multiclass_hinge(logits, labels, model.margin)
  penalty = model.orthogonality_penalty() if model.orth_weight else jnp.zeros(())
  accuracy = jnp.mean(jnp.argmax(logits, axis=1) == labels)
  return hinge + model.orth_weight * penalty, {"hinge": hinge, "orthogonality": penalty, "accuracy": accuracy}


def evaluate(model: NonexpansiveResNet, data, pgd_steps: int = 10) -> dict[str, float]:
  """Clean accuracy, hinge loss, the Lipschitz bound L, and per radius ε (`epsilons`): robust accuracy under L2
  PGD (`pgd_steps` steps, α = 2.5ε/steps, random start; correct at x and at every iterate) and certified
  accuracy (margin > √2·L·ε).

  It first refreshes the stored power-iteration vectors (`lip.refresh_estimates`, 2000 iterations: no
  `nnx.Param` changes; the normalisation then uses converged estimates), so the metrics are those of the model
  as it is saved after evaluation.
  """
  lip.refresh_estimates(model, iters=2000)
  x, y = _images(data["image"]), np.asarray(data["label"], np.int64)
  logits = attacks.predict(model, x)
  records = model.layer_bounds(iters=1000, random_starts=0)
  lipschitz = lipschitz_bound(records)
  out = {
      "accuracy": float(np.mean(np.argmax(logits, 1) == y)),
      "loss": float(multiclass_hinge(jnp.asarray(logits), jnp.asarray(y), model.margin)),
      "lipschitz_bound": lipschitz,
      "median_certified_radius": float(np.median(attacks.certified_radius(logits, y, lipschitz))),
  }
  for eps in epsilons(model.input_shape):
    out[f"pgd_acc_eps{eps:g}"] = attacks.robust_accuracy(model, x, y, eps, steps=pgd_steps)
    out[f"certified_acc_eps{eps:g}"] = attacks.certified_accuracy(logits, y, lipschitz, eps)
  return out


_ASCENT_TX = None
_ASCENT_STEPS: dict[Any, Any] = {}


def _ascent_step(graphdef):
  """The jitted Adam step on (x, δ) maximising log ‖N(x + δ) − N(x)‖/‖δ‖, cached per graph definition."""
  global _ASCENT_TX  # pylint: disable=global-statement
  import optax  # pylint: disable=import-outside-toplevel

  if _ASCENT_TX is None:
    _ASCENT_TX = optax.adam(1e-2)
  tx = _ASCENT_TX
  if graphdef not in _ASCENT_STEPS:
    def neg_log_ratio(z, st):
      xa, da = z
      f = nnx.merge(graphdef, st)
      diff = f(xa + da) - f(xa)
      log_ratio2 = (jnp.log(jnp.sum(diff ** 2, axis=1) + 1e-30)
                    - jnp.log(jnp.sum(da.reshape(da.shape[0], -1) ** 2, 1)))
      return -jnp.sum(log_ratio2), jnp.exp(0.5 * log_ratio2)

    @jax.jit
    def step(z, opt_state, st):
      (_, ratios), grads = jax.value_and_grad(neg_log_ratio, has_aux=True)(z, st)
      updates, opt_state = tx.update(grads, opt_state)
      return optax.apply_updates(z, updates), opt_state, ratios

    _ASCENT_STEPS[graphdef] = step
  return _ASCENT_STEPS[graphdef]


def empirical_lipschitz(model: NonexpansiveResNet, num_pairs: int = 2000, ascent_starts: int = 64,
                        ascent_steps: int = 200, seed: int = 0) -> tuple[float, float]:
  """max ‖N(x) − N(y)‖/‖x − y‖ over (random pairs, pairs found by gradient ascent on the log-ratio).

  Random pairs: x uniform in [0, 1]^d and y = x + δ with ‖δ‖ log-uniform in [1e-2, 10], half of them independent
  uniform points. Adversarial: Adam (lr 1e-2) on (x, δ) from `ascent_starts` random pairs, the best ratio seen.
  """
  shape = model.input_shape
  rng = np.random.default_rng(seed)
  x = rng.uniform(0, 1, (num_pairs, *shape)).astype(np.float32)
  direction = rng.normal(size=x.shape).astype(np.float32)
  direction /= np.linalg.norm(direction.reshape(num_pairs, -1), axis=1).reshape(-1, 1, 1, 1)
  radius = 10 ** rng.uniform(-2, 1, (num_pairs, 1, 1, 1)).astype(np.float32)
  y = x + radius * direction
  y[: num_pairs // 2] = rng.uniform(0, 1, (num_pairs // 2, *shape))
  fx, fy = attacks.predict(model, x), attacks.predict(model, y)
  random_ratio = np.linalg.norm(fx - fy, axis=1) / np.linalg.norm((x - y).reshape(num_pairs, -1), axis=1)

  graphdef, state = nnx.split(model)
  step = _ascent_step(graphdef)
  tx = _ASCENT_TX
  xa = jnp.asarray(rng.uniform(0, 1, (ascent_starts, *shape)), jnp.float32)
  da = jnp.asarray(rng.normal(size=(ascent_starts, *shape)) * 0.1, jnp.float32)
  z = (xa, da)
  opt_state = tx.init(z)
  best = jnp.zeros(())
  for _ in range(ascent_steps):
    z, opt_state, ratios = step(z, opt_state, state)
    best = jnp.maximum(best, jnp.max(ratios))
  return float(random_ratio.max()), float(best)


def verify(model: NonexpansiveResNet, iters: int = 1000, ascent_steps: int = 200,
           lipschitz_target: float | None | str = "auto") -> list[Check]:
  """The certificate on the given weights.

  Non-expansive claim (`lipschitz_target=1.0`; "auto" picks it for `constrained=True`): every layer's operator norm
  ≤ 1 (power iteration, `iters` iterations from the stored vector and 2 random starts, and exactly by SVD for
  operators of ≤ 4096 inputs), the step-size condition, each pair's Lipschitz bound, their product L ≤ 1, and the
  empirical ratio ‖N(x) − N(y)‖/‖x − y‖ ≤ 1 on random and adversarial pairs (`ascent_steps` of gradient ascent).
  Tolerance 1e-3 (float32 arithmetic and the power iteration's accuracy).

  Baseline (`lipschitz_target=None`; "auto" picks it for `constrained=False`, which claims no constraint): the measured
  upper bound L = Π layer bounds is finite and the empirical ratios on random and adversarial pairs stay ≤ L, i.e.
  the certificate used for its certified accuracy is sound. Pass `lipschitz_target=1.0` to test a baseline
  against the non-expansive claim (it fails).
  """
  if lipschitz_target == "auto":
    lipschitz_target = 1.0 if model.constrained else None
  tol = VERIFY_TOL
  records = model.layer_bounds(iters=iters, random_starts=2)
  lipschitz = lipschitz_bound(records)
  checks = []

  def norm_detail(m):
    exact = "" if m["exact_sigma"] is None else f", exact SVD {m['exact_sigma']:.7f}"
    return f"power iteration {m['power_sigma']:.7f}{exact}"

  if lipschitz_target is None:
    layers = ", ".join(f"{r['name']} {r['bound']:.3g}" for r in records)
    checks.append(Check("Lipschitz upper bound L = Π layer bounds (measured, not constrained)",
                        math.isfinite(lipschitz), lipschitz, float("inf"), layers))
    bound = lipschitz * (1 + tol)
  else:
    bound = lipschitz_target * (1 + tol)
    for r in records:
      if r["kind"] == "linear":
        s = r["sigma"]
        checks.append(Check(f"‖{r['name']}‖₂ ≤ 1", s["sigma"] <= bound, s["sigma"], bound, norm_detail(s)))
      else:
        for label, s in (("W (expansive)", r["sigma_W"]), ("A (contractive)", r["sigma_A"])):
          checks.append(Check(f"‖{r['name']}.{label}‖₂ ≤ 1", s["sigma"] <= bound, s["sigma"], bound,
                              norm_detail(s)))
        cond = float(lip.paper_rate(r["h_c"]) * (1 + r["h_e"])) if 0 <= r["h_c"] <= 1 else float("inf")
        checks.append(Check(f"{r['name']} step sizes √(1−h_C+h_C²)(1+h_E) ≤ 1", cond <= bound, cond, bound,
                            f"h_C = {r['h_c']:.4f}, h_E = {r['h_e']:.4f}"))
        checks.append(Check(
            f"{r['name']} Lipschitz bound ≤ 1", r["bound"] <= bound, r["bound"], bound,
            f"contractive_bound(h_C, ‖A‖ = {r['sigma_A']['sigma']:.6f}, σ_min(A) = {r['sigma_A']['sigma_min']:.4f})"
            f" × (1 + h_E‖W‖)"))
    checks.append(Check("Lipschitz certificate L = Π layer bounds ≤ 1", lipschitz <= bound, lipschitz, bound,
                        f"product over {len(records)} layers (ReLU, max pooling: 1)"))
  what = "≤ 1" if lipschitz_target is not None else "≤ L"
  random_ratio, ascent_ratio = empirical_lipschitz(model, ascent_steps=ascent_steps)
  checks.append(Check(f"empirical ‖N(x)−N(y)‖/‖x−y‖ {what}, random pairs", random_ratio <= bound, random_ratio,
                      bound, "2000 pairs, ‖x − y‖ from 1e-2 to 10"))
  checks.append(Check(f"empirical ‖N(x)−N(y)‖/‖x−y‖ {what}, adversarial pairs", ascent_ratio <= bound,
                      ascent_ratio, bound, f"gradient ascent on the ratio (Adam, 64 starts × {ascent_steps} steps)"))
  return checks


def plot(model: NonexpansiveResNet, data, outdir) -> list[pathlib.Path]:
  """Accuracy vs L2 radius (clean, PGD, certified) and the per-layer Lipschitz bounds."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  x, y = _images(data["image"]), np.asarray(data["label"], np.int64)
  logits = attacks.predict(model, x)
  records = model.layer_bounds(iters=1000, random_starts=0)
  lipschitz = lipschitz_bound(records)
  top = max(epsilons(model.input_shape))
  grid = np.linspace(0, top, 11)
  pgd = [attacks.robust_accuracy(model, x, y, float(e)) for e in grid]
  cert = [attacks.certified_accuracy(logits, y, lipschitz, float(e)) for e in grid]
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  axes[0].plot(grid, pgd, "o-", label="L2 PGD (10 steps)")
  axes[0].plot(grid, cert, "s-", label=f"certified (L = {lipschitz:.3g})")
  axes[0].axhline(float(np.mean(np.argmax(logits, 1) == y)), color="gray", ls=":", label="clean")
  axes[0].set(xlabel="ε (L2, inputs in [0, 1])", ylabel="accuracy", ylim=(0, 1.02),
              title=("non-expansive" if model.constrained else "unconstrained baseline") + " — test split")
  axes[0].legend()
  names = [r["name"] for r in records]
  axes[1].bar(range(len(records)), [r["bound"] for r in records], color=["C0" if r["bound"] <= 1 + VERIFY_TOL
                                                                          else "C3" for r in records])
  axes[1].axhline(1.0, color="k", lw=0.8)
  axes[1].set_yscale("log")
  axes[1].set_xticks(range(len(records)), names, rotation=45, ha="right", fontsize=8)
  axes[1].set(ylabel="Lipschitz bound (log scale)", title=f"per-layer bounds, product L = {lipschitz:.4g}")
  fig.tight_layout()
  path = pathlib.Path(outdir) / "robustness.png"
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return [path]


def comparison_markdown(metrics: dict[str, dict[str, float]], input_shape: Sequence[int]) -> str:
  """A markdown table constrained vs baseline (clean / PGD / certified at each radius, the Lipschitz bound L)
  with the paper's CIFAR-10 numbers for reference. `metrics`: {model name: its evaluate() dict}."""
  eps = epsilons(input_shape)
  head = ("| model | L | clean | " + " | ".join(f"PGD ε={e:g} | cert. ε={e:g}" for e in eps)
          + " | median cert. radius |")
  lines = [head, "|" + "---|" * (4 + 2 * len(eps))]
  for name, m in metrics.items():
    cells = [f"{m.get('lipschitz_bound', float('nan')):.4g}", f"{m['accuracy']:.3f}"]
    cells += [f"{m.get(f'pgd_acc_eps{e:g}', float('nan')):.3f} | {m.get(f'certified_acc_eps{e:g}', float('nan')):.3f}"
              for e in eps]
    cells.append(f"{m.get('median_certified_radius', float('nan')):.3g}")
    lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
  scaled = ""
  if eps != PAPER_EPSILONS:
    scaled = (f" The first three radii here are the paper's scaled to this input size (same RMS change per pixel): "
              f"ε = {eps[0]:g} ↔ 36/255, {eps[1]:g} ↔ 0.5, {eps[2]:g} ↔ 1.0.")
  lines += ["", "Paper (official code's stored results: CIFAR-10, 1024 test images, L2 PGD 10 steps; no certificate "
            "reported), accuracy at ε = 0 / 36/255 / 0.5 / 1.0." + scaled, "",
            "| model | clean | ε=36/255 | ε=0.5 | ε=1.0 |", "|---|---|---|---|---|"]
  lines += [f"| {k} | " + " | ".join(f"{v:.3f}" for v in vals) + " |" for k, vals in PAPER_CIFAR10.items()]
  return "\n".join(lines)


_PAIRS = {8: ("nonexpansive-resnet-digits", "resnet-baseline-digits"),
          32: ("nonexpansive-resnet-cifar10", "resnet-baseline-cifar10")}


def _shipped_metrics(name: str) -> dict[str, float] | None:
  import json  # pylint: disable=import-outside-toplevel

  from zoo import hub  # pylint: disable=import-outside-toplevel

  path = hub.checkpoints_dir() / name / "manifest.json"
  return json.loads(path.read_text())["metrics"] if path.is_file() else None


def card_sections(model: NonexpansiveResNet, metrics: dict[str, float]) -> dict[str, str]:
  """Card sections: the table constrained vs baseline (this model's metrics and its partner's from the shipped
  checkpoint, when there is one) beside the paper's CIFAR-10 numbers, and how the numbers are measured."""
  constrained, baseline = _PAIRS.get(model.image_size, ("this model (constrained)", "this model (baseline)"))
  own, other = (constrained, baseline) if model.constrained else (baseline, constrained)
  rows = {own: metrics}
  partner = _shipped_metrics(other)
  if partner is not None:
    rows[other] = partner
  rows = dict(sorted(rows.items(), key=lambda kv: kv[0] != constrained))
  table = comparison_markdown(rows, model.input_shape)
  if partner is None:
    table += f"\n\n(`{other}` was not shipped when this card was written.)"
  how = (
      "On the whole test split. *PGD*: L2 projected gradient ascent on the cross-entropy (`zoo.attacks`), 10 steps "
      "of size 2.5ε/10 from a uniform random start in the ball, inputs clipped to [0, 1]; an example counts as "
      "robust only if it is classified correctly at x and at every iterate. *Certified*: the prediction's margin "
      "f_y − max_{j≠y} f_j exceeds √2·L·ε, with L = Π of the per-layer bounds measured on these weights (operator "
      "norms by power iteration on the convolution operator and by exact SVD, step sizes; `zoo verify`). A "
      "certified example cannot be attacked by any method within the radius; PGD only gives an upper bound on "
      "robust accuracy. The baseline's L (a product of unconstrained per-layer norms) is loose, so its certified "
      "accuracy says little about its true robustness, which PGD bounds from above.")
  return {"Constrained vs baseline": table, "How robustness is measured": how}


def _reference(constrained: bool, input_shape: Sequence[int]) -> dict[str, str]:
  """The paper's CIFAR-10 numbers beside the corresponding metrics (radii scaled for small inputs)."""
  key = "non-expansive" if constrained else "unconstrained baseline"
  vals = PAPER_CIFAR10[key]
  eps = epsilons(input_shape)
  what = "" if eps[:3] == PAPER_EPSILONS else ", radius scaled"
  out = {"accuracy": f"{vals[0]:.3f} (paper, CIFAR-10, {key})"}
  for e, paper_e, v in zip(eps[:3], ("36/255", "0.5", "1.0"), vals[1:]):
    out[f"pgd_acc_eps{e:g}"] = f"{v:.3f} (paper, CIFAR-10, ε={paper_e}{what})"
  return out


FAMILY = Family(
    name="nonexpansive", module=NonexpansiveResNet, loss=loss, evaluate=evaluate, verify=verify, plot=plot,
    card_sections=card_sections,
    paper="Celledoni, Murari, Owren, Schönlieb, Sherry. Dynamical systems' based neural networks. SIAM J. Sci. "
          "Comput. 2023. arXiv:2210.02373; Sherry et al. Designing stable neural networks using convex analysis "
          "and ODEs. Physica D 2024. arXiv:2306.17332")

_GUARANTEE = ("1-Lipschitz in ℓ2: ‖N(x) − N(y)‖₂ ≤ ‖x − y‖₂ for all inputs (every layer's operator norm ≤ 1 by "
              "power iteration, tied step sizes), so a margin > √2·ε certifies robustness at L2 radius ε.")
_BASELINE = ("None (the unconstrained baseline of the same architecture). `zoo verify` measures its Lipschitz upper "
             "bound L = Π per-layer bounds and checks that the empirical ratio ‖N(x) − N(y)‖/‖x − y‖ on random and "
             "adversarial pairs stays below it (the certificate behind its certified accuracy is sound).")
_DEVIATIONS = (
    "Rigorous where the official code is not: all residual convolutions are spectrally normalised by power "
    "iteration on the convolution operator (the official non-expansive net only penalises non-orthogonality of "
    "them), the lifting layers have no free rescaling factor (the official `rescalings[-1]` grows to ~3.6 and "
    "breaks the bound), and h_E is tied to h_C by the paper's condition √(1 − h_C + h_C²)(1 + h_E) ≤ 1 made "
    "rigorous for non-orthogonal A by also tracking σ_min(A) (see zoo/nn/lipschitz.py); the official 'switch' "
    "code clamps h_E ≤ h_C(2 − h_C)/(h_C² − 2h_C + 4). σ(t) = max(t, t/2) as the paper (the code used "
    "LeakyReLU 0.1). No input standardisation (the official code divides by the CIFAR std ≈ 0.2, so its net is "
    "≈5-Lipschitz in pixel space). PGD uses step 2.5ε/10 (foolbox's default 0.025ε, the paper's, cannot leave "
    "a quarter of the ball in 10 steps) and counts an example robust only if every iterate is correct.")


def _digits_deviations() -> str:
  eps = epsilons((8, 8, 1))
  return (f"Dataset: scikit-learn digits (8×8×1 in [0, 1]) instead of CIFAR-10, which is not available offline; "
          f"widths 16/32 over two stages instead of 32/64/128 over three. Radii: the paper's 36/255, 0.5, 1.0 "
          f"scaled by √(64/3072) (same per-pixel RMS change) = {eps[0]:g}, {eps[1]:g}, {eps[2]:g}, plus 0.5 and "
          f"1.0 unscaled. Hinge margin and optimiser chosen for this data (configs/nonexpansive.py). "
          + _DEVIATIONS)


@register("nonexpansive-resnet-digits", FAMILY, dataset="digits", input_shape=(8, 8, 1), guarantee=_GUARANTEE,
          tags=("lipschitz", "non-expansive", "certified-robustness", "dynamical-systems", "digits"),
          deviations=_digits_deviations(), reference=_reference(True, (8, 8, 1)))
def nonexpansive_resnet_digits():
  """Non-expansive convolutional ResNet (expansive/contractive integrator steps, spectral normalisation by power
  iteration on the convolution operator) on scikit-learn digits, with certified L2 robustness."""
  return dict(image_size=8, in_channels=1, widths=(16, 32), pairs_per_stage=2, num_classes=10, constrained=True,
              margin=0.3, orth_weight=0.1)


@register("resnet-baseline-digits", FAMILY, dataset="digits", input_shape=(8, 8, 1), guarantee=_BASELINE,
          tags=("baseline", "dynamical-systems", "digits"),
          deviations=_digits_deviations(),
          reference=_reference(False, (8, 8, 1)))
def resnet_baseline_digits():
  """The same ResNet without constraints (raw convolutions, free step sizes, no orthogonality penalty) on
  scikit-learn digits: the baseline against which the non-expansive net's robustness is measured."""
  return dict(image_size=8, in_channels=1, widths=(16, 32), pairs_per_stage=2, num_classes=10, constrained=False,
              margin=0.3, orth_weight=0.0)


@register("nonexpansive-resnet-cifar10", FAMILY, dataset="cifar10", input_shape=(32, 32, 3), guarantee=_GUARANTEE,
          tags=("lipschitz", "non-expansive", "certified-robustness", "dynamical-systems", "cifar10"),
          deviations=_DEVIATIONS, reference=_reference(True, (32, 32, 3)))
def nonexpansive_resnet_cifar10():
  """Non-expansive convolutional ResNet at the paper's CIFAR-10 size (widths 32/64/128, 4 residual steps per
  stage, hinge margin 0.07, orthogonality penalty 0.1). Trains where CIFAR-10 can be downloaded."""
  return dict(image_size=32, in_channels=3, widths=(32, 64, 128), pairs_per_stage=2, num_classes=10,
              constrained=True, margin=0.07, orth_weight=0.1)


@register("resnet-baseline-cifar10", FAMILY, dataset="cifar10", input_shape=(32, 32, 3), guarantee=_BASELINE,
          tags=("baseline", "dynamical-systems", "cifar10"), deviations=_DEVIATIONS,
          reference=_reference(False, (32, 32, 3)))
def resnet_baseline_cifar10():
  """The unconstrained baseline of nonexpansive-resnet-cifar10 (same architecture, no constraints)."""
  return dict(image_size=32, in_channels=3, widths=(32, 64, 128), pairs_per_stage=2, num_classes=10,
              constrained=False, margin=0.07, orth_weight=0.0)
