"""ResNet18 (CIFAR-style stem) with BatchNorm, float or k-means-quantized (DKM / IDKM / IDKM-JFB).

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016: four stages of two basic
blocks (3×3 conv–BN–ReLU–3×3 conv–BN plus identity or 1×1 conv–BN shortcut), widths w, 2w, 4w, 8w, strides
1, 2, 2, 2, global average pooling and a linear classifier. The CIFAR-style stem (as in the IDKM and DKM CIFAR
experiments) is one 3×3 conv of stride 1 with no max pooling, so small images keep their resolution.

Quantized variants (`quant=dict(method, bits, dim, tau, iters)`) cluster every conv/linear kernel with at
least 2048 weights (coremltools' `weight_threshold`) into 2^b centroids of dimension d via `zoo.quant`; with
`packed=True` (the registered form, what checkpoints hold) those layers store b-bit packed indices and a
2^b×d codebook, and every such layer computes with at most 2^b distinct weight vectors.
Quantization: Jaffe, Singh, Bullo, "IDKM: Memory Efficient Neural Network Quantization via Implicit,
Differentiable k-Means", arXiv:2312.07759; Cho et al., "DKM", ICLR 2022.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from zoo import quant as zq
from zoo.registry import Check, Family, check_input, register

# torchvision's ResNet initialisation: kaiming normal (fan_out, ReLU) for convolutions, BN γ=1, β=0.
_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")  # untruncated, as torch
BN = dict(momentum=0.9, epsilon=1e-5)  # torch BatchNorm2d defaults (torch momentum 0.1 = flax 0.9)


def _conv(cin: int, cout: int, size: int, stride: int, rngs: nnx.Rngs) -> nnx.Conv:
  pad = (size - 1) // 2  # torch-style symmetric padding (flax "SAME" pads stride-2 convs asymmetrically)
  return nnx.Conv(cin, cout, (size, size), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                  use_bias=False, kernel_init=_CONV_INIT, rngs=rngs)


class BasicBlock(nnx.Module):
  """relu(BN(conv3×3(relu(BN(conv3×3(x))))) + shortcut(x)); the shortcut is 1×1 conv + BN when the shape
  changes. x: (batch, H, W, cin) -> (batch, H/stride, W/stride, cout)."""

  def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
    self.conv1 = _conv(cin, cout, 3, stride, rngs)
    self.bn1 = nnx.BatchNorm(cout, **BN, rngs=rngs)
    self.conv2 = _conv(cout, cout, 3, 1, rngs)
    self.bn2 = nnx.BatchNorm(cout, **BN, rngs=rngs)
    if stride != 1 or cin != cout:
      self.shortcut_conv = _conv(cin, cout, 1, stride, rngs)
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
    self.stem = _conv(in_channels, width, 3, 1, rngs)
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


# --- task: image classification --------------------------------------------------------------------


def images(batch: Mapping[str, Any]) -> jax.Array:
  """The batch's images as float in [0, 1] (TFDS image features are uint8)."""
  x = jnp.asarray(batch["image"])
  return x.astype(jnp.float32) / 255.0 if jnp.issubdtype(x.dtype, jnp.integer) else x.astype(jnp.float32)


def loss(model: ResNet18, batch) -> tuple[jax.Array, dict]:
  logits = model(images(batch))
  labels = jnp.asarray(batch["label"])
  ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
  return ce, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}


@nnx.jit
def _logits(model: ResNet18, x: jax.Array) -> jax.Array:
  return model(x)


