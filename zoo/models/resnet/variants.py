"""The resnet family record and its registered variants: float ResNet18 on digits, Fashion-MNIST and CIFAR-10, and
their DKM / IDKM / IDKM-JFB quantized forms at 1, 2 and 4 bits."""

from __future__ import annotations

from zoo.models.resnet.model import ResNet18
from zoo.models.resnet.report import card_sections, evaluate, export, loss, plot
from zoo.models.resnet.verify import verify
from zoo.registry import Family, register, register_variant
from zoo.tasks.classification import COMPUTE_DTYPES

FAMILY = Family(
    name="resnet", module=ResNet18, loss=loss, evaluate=evaluate, verify=verify, plot=plot, export=export,
    card_sections=card_sections, compute_dtypes=COMPUTE_DTYPES,
    paper="He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016. Quantization: Jaffe, "
          "Singh, Bullo. IDKM: Memory Efficient Neural Network Quantization via Implicit, Differentiable k-Means. "
          "arXiv:2312.07759; Cho et al. DKM. ICLR 2022, arXiv:2108.12659")

DIGITS = dict(num_classes=10, in_channels=1, image_size=8, width=16)
CIFAR10 = dict(num_classes=10, in_channels=3, image_size=32, width=64)
FASHION_MNIST = dict(num_classes=10, in_channels=1, image_size=28, width=16)
DATA_NAMES = {"fashion-mnist": "fashion_mnist"}
DATASET_TITLES = {"digits": "the 8×8 scikit-learn digits", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}   # a variant name's dataset part -> its zoo.data name
BITS = (1, 2, 4)
# The clustering of the registered quantized variants: coremltools defaults (τ, ε, clamp, d = 1) with t = 5
# (coremltools: 3); the IDKM adjoint solve takes at most as many iterations.
QUANT = dict(method="idkm", dim=1, tau=1e-4, iters=5, eps=1e-4)
METHOD_NAMES = {"idkm": "IDKM", "dkm": "DKM", "idkm-jfb": "IDKM-JFB"}
SHORT = {"idkm": "idkm", "dkm": "dkm", "idkm-jfb": "jfb"}  # the method's part of a variant's name

FLOAT_GUARANTEE = ("Eval-mode predictions are per-example: BatchNorm uses its running statistics, so an "
                   "image's logits do not depend on the rest of its batch.")
DIGITS_INPUT = """Input: the scikit-learn digits at their native 8×8×1 resolution in [0, 1] (no upsampling). The
CIFAR-style stem keeps 8×8 through stage 1; stages 2-4 give 4×4, 2×2 and 1×1, so stage 4's 3×3 convolutions
see only their centre tap (zero padding). Width 16 (channels 16/32/64/128, 0.70M parameters, 2.8 MB in
float32) instead of ResNet18's 64 (11.2M, 45 MB): digits need far less, and the checkpoints stay small
enough to ship in the repo."""


FASHION_INPUT = """Input: Fashion-MNIST at its native 28×28×1 in [0, 1] (`zoo.data` fashion_mnist from Debian's
dataset-fashion-mnist). Width 16 (channels 16/32/64/128, 0.70M parameters) instead of ResNet18's 64 (11.2M): the
full width does not train in the 2-core CPU budget; stages 1-4 see 28×28, 14×14, 7×7 and 4×4. No published
ResNet18 number exists for this width and budget."""


def quant_guarantee(bits: int) -> str:
  return (f"Every clustered layer (each conv/linear kernel with ≥ 2048 weights) computes with at most 2^{bits} = "
          f"{2 ** bits} distinct weight values, stored as {bits}-bit packed indices plus a {2 ** bits}×1 float32 "
          f"codebook; eval-mode predictions are per-example.")


def quant_deviations(dataset: str, method: str) -> str:
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


def quantized_name(dataset: str, method: str, bits: int) -> str:
  """The registered variant of `dataset` clustered by `method` at `bits`: "resnet18-digits-jfb-b2"."""
  return f"resnet18-{dataset}-{SHORT[method]}-b{bits}"


