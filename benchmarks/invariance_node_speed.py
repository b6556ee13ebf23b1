r"""Speed of the CBF invariance layer: right-hand-side evaluations, QP solvers, one training step vs PyTorch.

    .venv/bin/python benchmarks/invariance_node_speed.py [--sections rhs,train] [--epochs 3] [--seeds 10] [--rounds 7] \
        [--official-repo /work/.mirror/Weixy21+InvarianceNODE/repo] [--torch-python /work/benchvenv/bin/python]
    # the torch venv: pip install torch==2.13.0 torchdiffeq qpth cvxopt (never part of this project)

1. RHS evaluations per second of the spiral neural ODE on a batch of 1000 states (jit + vmap, float64): plain,
   with the CBF layer for 1 obstacle (closed form, qpax), 2 and 3 obstacles (exact active set, qpax).
2. The CBF-QP alone on 1000 real constraint sets (from the model at random states): 3 obstacles with qpax vs
   the exact active-set enumeration ("closed form" of small QPs), 1 obstacle with qpax vs the half-space
   projection.
3. One training step (20 windows of 10 samples, dopri5 rtol 1e-7 / atol 1e-9, L1, RMSprop) as `python -m train`
   runs it (`trainer_steps`: one call per batch, `scan_epoch`, 10 seeds side by side) — baseline, and invariant
   (the CBF-QP inside every RHS evaluation, differentiated) — vs the official PyTorch code run from its own files
   in a separate venv: spiral/train.py (plain neural ODE) and spiral/train_with_CBFs.py (neural ODE loss plus the
   qpth CBF loss), each step on the same zoo windows in seed 0's `batch_order`. `--rounds R` alternates the official
   steps and the JAX epochs R times and reports each round's ratio: on a shared machine whose speed drifts by tens of
   percent within minutes, a ratio of two measurements minutes apart says little. The official repository is read
   from a `fetch`ed bare mirror; nothing of it is copied into the project.
All timings single-threaded (XLA on one thread, torch.set_num_threads(1)); process CPU time. Writes
benchmarks/results/invariance_node_speed.json and invariance_node_speed.md (a section not run keeps its figures).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _median_time(fn, repeats: int, warmup: int = 2) -> float:
  """Median CPU seconds of the process (all its threads) per call: on a shared, busy machine wall time mostly
  measures the other jobs; single-threaded CPU time measures the work (JAX and torch alike)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    t = time.process_time()
    fn()
    times.append(time.process_time() - t)
  return statistics.median(times)


# ------------------------------------------------------------------------------------------- torch worker