def predict(model: ResNet18, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
  """Logits of a whole array of images: (n, H, W, C) -> (n, num_classes). Runs batches of exactly `batch_size`
  (the last one padded with zero images), so one compilation serves every n."""
  x = np.asarray(x)
  x = x.astype(np.float32) / 255.0 if np.issubdtype(x.dtype, np.integer) else x.astype(np.float32)
  out = []
  for i in range(0, len(x), batch_size):
    chunk = x[i:i + batch_size]
    n = len(chunk)
    chunk = np.concatenate([chunk, np.zeros((batch_size - n, *chunk.shape[1:]), np.float32)])
    out.append(np.asarray(_logits(model, jnp.asarray(chunk)))[:n])
  return np.concatenate(out)


def evaluate(model: ResNet18, data) -> dict[str, float]:
  """Top-1 accuracy and cross-entropy on the split; the state's size in bytes and (quantized models) the
  compression of the clustered layers' storage against float32."""
  logits = predict(model, data["image"])
  labels = np.asarray(data["label"])
  ce = float(np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)))
  out = {"accuracy": float(np.mean(logits.argmax(-1) == labels)), "loss": ce}
  sizes = zq.storage_bytes(model)
  out["state_bytes"] = float(sizes["state"])
  if zq.clustered_layers(model):
    out["compression_vs_float32"] = sizes["float32"] / sizes["state"]
  return out


def verify(model: ResNet18, seed: int = 0) -> list[Check]:
  """Eval-mode predictions are per-example (BatchNorm uses running statistics): an image's logits in a batch of
  16 random images equal its logits in a batch of zero images; quantized models: every clustered layer has
  ≤ 2^b distinct weight vectors."""
  rng = np.random.default_rng(seed)
  x = rng.random((16, *model.input_shape), dtype=np.float32)
  together = predict(model, x)
  alone = np.concatenate([predict(model, x[i:i + 1]) for i in range(4)])
  gap = float(np.max(np.abs(together[:4] - alone)) / (np.max(np.abs(together[:4])) + 1e-12))
  bound = 1e-4  # float32 round-off of differently shaped batched convolutions
  checks = [Check("eval-mode batch independence max|f(x in batch) − f(x alone)| / max|f|", gap <= bound, gap,
                  bound, "BatchNorm must use its running averages (model.eval())")]
  if model.quant:
    checks.append(zq.check_distinct(model))
  return checks


