r"""4-bit round-to-nearest quantization of a shipped WaveMix with and without QuaRot-style rotations.

    python benchmarks/rotate_rtn4.py                                      # about two minutes on one CPU core
    python benchmarks/rotate_rtn4.py --model wavemix-lite-fashion-mnist   # 10,000 test images (make data)

On a shipped float WaveMix (default `wavemix-lite-digits`) and its test split (digits: 359 images), for weights (W) and
activations (A) at 4 or 16 bits, each without rotation and with randomised Hadamard rotations (5 rotation seeds;
mean ± std):
- accuracy, top-1 agreement with the float model, and the output error ‖f_q(x) − f(x)‖ / ‖f(x)‖ (mean over
  images, logits);
- the input activations of the 16 quantized layers, float model rotated vs not (the RTN layers record their
  input after the online rotation, before quantization): per-token kurtosis across channels (3 for a Gaussian,
  large when a few channels dominate), per-token max|x|/RMS (the "outlier ratio": how much of the 4-bit range one
  entry takes), and the SQNR of 4-bit per-token quantization of those inputs (dB). Reported for the residual-
  stream readers (the blocks' reductions) and for all quantized layers.
Rotations are exact before quantization: the float rotated model's output error is reported too.
Writes benchmarks/results/rotate_rtn4.{json,md} (digits) or rotate_rtn4_DATASET.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
SEEDS = (0, 1, 2, 3, 4)
SETTINGS = ((4, 16), (16, 4), (4, 4))  # (w_bits, a_bits)
OUTLIER = (3, 16.0)  # residual-stream channel, factor: the controlled outlier experiment


def with_outlier(model, channel: int, factor: float):
  """A copy of `model` computing the same function whose residual stream carries channel `channel` × `factor`
  (BatchNorms folded, the stream's writers scaled, its readers unscaled: `zoo.quant.rotate.change_basis` with a
  diagonal matrix)."""
  import jax.numpy as jnp
  from flax import nnx

  from zoo.quant import rotate as zrot

  m = nnx.clone(model)
  zrot.fold_norms(m)  # BatchNorm after a writer would undo the scaling
  stream = m.rotation_plan().rotations[0]
  zrot.change_basis(m, stream, jnp.diag(jnp.ones(stream.dim).at[channel].set(factor)))
  return m


def activation_stats(model, x, rotated: bool, seed: int) -> dict[str, dict[str, float]]:
  """Statistics of the quantized layers' inputs of `model` (float), rotated by `seed` or not."""
  import jax
  import numpy as np
  from flax import nnx

  from zoo.quant import rotate as zrot

  m = nnx.clone(model)
  if rotated:
    zrot.rotate(m, seed)
  zrot.rtn(m, w_bits=16, a_bits=16)
  zrot.record_inputs(m)
  m(x)
  inputs = nnx.pop(m, nnx.Intermediate)
  flat = {"/".join(map(str, k[:-1])): v for k, v in nnx.to_flat_state(inputs)}
  out = {"stream": [], "all": []}
  for path, value in flat.items():
    for leaf in jax.tree.leaves(value):
      t = np.asarray(leaf, np.float64).reshape(-1, leaf.shape[-1])       # (tokens, channels)
      mu, sd = t.mean(1, keepdims=True), t.std(1, keepdims=True) + 1e-12
      kurt = float(np.mean(np.mean(((t - mu) / sd) ** 4, axis=1)))
      rms = np.sqrt(np.mean(t ** 2, axis=1)) + 1e-12
      ratio = float(np.mean(np.max(np.abs(t), axis=1) / rms))
      q = np.asarray(zrot.fake_quant_per_token(leaf, 4), np.float64).reshape(t.shape)
      sqnr = float(10 * np.log10(np.sum(t ** 2) / max(np.sum((q - t) ** 2), 1e-30)))
      row = (kurt, ratio, sqnr)
      out["all"].append(row)
      if path.endswith("reduce"):
        out["stream"].append(row)
  return {k: dict(zip(("kurtosis", "max_over_rms", "sqnr_db"), np.mean(np.asarray(v), axis=0).tolist()))
          for k, v in out.items()}


def shipped_float_and_test(doc: str, split: str = "test"):
  """Parses --model (a shipped float WaveMix) and returns (name, dataset, model, images as float32 in [0, 1],
  labels) of `split`."""
  import numpy as np

  import zoo
  import zoo.data
  from zoo import registry
  from zoo.tasks import classification

  parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
  parser.add_argument("--model", default="wavemix-lite-digits", help="a shipped float WaveMix (default: %(default)s)")
  name = parser.parse_args().model
  dataset = registry.get_spec(name).dataset
  data = zoo.data.load(dataset, split)
  images = classification.unit_float(np.asarray(data["image"]), np)  # uint8 (Fashion-MNIST) / 255; digits are float
  return name, dataset, zoo.load(name), images, np.asarray(data["label"])


