"""The one way a family computes in float64.

A family with `Family.x64` is built, trained, evaluated and verified inside `float64_scope()`; its modules'
public methods carry `@float64`, so they compute in float64 wherever a user calls them (outside the scope JAX
would truncate float64 arrays to float32)."""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def float64_scope(enabled: bool = True) -> contextlib.AbstractContextManager:
  """A context in which JAX keeps float64 (`jax.enable_x64`); a no-op when `enabled` is False."""
  import jax  # pylint: disable=import-outside-toplevel  # `import zoo` stays free of JAX

  return jax.enable_x64(True) if enabled else contextlib.nullcontext()


def float64(fn: F) -> F:
  """Decorator: `fn` runs inside `float64_scope()`."""

  @functools.wraps(fn)
  def wrapper(*args: Any, **kwargs: Any) -> Any:
    import jax  # pylint: disable=import-outside-toplevel

    with jax.enable_x64(True):
      return fn(*args, **kwargs)

  return wrapper  # type: ignore[return-value]
