"""The wavemix family record and its registered variants: WaveMix-Lite on digits (float and W4A4 rotate-rtn4),
WaveMix Lite-8/10 on MNIST and the official CIFAR-10 WaveMix."""

from __future__ import annotations

from zoo.models.wavemix.model import ROTATE_RTN4, WaveMix
from zoo.models.wavemix.report import evaluate, export, loss, plot
from zoo.models.wavemix.verify import verify
from zoo.registry import Family, register
from zoo.tasks.classification import COMPUTE_DTYPES

FAMILY = Family(
    name="wavemix", module=WaveMix, loss=loss, evaluate=evaluate, verify=verify, plot=plot, export=export,
    compute_dtypes=COMPUTE_DTYPES,
    paper="Jeevan, Viswanathan, Anandhu, Sethi. WaveMix: A Resource-efficient Neural Network for Image Analysis. "
          "arXiv:2205.14375 (2022); rotation: Ashkboos et al. QuaRot: Outlier-Free 4-Bit Inference in Rotated "
          "LLMs. NeurIPS 2024.")

DIGITS = dict(num_classes=10, in_channels=1, image_size=8, dim=16, depth=4, mult=2, ff_channel=16, dropout=0.0,
              level=1, stem="strided", stride=1, upsample="transposed")
FLOAT_GUARANTEE = ("Lossless token mixing: the 2D Haar DWT in every block is orthogonal (perfect reconstruction); "
                   "eval-mode predictions are per-example; computationally invariant under rotations of its "
                   "residual stream (what rotation quantization relies on).")
DIGITS_DEVIATION = ("The 8×8 scikit-learn digits stand in for MNIST (offline); flax default initialisation instead "
                    "of torch's; Adam with cosine decay, no augmentation (short CPU training).")


@register("wavemix-lite-digits", FAMILY, dataset="digits", input_shape=(8, 8, 1), guarantee=FLOAT_GUARANTEE,
          tags=("wavemix", "image-classification", "digits"),
          reference={"accuracy": "no published number for the 8×8 scikit-learn digits (WaveMix, arXiv:2205.14375, "
                                 "and the official README report MNIST, Fashion-MNIST, CIFAR and larger sets)"},
          deviations=DIGITS_DEVIATION)
def wavemix_lite_digits():
  """WaveMix-Lite-16/4 (level-1 blocks, transposed-conv upsampling) on the 8×8 scikit-learn digits."""
  return dict(DIGITS)


@register("wavemix-lite-digits-rotate-rtn4", FAMILY, dataset="digits", input_shape=(8, 8, 1),
          guarantee="Every layer inside the blocks computes with 4-bit weights (≤ 16 distinct values per output "
                    "channel, stored packed with a float32 scale per channel) on 4-bit per-token inputs, after "
                    "randomised Hadamard rotations that leave the float network's function unchanged.",
          tags=("wavemix", "image-classification", "digits", "quantized", "quarot"),
          reference={"accuracy": "no published number: QuaRot (Ashkboos et al. 2024) reports LLMs only, and no "
                                 "W4A4 WaveMix result on the scikit-learn digits is published"},
          deviations=DIGITS_DEVIATION + " Post-training W4A4 of `wavemix-lite-digits` as QuaRot's RTN path "
                     "(`--rotate --w_rtn --w_clip --w_bits 4 --a_bits 4`): fake quantization in float32; stem and "
                     "classifier stay float (QuaRot keeps embeddings and lm_head in 16 bits); QuaRot rotates a "
                     "transformer's RMSNorm'd stream, here the stream of a conv net with BatchNorm folded.")
def wavemix_lite_digits_rotate_rtn4():
  """`wavemix-lite-digits` with Hadamard rotations folded in and W4A4 round-to-nearest quantization."""
  return dict(DIGITS, quant=dict(ROTATE_RTN4), quantized=True)


FASHION = dict(num_classes=10, in_channels=1, image_size=28, dim=16, depth=4, mult=2, ff_channel=16, dropout=0.0,
               level=1, stem="patchify", patch_size=2, upsample="transposed")  # blocks at 14×14
# The rotated variant needs the strided stem (a linear layer must write the residual stream; the patchify stem ends in
# GELU + BatchNorm), so it has its own float form: the same blocks at 28×28 (strided stem, stride 1).
FASHION_STRIDED = dict(FASHION, stem="strided", stride=1)
del FASHION_STRIDED["patch_size"]
FASHION_REFERENCE = {
    "accuracy": "93.91% — WaveMix, Fashion-MNIST test set (10,000 images), results table of arXiv:2203.03689 v1 "
                "(Jeevan, Sethi 2022), trained on a GPU; that row's exact configuration and epochs were not checked "
                "here. Not the same size or budget as this model: see Deviations."}
FASHION_DEVIATION = ("WaveMix-Lite-16/4 (the digits variant's blocks; patchify stem with 2×2 patches, so the blocks "
                     "work at 14×14): far "
                     "smaller than the paper's Fashion-MNIST model, so it trains on 2 CPU cores; flax default "
                     "initialisation; AdamW with cosine decay for the few epochs in the training config (the card "
                     "states them), no augmentation. Data: `zoo.data` fashion_mnist (Debian's "
                     "dataset-fashion-mnist, decoded arrays checked).")


