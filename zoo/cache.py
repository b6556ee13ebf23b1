"""The zoo's cache directory and JAX's persistent compilation cache (cheap to import: no JAX at import time).

    $ZOO_CACHE_DIR                  the zoo's cache (default $XDG_CACHE_HOME/nnx-zoo, else ~/.cache/nnx-zoo)
    $ZOO_CACHE_DIR/jax-compilation  compiled XLA programs (`$ZOO_COMPILATION_CACHE_DIR` moves it elsewhere)
    $ZOO_CACHE_DIR/registry-*.json  the registry's index, so `zoo list` / `zoo info` need not import the models
    $ZOO_CACHE_DIR/init-state       `zoo.create`'s initial states (`zoo.init_cache`; `$ZOO_INIT_CACHE_DIR` moves it)
    $ZOO_CACHE_DIR/metric-names.json  the trainer's `best_metric` probe (`train.trainer.metric_names`)

`ZOO_COMPILATION_CACHE=0` turns the compilation cache off, `ZOO_INIT_CACHE=0` the initial-state cache. With the
compilation cache on, a second process's first `rollout`,
`zoo verify` or `zoo run` reads what the first compiled instead of compiling again (JAX keys every entry by the
program, the JAX/XLA version and the device, so a stale entry is never used). A compilation cache the user set
up himself (`jax.config.update("jax_compilation_cache_dir", ...)` or `JAX_COMPILATION_CACHE_DIR`) is left as is.
"""

from __future__ import annotations

import os
import pathlib

_ENABLED: list[str] = []  # the directory once enabled in this process


def cache_dir() -> pathlib.Path:
  """`$ZOO_CACHE_DIR`, else `$XDG_CACHE_HOME/nnx-zoo`, else `~/.cache/nnx-zoo` (not created here)."""
  if os.environ.get("ZOO_CACHE_DIR"):
    return pathlib.Path(os.environ["ZOO_CACHE_DIR"]).expanduser()
  base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
  return pathlib.Path(base).expanduser() / "nnx-zoo"


def checkpoints_dir() -> pathlib.Path:
  """The embedded checkpoints folder: `$ZOO_CHECKPOINTS`, else `checkpoints/` beside the `zoo` package (a clone of
  the repository; a pip install has none, see `zoo.hub.resolve`)."""
  env = os.environ.get("ZOO_CHECKPOINTS")
  return pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parent.parent / "checkpoints"


def compilation_cache_dir() -> pathlib.Path | None:
  """Where compiled programs are kept: `$ZOO_COMPILATION_CACHE_DIR`, else `cache_dir()/jax-compilation`; None when
  `ZOO_COMPILATION_CACHE` is 0/false/off/no."""
  if _off("ZOO_COMPILATION_CACHE"):
    return None
  env = os.environ.get("ZOO_COMPILATION_CACHE_DIR")
  return pathlib.Path(env).expanduser() if env else cache_dir() / "jax-compilation"


def init_cache_dir() -> pathlib.Path | None:
  """Where `zoo.create` keeps initial states (`zoo.init_cache`): `$ZOO_INIT_CACHE_DIR`, else
  `cache_dir()/init-state`; None when `ZOO_INIT_CACHE` is 0/false/off/no."""
  if _off("ZOO_INIT_CACHE"):
    return None
  env = os.environ.get("ZOO_INIT_CACHE_DIR")
  return pathlib.Path(env).expanduser() if env else cache_dir() / "init-state"


def _off(variable: str) -> bool:
  return os.environ.get(variable, "").strip().lower() in {"0", "false", "off", "no"}


def enable_compilation_cache() -> pathlib.Path | None:
  """Turns on JAX's persistent compilation cache in `compilation_cache_dir()` (once per process; idempotent) and
  returns the folder, or None when it is off or the user configured JAX's own. Every compilation is kept
  (small programs too: the eager operations of a restore or an evaluation add up to seconds). A folder that cannot be
  created leaves the cache off (never an error)."""
  if _ENABLED:
    return pathlib.Path(_ENABLED[0])
  path = compilation_cache_dir()
  if path is None:
    return None
  import jax  # pylint: disable=import-outside-toplevel

  if jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return None  # the user's own
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError:
    return None
  jax.config.update("jax_compilation_cache_dir", str(path))
  try:  # a compilation before this call fixed the cache as unused: start it afresh with the folder
    from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=import-outside-toplevel
    compilation_cache.reset_cache()
  except (ImportError, AttributeError):
    pass
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # small programs too
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  _ENABLED.append(str(path))
  return path
