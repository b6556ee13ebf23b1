"""The one way a family computes in float64.

A family with `Family.x64` is built, trained, evaluated and verified inside `float64_scope()`; its modules'
public methods carry `@float64`, so they compute in float64 wherever a user calls them (outside the scope JAX
would truncate float64 arrays to float32)."""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


# Backends that compute float64 natively. TPUs do not (XLA:TPU has no native f64), so a float64 family there
# would not compute in the precision its guarantee is stated in: it fails with Float64UnavailableError instead.
FLOAT64_PLATFORMS = ("cpu", "gpu", "cuda", "rocm")


def check_float64_backend() -> None:
  """Raises `zoo.errors.Float64UnavailableError` when JAX's default backend has no native float64."""
  import jax  # pylint: disable=import-outside-toplevel

  platform = jax.default_backend()
  if platform not in FLOAT64_PLATFORMS:
    from zoo import errors  # pylint: disable=import-outside-toplevel

    raise errors.Float64UnavailableError(
        f"this model computes in float64 (its guarantee holds to float64 round-off), and the {platform!r} backend "
        f"has no native float64. Run it on CPU or GPU (JAX_PLATFORMS=cpu), where float64 is exact.")


def float64_scope(enabled: bool = True) -> contextlib.AbstractContextManager:
  """A context in which JAX keeps float64 (`jax.enable_x64`); a no-op when `enabled` is False.
  `Float64UnavailableError` on a backend without native float64 (TPU)."""
  if not enabled:
    return contextlib.nullcontext()
  import jax  # pylint: disable=import-outside-toplevel  # `import zoo` stays free of JAX

  check_float64_backend()
  return jax.enable_x64(True)


def compute_view(model: Any, dtype: Any) -> Any:
  """`model` computing in `dtype` (mixed precision, e.g. bfloat16): a view (`nnx.with_attributes`) that shares every
  variable with `model`, in which each layer with a `dtype` attribute (flax's Conv, ConvTranspose, Linear,
  BatchNorm; the zoo's `SpectralOperator`) casts its input and weights to `dtype` when called.

  The weights keep their own dtype (float32), so do their gradients and an optimizer's state; flax's BatchNorm
  computes its statistics in at least float32 and stores them as such; updates of the view's variables (batch
  statistics, power-iteration vectors) are updates of `model`'s. `model` itself still computes in float32.
  ValueError when no layer of `model` takes a compute dtype."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel

  return nnx.with_attributes(model, dtype=jnp.dtype(dtype))


def float64(fn: F) -> F:
  """Decorator: `fn` runs inside `float64_scope()`."""

  @functools.wraps(fn)
  def wrapper(*args: Any, **kwargs: Any) -> Any:
    with float64_scope():
      return fn(*args, **kwargs)

  return wrapper  # type: ignore[return-value]
