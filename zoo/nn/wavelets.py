"""The 2D Haar discrete wavelet transform on channels-last images, as reshapes and adds.

For each 2×2 block [[a, b], [c, d]] of a channel (rows = H, columns = W), one level gives

    LL = (a + b + c + d)/2    LH = (a + b − c − d)/2    HL = (a − b + c − d)/2    HH = (a − b − c + d)/2

which is `pywt.dwt2(x, "haar", axes=(1, 2))` = (cA, (cH, cV, cD)) exactly, with the same sub-band order
(pytorch_wavelets' `DWTForward(wave="db1")`, which WaveMix uses, orders its high bands the same way). The map is
orthogonal (the four filters are orthonormal), so it is lossless: `haar_idwt2(*haar_dwt2(x)) == x` to round-off,
and ‖x‖ is preserved. It has no parameters and acts on every channel alike, so it commutes with any mixing of
channels (what lets `zoo.quant.rotate` rotate a WaveMix block's reduced channels through it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from zoo import errors


def _check_even(x: jax.Array, level: int = 1) -> None:
  if x.ndim != 4:
    raise errors.InputShapeError(f"the Haar DWT takes images (batch, H, W, C); got shape {tuple(x.shape)}.")
  h, w = x.shape[1:3]
  if h % 2 ** level or w % 2 ** level:
    raise errors.InputShapeError(
        f"{level} level(s) of the Haar DWT need H and W divisible by {2 ** level}; got H={h}, W={w}. Resize or pad "
        f"the images, or use fewer levels.")


def haar_dwt2(x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
  """One level of the 2D Haar DWT.

  Arguments:
    x: (batch, H, W, C) with H, W even.
  Returns:
    (LL, (LH, HL, HH)), each (batch, H/2, W/2, C): = pywt.dwt2(x, "haar", axes=(1, 2)).
  """
  _check_even(x)
  a, b = x[:, 0::2, 0::2], x[:, 0::2, 1::2]
  c, d = x[:, 1::2, 0::2], x[:, 1::2, 1::2]
  return ((a + b + c + d) * 0.5, ((a + b - c - d) * 0.5, (a - b + c - d) * 0.5, (a - b - c + d) * 0.5))


def haar_idwt2(ll: jax.Array, highs: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
  """Inverse of `haar_dwt2`: (batch, h, w, C) sub-bands -> (batch, 2h, 2w, C)."""
  lh, hl, hh = highs
  a = (ll + lh + hl + hh) * 0.5
  b = (ll + lh - hl - hh) * 0.5
  c = (ll - lh + hl - hh) * 0.5
  d = (ll - lh - hl + hh) * 0.5
  top = jnp.stack([a, b], axis=3)      # (batch, h, w, 2, C): columns 2j, 2j+1
  bottom = jnp.stack([c, d], axis=3)
  blocks = jnp.stack([top, bottom], axis=2)  # (batch, h, 2, w, 2, C): rows 2i, 2i+1
  n, h, _, w, _, ch = blocks.shape
  return blocks.reshape(n, 2 * h, 2 * w, ch)


def haar_wavedec2(x: jax.Array, level: int) -> list:
  """`level` levels of the Haar DWT: [LL_level, highs_level, ..., highs_1] (= `pywt.wavedec2(x, "haar",
  level=level, axes=(1, 2))`). x: (batch, H, W, C) with H, W divisible by 2^level; highs_j are (LH, HL, HH) at
  (batch, H/2^j, W/2^j, C)."""
  _check_even(x, level)
  out = []
  for _ in range(level):
    x, highs = haar_dwt2(x)
    out.insert(0, highs)
  return [x, *out]


def subbands(x: jax.Array) -> jax.Array:
  """One DWT level as WaveMix feeds it to its MLP: channels [LL_0..LL_{C-1}, LH_0, HL_0, HH_0, LH_1, ...].

  That is the official `torch.cat((Y1, Yh.reshape(b, 3C, h/2, w/2)), dim=1)`: the low band's C channels, then
  the three high bands of each channel in turn. x: (batch, H, W, C) -> (batch, H/2, W/2, 4C).
  """
  ll, highs = haar_dwt2(x)
  high = jnp.stack(highs, axis=-1)  # (batch, h, w, C, 3)
  return jnp.concatenate([ll, high.reshape(*high.shape[:3], -1)], axis=-1)
