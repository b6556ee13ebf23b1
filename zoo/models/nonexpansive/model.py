"""The non-expansive convolutional ResNet (and its unconstrained baseline) and the per-layer Lipschitz bounds.

Per stage: a lifting convolution (+ ReLU), then pairs Ψ_C^{h_C} ∘ Ψ_E^{h_E} of an expansive step
x ↦ x + h_E σ(Wx + v) and a contractive step x ↦ x − h_C Aᵀσ(Ax + b) (σ(t) = max(t, t/2)), then 2×2 max pooling;
finally a dense layer. With `constrained=True` every linear map has ℓ2 operator norm ≤ 1 and the step sizes are
tied, so ‖N(x) − N(y)‖₂ ≤ ‖x − y‖₂ for all inputs (the bounds are in `zoo.nn.lipschitz`).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.nn import lipschitz as lip
from zoo.registry import check_input

NEGATIVE_SLOPE = 0.5            # σ(t) = max(t, t/2)


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
      return layer.measure(iters=iters, seed=seed) if random_starts else measure_warm(layer, iters)

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


def measure_warm(layer: lip.SpectralOperator, iters: int) -> dict[str, Any]:
  """Cheap measurement for evaluation: exact where small, else power iteration from the stored vectors only."""
  if layer.exact_feasible():
    return layer.measure(iters=1, seed=0) | {"note": "exact"}
  return layer.measure(iters=iters, seed=0)


def lipschitz_bound(records: list[dict[str, Any]]) -> float:
  """L = Π of the records' per-layer bounds (`NonexpansiveResNet.layer_bounds`): ‖N(x) − N(y)‖₂ ≤ L‖x − y‖₂."""
  return float(np.prod([r["bound"] for r in records]))
