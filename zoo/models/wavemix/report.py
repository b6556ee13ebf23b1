"""WaveMix as an image classifier: loss, evaluation, the confusion plot and the shipped (quantized) form.

The benchmark tables on its cards (WaveMix vs ResNet; W4A4 with and without rotation) reach them through
`zoo ship --section` (see `configs/wavemix.py`), not from here.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping

import numpy as np
from flax import nnx

from zoo import quant as zq
from zoo import plotting
from zoo.models.wavemix.model import WaveMix, apply_quant
from zoo.quant import rotate as zrot
from zoo.tasks import classification

PLOT_FILE = "confusion.png"

loss = classification.cross_entropy_loss  # (model, batch) -> (softmax cross-entropy, {"accuracy"}); jittable


def float_kwargs(model: WaveMix) -> dict[str, Any]:
  """The keyword arguments of the float WaveMix with `model`'s architecture."""
  return dict(num_classes=model.num_classes, in_channels=model.input_shape[-1], image_size=model.input_shape[0],
              dim=model.dim, depth=model.depth, mult=model.hidden // model.dim, ff_channel=model.ff_channel,
              level=model.level, stem=model.stem_kind, stride=model.stride, patch_size=model.patch_size,
              upsample="transposed" if model.blocks[0].mlps[0].up is not None else "nearest")


def evaluate(model: WaveMix, data: Mapping[str, np.ndarray]) -> dict[str, float]:
  """Top-1 accuracy, cross-entropy and the bytes of the state arrays; quantized models: the compression against
  the same WaveMix in float32 and the bytes of the quantized layers' 4-bit codes and float32 scales."""
  out = classification.evaluate(model, data)
  out["state_bytes"] = float(zq.state_bytes(model))
  if model.quantized:
    twin = nnx.eval_shape(lambda: WaveMix(**float_kwargs(model), rngs=nnx.Rngs(0)))
    out["compression_vs_float32"] = zq.state_bytes(twin) / out["state_bytes"]
    out["quantized_weight_bytes"] = float(sum(int(l.codes.get_value().size) + 4 * int(l.scales.get_value().size)
                                              for _, l in zrot.quantized_layers(model)))
  return out


def plot(model: WaveMix, data: Mapping[str, np.ndarray], outdir: pathlib.Path) -> list[pathlib.Path]:
  """`confusion.png`: the confusion matrix on the split."""
  plt = plotting.pyplot()

  pred = classification.predict(model, data["image"]).argmax(-1)
  fig, ax = plt.subplots(figsize=(5, 4.2))
  classification.draw_confusion(ax, pred, np.asarray(data["label"]))
  out = plotting.save(fig, outdir, PLOT_FILE)
  return [out]


def export(model: WaveMix, kwargs: dict[str, Any]) -> tuple[WaveMix, dict[str, Any]]:
  """A float model carrying a quantization recipe (`quant` set, `quantized=False`) is rotated and quantized in
  place, and its kwargs say `quantized=True` so that `zoo.load` rebuilds the quantized form."""
  if model.quant and not model.quantized:
    apply_quant(model, model.quant)
    kwargs = {**kwargs, "quantized": True}
  return model, kwargs