def main() -> None:
  import jax.numpy as jnp
  import numpy as np
  from flax import nnx

  from zoo.quant import rotate as zrot
  from zoo.tasks import classification

  name, dataset, model, x, labels = shipped_float_and_test(__doc__)
  ref = classification.predict(model, x)
  n_layers = len(model.rotation_plan().quantize)

  def score(m) -> dict[str, float]:
    out = classification.predict(m, x)
    err = np.linalg.norm(out - ref, axis=1) / np.linalg.norm(ref, axis=1)
    return {"accuracy": float(np.mean(out.argmax(1) == labels)), "agreement": float(np.mean(out.argmax(1) == ref.argmax(1))),
            "output_error": float(np.mean(err))}

  def table(base) -> dict:
    rows = {"float": {"none": [score(base)]}}
    rows["float (rotated, not quantized)"] = {"rotated": [score(zrot.rotate(nnx.clone(base), s)) for s in SEEDS]}
    for wb, ab in SETTINGS:
      key = f"W{wb}A{ab}"
      rows[key] = {"none": [score(zrot.quantize(nnx.clone(base), wb, ab, rotation=False))],
                   "rotated": [score(zrot.quantize(nnx.clone(base), wb, ab, rotation=True, seed=s)) for s in SEEDS]}
      print(key, rows[key], flush=True)
    return rows

  sample = jnp.asarray(x[:64])
  outlier = with_outlier(model, *OUTLIER)
  result = {"model": name, "dataset": dataset, "test_images": len(x), "quantized_layers": n_layers, "seeds": list(SEEDS),
            "outlier_setup": {"channel": OUTLIER[0], "factor": OUTLIER[1]}}
  for key, base in (("shipped", model), ("outlier", outlier)):
    result[key] = {"rows": table(base),
                   "activations": {"none": activation_stats(base, sample, False, 0),
                                   "rotated": [activation_stats(base, sample, True, s) for s in SEEDS]}}
  RESULTS.mkdir(parents=True, exist_ok=True)
  suffix = "" if dataset == "digits" else f"_{dataset.replace('_', '-')}"
  (RESULTS / f"rotate_rtn4{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
  (RESULTS / f"rotate_rtn4{suffix}.md").write_text(markdown(result))
  print(markdown(result))


def _ms(values: list[float], fmt: str) -> str:
  if len(values) == 1:
    return format(values[0], fmt)
  return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def _tables(r: dict) -> list[str]:
  lines = ["| setting | rotation | accuracy | agreement with float | output error |", "|---|---|---|---|---|"]
  for key, by in r["rows"].items():
    for rot, scores in by.items():
      lines.append(f"| {key} | {rot} | {_ms([s['accuracy'] for s in scores], '.4f')} | "
                   f"{_ms([s['agreement'] for s in scores], '.4f')} | {_ms([s['output_error'] for s in scores], '.3g')} |")
  lines += ["", "Quantized layers' input activations (64 test images), per-token statistics across channels averaged "
            "over tokens and layers: kurtosis (3 = Gaussian), max|x|/RMS (the outlier ratio), SQNR of 4-bit per-token "
            "round-to-nearest (dB, higher is better):", "",
            "| layers | rotation | kurtosis | max/RMS | 4-bit SQNR (dB) |", "|---|---|---|---|---|"]
  a = r["activations"]
  for group, title in (("stream", "residual-stream readers (reductions)"), ("all", "all quantized layers")):
    lines.append(f"| {title} | none | {a['none'][group]['kurtosis']:.2f} | {a['none'][group]['max_over_rms']:.2f} | "
                 f"{a['none'][group]['sqnr_db']:.2f} |")
    rot = a["rotated"]
    lines.append(f"| {title} | rotated | {_ms([s[group]['kurtosis'] for s in rot], '.2f')} | "
                 f"{_ms([s[group]['max_over_rms'] for s in rot], '.2f')} | {_ms([s[group]['sqnr_db'] for s in rot], '.2f')} |")
  return lines


def markdown(r: dict) -> str:
  o = r["outlier_setup"]
  dataset = r.get("dataset", "digits")
  flag = "" if r["model"] == "wavemix-lite-digits" else f" --model {r['model']}"
  lines = [f"# W4A4 round-to-nearest with and without rotation: `{r['model']}`", "",
           f"`python benchmarks/rotate_rtn4.py{flag}`: the {r['test_images']} {dataset} test images; {r['quantized_layers']} "
           f"quantized layers (every conv in the blocks; stem and classifier float). Weights: symmetric per output "
           f"channel with QuaRot's clip search; activations: symmetric per token (pixel), clip 1.0. Rotated: "
           f"randomised Hadamard rotations of the residual stream, the reduced channels and the MLP channels, "
           f"online Hadamard before each MLP's second conv, BatchNorm folded; mean ± std over {len(r['seeds'])} "
           f"rotation seeds. Output error: ‖f_q(x) − f(x)‖/‖f(x)‖ of the logits, mean over images.", "",
           "## The shipped model", ""]
  lines += _tables(r["shipped"])
  lines += ["", f"## The same function with an outlier channel in its residual stream (channel {o['channel']} × "
            f"{o['factor']:g})", "",
            "Large trained networks carry a few residual channels far larger than the rest; this small model does "
            "not. Scaling one stream channel in its writers and unscaling it in its readers "
            "(BatchNorms folded first; `zoo.quant.rotate.change_basis` with a diagonal matrix) gives the same float function with "
            "such an outlier, the case QuaRot's rotations are for:", ""]
  lines += _tables(r["outlier"])
  lines += ["", "The paper's headline for reference (a different scale and model): LLaMA2-70B at W4A4KV4 within 0.29 "
            "WikiText-2 perplexity of FP16."]
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()
