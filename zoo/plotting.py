"""Card plots: matplotlib (headless Agg backend, imported only when a plot is drawn) and one way to save them."""

from __future__ import annotations

import os
import pathlib
from typing import Any


def pyplot() -> Any:
  """`matplotlib.pyplot` on the non-interactive Agg backend (card plots are files, never windows)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def save(fig: Any, outdir: str | os.PathLike, filename: str, dpi: int = 110) -> pathlib.Path:
  """Writes `fig` (tight layout) to OUTDIR/FILENAME, closes it and returns the path."""
  plt = pyplot()
  fig.tight_layout()
  path = pathlib.Path(outdir) / filename
  fig.savefig(path, dpi=dpi)
  plt.close(fig)
  return path