def torch_worker(official_dir: str, repeats: int, windows: str = "") -> dict:
  """Runs in the torch venv: imports the official scripts (defaults: batch 20 x 10) and times one step each.

  With `windows` (an .npz of the zoo's spiral windows y: (990, 10, 2), t: (10,) and the trainer's batch orders
  orders: (steps, 20)) each step takes the next batch of those windows (float32, as the official tensors) instead
  of the official `get_batch`'s random draw: the same data and batches as the JAX side."""
  import contextlib  # pylint: disable=import-outside-toplevel
  import importlib.util  # pylint: disable=import-outside-toplevel
  import io  # pylint: disable=import-outside-toplevel

  import torch  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(1)
  out = {"torch": torch.__version__}

  def load(name):
    sys.argv = [name]  # the scripts parse their own defaults at import
    spec = importlib.util.spec_from_file_location(name.replace(".py", ""), os.path.join(official_dir, name))
    mod = importlib.util.module_from_spec(spec)
    with contextlib.redirect_stdout(io.StringIO()):  # they print every ground-truth step
      spec.loader.exec_module(mod)
    torch.autograd.set_detect_anomaly(False)  # train_with_CBFs.py turns it on globally; off for a fair timing
    return mod

  plain = load("train.py")
  if windows:
    w = np.load(windows)
    ys, ts, orders = torch.tensor(w["y"], dtype=torch.float32), torch.tensor(w["t"], dtype=torch.float32), w["orders"]
    cursor = [0]

    def same_batches():  # the official get_batch's shapes: y0 (M, 1, D), t (T,), y (T, M, 1, D)
      idx = torch.from_numpy(orders[cursor[0] % len(orders)])
      cursor[0] += 1
      y = ys[idx]  # (M, T, D)
      return y[:, 0, None, :], ts, y.transpose(0, 1)[:, :, None, :]

    out["batches"] = "zoo spiral windows in the trainer's batch_order"
  torch.manual_seed(0)
  func = plain.ODEFunc()
  opt = torch.optim.RMSprop(func.parameters(), lr=1e-3)

  def step_plain():
    opt.zero_grad()
    y0, t, y = same_batches() if windows else plain.get_batch()
    loss = torch.mean(torch.abs(plain.odeint(func, y0, t) - y))
    loss.backward()
    opt.step()

  out["official_train_step_s"] = _median_time(step_plain, repeats)

  cbf = load("train_with_CBFs.py")
  func2 = cbf.ODEFunc()
  opt2 = torch.optim.RMSprop(func2.parameters(), lr=1e-3)

  def step_cbf():  # the body of the official training loop
    func2.use_dcbf = False
    func2.train()
    opt2.zero_grad()
    y0, t, y = same_batches() if windows else cbf.get_batch()
    pred = cbf.odeint(func2, y0, t)
    loss = torch.mean(torch.abs(pred - y))
    loss.backward(retain_graph=True)
    for p in func2.parameters():
      p.requires_grad = False
    func2.pa.requires_grad = True
    func2.pb.requires_grad = True
    func2.use_dcbf = True
    func2(t, pred).backward()
    opt2.step()
    for p in func2.parameters():
      p.requires_grad = True

  out["official_cbf_train_step_s"] = _median_time(step_cbf, max(3, repeats // 2))
  return out


# ------------------------------------------------------------------------------------------------ JAX side


def jax_benchmarks(repeats: int) -> dict:
  """Sections 1 and 2: the right-hand side and the QP alone."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel

  sys.path.insert(0, str(ROOT))
  import zoo  # pylint: disable=import-outside-toplevel
  import zoo.data  # pylint: disable=import-outside-toplevel
  from zoo.models import invariance_node as inode  # pylint: disable=import-outside-toplevel
  from zoo.nn import cbf  # pylint: disable=import-outside-toplevel
  from train.trainer import make_train_step  # pylint: disable=import-outside-toplevel

  out: dict = {"jax": jax.__version__}
  with jax.enable_x64(True):
    model = zoo.create("invariance-node-spiral", seed=0)
    # a drift toward the obstacles (output bias) so that the CBF constraints are active at many states
    params = dict(model.params(), b2=jnp.asarray([-1.0, 0.1]))
    rng = np.random.default_rng(0)
    paper = inode.paper_obstacles()
    three = cbf.Obstacles.create([[0.0, 1.2], [-0.9, 0.0], [0.8, 0.1]], radii=0.2, gains=20.0)
    one = cbf.Obstacles.create([[0.0, 1.2]], radii=0.2, gains=20.0)
    cast = lambda o: jax.tree.map(jnp.asarray, o)
    # states near the obstacles (so that constraints are active) and elsewhere
    ys = np.concatenate([rng.uniform(-2, 2, (500, 2)),
                         np.asarray(paper.centers)[rng.integers(0, 2, 500)] + rng.uniform(-0.4, 0.4, (500, 2))])
    b = np.min(np.asarray(jax.vmap(three.barrier)(jnp.asarray(ys))), axis=1)
    ys = jnp.asarray(np.where(b[:, None] > 0, ys, ys + 0.5))

    # 1. RHS evaluations
    rhs = {}
    for label, obs, method in (("plain", None, "auto"), ("cbf_1obst_closed_form", one, "closed_form"),
                               ("cbf_1obst_qpax", one, "qpax"), ("cbf_2obst_active_set", paper, "active_set"),
                               ("cbf_2obst_qpax", paper, "qpax"), ("cbf_3obst_active_set", three, "active_set"),
                               ("cbf_3obst_qpax", three, "qpax")):
      fn = jax.jit(jax.vmap(lambda y, o=cast(obs) if obs else None, m=method: inode.field(params, y, o, 1, m)))
      fn(ys).block_until_ready()
      t = _median_time(lambda: fn(ys).block_until_ready(), repeats * 5)
      rhs[label] = {"evals_per_s": ys.shape[0] / t, "batch_s": t}
    out["rhs"] = rhs

    # 2. the QP alone on real constraint sets
    qp = {}
    for label, obs, methods in (("3_obstacles", three, ("active_set", "qpax")),
                                ("1_obstacle", one, ("closed_form", "qpax"))):
      o = cast(obs)

      def constraints(y, o=o):
        theta_ref, f0, g = inode.split_affine(params, y, 1)
        a, c = cbf.cbf_constraints(o.barrier(y), o.barrier_grad(y), f0, g, o.gains)
        return theta_ref, a, c

      th, a, c = jax.jit(jax.vmap(constraints))(ys)
      res = {}
      sols = {}
      flagged = {}
      for method in methods:
        fn = jax.jit(jax.vmap(lambda t_, a_, c_, m=method: cbf.cbf_qp(t_, a_, c_, m).theta))
        full = jax.jit(jax.vmap(lambda t_, a_, c_, m=method: cbf.cbf_qp(t_, a_, c_, m)))(th, a, c)
        sols[method], flagged[method] = np.asarray(full.theta), np.asarray(full.infeasible)  # one compiled call
        t = _median_time(lambda fn=fn: fn(th, a, c).block_until_ready(), repeats * 5)
        res[method] = {"qp_per_s": ys.shape[0] / t, "batch_s": t, "flagged_infeasible": int(flagged[method].sum())}
      agree = ~flagged[methods[0]] & ~flagged[methods[1]]  # compare where neither solver flagged the problem
      diff = np.max(np.abs(sols[methods[0]] - sols[methods[1]]), axis=1)
      res["max_abs_diff"] = float(np.max(diff[agree]))
      res["max_rel_diff"] = float(np.max((diff / (1.0 + np.max(np.abs(sols[methods[0]]), axis=1)))[agree]))
      res["active_fraction"] = float(np.mean(np.any(np.abs(sols[methods[0]] - np.asarray(th)) > 1e-12, axis=1)))
      qp[label] = res
    out["qp"] = qp

  return out


def trainer_steps(epochs: int, num_seeds: int, rounds: int = 1, official=None) -> dict:
  """Section 3: a training step as `python -m train` runs it, on the trainer's own functions and batches
  (`train.trainer.batch_order(seed, epoch, 990, 20)`: 49 steps an epoch), for both spiral models:
    * `step`: one jitted call per batch (`make_train_step`, bound by `nnx.cached_partial` as the trainer binds it),
      a float read per step;
    * `scan`: each epoch one compiled `nnx.scan` over its batches, state donated (`--config.scan_epoch=True`);
    * `seeds`: `num_seeds` seeds side by side (`train.seeds.stack`, `make_train_epoch(num_seeds=S)`;
      `--config.num_seeds=S --config.scan_epoch=True`), each seed its own weights and batch order.
  Per step: the median CPU seconds of an epoch after the first, divided by its steps (and by S: per seed-step).
  Also the first epoch's CPU seconds (compilation included).

  With rounds > 1 (`official`: a function timing the official steps) the machine's speed drift is taken out of the
  ratios: each round times the official steps, then every JAX way from a fresh initial state (epoch 0 untimed,
  epoch 1 timed), and keeps each round's ratio official / JAX."""
  from flax import nnx  # pylint: disable=import-outside-toplevel

  sys.path.insert(0, str(ROOT))
  import zoo.data  # pylint: disable=import-outside-toplevel
  from train import seeds as side_by_side  # pylint: disable=import-outside-toplevel
  from train import trainer  # pylint: disable=import-outside-toplevel
  from zoo import registry  # pylint: disable=import-outside-toplevel

  ways = {}  # (name, way) -> (fresh() -> run_epoch(batches) -> losses, epoch -> batch rows, steps per epoch)
  precision = {}
  for name in ("neural-ode-spiral", "invariance-node-spiral"):
    config = _load_config(f"configs/invariance_node.py:{name}")
    spec = registry.get_spec(name)
    precision[name] = spec.family.precision
    with spec.family.precision():
      data = zoo.data.load(config.dataset, config.train_split)
    n = len(data["y0"])
    steps = n // config.batch_size
    tx = trainer.make_optimizer(config.optimizer, steps * epochs, steps)

    def build(seed, spec=spec, tx=tx):
      model = spec.build(seed)
      model.train()
      return nnx.Optimizer(model, tx, wrt=nnx.Param), model

    step_fn = trainer.make_train_step(spec.family.loss)
    epoch_fn = trainer.make_train_epoch(spec.family.loss)
    seeds_fn = trainer.make_train_epoch(spec.family.loss, num_seeds=num_seeds)

    def fresh_step(build=build, config=config, step_fn=step_fn, steps=steps):
      bound = nnx.cached_partial(step_fn, *build(config.seed))  # as the trainer binds it
      return lambda b: [float(bound({k: v[i] for k, v in b.items()})[0]) for i in range(steps)]

    def fresh_scan(build=build, config=config, epoch_fn=epoch_fn):
      opt, model = build(config.seed)
      return lambda b: epoch_fn(opt, model, b)[0]

    def fresh_seeds(build=build, config=config, seeds_fn=seeds_fn):
      opts, models = zip(*(build(config.seed + s) for s in range(num_seeds)))
      opt, model = side_by_side.stack(opts), side_by_side.stack(models)
      return lambda b: seeds_fn(opt, model, b)[0]

    def rows(e, data=data, config=config, n=n):
      return {k: v[trainer.batch_order(config.seed, e, n, config.batch_size)] for k, v in data.items()}

    def seed_rows(e, data=data, config=config, n=n):
      order = np.stack([trainer.batch_order(config.seed + s, e, n, config.batch_size) for s in range(num_seeds)],
                       axis=1)  # (steps, S, batch)
      return {k: v[order] for k, v in data.items()}

    ways[name, "step"] = (fresh_step, rows, steps)
    ways[name, "scan"] = (fresh_scan, rows, steps)
    ways[name, "seeds"] = (fresh_seeds, seed_rows, steps * num_seeds)

  def timed_epoch(name, run_epoch, batches):
    with precision[name]():
      c, w = time.process_time(), time.perf_counter()
      losses = np.asarray(run_epoch(batches))
      cpu, wall = time.process_time() - c, time.perf_counter() - w
    assert np.all(np.isfinite(losses)), losses
    return cpu, wall

  out: dict = {name: {"steps_per_epoch": ways[name, "step"][2]} for name in ("neural-ode-spiral",
                                                                             "invariance-node-spiral")}
  if rounds <= 1:
    for (name, way), (fresh, batch_rows, per) in ways.items():
      with precision[name]():
        run = fresh()
      cpu, wall, load = [], [], [os.getloadavg()[0]]
      for e in range(epochs):
        c, w = timed_epoch(name, run, batch_rows(e))
        cpu.append(c)
        wall.append(w)
      load.append(os.getloadavg()[0])
      out[name][way] = {"step_cpu_s": statistics.median(cpu[1:]) / per,
                        "step_wall_s": statistics.median(wall[1:]) / per,
                        "first_epoch_cpu_s": cpu[0], "first_epoch_wall_s": wall[0], "epoch_cpu_s": cpu,
                        "load_average": load}
      if way == "seeds":
        out[name][way]["num_seeds"] = num_seeds
      print(name, way, json.dumps({k: v for k, v in out[name][way].items() if k.startswith(("step", "first"))}),
            flush=True)
    return out
  first: dict = {}
  per_round: dict = {key: [] for key in ways}
  torch_rounds = []
  for r in range(rounds):
    torch_rounds.append(official())
    for key, (fresh, batch_rows, per) in ways.items():
      with precision[key[0]]():
        run = fresh()
      c0, _ = timed_epoch(key[0], run, batch_rows(0))
      first.setdefault(key, c0)
      c1, w1 = timed_epoch(key[0], run, batch_rows(1))
      per_round[key].append((c1 / per, w1 / per, os.getloadavg()[0]))
    print(f"round {r}:", json.dumps({f"{k[0]} {k[1]}": round(v[-1][0] * 1e3, 3) for k, v in per_round.items()}),
          json.dumps({k: round(v * 1e3, 2) for k, v in torch_rounds[-1].items() if k.endswith("_s")}), flush=True)
  for (name, way), vals in per_round.items():
    ref_key = "official_train_step_s" if name == "neural-ode-spiral" else "official_cbf_train_step_s"
    ratios = [t[ref_key] / v[0] for t, v in zip(torch_rounds, vals)]
    out[name][way] = {"step_cpu_s": statistics.median(v[0] for v in vals),
                      "step_wall_s": statistics.median(v[1] for v in vals), "first_epoch_cpu_s": first[name, way],
                      "round_step_cpu_s": [v[0] for v in vals], "round_ratio": ratios,
                      "ratio_median": statistics.median(ratios), "load_average": [min(v[2] for v in vals),
                                                                                   max(v[2] for v in vals)]}
    if way == "seeds":
      out[name][way]["num_seeds"] = num_seeds
  out["torch_rounds"] = torch_rounds
  return out


def _load_config(spec: str):
  import importlib.util  # pylint: disable=import-outside-toplevel

  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("bench_config", ROOT / path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg)


def _official(args, windows: str) -> tuple[dict, str]:
  """The official scripts' step times from the torch venv (subprocess), or ({}, why not)."""
  if not (pathlib.Path(args.torch_python).exists() and pathlib.Path(args.official_repo).exists()):
    return {}, "official PyTorch code not run (no torch venv or no fetched mirror)"
  with tempfile.TemporaryDirectory() as tmp:
    for f in ("spiral/train.py", "spiral/train_with_CBFs.py"):
      text = subprocess.run(["git", "--git-dir", args.official_repo, "show", f"HEAD:{f}"], check=True,
                            capture_output=True, text=True).stdout
      (pathlib.Path(tmp) / pathlib.Path(f).name).write_text(text)
    proc = subprocess.run([args.torch_python, __file__, "--worker", "torch", "--official-dir", tmp,
                           "--repeats", str(args.repeats), "--windows", windows], capture_output=True, text=True,
                          cwd=tmp, env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
  if proc.returncode:
    return {}, f"official PyTorch run failed: {proc.stderr.strip().splitlines()[-1:]}"
  commit = subprocess.run(["git", "--git-dir", args.official_repo, "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
  return {**json.loads(proc.stdout.strip().splitlines()[-1]), "official_commit": commit}, ""


def _windows_file(path: pathlib.Path, epochs: int) -> str:
  """The zoo's spiral windows and seed 0's batch orders of `epochs` epochs, for the torch worker."""
  sys.path.insert(0, str(ROOT))
  import zoo.data  # pylint: disable=import-outside-toplevel
  from train import trainer  # pylint: disable=import-outside-toplevel

  data = zoo.data.load("spiral", "train")
  n = len(data["y0"])
  orders = np.concatenate([trainer.batch_order(0, e, n, 20) for e in range(epochs)])
  np.savez(path, y=data["y"], t=data["t"][0] - data["t"][0, 0], orders=orders)
  return str(path)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--official-repo", default="/work/.mirror/Weixy21+InvarianceNODE/repo")
  parser.add_argument("--torch-python", default="/work/benchvenv/bin/python")
  parser.add_argument("--repeats", type=int, default=20, help="torch steps timed (RHS and QP rows: 5x)")
  parser.add_argument("--sections", default="rhs,train", help="rhs (sections 1-2), train (section 3); a section "
                      "not run keeps its figures from the existing JSON")
  parser.add_argument("--epochs", type=int, default=3, help="epochs of section 3 (the first holds the compilation)")
  parser.add_argument("--seeds", type=int, default=10, help="seeds side by side in section 3")
  parser.add_argument("--rounds", type=int, default=1, help="section 3: > 1 alternates the official steps and each "
                      "JAX way (epoch 1 from a fresh start) that many times; ratios per round, medians reported")
  parser.add_argument("--worker", default="")
  parser.add_argument("--official-dir", default="")
  parser.add_argument("--windows", default="")
  args = parser.parse_args()
  if args.worker == "torch":
    print(json.dumps(torch_worker(args.official_dir, args.repeats, args.windows)))
    return

  out = ROOT / "benchmarks" / "results"
  previous = out / "invariance_node_speed.json"
  result = json.loads(previous.read_text()) if previous.exists() else {"meta": {}, "jax": {}}
  sections = args.sections.split(",")
  meta = {"cpu_count": os.cpu_count(), "threads": 1, "repeats": args.repeats, "loadavg_start": os.getloadavg()[0],
          "command": " ".join(["python", "benchmarks/invariance_node_speed.py", *sys.argv[1:]]),
          "xla_flags": os.environ.get("XLA_FLAGS", "")}
  if "rhs" in sections:
    import jax  # pylint: disable=import-outside-toplevel
    result["jax"] = {**result.get("jax", {}), **jax_benchmarks(args.repeats)}
    result["jax"].pop("train_step", None)  # the per-batch step figures of earlier versions: see "trainer"
    result["meta_rhs"] = meta
  if "train" in sections:
    import jax  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory() as tmp:
      windows = _windows_file(pathlib.Path(tmp) / "windows.npz", max(args.epochs, 2))
      notes = []

      def official():
        times, note = _official(args, windows)
        notes.append(note)
        if not times:
          raise SystemExit(f"--rounds needs the official code: {note}")
        return times

      with jax.enable_x64(True):
        result["trainer"] = trainer_steps(args.epochs, args.seeds, args.rounds, official)
      rounds = result["trainer"].pop("torch_rounds", None)
      if rounds:
        result["torch"] = {**rounds[0], **{k: statistics.median(r[k] for r in rounds) for k in rounds[0]
                                            if k.endswith("_s")}, "rounds": rounds}
      else:
        result["torch"], note = _official(args, windows)
        notes.append(note)
      note = notes[-1]
    meta.update(torch_note=note, epochs=args.epochs, seeds=args.seeds, rounds=args.rounds)
    result["meta"] = meta
  meta["loadavg_end"] = os.getloadavg()[0]
  result.pop("train_step", None)

  out.mkdir(parents=True, exist_ok=True)
  previous.write_text(json.dumps(result, indent=2) + "\n")
  (out / "invariance_node_speed.md").write_text(markdown(result) + "\n")
  print(markdown(result))


def markdown(result: dict) -> str:
  j = result["jax"]
  lines = ["| right-hand side (1000 states, float64) | evaluations/s | vs plain |", "|---|---|---|"]
  base = j["rhs"]["plain"]["evals_per_s"]
  for k, v in j["rhs"].items():
    lines.append(f"| {k} | {v['evals_per_s']:.3g} | {v['evals_per_s'] / base:.2f}x |")
  lines += ["", "| CBF-QP alone (1000 real constraint sets) | QPs/s | speed-up | flagged infeasible | max |Δθ| (both "
            "unflagged) | max |Δθ|/(1+|θ|) | active |", "|---|---|---|---|---|---|---|"]
  for k, v in j["qp"].items():
    methods = [m for m in v if m not in ("max_abs_diff", "max_rel_diff", "active_fraction")]
    slow = v["qpax"]["qp_per_s"]
    for m in methods:
      lines.append(f"| {k}, {m} | {v[m]['qp_per_s']:.3g} | {v[m]['qp_per_s'] / slow:.1f}x vs qpax | "
                   f"{v[m]['flagged_infeasible']} | {v['max_abs_diff']:.1e} | {v['max_rel_diff']:.1e} | "
                   f"{v['active_fraction']:.0%} |")
  lines += ["", "| one training step (20 windows x 10, 1 thread), as `python -m train` runs it | CPU s per (seed-)step "
            "| vs official | first epoch CPU s (compile incl.) | load avg |", "|---|---|---|---|---|"]
  t, tr, meta = result.get("torch", {}), result.get("trainer", {}), result.get("meta", {})
  ways = (("step", "one jitted call per batch (default)"), ("scan", "`scan_epoch`: one scan per epoch"),
          ("seeds", "`num_seeds={S}` + `scan_epoch`, per seed-step"))
  for name, ref_key in (("neural-ode-spiral", "official_train_step_s"),
                        ("invariance-node-spiral", "official_cbf_train_step_s")):
    ref = t.get(ref_key)
    for way, label in ways:
      r = tr.get(name, {}).get(way)
      if r is None:
        continue
      label = label.format(S=r.get("num_seeds"))
      ratio = f"{ref / r['step_cpu_s']:.1f}x faster" if ref else "n/a"
      if "round_ratio" in r:  # interleaved rounds: each round's own ratio
        ratio = (f"{r['ratio_median']:.1f}x faster ({min(r['round_ratio']):.1f}–{max(r['round_ratio']):.1f} over "
                 f"{len(r['round_ratio'])} rounds)")
      lines.append(f"| JAX {name}, {label} | {r['step_cpu_s']:.5f} | {ratio} "
                   f"| {r['first_epoch_cpu_s']:.1f} | {r['load_average'][0]:.1f}–{r['load_average'][1]:.1f} |")
  if t:
    lines.append(f"| official spiral/train.py (torch {t['torch']}, torchdiffeq) | {t['official_train_step_s']:.5f} | 1x | "
                 f"| |")
    lines.append(f"| official spiral/train_with_CBFs.py (+ qpth CBF loss) | {t['official_cbf_train_step_s']:.5f} | 1x "
                 f"| | |")
  if meta.get("torch_note"):
    lines.append(f"\n{meta['torch_note']}")
  lines.append(f"\n`{meta.get('command', '')}` (XLA_FLAGS={meta.get('xla_flags', '')}). Single-threaded; process CPU "
               f"time (time.process_time). JAX: the trainer's functions on its batches (`batch_order`, 49 steps an "
               f"epoch), " + (f"{meta['rounds']} rounds, each timing the official steps and then every JAX way's "
               f"epoch 1 from a fresh start (epoch 0 untimed); the ratio is each round's, its median and range "
               f"shown; the times are medians over the rounds. " if meta.get("rounds", 1) > 1 else
               f"median epoch after the first of {meta.get('epochs', 3)}, divided by its (seed-)steps; ") +
               f"float64, Dopri5 rtol 1e-7 / atol 1e-9 (the training loss: `zoo.nn.dopri5.solve_windows`). "
               f"Official: median of {meta.get('repeats')} steps (CBF step: {max(3, meta.get('repeats', 20) // 2)}) on "
               f"the same zoo windows and seed 0's batch order (float32, as its tensors; commit "
               f"{t.get('official_commit', '?')[:12]}). The official CBF step is its training loop's body: the plain "
               f"neural-ODE loss plus the qpth CBF loss on the predictions; the invariant JAX step integrates the "
               f"filtered field (the QP in every RHS evaluation, differentiated): not the same computation. "
               f"Shared {meta.get('cpu_count')}-core CPU, 1-min load average {meta.get('loadavg_start', 0):.1f} at the "
               f"start and {meta.get('loadavg_end', 0):.1f} at the end (CPU time, not wall time, because other jobs "
               f"shared the cores; cache contention still inflates both sides).")
  rhs = result.get("meta_rhs")
  if rhs:
    lines.append(f"\nRHS and QP rows: `{rhs.get('command', '')}`, medians over {5 * rhs['repeats']} repeats, load "
                 f"average {rhs['loadavg_start']:.1f}–{rhs.get('loadavg_end', 0):.1f}.")
  return "\n".join(lines)


if __name__ == "__main__":
  main()
