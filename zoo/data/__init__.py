"""Datasets as TFDS builders that work offline and without TensorFlow (array_record + data sources).

`zoo.data.load("sir", "train")` prepares the builder once (into `ZOO_DATA_DIR`, default
`~/tensorflow_datasets`) and returns the whole split as a dict of numpy arrays with a leading example axis.
A name may carry a TFDS builder config: `"lasa/angle"`. Builders of data that ship with pip packages or are
simulated live in this package; TFDS's own catalogue (`cifar10`, `mnist`) is used as is, and raises
`DataUnavailableError` at once when its files are not on this machine and the download host is unreachable.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import pathlib
import socket
from typing import Any

import numpy as np

from zoo import errors



def _own_builders() -> list[str]:
  """The zoo's own builders: module `zoo/data/NAME.py` defines `Builder`, a TFDS builder named NAME."""
  here = pathlib.Path(__file__).parent
  return sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))


def data_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("ZOO_DATA_DIR", "~/tensorflow_datasets")).expanduser()


def builder(name: str) -> Any:
  """The TFDS builder of `name` ("builder" or "builder/config"), array_record format."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  base, _, config = name.partition("/")
  kwargs: dict[str, Any] = {"data_dir": str(data_dir()), "file_format": "array_record"}
  if config:
    kwargs["config"] = config
  if base in _own_builders():
    with _quiet_tfds():  # "Variant folder ... has no dataset_info.json" before the first preparation
      return importlib.import_module(f"zoo.data.{base}").Builder(**kwargs)
  try:
    return tfds.builder(base, **kwargs)
  except Exception as e:  # tfds raises DatasetNotFoundError (a subclass of its own errors)
    raise errors.DataUnavailableError(
        f"No dataset {name!r}: neither a zoo builder ({', '.join(_own_builders())}) nor in the TFDS "
        f"catalogue ({e.__class__.__name__}).") from e


def _download_host_reachable(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
  try:
    with socket.create_connection((host, 443), timeout=timeout):
      return True
  except OSError:
    return False


@contextlib.contextmanager
def _quiet_tfds():
  """Silences TFDS's download wording, warnings and progress bars (stdout prints, absl/tfds logging, tqdm) for the
  zoo's own builders, which generate their data locally: "Downloading ... Unknown size" would only alarm."""
  from tensorflow_datasets.core.utils import tqdm_utils  # pylint: disable=import-outside-toplevel

  loggers = [logging.getLogger(n) for n in ("absl", "tensorflow_datasets")]
  levels = [lg.level for lg in loggers]
  active = tqdm_utils._active  # pylint: disable=protected-access
  for lg in loggers:
    lg.setLevel(logging.ERROR)
  tqdm_utils.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    tqdm_utils.display_progress_bar(active)
    for lg, level in zip(loggers, levels):
      lg.setLevel(level)


def prepare(name: str) -> Any:
  """Prepares `name` if needed and returns its builder. Offline catalogue data fails at once."""
  b = builder(name)
  base = name.partition("/")[0]
  with _quiet_tfds() if base in _own_builders() else contextlib.nullcontext():
    if b.is_prepared():
      return b
  if base not in _own_builders() and not _download_host_reachable():
    raise errors.DataUnavailableError(
        f"Dataset {name!r} is not in {data_dir()} and its download host is unreachable (no network). "
        f"Prepare it on a machine with network access (`tfds build {base} --file_format=array_record "
        f"--data_dir DIR`), copy DIR here and set ZOO_DATA_DIR=DIR.")
  if base in _own_builders():
    import sys  # pylint: disable=import-outside-toplevel
    import time  # pylint: disable=import-outside-toplevel

    start = time.perf_counter()
    print(f"preparing dataset {name} once (generated locally, no download) in {data_dir()} ...", file=sys.stderr,
          flush=True)
    with _quiet_tfds():
      b.download_and_prepare(file_format="array_record")
    print(f"prepared {name} in {time.perf_counter() - start:.1f} s; later calls reuse it", file=sys.stderr, flush=True)
  else:
    b.download_and_prepare(file_format="array_record")
  return b


def source(name: str, split: str) -> Any:
  """The random-access data source of `split` (array_record): `len(source)`, `source[i]`,
  `source.__getitems__(indices)`; nothing is read until indexed."""
  b = prepare(name)
  if split not in b.info.splits:
    raise errors.DataUnavailableError(
        f"Dataset {name!r} has no split {split!r}; it has {sorted(b.info.splits)}.")
  return b.as_data_source(split)


def gather(data_source: Any, indices: Any) -> dict[str, np.ndarray]:
  """The examples `indices` (a sequence of ints, in that order) of `data_source` as `{feature: array (len, ...)}`:
  only those records are read (each process of a multi-process run reads its own rows this way)."""
  examples = data_source.__getitems__([int(i) for i in indices])
  if not examples:
    raise errors.DataUnavailableError("gather: no indices given; at least one example is needed.")
  return {k: np.stack([np.asarray(ex[k]) for ex in examples]) for k in examples[0]}


def load(name: str, split: str) -> dict[str, np.ndarray]:
  """The whole `split` of dataset `name` as `{feature: array (examples, ...)}` (random-access source)."""
  data_source = source(name, split)
  return gather(data_source, range(len(data_source)))
