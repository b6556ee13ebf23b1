r"""W4A4 on `wavemix-lite-digits`: RTN vs rotation + RTN vs rotation + GPTQ (5 rotation seeds, mean ± std).

    python benchmarks/rotate_gptq4.py     # a few minutes on one CPU core

GPTQ calibration: the first 256 training images (zoo.data digits train). Writes
benchmarks/results/rotate_gptq4.md. (A first cut of issue 17's comparison; benchmarks/rotate_rtn4.py keeps the
RTN-only tables and the kurtosis statistics.)
"""

from __future__ import annotations

import os
import pathlib
import statistics
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SEEDS, CALIB = (0, 1, 2, 3, 4), 256


def main() -> None:
  import numpy as np
  from flax import nnx

  import zoo
  import zoo.data
  from zoo.quant import rotate as zrot
  from zoo.tasks import classification

  model = zoo.load("wavemix-lite-digits")
  test, train = zoo.data.load("digits", "test"), zoo.data.load("digits", "train")
  x, y = np.asarray(test["image"], np.float32), np.asarray(test["label"])
  calib = np.asarray(train["image"], np.float32)[:CALIB]
  acc = lambda m: float(np.mean(classification.predict(m, x).argmax(1) == y))  # noqa: E731
  rows = {"float": [acc(model)],
          "W4A4 RTN, no rotation": [acc(zrot.quantize(nnx.clone(model), 4, 4, rotation=False))],
          "W4A4 GPTQ, no rotation": [acc(zrot.quantize(nnx.clone(model), 4, 4, rotation=False,
                                                       weight_quantizer="gptq", calibration=calib))],
          "W4A4 rotation + RTN": [acc(zrot.quantize(nnx.clone(model), 4, 4, seed=s)) for s in SEEDS],
          "W4A4 rotation + GPTQ": [acc(zrot.quantize(nnx.clone(model), 4, 4, seed=s, weight_quantizer="gptq",
                                                     calibration=calib)) for s in SEEDS]}
  lines = ["# W4A4: RTN vs rotation + RTN vs rotation + GPTQ (`wavemix-lite-digits`)", "",
           f"`python benchmarks/rotate_gptq4.py`: {len(x)} digits test images; GPTQ calibrated on the first {CALIB} "
           f"training images; rotated rows: mean ± std over rotation seeds {list(SEEDS)}.", "",
           "| setting | accuracy | runs |", "|---|---|---|"]
  for k, v in rows.items():
    cell = f"{v[0]:.4f}" if len(v) == 1 else f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}"
    lines.append(f"| {k} | {cell} | {len(v)} |")
  text = "\n".join(lines) + "\n"
  (ROOT / "benchmarks" / "results" / "rotate_gptq4.md").write_text(text)
  print(text)


if __name__ == "__main__":
  main()
