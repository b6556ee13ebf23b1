"""WaveMix and WaveMix-Lite: token mixing by the 2D Haar wavelet transform; float or W4A4 rotation-quantized.

Jeevan, Viswanathan, Anandhu, Sethi, "WaveMix: A Resource-efficient Neural Network for Image Analysis",
arXiv:2205.14375 (official code `pranavphoenix/WaveMix`). A stem maps the image to `dim` channels; a stack of
resolution-preserving WaveMix blocks, each added to the residual stream x ← x + block(x); global average pooling
and a linear classifier. A level-L block:

    r = conv1×1(x): dim → dim/4                   (reduction)
    f_j = [LL_j, LH_j, HL_j, HH_j] of r, j = 1..L  (Haar DWT of the previous low band: dim channels, H/2^j)
    y_L = MLP_L(f_L);  y_j = MLP_j([f_j, y_(j+1)])   MLP = conv1×1 (→ mult·dim), GELU, dropout, conv1×1
                                                     (→ ff_channel), transposed conv 4×4 stride 2 (×2 size), BN

MLP_1 returns dim channels, the coarser ones dim/2. WaveMix-Lite is the level-1 block with the "strided" stem
(two 3×3 convs). `upsample="nearest"` swaps the transposed conv for nearest-neighbour upsampling, the README's
parameter-efficient Lite (WaveMix Lite-8/10: 3,566 parameters, 99% on MNIST).

The residual stream is written only by linear layers (the stem's last conv, each block's BN-folded transposed
conv) and read only by linear layers (each reduction, the classifier): `rotation_plan` names them, so
`zoo.quantize(model, method="rotate-rtn4")` can fold Hadamard rotations into them exactly (`zoo.quant.rotate`).

Modules: `model` (MLP, WaveBlock, WaveMix, apply_quant), `verify` (the guarantee), `report` (loss, evaluate,
plot, export), `variants` (the Family record and the registered variants).
"""

from __future__ import annotations

from zoo.models.wavemix.model import MLP, ROTATE_RTN4, WaveBlock, WaveMix, apply_quant
from zoo.models.wavemix.report import evaluate, export, float_kwargs, loss, plot
from zoo.models.wavemix.variants import DIGITS, FAMILY
from zoo.models.wavemix.verify import verify

__all__ = ["MLP", "WaveBlock", "WaveMix", "apply_quant", "ROTATE_RTN4", "loss", "evaluate", "verify", "plot",
           "export", "float_kwargs", "FAMILY", "DIGITS"]