@register("wavemix-lite-fashion-mnist", FAMILY, dataset="fashion_mnist", input_shape=(28, 28, 1),
          guarantee=FLOAT_GUARANTEE, tags=("wavemix", "image-classification", "fashion-mnist"),
          reference=FASHION_REFERENCE, deviations=FASHION_DEVIATION)
def wavemix_lite_fashion_mnist():
  """WaveMix-Lite-16/4 (level-1 blocks, transposed-conv upsampling, 2×2 patchify stem: blocks at 14×14) on Fashion-MNIST
  (28×28×1)."""
  return dict(FASHION)


@register("wavemix-lite-fashion-mnist-rotate-rtn4", FAMILY, dataset="fashion_mnist", input_shape=(28, 28, 1),
          guarantee="Every layer inside the blocks computes with 4-bit weights (≤ 16 distinct values per output "
                    "channel, stored packed with a float32 scale per channel) on 4-bit per-token inputs, after "
                    "randomised Hadamard rotations that leave the float network's function unchanged.",
          tags=("wavemix", "image-classification", "fashion-mnist", "quantized", "quarot"),
          reference={"accuracy": "no published number: QuaRot (Ashkboos et al. 2024) reports LLMs only, and no "
                                 "W4A4 WaveMix result on Fashion-MNIST is published"},
          deviations=FASHION_DEVIATION + " Rotation needs a linear layer writing the residual stream, which the "
                     "patchify stem of `wavemix-lite-fashion-mnist` lacks (it ends in GELU + BatchNorm), so this "
                     "variant has its own float form: the strided stem with stride 1 (blocks at 28×28), trained by "
                     "its config and then quantized post-training as QuaRot's RTN path (`--rotate --w_rtn --w_clip "
                     "--w_bits 4 --a_bits 4`): fake quantization in float32; stem and classifier stay float. No GPTQ.")
def wavemix_lite_fashion_mnist_rotate_rtn4():
  """WaveMix-Lite-16/4 (strided stem, blocks at 28×28) on Fashion-MNIST with Hadamard rotations folded in and W4A4
  round-to-nearest quantization."""
  return dict(FASHION_STRIDED, quant=dict(ROTATE_RTN4), quantized=True)


@register("wavemix-lite-fashion-mnist-strided", FAMILY, dataset="fashion_mnist", input_shape=(28, 28, 1),
          guarantee=FLOAT_GUARANTEE, tags=("wavemix", "image-classification", "fashion-mnist"),
          reference=FASHION_REFERENCE,
          deviations=FASHION_DEVIATION.replace("patchify stem with 2×2 patches, so the blocks work at 14×14",
                                               "strided stem with stride 1, so the blocks work at 28×28")
          + " The float form `wavemix-lite-fashion-mnist-rotate-rtn4` is quantized from (the weights of that run "
            "before its export hook rotated and quantized them): the rotation benchmarks start from it.")
def wavemix_lite_fashion_mnist_strided():
  """WaveMix-Lite-16/4 (strided stem, blocks at 28×28) on Fashion-MNIST: the float form of the rotated variant."""
  return dict(FASHION_STRIDED)


@register("wavemix-lite-mnist", FAMILY, dataset="mnist", input_shape=(28, 28, 1), guarantee=FLOAT_GUARANTEE,
          tags=("wavemix", "image-classification", "mnist"),
          reference={"accuracy": "99% (pranavphoenix/WaveMix README, WaveMix Lite-8/10 with 3,566 parameters, MNIST "
                                 "test set, the README's training recipe)"},
          deviations="The README's WaveMix Lite-8/10 (dim 8, depth 10, nearest-neighbour upsampling: 3,566 "
                     "parameters). Needs the TFDS mnist download: offline it raises DataUnavailableError.")
def wavemix_lite_mnist():
  """WaveMix Lite-8/10 (3,566 parameters) for MNIST, as in the official README."""
  return dict(num_classes=10, in_channels=1, image_size=28, dim=8, depth=10, mult=2, ff_channel=8, dropout=0.0,
              level=1, stem="strided", stride=1, upsample="nearest")


@register("wavemix-cifar10", FAMILY, dataset="cifar10", input_shape=(32, 32, 3), guarantee=FLOAT_GUARANTEE,
          tags=("wavemix", "image-classification", "cifar10"),
          reference={"accuracy": "95.37% (pranavphoenix/WaveMix, saved weights `wavemix_cifar10_95.37` listed in its "
                                 "README: CIFAR-10 test set, this configuration, the official recipe with "
                                 "augmentation)"},
          deviations="The official CIFAR-10 configuration (depth 8, dim 320, level 1, strided stem stride 1, "
                     "dropout 0.5). Needs the TFDS cifar10 download: offline it raises DataUnavailableError; the "
                     "generic trainer has no TrivialAugment/flip augmentation.")
def wavemix_cifar10():
  """WaveMix (level 1, dim 320, depth 8) for CIFAR-10: the official 95.37% configuration."""
  return dict(num_classes=10, in_channels=3, image_size=32, dim=320, depth=8, mult=2, ff_channel=320, dropout=0.5,
              level=1, stem="strided", stride=1, upsample="transposed")
