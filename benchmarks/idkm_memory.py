r"""Memory and time of DKM vs IDKM vs IDKM-JFB as the number of k-means iterations t grows.

    python benchmarks/idkm_memory.py                 # everything (tens of minutes on one busy CPU core)
    python benchmarks/idkm_memory.py --part layer    # one clustered layer only
    python benchmarks/idkm_memory.py --part batch    # largest ResNet18 training batch in a memory budget

1. One clustered layer, forward + backward (a 3×3 conv on a batch, loss = mean(y²), gradient in the float
   kernel), for t = 1, 5, 10, 20, 50 soft k-means updates (ε = 0: exactly t), b = 4 (k = 16), d = 1,
   τ = 1e-4:
   - peak memory of the compiled executable (`jax.jit(grad).lower(...).compile().memory_analysis()`:
     arguments + outputs + temporaries − aliased), for a ResNet18 layer3 conv (3×3×128×128, 147k weights)
     and layer4 conv (3×3×512×512, 2.4M weights);
   - process RSS of running it (a fresh process per point, glibc's mmap threshold fixed at 64 KiB so large
     buffers return to the OS when freed; peak RSS reset through /proc/self/clear_refs after compiling, then
     VmHWM minus the RSS before the first call) and, in another process, the forward and backward times
     (backward alone: `jax.vjp` residuals computed by one jitted call, the VJP applied by another), medians,
     for the 128-channel layer.
   Goal: IDKM and IDKM-JFB flat (peak at t = 50 / t = 5 ≤ 1.1) while DKM grows; JFB backward time flat
   (≤ 1.2). IDKM's adjoint solve runs at most t iterations (tolerance 1e-6), so its backward time may grow.
2. The largest training batch of the CIFAR ResNet18 (width 64, 11.2M parameters, every conv with ≥ 2048
   weights clustered at b = 4, d = 1, t = 5 and 20) whose Adam train step fits a fixed memory budget
   (16 GiB, a common GPU size), from the compiled step's memory analysis (state and optimizer donated):
   an affine fit at B = 8 and 64 gives a first guess, then a geometric bisection on compiled peaks finds the
   largest batch to within 5 % (compiles take minutes each on a CPU; they are cached in
   idkm_memory_compiles.json). The float model is the reference; IDKM at t = 20 checks that its step does
   not grow with t (JFB's backward pass never depends on t).

Measured with XLA:CPU buffer assignment (no accelerator here): absolute numbers differ on a GPU, the growth in
t is the algorithm's. Writes benchmarks/results/idkm_memory.json, idkm_memory.md, idkm_memory.png and
idkm_memory_card.md (the card section that `zoo ship --section` adds, see configs/resnet.py: the report with a
link to the plot instead of the plot, which stays here).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
TS = (1, 5, 10, 20, 50)
METHODS = ("dkm", "idkm", "idkm-jfb")
BITS, TAU = 4, 1e-4
BUDGET_GIB = 16.0
MiB = 2 ** 20
PLOT_LINE = "![peak memory and backward time against t](idkm_memory.png)"  # the report, beside the plot
# The card section links the plot where it lives instead of copying it into every resnet18-digits* card.
CARD_PLOT_LINE = ("Plot: peak memory and backward time against t, `benchmarks/results/idkm_memory.png` in the nnx-zoo "
                  "repository (linked from its MODEL_CARDS.md).")


# --- one clustered layer ---------------------------------------------------------------------------


def layer_problem(channels: int, method: str, t: int):
  """(loss(kernel, c0, x), kernel, c0, x) for a 3×3 conv with `channels` in and out on an (8, 8, 8) batch."""
  import jax
  import jax.numpy as jnp

  from zoo.quant import kmeans

  cfg = kmeans.KMeansConfig(method, tau=TAU, iters=t, eps=0.0)
  key = jax.random.key(0)
  kernel = jax.random.normal(key, (3, 3, channels, channels), jnp.float32) * (2 / (9 * channels)) ** 0.5
  x = jax.random.normal(jax.random.key(1), (8, 8, 8, channels), jnp.float32)
  c0 = jnp.linspace(-3, 3, 2 ** BITS, dtype=jnp.float32)[:, None] * float(jnp.std(kernel))

  def loss(kernel, c0, x):
    soft, _ = kmeans.cluster(c0, kernel.reshape(-1, 1), cfg)
    y = jax.lax.conv_general_dilated(x, soft.reshape(kernel.shape), (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.mean(jnp.square(y))

  return loss, kernel, c0, x


def analysis_bytes(compiled) -> dict[str, int]:
  ma = compiled.memory_analysis()
  out = {k: int(getattr(ma, f"{k}_size_in_bytes")) for k in ("argument", "output", "temp", "alias")}
  out["peak"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
  return out


def compiled_layer_memory(channels: int, method: str, t: int) -> dict[str, int]:
  import jax

  loss, kernel, c0, x = layer_problem(channels, method, t)
  return analysis_bytes(jax.jit(jax.grad(loss)).lower(kernel, c0, x).compile())


def _rss_bytes(field: str) -> int:
  for line in pathlib.Path("/proc/self/status").read_text().splitlines():
    if line.startswith(field + ":"):
      return int(line.split()[1]) * 1024
  raise RuntimeError(f"{field} not in /proc/self/status")


def run_point(channels: int, method: str, t: int, repeats: int) -> dict[str, float]:
  """In this (fresh) process: RSS growth of one forward+backward, or (repeats > 0) forward / backward times."""
  import jax

  loss, kernel, c0, x = layer_problem(channels, method, t)
  if repeats > 0:
    return _times(loss, kernel, c0, x, repeats)
  jax.block_until_ready((kernel, c0, x))
  grad = jax.jit(jax.grad(loss)).lower(kernel, c0, x).compile()
  # first execution in this process, buffers mmap'd and unmapped when freed (MALLOC_MMAP_THRESHOLD_ set by the
  # caller), so the peak RSS growth is the executable's live memory, not what the allocator kept from before
  pathlib.Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
  before = _rss_bytes("VmRSS")
  jax.block_until_ready(grad(kernel, c0, x))
  return {"rss_bytes": _rss_bytes("VmHWM") - before}


def _times(loss, kernel, c0, x, repeats: int) -> dict[str, float]:
  import jax

  forward = jax.jit(lambda k, c, x: jax.vjp(lambda k: loss(k, c, x), k))
  backward = jax.jit(lambda vjp_fn, g: vjp_fn(g))

  def timed(fn):
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times.append(time.perf_counter() - start)
    return statistics.median(times)

  fwd_time = timed(lambda: forward(kernel, c0, x))
  value, vjp_fn = forward(kernel, c0, x)
  bwd_time = timed(lambda: backward(vjp_fn, value))
  return {"forward_s": fwd_time, "backward_s": bwd_time}


def layer_part(repeats: int) -> dict:
  rows = []
  for channels in (128, 512):
    for method in METHODS:
      for t in TS:
        mem = compiled_layer_memory(channels, method, t)
        row = {"channels": channels, "weights": 9 * channels ** 2, "method": method, "t": t, **mem}
        if channels == 128:
          env = {**os.environ, "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false", "JAX_PLATFORMS": "cpu"}
          for reps, extra in ((0, {"MALLOC_MMAP_THRESHOLD_": "65536"}), (repeats, {})):  # RSS, then times
            code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.idkm_memory import "
                    f"run_point; print(json.dumps(run_point({channels}, {method!r}, {t}, {reps})))")
            proc = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                                  check=True)
            row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(row), flush=True)
        rows.append(row)
  return {"rows": rows}


# --- the largest ResNet18 training batch in a budget -----------------------------------------------


def train_step_memory(method: str | None, t: int, batch: int) -> dict[str, int]:
  """Memory analysis of one Adam step of the CIFAR ResNet18 (clustered at b = 4 when `method`)."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx

  from zoo import registry
  from zoo.models import resnet

  overrides = {} if method is None else {
      "quant": dict(resnet.QUANT, method=method, bits=BITS, iters=t, eps=0.0), "packed": False}
  spec = registry.get_spec("resnet18-cifar10" if method is None else f"resnet18-cifar10-idkm-b{BITS}")
  abstract = spec.abstract(**overrides)
  abstract.train()
  graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
  tx = optax.adam(1e-4)
  opt_state = jax.eval_shape(tx.init, params)

  def step(params, rest, opt_state, batch):
    def loss_fn(params):
      model = nnx.merge(graphdef, params, rest, copy=True)
      value, _ = resnet.loss(model, batch)
      return value, nnx.state(model, nnx.Not(nnx.Param))
    (value, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_rest, opt_state, value

  data = {"image": jax.ShapeDtypeStruct((batch, 32, 32, 3), jnp.float32),
          "label": jax.ShapeDtypeStruct((batch,), jnp.int32)}
  lowered = jax.jit(step, donate_argnums=(0, 1, 2)).lower(params, rest, opt_state, data)
  return analysis_bytes(lowered.compile())


BATCH_CONFIGS = [(None, 0), ("dkm", 5), ("idkm", 5), ("idkm-jfb", 5), ("dkm", 20), ("idkm", 20)]


def _key(method: str | None, t: int, n: int) -> str:
  return f"{method or 'float'}/{t}/{n}"


def bracket(cache: dict, method: str | None, t: int, budget: int) -> tuple[int, int | None]:
  """(largest batch measured to fit, smallest larger batch measured not to fit or None) from the cache."""
  prefix = f"{method or 'float'}/{t}/"
  points = {int(k[len(prefix):]): v for k, v in cache.items() if k.startswith(prefix)}
  lo = max((n for n, v in points.items() if v <= budget), default=0)
  hi = min((n for n, v in points.items() if v > budget and n > lo), default=None)
  return lo, hi


def batch_part(cache: dict) -> dict:
  """Per configuration: the largest batch whose compiled step fits the budget, by geometric bisection on
  compiled peaks to 5 %. The float model starts from an affine fit at B = 8, 64; IDKM-JFB and IDKM at t = 20
  start from the IDKM t = 5 bracket; DKM stops once B = 1 does not fit. `cache` maps "method/t/B" to a compiled
  peak and is written as compiles finish (minutes each); a rerun continues where it stopped."""
  budget = int(BUDGET_GIB * 2 ** 30)

  def peak(method, t, n):
    key = _key(method, t, n)
    if key not in cache:
      cache[key] = train_step_memory(method, t, n)["peak"]
      print(json.dumps({key: cache[key]}), flush=True)
      (RESULTS / "idkm_memory_compiles.json").write_text(json.dumps(cache, indent=2) + "\n")
    return cache[key]

  def done(lo, hi):
    return hi is not None and (hi == 1 or hi - lo <= 1 or hi <= 1.05 * lo)

  def search(method, t, start):
    if done(*bracket(cache, method, t, budget)):
      return
    for n in start:
      peak(method, t, n)
    lo, hi = bracket(cache, method, t, budget)
    if done(lo, hi):
      return
    while hi is None:  # everything measured fits: go higher
      hi = 2 * lo
      if peak(method, t, hi) <= budget:
        lo, hi = hi, None
    while hi - lo > 1 and hi > 1.05 * lo:
      mid = min(max(int(round((lo * hi) ** 0.5)) if lo else 1, lo + 1), hi - 1)
      lo, hi = (mid, hi) if peak(method, t, mid) <= budget else (lo, mid)

  a, b = peak(None, 0, 8), peak(None, 0, 64)
  slope = (b - a) / 56
  search(None, 0, [int((budget - (a - 8 * slope)) // slope)])
  search("dkm", 5, [1])
  search("idkm", 5, [8, 64])
  lo, hi = bracket(cache, "idkm", 5, budget)
  search("idkm-jfb", 5, [8, 64, lo, hi])
  search("dkm", 20, [1])
  search("idkm", 20, [8, lo, hi])
  return batch_rows(cache)


def batch_rows(cache: dict) -> dict:
  budget = int(BUDGET_GIB * 2 ** 30)
  rows = []
  for method, t in BATCH_CONFIGS:
    lo, hi = bracket(cache, method, t, budget)
    get = lambda n: cache.get(_key(method, t, n))
    rows.append({"method": method or "float", "t": t, "peak_b1": get(1), "peak_b8": get(8), "peak_b64": get(64),
                 "max_batch": lo, "fails_at": hi, "peak_at_max": get(lo), "peak_at_fail": get(hi)})
  return {"budget_bytes": budget, "rows": rows}


# --- report ----------------------------------------------------------------------------------------


def ratio(rows, method, key, channels=128, num=50, den=5):
  get = {r["t"]: r[key] for r in rows if r["method"] == method and r["channels"] == channels}
  return get[num] / get[den]


def report(results: dict) -> str:
  lines = ["# DKM vs IDKM vs IDKM-JFB: memory and time as t grows", "",
           f"Command: `python benchmarks/idkm_memory.py`. XLA:CPU, one thread; b = {BITS} (k = {2 ** BITS}), d = 1, "
           f"τ = {TAU}, ε = 0 (exactly t iterations).", ""]
  layer = results.get("layer")
  if layer:
    rows = layer["rows"]
    lines += ["## One clustered layer, forward + backward", "",
              "Peak = compiled executable's memory analysis (arguments + outputs + temporaries − aliased). RSS = "
              "growth of the process's peak RSS during one call (fresh process). Times are medians.", "",
              "| layer | method | t | peak (MiB) | RSS (MiB) | forward (ms) | backward (ms) |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
      rss = f"{r['rss_bytes'] / MiB:.1f}" if "rss_bytes" in r else "-"
      fwd = f"{1e3 * r['forward_s']:.1f}" if "forward_s" in r else "-"
      bwd = f"{1e3 * r['backward_s']:.1f}" if "backward_s" in r else "-"
      lines.append(f"| 3×3×{r['channels']}×{r['channels']} | {r['method']} | {r['t']} | {r['peak'] / MiB:.1f} | "
                   f"{rss} | {fwd} | {bwd} |")
    lines += ["", "Ratios t = 50 / t = 5 (goal: IDKM and JFB memory ≤ 1.1, JFB backward time ≤ 1.2; DKM grows):",
              "",
              "| method | peak 128 | peak 512 | RSS 128 | backward time 128 |", "|---|---|---|---|---|"]
    for m in METHODS:
      lines.append(f"| {m} | {ratio(rows, m, 'peak'):.2f} | {ratio(rows, m, 'peak', 512):.2f} | "
                   f"{ratio(rows, m, 'rss_bytes'):.2f} | {ratio(rows, m, 'backward_s'):.2f} |")
    lines += ["", PLOT_LINE, ""]
  batch = results.get("batch")
  if batch:
    lines += [f"## Largest CIFAR ResNet18 training batch in {batch['budget_bytes'] / 2 ** 30:.0f} GiB", "",
              "Adam step, every kernel with ≥ 2048 weights clustered (b = 4, d = 1; 11.2M weights in 20 layers), "
              "state donated; peak from the compiled step's memory analysis (XLA:CPU); the largest batch found by "
              "bisection on compiled peaks (to 5 %).",
              "",
              "| method | t | peak at B = 1 (GiB) | peak at B = 8 (GiB) | peak at B = 64 (GiB) | largest batch measured "
              "to fit |",
              "|---|---|---|---|---|---|"]
    gib = lambda v: f"{v / 2 ** 30:.2f}" if v else "-"
    for r in batch["rows"]:
      if r["fails_at"] == 1:
        fits = "none: B = 1 does not fit"
      elif r["fails_at"] is None and r["max_batch"] == 0:
        fits = "not measured"
      else:
        fits = (f"{r['max_batch']} ({r['fails_at']} does not)" if r["fails_at"]
                else f"≥ {r['max_batch']} (no larger batch measured)")
      lines.append(f"| {r['method']} | {r['t'] or '-'} | {gib(r['peak_b1'])} | {gib(r['peak_b8'])} | "
                   f"{gib(r['peak_b64'])} | {fits} |")
    lines.append("")
  return "\n".join(lines)


LEGEND = {"dkm": "DKM (backward through the t unrolled iterations)",
          "idkm": "IDKM (implicit: adjoint fixed point)", "idkm-jfb": "IDKM-JFB (one step at the fixed point)"}


def plot(results: dict, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = results["layer"]["rows"]
  fig, axes = plt.subplots(1, 3, figsize=(14, 4))
  for ax, (key, channels, title) in zip(axes, [("peak", 128, "peak memory (compiled), 3×3×128×128"),
                                               ("peak", 512, "peak memory (compiled), 3×3×512×512"),
                                               ("backward_s", 128, "backward time, 3×3×128×128")]):
    for m in METHODS:
      pts = sorted((r["t"], r[key]) for r in rows if r["method"] == m and r["channels"] == channels and key in r)
      scale = MiB if key == "peak" else 1e-3
      style = {"dkm": "o-", "idkm": "s--", "idkm-jfb": "^:"}[m]
      ax.plot([p[0] for p in pts], [p[1] / scale for p in pts], style, label=LEGEND[m])
    ax.set(xlabel="soft k-means iterations t (count)",
           ylabel="peak memory (MiB)" if key == "peak" else "backward time (ms, median)", title=title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--part", choices=("all", "layer", "batch", "report"), default="all",
                      help="report: rewrite the table and plot from the saved results and compile cache")
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  RESULTS.mkdir(parents=True, exist_ok=True)
  out = RESULTS / "idkm_memory.json"
  results = json.loads(out.read_text()) if out.is_file() else {}
  import jax
  results["device"] = str(jax.devices()[0].device_kind)
  if args.part in ("all", "layer"):
    results["layer"] = layer_part(args.repeats)
    out.write_text(json.dumps(results, indent=2) + "\n")
  if args.part in ("all", "batch"):
    cache_path = RESULTS / "idkm_memory_compiles.json"
    results["batch"] = batch_part(json.loads(cache_path.read_text()) if cache_path.is_file() else {})
    out.write_text(json.dumps(results, indent=2) + "\n")
  cache_path = RESULTS / "idkm_memory_compiles.json"
  if args.part == "report" and cache_path.is_file():
    results["batch"] = batch_rows(json.loads(cache_path.read_text()))
    out.write_text(json.dumps(results, indent=2) + "\n")
  if "layer" in results:
    plot(results, RESULTS / "idkm_memory.png")
  (RESULTS / "idkm_memory.md").write_text(report(results))
  (RESULTS / "idkm_memory_card.md").write_text(report(results).replace(PLOT_LINE, CARD_PLOT_LINE))
  print(report(results))


if __name__ == "__main__":
  main()
