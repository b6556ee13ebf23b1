"""ResNet18 as an image classifier: loss, evaluation, plots, the shipped (packed) form and its card's storage section.

Benchmark tables (accuracy float vs DKM vs IDKM vs IDKM-JFB; memory vs t) reach the cards through
`zoo ship --section` (see `configs/resnet.py`), not from here: this module computes only from the model.
"""

from __future__ import annotations

import pathlib
import tempfile
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo import quant as zq
from zoo import plotting
from zoo.models.resnet.model import ResNet18
from zoo.registry import Check
from zoo.tasks import classification

PLOT_FILE = "confusion.png"  # a float model: the confusion matrix
PLOT_FILE_QUANTIZED = "confusion_and_weight_values.png"  # a clustered one: and its distinct weight values

loss = classification.cross_entropy_loss  # (model, batch) -> (softmax cross-entropy, {"accuracy"}); jittable


def evaluate(model: ResNet18, data: Mapping[str, np.ndarray]) -> dict[str, float]:
  """Top-1 accuracy and cross-entropy on the split; the state's size in bytes and (quantized models) the
  compression of the clustered layers' storage against float32."""
  out = classification.evaluate(model, data)
  sizes = zq.storage_bytes(model)
  out["state_bytes"] = float(sizes["state"])
  if zq.clustered_layers(model):
    out["compression_vs_float32"] = sizes["float32"] / sizes["state"]
  return out


def _bits(wrapper: zq.ClusteredLayer | zq.PackedLayer) -> int:
  return wrapper.bits if isinstance(wrapper, zq.PackedLayer) else wrapper.spec.bits


def plot(model: ResNet18, data: Mapping[str, np.ndarray], outdir: pathlib.Path) -> list[pathlib.Path]:
  """`confusion.png`: the confusion matrix on the split; for quantized models `confusion_and_weight_values.png`,
  with the weights per codebook value of the largest clustered layer beside it (at most 2^b spikes)."""
  plt = plotting.pyplot()

  pred = classification.predict(model, data["image"]).argmax(-1)
  layers = zq.clustered_layers(model)
  fig, axes = plt.subplots(1, 2 if layers else 1, figsize=(10 if layers else 5, 4.2), squeeze=False)
  classification.draw_confusion(axes[0, 0], pred, np.asarray(data["label"]))
  if layers:
    path, wrapper = max(layers, key=lambda pw: np.size(zq.effective_kernel(pw[1])))
    values, counts = np.unique(np.asarray(zq.effective_kernel(wrapper)).reshape(-1), return_counts=True)
    ax = axes[0, 1]
    ax.bar(values, counts, width=(np.ptp(values) or 1) / 60)
    ax.set(xlabel="weight value (kernel entry, dimensionless)", ylabel="number of weights (log scale)", yscale="log",
           title=f"{path}: {len(values)} distinct values (2^{_bits(wrapper)} allowed)")
  out = plotting.save(fig, outdir, PLOT_FILE_QUANTIZED if layers else PLOT_FILE)
  return [out]


# --- the shipped form and its card -----------------------------------------------------------------


def export(model: ResNet18, kwargs: dict[str, Any]) -> tuple[ResNet18, dict[str, Any]]:
  """The form that ships: a model in clustering-aware training form (float kernels + codebooks) becomes the
  export form in place (b-bit packed indices + codebooks, `zoo.quant.export`), and its kwargs say
  `packed=True` so that `zoo.load` rebuilds it; float and already packed models are returned unchanged."""
  if any(isinstance(w, zq.ClusteredLayer) for _, w in zq.clustered_layers(model)):
    zq.export(model)
    kwargs = {**kwargs, "packed": True}
  return model, kwargs


def state_file_bytes(model: nnx.Module) -> int:
  """Bytes of the orbax `state/` directory that `zoo.checkpoint.save` writes for `model` (saved to a temporary
  directory with the same writer and measured)."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  from zoo import checkpoint  # pylint: disable=import-outside-toplevel

  with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / checkpoint.STATE_DIR
    with ocp.StandardCheckpointer(multiprocessing_options=checkpoint.this_process_only()) as ckptr:
      ckptr.save(path, checkpoint.model_state(model))
      ckptr.wait_until_finished()
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def float_twin(model: ResNet18) -> ResNet18:
  """A float32 ResNet18 of the same architecture with N(0, 0.05²) weights (numpy draws; an eager init would
  compile every initializer): the reference for file sizes."""
  abstract = nnx.eval_shape(lambda: ResNet18(num_classes=model.num_classes, in_channels=model.input_shape[-1],
                                             image_size=model.input_shape[0], width=model.width, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(0)
  state = jax.tree.map(lambda x: np.asarray(rng.normal(0.0, 0.05, x.shape), x.dtype)
                       if jnp.issubdtype(x.dtype, jnp.floating) else np.zeros(x.shape, x.dtype), state)
  return nnx.merge(graphdef, state)


def storage_section(model: ResNet18) -> str:
  """Markdown: what the checkpoint stores, its file size and the compression against float32."""
  sizes = zq.storage_bytes(model)
  files = state_file_bytes(model)
  float_arrays = sizes["float32"]
  float_files = state_file_bytes(float_twin(model)) if zq.clustered_layers(model) else files
  layers = zq.clustered_layers(model)
  if not layers:
    return (f"All {sizes['state']:,} bytes of state arrays in float32 (parameters and BatchNorm statistics); the "
            f"checkpoint's `state/` directory (orbax, zstd-compressed chunks plus metadata) takes {files:,} bytes.")
  bits = _bits(layers[0][1])
  packed = sum(int(np.size(w.indices.get_value())) for _, w in layers if isinstance(w, zq.PackedLayer))
  float_kernels = ["/".join(map(str, path)) for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))
                   if path[-1] == "kernel" and "layer" not in path]
  return (f"{len(layers)} clustered layers hold {sizes['clustered_weights']:,} of the weights, stored as {bits}-bit "
          f"packed indices ({packed:,} bytes of uint8) plus {len(layers)} codebooks of {2 ** bits}×1 float32; "
          f"{', '.join(f'`{k}`' for k in float_kernels)} (kernels < 2048 weights) and BatchNorm stay float32.\n\n"
          f"| | state arrays (bytes) | checkpoint `state/` files (bytes) |\n|---|---|---|\n"
          f"| this model | {sizes['state']:,} | {files:,} |\n"
          f"| the same ResNet18 in float32 | {float_arrays:,} | {float_files:,} |\n"
          f"| compression vs float32 | {float_arrays / sizes['state']:.1f}× | {float_files / files:.1f}× |\n\n"
          f"The files include ~100 KB of orbax metadata (tree structure, shardings) whatever the precision.")


def card_sections(model: ResNet18, metrics: Mapping[str, float], checks: Sequence[Check],
                  siblings: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
  """The card's "Storage" section (file size, compression against float32), computed from the model."""
  del metrics, checks, siblings
  return {"Storage": storage_section(model)}