def plot(model: ResNet18, data, outdir) -> list[pathlib.Path]:
  """Confusion matrix on the split; for quantized models, the weights per codebook value of the largest
  clustered layer (at most 2^b spikes)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  pred = predict(model, data["image"]).argmax(-1)
  labels = np.asarray(data["label"])
  n = int(max(labels.max(), pred.max())) + 1
  confusion = np.zeros((n, n), int)
  np.add.at(confusion, (labels, pred), 1)
  layers = zq.clustered_layers(model)
  fig, axes = plt.subplots(1, 2 if layers else 1, figsize=(10 if layers else 5, 4.2), squeeze=False)
  ax = axes[0, 0]
  ax.imshow(confusion, cmap="Blues")
  for i in range(n):
    for j in range(n):
      if confusion[i, j]:
        ax.text(j, i, confusion[i, j], ha="center", va="center", fontsize=7)
  ax.set(xlabel="predicted", ylabel="true", title=f"accuracy {np.mean(pred == labels):.4f}",
         xticks=range(n), yticks=range(n))
  if layers:
    path, wrapper = max(layers, key=lambda pw: np.size(zq.effective_kernel(pw[1])))
    values, counts = np.unique(np.asarray(zq.effective_kernel(wrapper)).reshape(-1), return_counts=True)
    bits = wrapper.bits if isinstance(wrapper, zq.PackedLayer) else wrapper.spec.bits
    ax = axes[0, 1]
    ax.bar(values, counts, width=(np.ptp(values) or 1) / 60)
    ax.set(xlabel="weight value", ylabel="weights", yscale="log",
           title=f"{path}: {len(values)} distinct values (2^{bits} allowed)")
  fig.tight_layout()
  out = pathlib.Path(outdir) / "resnet18.png"
  fig.savefig(out, dpi=110)
  plt.close(fig)
  outs = [out]
  memory_png = RESULTS / "idkm_memory.png"  # the memory-vs-t benchmark, when run from a source checkout
  if memory_png.is_file():
    outs.append(pathlib.Path(shutil.copyfile(memory_png, pathlib.Path(outdir) / memory_png.name)))
  return outs


# --- the shipped form and its card -----------------------------------------------------------------

RESULTS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def export(model: ResNet18, kwargs: dict) -> tuple[ResNet18, dict]:
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
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(path, checkpoint.model_state(model))
      ckptr.wait_until_finished()
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _float_twin(model: ResNet18) -> ResNet18:
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
  float_files = state_file_bytes(_float_twin(model)) if zq.clustered_layers(model) else files
  layers = zq.clustered_layers(model)
  if not layers:
    return (f"All {sizes['state']:,} bytes of state arrays in float32 (parameters and BatchNorm statistics); the "
            f"checkpoint's `state/` directory (orbax, zstd-compressed chunks plus metadata) takes {files:,} bytes.")
  bits = layers[0][1].bits if isinstance(layers[0][1], zq.PackedLayer) else layers[0][1].spec.bits
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


def _result_section(name: str, title: str) -> dict[str, str]:
  path = RESULTS / name
  if not path.is_file():
    return {}
  body = path.read_text().split("\n", 1)[1].replace("![memory vs t](idkm_memory.png)", "")
  return {title: body.replace("\n## ", "\n### ").strip()}


def card_sections(model: ResNet18, metrics: Mapping[str, float]) -> dict[str, str]:
  """Card sections: storage (file size, compression against float32) and, from a source checkout, the
  benchmark tables (accuracy float vs DKM vs IDKM vs IDKM-JFB with time per epoch; memory vs t)."""
  del metrics
  return {"Storage": storage_section(model),
          **_result_section("idkm_accuracy.md", "Accuracy: float vs DKM vs IDKM vs IDKM-JFB (benchmarks/idkm_accuracy.py)"),
          **_result_section("idkm_memory.md", "Memory: DKM vs IDKM vs IDKM-JFB (benchmarks/idkm_memory.py)")}


FAMILY = Family(
    name="resnet", module=ResNet18, loss=loss, evaluate=evaluate, verify=verify, plot=plot, export=export,
    card_sections=card_sections,
    paper="He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016. Quantization: Jaffe, "
          "Singh, Bullo. IDKM: Memory Efficient Neural Network Quantization via Implicit, Differentiable k-Means. "
          "arXiv:2312.07759; Cho et al. DKM. ICLR 2022, arXiv:2108.12659")

# --- registered variants ---------------------------------------------------------------------------

DIGITS = dict(num_classes=10, in_channels=1, image_size=8, width=16)
CIFAR10 = dict(num_classes=10, in_channels=3, image_size=32, width=64)
BITS = (1, 2, 4)
# The clustering of the registered quantized variants: coremltools defaults (τ, ε, clamp, d = 1) with t = 5
# (coremltools: 3); the IDKM adjoint solve takes at most as many iterations.
QUANT = dict(method="idkm", dim=1, tau=1e-4, iters=5, eps=1e-4)

_FLOAT_GUARANTEE = ("Eval-mode predictions are per-example: BatchNorm uses its running statistics, so an "
                    "image's logits do not depend on the rest of its batch.")
_DIGITS_INPUT = """Input: the scikit-learn digits at their native 8×8×1 resolution in [0, 1] (no upsampling). The
CIFAR-style stem keeps 8×8 through stage 1; stages 2-4 give 4×4, 2×2 and 1×1, so stage 4's 3×3 convolutions
see only their centre tap (zero padding). Width 16 (channels 16/32/64/128, 0.70M parameters, 2.8 MB in
float32) instead of ResNet18's 64 (11.2M, 45 MB): digits need far less, and the checkpoints stay small
enough to ship in the repo."""
METHOD_NAMES = {"idkm": "IDKM", "dkm": "DKM", "idkm-jfb": "IDKM-JFB"}
SHORT = {"idkm": "idkm", "dkm": "dkm", "idkm-jfb": "jfb"}  # the method's part of a variant's name


def _quant_guarantee(bits: int) -> str:
  return (f"Every clustered layer (each conv/linear kernel with ≥ 2048 weights) computes with at most 2^{bits} = "
          f"{2 ** bits} distinct weight values, stored as {bits}-bit packed indices plus a {2 ** bits}×1 float32 "
          f"codebook; eval-mode predictions are per-example.")


def _quant_deviations(dataset: str, method: str) -> str:
  how = {"idkm": "IDKM (implicit differentiation of the soft k-means fixed point, adjoint solved by fixed-point "
                 "iteration; no official IDKM code exists, this follows the paper's description)",
         "dkm": "DKM (autodiff through the t unrolled soft k-means iterations)",
         "idkm-jfb": "IDKM-JFB (the IDKM fixed point, backward through one soft k-means step at it)"}[method]
  return f"""Clustering-aware fine-tuning of the float `resnet18-{dataset}` with {how}. Soft k-means as