def register_quantized(dataset: str, base: dict, input_shape: tuple[int, ...], bits: int,
                       method: str = "idkm") -> None:
  """Registers `base` clustered by `method` at `bits`, in its packed (shipped) form."""
  deviations = quant_deviations(dataset, method) + {"digits": "\n\n" + DIGITS_INPUT,
                                                     "fashion-mnist": "\n\n" + FASHION_INPUT}.get(dataset, "")
  data = DATA_NAMES.get(dataset, dataset)
  register_variant(
      quantized_name(dataset, method, bits), FAMILY, dict(base, quant=dict(QUANT, method=method, bits=bits),
                                                          packed=True),
      description=(f"ResNet18 on {dataset} with every large kernel clustered to 2^{bits} = {2 ** bits} values by "
                   f"{METHOD_NAMES[method]} ({bits}-bit weights), stored as packed indices + codebooks."
                   + ("" if method == "idkm" else " A comparison point for the IDKM variants.")),
      dataset=data, input_shape=input_shape, guarantee=quant_guarantee(bits),
      tags=("resnet", "image-classification", dataset, "quantization", SHORT[method], f"{bits}-bit"),
      deviations=deviations,
      reference={"accuracy": f"no published number for {METHOD_NAMES[method]} at {bits} bits on "
                             f"{DATASET_TITLES.get(dataset, dataset)} (the IDKM and DKM papers report CIFAR-10 and "
                             f"ImageNet with other networks and budgets)"})


@register("resnet18-digits", FAMILY, dataset="digits", input_shape=(8, 8, 1), guarantee=FLOAT_GUARANTEE,
          tags=("resnet", "image-classification", "digits"),
          reference={"accuracy": "no published number for ResNet18 on the 8×8 scikit-learn digits (He et al. 2016 "
                                 "report ImageNet and CIFAR-10), nor at width 16"},
          deviations=DIGITS_INPUT + " No data augmentation; Adam instead of SGD (short CPU training).")
def resnet18_digits():
  """ResNet18 (CIFAR-style stem, width 16) classifying the 8×8 scikit-learn digits; the float baseline of the
  quantized variants."""
  return dict(DIGITS)


for _bits in BITS:
  register_quantized("digits", DIGITS, (8, 8, 1), _bits)
# DKM and IDKM-JFB at 2 bits: the same fine-tuning with the other two gradients (the card's comparison)
for _method in ("dkm", "idkm-jfb"):
  register_quantized("digits", DIGITS, (8, 8, 1), 2, _method)





@register("resnet18-fashion-mnist", FAMILY, dataset="fashion_mnist", input_shape=(28, 28, 1),
          guarantee=FLOAT_GUARANTEE, tags=("resnet", "image-classification", "fashion-mnist"),
          reference={"accuracy": "no published number for ResNet18 at width 16 on Fashion-MNIST with this budget "
                                 "(Xiao et al. 2017's benchmark, github.com/zalandoresearch/fashion-mnist README, "
                                 "lists other models and settings)"},
          deviations=FASHION_INPUT + " No data augmentation; Adam instead of SGD (short CPU training).")
def resnet18_fashion_mnist():
  """ResNet18 (CIFAR-style stem, width 16) classifying Fashion-MNIST; the float baseline of its quantized variants
  and the reference point for WaveMix-Lite's size, memory and speed."""
  return dict(FASHION_MNIST)


for _bits in BITS:
  register_quantized("fashion-mnist", FASHION_MNIST, (28, 28, 1), _bits)


@register("resnet18-cifar10", FAMILY, dataset="cifar10", input_shape=(32, 32, 3), guarantee=FLOAT_GUARANTEE,
          tags=("resnet", "image-classification", "cifar10"),
          deviations="Standard ResNet18 width 64 with the CIFAR stem. Trains on the TFDS cifar10 (needs the "
                     "download: offline it raises DataUnavailableError); the generic trainer has no random-crop/"
                     "flip augmentation.")
def resnet18_cifar10():
  """ResNet18 (CIFAR-style stem, width 64, 11.2M parameters) for CIFAR-10."""
  return dict(CIFAR10)


for _bits in BITS:
  register_quantized("cifar10", CIFAR10, (32, 32, 3), _bits)
