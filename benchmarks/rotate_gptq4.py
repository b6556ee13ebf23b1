r"""W4A4 on a shipped WaveMix: RTN vs GPTQ, each without and with rotation (5 rotation seeds, mean ± std).

    python benchmarks/rotate_gptq4.py                                      # wavemix-lite-digits, minutes
    python benchmarks/rotate_gptq4.py --model wavemix-lite-fashion-mnist   # 10,000 test images (make data)

GPTQ calibration: the first 256 training images of the model's dataset. Writes
benchmarks/results/rotate_gptq4.md (digits) or rotate_gptq4_DATASET.md. benchmarks/rotate_rtn4.py keeps the
RTN-only tables and the activation kurtosis statistics.
"""

from __future__ import annotations

import os
import pathlib
import statistics
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
SEEDS, CALIB = (0, 1, 2, 3, 4), 256


def main() -> None:
  import numpy as np
  from flax import nnx

  import zoo.data
  from rotate_rtn4 import shipped_float_and_test  # pylint: disable=import-error  (benchmarks/ is on sys.path)
  from zoo.quant import rotate as zrot
  from zoo.tasks import classification

  name, dataset, model, x, y = shipped_float_and_test(__doc__)
  calib = classification.unit_float(np.asarray(zoo.data.load(dataset, "train")["image"][:CALIB]), np)
  acc = lambda m: float(np.mean(classification.predict(m, x).argmax(1) == y))  # noqa: E731
  rows = {"float": [acc(model)],
          "W4A4 RTN, no rotation": [acc(zrot.quantize(nnx.clone(model), 4, 4, rotation=False))],
          "W4A4 GPTQ, no rotation": [acc(zrot.quantize(nnx.clone(model), 4, 4, rotation=False,
                                                       weight_quantizer="gptq", calibration=calib))],
          "W4A4 rotation + RTN": [acc(zrot.quantize(nnx.clone(model), 4, 4, seed=s)) for s in SEEDS],
          "W4A4 rotation + GPTQ": [acc(zrot.quantize(nnx.clone(model), 4, 4, seed=s, weight_quantizer="gptq",
                                                     calibration=calib)) for s in SEEDS]}
  flag = "" if name == "wavemix-lite-digits" else f" --model {name}"
  lines = [f"# W4A4: RTN vs rotation + RTN vs rotation + GPTQ (`{name}`)", "",
           f"`python benchmarks/rotate_gptq4.py{flag}`: {len(x)} {dataset} test images; GPTQ calibrated on the first {CALIB} "
           f"training images; rotated rows: mean ± std over rotation seeds {list(SEEDS)}.", "",
           "| setting | accuracy | runs |", "|---|---|---|"]
  for k, v in rows.items():
    cell = f"{v[0]:.4f}" if len(v) == 1 else f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}"
    lines.append(f"| {k} | {cell} | {len(v)} |")
  text = "\n".join(lines) + "\n"
  suffix = "" if dataset == "digits" else f"_{dataset.replace('_', '-')}"
  (ROOT / "benchmarks" / "results" / f"rotate_gptq4{suffix}.md").write_text(text)
  print(text)


if __name__ == "__main__":
  main()