coremltools' DKM (`fake_palettize.py`): softmax(−D/τ) clamped at 1e-7, τ = 1e-4 on squared distances of the raw
weights, stop when the inertia changes by ≤ 1e-4, centroids kept between steps (warm start), initialised by
k-means at the first clustered forward pass; kernels with < 2048 weights (for the digits model: the stem conv, the
stage-2 shortcut and the classifier) and the BatchNorms stay float32. Differences: k-means++ then Lloyd with one
start (coremltools: 10 starts, or optimal 1-D k-means for small layers); the soft weights are A(C_t)·C_t
(coremltools multiplies the last iteration's assignments A(C_t−1) by C_t; equal at the fixed point); no
duplicate-centroid splitting; no per-channel scales; t = 5 soft k-means updates per step (coremltools: 3) for
every method, so DKM, IDKM and IDKM-JFB differ only in their gradients."""


@register("resnet18-digits", FAMILY, dataset="digits", input_shape=(8, 8, 1), guarantee=_FLOAT_GUARANTEE,
          tags=("resnet", "image-classification", "digits"),
          deviations=_DIGITS_INPUT + " No data augmentation; Adam instead of SGD (short CPU training).")
def resnet18_digits():
  """ResNet18 (CIFAR-style stem, width 16) classifying the 8×8 scikit-learn digits; the float baseline of the
  quantized variants."""
  return dict(DIGITS)


def quantized_name(dataset: str, method: str, bits: int) -> str:
  """The registered variant of `dataset` clustered by `method` at `bits`: "resnet18-digits-jfb-b2"."""
  return f"resnet18-{dataset}-{SHORT[method]}-b{bits}"


def _register_quantized(dataset: str, base: dict, input_shape: tuple[int, ...], bits: int,
                        method: str = "idkm") -> None:
  name = quantized_name(dataset, method, bits)

  def factory():
    return dict(base, quant=dict(QUANT, method=method, bits=bits), packed=True)

  factory.__doc__ = (f"ResNet18 on {dataset} with every large kernel clustered to 2^{bits} = {2 ** bits} values by "
                     f"{METHOD_NAMES[method]} ({bits}-bit weights), stored as packed indices + codebooks."
                     + ("" if method == "idkm" else " A comparison point for the IDKM variants."))
  deviations = _quant_deviations(dataset, method) + ("\n\n" + _DIGITS_INPUT if dataset == "digits" else "")
  register(name, FAMILY, dataset=dataset, input_shape=input_shape, guarantee=_quant_guarantee(bits),
           tags=("resnet", "image-classification", dataset, "quantization", SHORT[method], f"{bits}-bit"), deviations=deviations)(factory)


for _b in BITS:
  _register_quantized("digits", DIGITS, (8, 8, 1), _b)
# DKM and IDKM-JFB at 2 bits: the same fine-tuning with the other two gradients (the card's comparison)
for _m in ("dkm", "idkm-jfb"):
  _register_quantized("digits", DIGITS, (8, 8, 1), 2, _m)


@register("resnet18-cifar10", FAMILY, dataset="cifar10", input_shape=(32, 32, 3), guarantee=_FLOAT_GUARANTEE,
          tags=("resnet", "image-classification", "cifar10"),
          deviations="Standard ResNet18 width 64 with the CIFAR stem. Trains on the TFDS cifar10 (needs the "
                     "download: offline it raises DataUnavailableError); the generic trainer has no random-crop/"
                     "flip augmentation.")
def resnet18_cifar10():
  """ResNet18 (CIFAR-style stem, width 64, 11.2M parameters) for CIFAR-10."""
  return dict(CIFAR10)


for _b in BITS:
  _register_quantized("cifar10", CIFAR10, (32, 32, 3), _b)
