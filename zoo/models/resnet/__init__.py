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

Modules: `model` (BasicBlock, ResNet18), `verify` (the guarantee), `report` (loss, evaluate, plot, export, the
card's storage section), `variants` (the Family record and the registered variants).
"""

from __future__ import annotations

from zoo.models.resnet.model import BasicBlock, ResNet18
from zoo.models.resnet.report import (card_sections, evaluate, export, float_twin, loss, plot, state_file_bytes,
                                      storage_section)
from zoo.models.resnet.variants import (BITS, CIFAR10, DATA_NAMES, DIGITS, FAMILY, FASHION_MNIST, METHOD_NAMES, QUANT,
                                        SHORT, quantized_name)
from zoo.models.resnet.verify import verify

__all__ = ["BasicBlock", "ResNet18", "loss", "evaluate", "verify", "plot", "export", "card_sections",
           "storage_section", "state_file_bytes", "float_twin", "FAMILY", "BITS", "QUANT", "DIGITS", "CIFAR10",
           "FASHION_MNIST", "DATA_NAMES",
           "METHOD_NAMES", "SHORT", "quantized_name"]
