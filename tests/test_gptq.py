"""GPTQ (zoo.quant.gptq): im2col is the layers' matmul form; GPTQ beats RTN on its own objective; grid kept."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from zoo.models import wavemix
from zoo.quant import gptq
from zoo.quant import rotate as zrot


@pytest.mark.parametrize("make", [
    lambda r: nnx.Conv(3, 5, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), rngs=r),
    lambda r: nnx.Conv(3, 5, (1, 1), padding=((0, 0), (0, 0)), rngs=r),
    lambda r: nnx.ConvTranspose(3, 5, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)), rngs=r),
    lambda r: nnx.Linear(3, 5, rngs=r)])
def test_im2col_is_the_layers_matmul(make):
  layer = make(nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, 6, 6, 3))
  k = layer.kernel[...]
  y = gptq.im2col(layer, x) @ k.reshape(-1, k.shape[-1]) + layer.bias[...]
  np.testing.assert_allclose(np.asarray(y), np.asarray(layer(x)).reshape(y.shape), atol=1e-5)


def test_gptq_output_error_at_most_rtn_and_on_grid():
  rng = np.random.default_rng(0)
  fan, out, n = 48, 24, 2000
  mix = rng.normal(size=(fan, fan)) * (rng.uniform(0.1, 2.0, fan))[None, :]   # correlated, uneven inputs
  x = jnp.asarray(rng.normal(size=(n, fan)) @ mix, jnp.float32)
  w = jnp.asarray(rng.normal(size=(fan, out)), jnp.float32)
  scales = zrot.weight_scales(w, 4)
  q_rtn = zrot._sym_quant(w, scales, 4) * scales
  codes = gptq.gptq_codes(w, gptq.hessian(x), scales, 4, block=16)   # several blocks
  assert int(codes.min()) >= -8 and int(codes.max()) <= 7
  q_gptq = codes.astype(jnp.float32) * scales
  assert max(len(np.unique(np.asarray(q_gptq[:, o]))) for o in range(out)) <= 16
  err = lambda q: float(jnp.linalg.norm(x @ w - x @ q))  # noqa: E731
  assert err(q_gptq) <= err(q_rtn), (err(q_gptq), err(q_rtn))
  assert err(q_gptq) < 0.9 * err(q_rtn)   # a real gain on correlated inputs, not a tie


def test_gptq_on_rotated_wavemix_keeps_the_guarantee():
  model = wavemix.WaveMix(num_classes=10, in_channels=1, image_size=8, dim=16, depth=2, rngs=nnx.Rngs(0))
  model.eval()
  calib = np.random.default_rng(0).random((96, 8, 8, 1), dtype=np.float32)
  wavemix.apply_quant(model, dict(wavemix.ROTATE_RTN4, weight_quantizer="gptq"), calibration=calib)
  assert model.quant["weight_quantizer"] == "gptq" and model.quantized
  for _, layer in zrot.quantized_layers(model):
    k = np.asarray(layer.kernel())
    assert max(len(np.unique(k[..., o])) for o in range(k.shape[-1])) <= 16
  from zoo.models.wavemix.verify import quantized_checks
  assert all(c.passed for c in quantized_checks(model, calib[:16]))
  with pytest.raises(ValueError, match="calibration"):
    zrot.rtn(wavemix.WaveMix(num_classes=10, in_channels=1, image_size=8, dim=16, depth=1, rngs=nnx.Rngs(0)),
             weight_quantizer="gptq")
