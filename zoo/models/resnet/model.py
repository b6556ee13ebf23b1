"""The ResNet18 module: CIFAR-style stem, four stages of basic blocks, BatchNorm; float or k-means-quantized.

Guarantee (checked by `verify.py`): in eval mode BatchNorm uses its running statistics, so predictions are
per-example; a quantized model (`quant`) computes every clustered layer with at most 2^b distinct weight vectors.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from zoo import quant as zq
from zoo.registry import check_input

# torchvision's ResNet initialisation: kaiming normal (fan_out, ReLU) for convolutions, BN γ=1, β=0.
CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")  # untruncated, as torch
BN = dict(momentum=0.9, epsilon=1e-5)  # torch BatchNorm2d defaults (torch momentum 0.1 = flax 0.9)


def conv(cin: int, cout: int, size: int, stride: int, rngs: nnx.Rngs) -> nnx.Conv:
  """A bias-free size×size convolution with torch-style symmetric padding (size − 1) // 2: (batch, H, W, cin) ->
  (batch, ⌈H/stride⌉, ⌈W/stride⌉, cout). (flax "SAME" pads stride-2 convolutions asymmetrically.)"""
  pad = (size - 1) // 2
  return nnx.Conv(cin, cout, (size, size), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                  use_bias=False, kernel_init=CONV_INIT, rngs=rngs)


class BasicBlock(nnx.Module):
  """relu(BN(conv3×3(relu(BN(conv3×3(x))))) + shortcut(x)); the shortcut is 1×1 conv + BN when the shape
  changes. x: (batch, H, W, cin) -> (batch, H/stride, W/stride, cout)."""

  def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
    self.conv1 = conv(cin, cout, 3, stride, rngs)
    self.bn1 = nnx.BatchNorm(cout, **BN, rngs=rngs)
    self.conv2 = conv(cout, cout, 3, 1, rngs)
    self.bn2 = nnx.BatchNorm(cout, **BN, rngs=rngs)
    if stride != 1 or cin != cout:
      self.shortcut_conv = conv(cin, cout, 1, stride, rngs)
      self.shortcut_bn = nnx.BatchNorm(cout, **BN, rngs=rngs)
    else:
      self.shortcut_conv = None
      self.shortcut_bn = None

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jax.nn.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    short = x if self.shortcut_conv is None else self.shortcut_bn(self.shortcut_conv(x))
    return jax.nn.relu(y + short)


class ResNet18(nnx.Module):
  """ResNet18 with a CIFAR-style stem, optionally k-means-quantized.

  Arguments:
    num_classes: logits. in_channels: C. image_size: H = W of the input. width: w, channels of the first
      stage (64 = the standard ResNet18, 11.2M parameters).
    quant: None (float), or keyword arguments of `zoo.quant.quantize` (method, bits, dim, tau, iters, ...):
      every kernel with ≥ 2048 weights is clustered.
    packed: with `quant`, build the export form (b-bit packed indices + codebooks, what checkpoints store;
      inference only). False: the training form (float kernels + codebooks, for clustering-aware training).
  Call: x: (batch, image_size, image_size, in_channels) float in [0, 1] -> logits (batch, num_classes).
  """

  def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: int = 64,
               quant: Mapping[str, Any] | None = None, packed: bool = False, *, rngs: nnx.Rngs):
    self.input_shape = (image_size, image_size, in_channels)
    self.num_classes, self.width = num_classes, width
    self.stem = conv(in_channels, width, 3, 1, rngs)
    self.stem_bn = nnx.BatchNorm(width, **BN, rngs=rngs)
    stages, cin = [], width
    for i, stride in enumerate((1, 2, 2, 2)):
      cout = width * 2 ** i
      stages.append(nnx.List([BasicBlock(cin, cout, stride, rngs=rngs), BasicBlock(cout, cout, 1, rngs=rngs)]))
      cin = cout
    self.stages = nnx.List(stages)
    self.head = nnx.Linear(cin, num_classes, rngs=rngs)
    self.quant = dict(quant) if quant else None
    if quant:
      zq.quantize(self, **dict(quant))
      if packed:
        zq.export(self)
    elif packed:
      raise ValueError("packed=True needs quant=dict(method=..., bits=...): only clustered layers pack.")

  def features(self, x: jax.Array) -> jax.Array:
    """Pooled features before the classifier: (batch, 8·width)."""
    x = jax.nn.relu(self.stem_bn(self.stem(x)))
    for stage in self.stages:
      for block in stage:
        x = block(x)
    return jnp.mean(x, axis=(1, 2))

  def __call__(self, x: jax.Array) -> jax.Array:
    check_input(x, self.input_shape)
    return self.head(self.features(jnp.asarray(x, jnp.float32)))
