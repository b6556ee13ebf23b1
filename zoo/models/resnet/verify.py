"""The ResNet18 guarantee, checked through what users call (`predict`, the clustered layers' kernels)."""

from __future__ import annotations

from zoo import quant as zq
from zoo.models.resnet.model import ResNet18
from zoo.registry import Check
from zoo.tasks import classification


def verify(model: ResNet18, seed: int = 0) -> list[Check]:
  """Eval-mode predictions are per-example (BatchNorm uses running statistics): an image's logits in a batch of
  16 random images equal its logits alone; quantized models: every clustered layer has ≤ 2^b distinct weight
  vectors."""
  checks = [classification.batch_independence(model, model.input_shape, seed)]
  if model.quant:
    checks.append(zq.check_distinct(model))
  return checks
