r"""Speed of the CBF invariance layer: right-hand-side evaluations, QP solvers, one training step vs PyTorch.

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python benchmarks/invariance_node_speed.py \
        [--official-repo /work/.mirror/Weixy21+InvarianceNODE/repo] [--torch-python /work/benchvenv2/bin/python]

1. RHS evaluations per second of the spiral neural ODE on a batch of 1000 states (jit + vmap, float64): plain,
   with the CBF layer for 1 obstacle (closed form, qpax), 2 and 3 obstacles (exact active set, qpax).
2. The CBF-QP alone on 1000 real constraint sets (from the model at random states): 3 obstacles with qpax vs
   the exact active-set enumeration ("closed form" of small QPs), 1 obstacle with qpax vs the half-space
   projection.
3. One training step (20 windows of 10 samples, dopri5 rtol 1e-7 / atol 1e-9, L1, RMSprop) in JAX — baseline,
   and invariant (the CBF-QP inside every RHS evaluation, differentiated) — vs the official PyTorch code run
   from its own files in a separate venv (torch + qpth + torchdiffeq + cvxopt; never part of this project):
   spiral/train.py (plain neural ODE) and spiral/train_with_CBFs.py (neural ODE loss plus the qpth CBF loss).
   The official repository is read from a `fetch`ed bare mirror; nothing of it is copied into the project.
All timings single-threaded (XLA_FLAGS above, torch.set_num_threads(1)); medians of process CPU time. Writes
benchmarks/results/invariance_node_speed.json and invariance_node_speed.md.
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


def torch_worker(official_dir: str, repeats: int) -> dict:
  """Runs in the torch venv: imports the official scripts (defaults: batch 20 x 10) and times one step each."""
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
  torch.manual_seed(0)
  func = plain.ODEFunc()
  opt = torch.optim.RMSprop(func.parameters(), lr=1e-3)

  def step_plain():
    opt.zero_grad()
    y0, t, y = plain.get_batch()
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
    y0, t, y = cbf.get_batch()
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

    # 3. one training step (as the trainer: nnx.jit(value_and_grad(loss)) + RMSprop update)
    data = zoo.data.load("spiral", "train")
    steps = {}
    for name in ("neural-ode-spiral", "invariance-node-spiral"):
      m = zoo.create(name, seed=0)
      opt = nnx.Optimizer(m, optax.rmsprop(1e-3, decay=0.99, eps=1e-8, eps_in_sqrt=False), wrt=nnx.Param)

      step = make_train_step(inode.loss)

      batches = [{k: jnp.asarray(v[idx]) for k, v in data.items()}
                 for idx in rng.permutation(len(data["y0"]))[:20 * 40].reshape(40, 20)]
      it = iter(batches * 10)
      t0 = time.perf_counter()
      step(opt, m, next(it))[0].block_until_ready()
      compile_s = time.perf_counter() - t0
      t = _median_time(lambda: step(opt, m, next(it))[0].block_until_ready(), repeats)
      steps[name] = {"train_step_s": t, "first_step_incl_compile_s": compile_s}
    out["train_step"] = steps
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--official-repo", default="/work/.mirror/Weixy21+InvarianceNODE/repo")
  parser.add_argument("--torch-python", default="/work/benchvenv2/bin/python")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--worker", default="")
  parser.add_argument("--official-dir", default="")
  args = parser.parse_args()
  if args.worker == "torch":
    print(json.dumps(torch_worker(args.official_dir, args.repeats)))
    return

  result = {"meta": {"cpu_count": os.cpu_count(), "threads": 1, "repeats": args.repeats,
                     "loadavg_start": os.getloadavg()[0]}}  # a shared machine: say how busy it was
  result["jax"] = jax_benchmarks(args.repeats)
  print(json.dumps(result["jax"], indent=1))
  torch_note = ""
  if pathlib.Path(args.torch_python).exists() and pathlib.Path(args.official_repo).exists():
    with tempfile.TemporaryDirectory() as tmp:
      for f in ("spiral/train.py", "spiral/train_with_CBFs.py"):
        text = subprocess.run(["git", "--git-dir", args.official_repo, "show", f"HEAD:{f}"], check=True,
                              capture_output=True, text=True).stdout
        (pathlib.Path(tmp) / pathlib.Path(f).name).write_text(text)
      proc = subprocess.run([args.torch_python, __file__, "--worker", "torch", "--official-dir", tmp,
                             "--repeats", str(args.repeats)], capture_output=True, text=True, cwd=tmp,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    if proc.returncode == 0:
      result["torch"] = json.loads(proc.stdout.strip().splitlines()[-1])
    else:
      torch_note = f"official PyTorch run failed: {proc.stderr.strip().splitlines()[-1:]}"
  else:
    torch_note = "official PyTorch code not run (no torch venv or no fetched mirror)"
  result["meta"]["torch_note"] = torch_note
  result["meta"]["loadavg_end"] = os.getloadavg()[0]

  out = ROOT / "benchmarks" / "results"
  out.mkdir(parents=True, exist_ok=True)
  (out / "invariance_node_speed.json").write_text(json.dumps(result, indent=2) + "\n")
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
  lines += ["", "| one training step (20 windows x 10, 1 thread) | seconds | vs official |", "|---|---|---|"]
  t = result.get("torch", {})
  rows = [("JAX neural-ode-spiral", j["train_step"]["neural-ode-spiral"]["train_step_s"], t.get("official_train_step_s")),
          ("JAX invariance-node-spiral (QP in every RHS, differentiated)",
           j["train_step"]["invariance-node-spiral"]["train_step_s"], t.get("official_cbf_train_step_s"))]
  for label, s, ref in rows:
    lines.append(f"| {label} | {s:.4f} | {f'{ref / s:.1f}x faster' if ref else 'n/a'} |")
  if t:
    lines.append(f"| official spiral/train.py (torch {t['torch']}, torchdiffeq) | {t['official_train_step_s']:.4f} | 1x |")
    lines.append(f"| official spiral/train_with_CBFs.py (+ qpth CBF loss) | {t['official_cbf_train_step_s']:.4f} | 1x |")
  if torch_note:
    lines.append(f"\n{torch_note}")
  meta = result["meta"]
  lines.append(f"\nSingle-threaded; medians of process CPU time (time.process_time) over {meta['repeats']} repeats (RHS "
               f"and QP rows: {5 * meta['repeats']}) on a shared {meta['cpu_count']}-core CPU whose 1-min load average "
               f"was {meta['loadavg_start']:.1f} at the start and {meta['loadavg_end']:.1f} at the end (CPU time, not "
               f"wall time, because other jobs shared the cores; cache contention still inflates both sides).")
  (out / "invariance_node_speed.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
