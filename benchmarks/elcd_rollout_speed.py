r"""Rollout speed: 256 starts × 1000 steps, the zoo's `rollout` and `rollout_rk4_data` vs the official PyTorch RK4.

    # the official code outside this repo, torch in its own venv (see benchmarks/elcd_official.py for both):
    .venv/bin/python benchmarks/elcd_rollout_speed.py --official-repo /tmp/elcd_official \
        --torch-python /work/benchvenv/bin/python [--models elcd-lasa2d-angle,elcd-lasa4d,elcd-lasa8d] \
        [--starts 256] [--steps 1000] [--torch-steps 5] [--repeats 3]

Same starts on every side: the model's target plus 0.3 × the training demonstrations' spread × N(0, I) around the
test demonstrations' starts (seed 0), float32. One thread on every side (XLA's CPU client on one thread,
`torch.set_num_threads(1)`), each side in its own process, one process at a time.

  * `rollout` — the zoo's public rollout (linearly implicit latent step), `steps` steps, tol 0 (never stops early),
    compiled once first (compile time reported apart), then the median of `--repeats` calls;
  * `rollout_rk4_data` — the paper's data-space RK4, same protocol;
  * `official` — the official code's rollout step, `utils.single_ode45_step(model, x, 0.01)` on all starts at once, as
    its `forward_step_until_converge` calls it, on an official `ELCD` of the same size (flow steps 2, hidden 16;
    its weights do not change the cost). Its velocity builds the Jacobian with one autograd call per output
    element, so a step costs seconds: `--torch-steps` steps are timed and the per-step median is multiplied by
    `--steps` (stated as such in the table).

Times are process CPU seconds (the steadier number on a shared machine) and wall seconds. Writes
benchmarks/results/elcd_rollout_speed.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DT = 0.01


def torch_worker(args: argparse.Namespace) -> None:
  import torch  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(1)
  sys.path.insert(0, args.official_repo)
  import utils as official  # pylint: disable=import-outside-toplevel,import-error

  starts = np.load(args.npz)["starts"]
  dim = starts.shape[1]
  torch.manual_seed(0)
  model = official.get_model_from_config({"type": "ELCD", "flow_steps": 2, "latent_dim": dim, "hidden_dim": 16},
                                         data_dim=dim, x_eq=torch.zeros(1, dim))
  x = torch.tensor(starts, dtype=torch.float32)
  wall, cpu = [], []
  for _ in range(args.torch_steps):
    w, c = time.perf_counter(), time.process_time()
    x = official.single_ode45_step(model, x, DT).detach()
    wall.append(time.perf_counter() - w)
    cpu.append(time.process_time() - c)
  print(json.dumps({"wall_per_step": float(np.median(wall)), "cpu_per_step": float(np.median(cpu)),
                    "finite": bool(torch.isfinite(x).all())}))


def jax_side(name: str, starts: np.ndarray, steps: int, repeats: int) -> dict:
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  import zoo  # pylint: disable=import-outside-toplevel

  model = zoo.load(name)
  x0 = jnp.asarray(starts, jnp.float32)
  out = {}
  for integrator in ("rollout", "rollout_rk4_data"):
    run = getattr(model, integrator)
    w, c = time.perf_counter(), time.process_time()
    run(x0, steps=steps, dt=DT, tol=0.0).block_until_ready()
    first = {"wall": time.perf_counter() - w, "cpu": time.process_time() - c}
    wall, cpu = [], []
    for _ in range(repeats):
      w, c = time.perf_counter(), time.process_time()
      xs = run(x0, steps=steps, dt=DT, tol=0.0).block_until_ready()
      wall.append(time.perf_counter() - w)
      cpu.append(time.process_time() - c)
    out[integrator] = {"wall": float(np.median(wall)), "cpu": float(np.median(cpu)),
                       "first_call_wall": first["wall"], "first_call_cpu": first["cpu"],
                       "finite": bool(np.isfinite(np.asarray(xs)).all())}
  return out


def make_starts(name: str, n: int) -> np.ndarray:
  import zoo  # pylint: disable=import-outside-toplevel
  import zoo.data  # pylint: disable=import-outside-toplevel
  from zoo.data import lasa  # pylint: disable=import-outside-toplevel

  spec = zoo.registry.get_spec(name)
  train = zoo.data.load(spec.dataset, "train")
  test = zoo.data.load(spec.dataset, "test")
  pos, _, _ = lasa.trajectories_from_examples(test)
  spread = np.asarray(train["x"], np.float64).std(0)
  rng = np.random.default_rng(0)
  base = pos[rng.integers(0, len(pos), n), 0]
  return (base + 0.3 * spread * rng.standard_normal(base.shape)).astype(np.float32)


def markdown(meta: dict, rows: list[dict]) -> str:
  lines = [
      "# ELCD rollout speed: the zoo vs the official PyTorch code",
      "",
      f"{meta['starts']} starts × {meta['steps']} steps (dt 0.01), float32, one thread per side, process CPU seconds "
      f"(wall in brackets). `rollout`: the public latent implicit step; `rollout_rk4_data`: the paper's data-space "
      f"RK4; official: `utils.single_ode45_step` on all starts at once, {meta['torch_steps']} steps timed, per-step "
      f"median × {meta['steps']}. JAX times are the median of {meta['repeats']} calls after a first, compiling call "
      f"(its time in the last column). Command: `{meta['command']}`; {meta['machine']}; {meta['date']}; jax "
      f"{meta['jax']}, torch {meta.get('torch', '?')}; official commit {meta.get('official_commit', '?')}.",
      "",
      "| model | `rollout` s | `rollout_rk4_data` s | official RK4 s (extrapolated) | official / `rollout` | "
      "official / `rollout_rk4_data` | first call (compile) s: rollout / rk4 |",
      "|---|---|---|---|---|---|---|"]
  for r in rows:
    a, b, t = r["jax"]["rollout"], r["jax"]["rollout_rk4_data"], r["torch"]
    total = t["cpu_per_step"] * meta["steps"]
    lines.append(f"| `{r['model']}` | {a['cpu']:.3g} ({a['wall']:.3g}) | {b['cpu']:.3g} ({b['wall']:.3g}) | "
                 f"{total:.4g} ({t['wall_per_step'] * meta['steps']:.4g}) | {total / a['cpu']:.0f}× | "
                 f"{total / b['cpu']:.0f}× | {a['first_call_wall']:.3g} / {b['first_call_wall']:.3g} |")
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default="elcd-lasa2d-angle,elcd-lasa4d,elcd-lasa8d")
  parser.add_argument("--starts", type=int, default=256)
  parser.add_argument("--steps", type=int, default=1000)
  parser.add_argument("--torch-steps", type=int, default=5)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--official-repo", default="/tmp/elcd_official")
  parser.add_argument("--torch-python", default="/work/benchvenv/bin/python")
  parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--npz", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.torch_worker:
    torch_worker(args)
    return
  os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  import jax  # pylint: disable=import-outside-toplevel

  rows = []
  for name in args.models.split(","):
    starts = make_starts(name, args.starts)
    with tempfile.TemporaryDirectory() as tmp:
      npz = pathlib.Path(tmp) / "starts.npz"
      np.savez(npz, starts=starts)
      done = subprocess.run([args.torch_python, __file__, "--torch-worker", "--npz", str(npz), "--official-repo",
                             args.official_repo, "--torch-steps", str(args.torch_steps)],
                            capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    torch_side = json.loads(done.stdout.strip().splitlines()[-1])
    row = {"model": name, "jax": jax_side(name, starts, args.steps, args.repeats), "torch": torch_side}
    print(json.dumps(row), flush=True)
    rows.append(row)
  torch_version = subprocess.run([args.torch_python, "-c", "import torch; print(torch.__version__)"],
                                 capture_output=True, text=True, check=False).stdout.strip()
  commit = pathlib.Path(args.official_repo, "COMMIT")
  meta = {"command": "python benchmarks/elcd_rollout_speed.py " + " ".join(sys.argv[1:]),
          "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
          "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at end",
          "jax": jax.__version__, "torch": torch_version, "python": platform.python_version(),
          "official_commit": commit.read_text().strip()[:12] if commit.is_file() else "?",
          "starts": args.starts, "steps": args.steps, "torch_steps": args.torch_steps, "repeats": args.repeats}
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / "elcd_rollout_speed.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
  (RESULTS / "elcd_rollout_speed.md").write_text(markdown(meta, rows))
  print(f"wrote {RESULTS / 'elcd_rollout_speed.md'}")


if __name__ == "__main__":
  main()
