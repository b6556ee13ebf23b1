"""Image classification, shared by every classifier family (resnet, wavemix, nonexpansive).

Images are channels-last `(batch, H, W, C)`; TFDS image features are uint8 and become float32 in [0, 1] here,
once. Predictions run in fixed-size padded batches so one compilation serves every split size.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from zoo.registry import Check

BATCH_INDEPENDENCE_BOUND = 1e-4  # float32 round-off of differently shaped batched convolutions
# The trainer's `compute_dtype` values every classifier family takes: its layers are flax's Conv / Linear /
# BatchNorm (or the zoo's SpectralOperator), which compute in their `dtype` attribute (`zoo.nn.precision`).
COMPUTE_DTYPES = ("float32", "bfloat16")


def unit_float(x: Any, xp: Any = jnp) -> Any:
  """Images as float32 in [0, 1]: integer (uint8) images are divided by 255, float images are kept.
  `xp` is `jnp` (traced code) or `np` (host arrays)."""
  x = xp.asarray(x)
  return x.astype(xp.float32) / 255.0 if xp.issubdtype(x.dtype, xp.integer) else x.astype(xp.float32)


def cross_entropy_loss(model: Any, batch: Mapping[str, Any]) -> tuple[jax.Array, dict]:
  """Softmax cross-entropy of `model(images)` against integer labels, in float32 whatever dtype the model computes
  in (mixed precision); aux: batch accuracy."""
  logits = model(unit_float(batch["image"])).astype(jnp.float32)
  labels = jnp.asarray(batch["label"])
  ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
  return ce, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}


@nnx.jit
def _logits(model: Any, x: jax.Array) -> jax.Array:
  return model(x)


def predict(model: Any, x: Any, batch_size: int = 256) -> np.ndarray:
  """Logits of a whole array of images: (n, H, W, C) -> (n, num_classes), in batches of exactly `batch_size`
  (the last one padded with zero images)."""
  x = unit_float(x, np)
  out = []
  for i in range(0, len(x), batch_size):
    chunk = x[i:i + batch_size]
    n = len(chunk)
    chunk = np.concatenate([chunk, np.zeros((batch_size - n, *chunk.shape[1:]), np.float32)])
    out.append(np.asarray(_logits(model, jnp.asarray(chunk)))[:n])
  return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def evaluate(model: Any, data: Mapping[str, np.ndarray]) -> dict[str, float]:
  """Top-1 accuracy and mean cross-entropy ("loss") on a whole split."""
  logits = predict(model, data["image"])
  labels = np.asarray(data["label"])
  return {"accuracy": float(np.mean(logits.argmax(-1) == labels)),
          "loss": float(np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)))}


def relative_gap(a: np.ndarray, b: np.ndarray) -> float:
  """max|a − b| / max|a|."""
  return float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12))


def batch_independence(model: Any, input_shape: tuple[int, ...], seed: int = 0) -> Check:
  """Eval-mode predictions are per-example: an image's logits within a batch of 16 random images equal its
  logits alone (BatchNorm must use its running statistics)."""
  x = np.random.default_rng(seed).random((16, *input_shape), dtype=np.float32)
  together = predict(model, x)
  alone = np.concatenate([predict(model, x[i:i + 1]) for i in range(4)])
  gap = relative_gap(together[:4], alone)
  bound = BATCH_INDEPENDENCE_BOUND
  return Check("eval-mode batch independence max|f(x in batch) − f(x alone)| / max|f|", gap <= bound, gap, bound,
               "BatchNorm must use its running averages (model.eval())")


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
  """counts[true, predicted]."""
  n = num_classes or int(max(labels.max(), pred.max())) + 1
  counts = np.zeros((n, n), int)
  np.add.at(counts, (labels, pred), 1)
  return counts


def draw_confusion(ax: Any, pred: np.ndarray, labels: np.ndarray, split: str = "test") -> None:
  """A labelled confusion-matrix heat map with counts, titled with the split's accuracy."""
  counts = confusion_matrix(pred, labels)
  n = len(counts)
  ax.imshow(counts, cmap="Blues")
  for i in range(n):
    for j in range(n):
      if counts[i, j]:
        ax.text(j, i, counts[i, j], ha="center", va="center", fontsize=7)
  ax.set(xlabel=f"predicted class (label index 0–{n - 1})", ylabel=f"true class (label index 0–{n - 1})",
         title=f"confusion matrix ({split} split; cells: images), accuracy {np.mean(pred == labels):.4f}",
         xticks=range(n), yticks=range(n))
