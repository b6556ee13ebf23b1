"""Fault injection over checkpoints, the Hub client, `zoo ship`, the CLI and the trainer's config (issue 15).

    python benchmarks/faults.py            # ~2-4 min on 2 CPU cores; writes benchmarks/results/faults.{json,md}

Every trial runs in a sandbox (temporary HF cache, pins file, checkpoints folder; a local Hub-compatible server,
tests/hub_server.py, or raw sockets that stall or cut connections). Each trial's outcome is one of:
  typed    a `zoo.errors.ZooError` (what the zoo promises for every failure),
  ok       the call succeeded and the model equals the original (e.g. `.gitattributes` in a cache snapshot),
  hang     it did not return within the trial's bound,
  raw      any other exception (a traceback a user would see),
  wrong    it succeeded but the model (weights or kwargs) differs from the original: a silent wrong load.
`left` counts files left behind: temporary or `.old` folders beside a checkpoint, files written outside the
sandbox's checkpoints folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
SANDBOX = pathlib.Path(tempfile.mkdtemp(prefix="zoo-faults-"))
os.environ.update(HF_HOME=str(SANDBOX / "hf"), ZOO_PINS=str(SANDBOX / "pins.json"),
                  ZOO_LOCK_DIR=str(SANDBOX / "locks"), HF_ENDPOINT="http://127.0.0.1:9")
os.environ.pop("HF_HUB_OFFLINE", None)
shutil.copyfile(ROOT / "checkpoints" / "pins.json", SANDBOX / "pins.json")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import zoo  # noqa: E402
from zoo import checkpoint, cli, errors, hub  # noqa: E402
from tests import hub_server  # noqa: E402

SHIPPED = ROOT / "checkpoints" / "massnet-sir"
ORIGINAL, _ = checkpoint.restore(SHIPPED)
ORIGINAL_KWARGS = json.loads((SHIPPED / "manifest.json").read_text())["model_kwargs"]
ROWS: dict[str, dict[str, int]] = {}


def _leaves(model):
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model).to_pure_dict())]


def _same(model) -> bool:
  origin = zoo.provenance(model)
  kwargs_ok = origin is None or origin.kwargs == ORIGINAL_KWARGS
  a, b = _leaves(model), _leaves(ORIGINAL)
  return kwargs_ok and len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


def trial(cls: str, fn, *, bound: float = 20.0, expect_ok: bool = False) -> str:
  """Runs `fn` (returns a model, an exit code, or None) in a daemon thread bounded by `bound` seconds."""
  row = ROWS.setdefault(cls, dict(trials=0, typed=0, ok=0, hangs=0, raw=0, wrong=0, left=0))
  out: dict = {}

  def target():
    try:
      with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
        out["value"] = fn()
      out["stderr"] = err.getvalue()
    except BaseException as e:  # noqa: BLE001  # classified below
      out["error"] = e

  t = threading.Thread(target=target, daemon=True)
  t.start()
  t.join(bound)
  row["trials"] += 1
  if t.is_alive():
    kind = "hangs"
  elif "error" in out:
    kind = "typed" if isinstance(out["error"], errors.ZooError) else "raw"
  elif isinstance(out.get("value"), nnx.Module):
    kind = "ok" if _same(out["value"]) and expect_ok else ("wrong" if not _same(out["value"]) else "ok")
    if kind == "ok" and not expect_ok:
      kind = "ok"  # a harmless change (same weights and kwargs)
  elif isinstance(out.get("value"), int):  # a CLI exit code: non-zero with one line = typed
    code, err = out["value"], out.get("stderr", "")
    one_line = err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    kind = "typed" if code != 0 and one_line else ("ok" if code == 0 and expect_ok else "raw")
  else:
    kind = "ok" if expect_ok else "raw"
  row[kind] += 1
  if kind in ("raw", "wrong", "hangs"):
    detail = out.get("error")
    print(f"  [{cls}] {kind}: {detail.__class__.__name__ if detail else ''} {str(detail)[:200] if detail else ''}")
  return kind


def left_behind(cls: str, *folders: pathlib.Path) -> None:
  n = 0
  for folder in folders:
    if folder.is_dir():
      n += sum(1 for p in folder.iterdir() if ".tmp-" in p.name or p.name.endswith(".old"))
  ROWS[cls]["left"] += n


def fresh(name="x") -> pathlib.Path:
  d = pathlib.Path(tempfile.mkdtemp(dir=SANDBOX)) / "massnet-sir"
  shutil.copytree(SAVED, d)
  return d


def reseal(d: pathlib.Path, manifest: dict) -> None:
  (d / "manifest.json").write_text(checkpoint._manifest_text({k: v for k, v in manifest.items()
                                                              if k != checkpoint.SELF_KEY}))


# --- the classes ---------------------------------------------------------------------------------------


def byte_flips(n_manifest=60, n_state=20):
  """Unpinned local copies (local-dir:) with one flipped bit: in the manifest, and in each state file."""
  base = SAVED / "manifest.json"
  data = base.read_bytes()
  for i in np.linspace(0, len(data) - 1, n_manifest).astype(int):
    d = fresh()
    b = bytearray(data)
    b[i] ^= 0x01
    (d / "manifest.json").write_bytes(bytes(b))
    trial("1 bit flipped (unpinned manifest)", lambda d=d: zoo.load(f"local-dir:{d}"))
  files = [f for f in json.loads(data)["files"]][:n_state]
  for rel in files:
    d = fresh()
    b = bytearray((d / rel).read_bytes())
    b[len(b) // 2] ^= 0x01
    (d / rel).write_bytes(bytes(b))
    trial("1 bit flipped (state, card, config)", lambda d=d: zoo.load(f"local-dir:{d}"))


def edited_kwargs():
  """A digit changed in model_kwargs of an unpinned copy (legacy shipped format and sealed format)."""
  for src in (SHIPPED, SAVED):
    for key, value in (("hidden", 51), ("steps_per_block", 2), ("dim", 4), ("widths", [10, 10, 16])):
      d = fresh()
      shutil.rmtree(d)
      shutil.copytree(src, d)
      text = (d / "manifest.json").read_text()
      m = json.loads(text)
      if key == "widths":  # a digit of a list, as it is written (indented)
        new = text.replace("\n      15\n", "\n      16\n", 1)
      else:
        new = text.replace(f'"{key}": {json.dumps(m["model_kwargs"][key])}', f'"{key}": {json.dumps(value)}', 1)
      assert new != text
      (d / "manifest.json").write_text(new)
      trial("edited model_kwargs (unpinned)", lambda d=d: zoo.load(f"local-dir:{d}"))


def malformed():
  def deep(m):
    v = {}
    for _ in range(300):
      v = {"x": v}
    m["config"] = v

  mutations = [
      lambda m: m.__setitem__("files", []), lambda m: m.__setitem__("files", {"state/x": 3}),
      lambda m: m.__setitem__("files", {"../../etc/passwd": "0" * 64}), lambda m: m.__setitem__("name", 7),
      lambda m: m.pop("model_kwargs"), lambda m: m.pop("files"), lambda m: m.pop("name"),
      lambda m: m.__setitem__("model_kwargs", [1]), lambda m: m.__setitem__("checks", [{"name": "x"}]),
      lambda m: m.__setitem__("checks", "ok"), lambda m: m.__setitem__("metrics", {"a": [1]}),
      lambda m: m.__setitem__("plots", ["../x"]), lambda m: m.__setitem__("input_shape", ["3"]), deep,
      lambda m: m.__setitem__("family", "resnet"), lambda m: m.__setitem__("name", "no-such-model"),
      lambda m: m["model_kwargs"].__setitem__("steps_per_block", 1e6),
      lambda m: m["model_kwargs"].__setitem__("steps_per_block", 10**6),
      lambda m: m["model_kwargs"].__setitem__("hidden", "50"),
      lambda m: m["model_kwargs"].__setitem__("nope", 1), lambda m: m["model_kwargs"].__setitem__("dim", 0),
      lambda m: m["model_kwargs"].__setitem__("widths", []), lambda m: m.__setitem__("format", 1),
  ]
  for mutate in mutations:
    d = fresh()
    m = json.loads((d / "manifest.json").read_text())
    mutate(m)
    reseal(d, m)
    trial("malformed manifest (re-sealed)", lambda d=d: zoo.load(f"local-dir:{d}"))
  for text in ("[1]", "null", "{", "[" * 100_000 + "]" * 100_000, "\udcff"):
    d = fresh()
    (d / "manifest.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    trial("malformed manifest (not JSON object)", lambda d=d: zoo.load(f"local-dir:{d}"))


def hostile_dirs():
  def loop(d):
    os.symlink(".", d / "a")
    os.symlink(".", d / "b")

  def listed(kind):
    def make(d):
      target = d / "state" / "extra"
      if kind == "fifo":
        os.mkfifo(target)
      elif kind == "zero":
        os.symlink("/dev/zero", target)
      else:
        (SANDBOX / "secret").write_text("outside")
        os.symlink(SANDBOX / "secret", target)
      m = json.loads((d / "manifest.json").read_text())
      m["files"]["state/extra"] = "0" * 64
      reseal(d, m)
    return make

  def huge(d):
    os.environ["ZOO_MAX_FILE_BYTES"] = "1000"

  for make in (loop, listed("fifo"), listed("zero"), listed("outside"), huge,
               lambda d: (d / "extra.bin").write_text("x"), lambda d: os.symlink("/etc/passwd", d / "passwd")):
    d = fresh()
    make(d)
    trial("hostile local directory", lambda d=d: zoo.load(f"local-dir:{d}"), bound=15)
    os.environ.pop("ZOO_MAX_FILE_BYTES", None)


@contextlib.contextmanager
def raw_server(cut: bool):
  sock = socket.socket()
  sock.bind(("127.0.0.1", 0))
  sock.listen(64)
  stop, held = threading.Event(), []

  def serve():
    sock.settimeout(0.1)
    while not stop.is_set():
      try:
        conn, _ = sock.accept()
      except OSError:
        continue
      if cut:
        with contextlib.suppress(OSError):
          conn.recv(65536)
        conn.close()
      else:
        held.append(conn)

  threading.Thread(target=serve, daemon=True).start()
  try:
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
  finally:
    stop.set()
    for c in held:
      c.close()
    sock.close()


def network():
  os.environ["ZOO_CHECKPOINTS"] = str(SANDBOX / "no-checkpoints")
  os.environ["ZOO_HUB_TIMEOUT"] = "3"
  try:
    with hub_server.serve(SANDBOX / "hub") as server:
      os.environ["HF_ENDPOINT"] = server.url
      zoo.push_to_hub(SHIPPED, repo_id="nnx-zoo/massnet-sir")
      from huggingface_hub import hf_hub_download
      trial("Hub: cold load", lambda: zoo.load("massnet-sir"), expect_ok=True)
      hf_hub_download("nnx-zoo/massnet-sir", ".gitattributes", endpoint=server.url,
                      cache_dir=SANDBOX / "hf" / "hub")
      trial("Hub: .gitattributes in the cache", lambda: zoo.load("massnet-sir"), expect_ok=True)
      os.environ["HF_HOME"] = str(SANDBOX / "hf2")
      for status in (500, 502, 503, 429):
        server.fail("resolve", status, times=100)
        trial("Hub: server errors (5xx/429), 3 s deadline", lambda: zoo.load("massnet-sir"), bound=10)
        server._faults.clear()
      server.tamper("nnx-zoo/massnet-sir", "config.json")
      trial("Hub: tampered file", lambda: zoo.load("massnet-sir"))
      for repo in ("bad id", "../x", "a/b/c", "x/..", ""):
        trial("Hub: odd repo ids", lambda repo=repo: zoo.load(f"hf://{repo}"))
        trial("Hub: odd repo ids", lambda repo=repo: zoo.push_to_hub(SHIPPED, repo_id=repo))
    with hub_server.serve(SANDBOX / "hub-auth", require_token=True) as server:
      os.environ["HF_ENDPOINT"] = server.url
      trial("Hub: auth refused (401)", lambda: zoo.push_to_hub(SHIPPED, repo_id="me/x"))
    os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
    for _ in range(3):
      os.environ["HF_HOME"] = str(pathlib.Path(tempfile.mkdtemp(dir=SANDBOX)))
      trial("Hub: no network (typed within 5 s)", lambda: zoo.load("massnet-sir"), bound=5)
      trial("Hub: no network (typed within 5 s)", lambda: zoo.push_to_hub(SHIPPED, repo_id="me/x"), bound=5)
    for cut in (False, True):
      with raw_server(cut) as url:
        os.environ["HF_ENDPOINT"] = url
        for _ in range(2):
          os.environ["HF_HOME"] = str(pathlib.Path(tempfile.mkdtemp(dir=SANDBOX)))
          name = "Hub: connection cut" if cut else "Hub: stalled server, 3 s deadline"
          trial(name, lambda: zoo.load("hf://me/stalled"), bound=10)
          trial(name, lambda: zoo.push_to_hub(SHIPPED, repo_id="me/stalled"), bound=10)
  finally:
    for k in ("ZOO_CHECKPOINTS", "ZOO_HUB_TIMEOUT"):
      os.environ.pop(k, None)
    os.environ.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(SANDBOX / "hf"))


def cli_errors():
  afile = SANDBOX / "afile"
  afile.write_text("x")
  binary = SANDBOX / "t.bin"
  binary.write_bytes(bytes(range(256)))
  export = fresh()
  for argv in (["verify", "hf:/typo"], ["download", "bad id"], ["push", "massnet-sir", "--repo-id", "bad id"],
               ["run", "massnet-sir", "--out", str(afile)], ["cards", "--output", str(SANDBOX / "no" / "x.md")],
               ["ship", str(export), "--section", f"T={binary}"], ["ship", str(afile)], ["info", "MASSNET-SIR"],
               ["verify", f"local-dir:{SANDBOX / 'nothing'}"], ["download", "../x"], ["verify", "hf://a/b@"],
               ["push", str(afile), "--repo-id", "me/x"]):
    trial("CLI user errors (one line, exit != 0)", lambda argv=argv: cli.main(argv))
  garbage = SANDBOX / "garbage-ckpts" / "massnet-sir"
  garbage.mkdir(parents=True)
  (garbage / "manifest.json").write_text("{nope")
  os.environ["ZOO_CHECKPOINTS"] = str(garbage.parent)
  trial("CLI user errors (one line, exit != 0)", lambda: cli.main(["info", "massnet-sir"]))
  os.environ.pop("ZOO_CHECKPOINTS")


def ship_names():
  ckpts = SANDBOX / "ship" / "checkpoints"
  os.environ["ZOO_CHECKPOINTS"] = str(ckpts)
  for name in ("../evil", "/tmp/zoo-faults-evil", "../../x", "Massnet-SIR", "a/b", ".hidden", ""):
    d = fresh()
    m = json.loads((d / "manifest.json").read_text())
    m["name"] = name
    reseal(d, m)
    before = {p for p in (SANDBOX / "ship").rglob("*")} if (SANDBOX / "ship").exists() else set()
    trial("ship: hostile names", lambda d=d: hub.ship(d))
    after = {p for p in (SANDBOX / "ship").rglob("*")} if (SANDBOX / "ship").exists() else set()
    ROWS["ship: hostile names"]["left"] += len(after - before) + pathlib.Path("/tmp/zoo-faults-evil").exists()
  os.environ.pop("ZOO_CHECKPOINTS")


def trainer_configs():
  from train import trainer
  from zoo import training

  def config(**changes):
    return training.override(training.shrink(training.base_config(model="massnet-sir", dataset="sir")), changes)

  for change in ({"optimizer.lr": float("nan")}, {"optimizer.lr": 1e6}, {"optimizer.lr": -1.0}, {"epochs": 0},
                 {"epochs": -3}, {"batch_size": 0}, {"best_mode": "up"}, {"optimizer.name": "nope"},
                 {"optimizer.schedule": "x"}, {"checkpoint_every_steps": 0}, {"seed": -1}):
    trial("trainer: bad configs", lambda change=change: trainer.train_and_evaluate(config(**change),
                                                                                  SANDBOX / "run"))
  c = config()
  c.model_overrides.steps_per_block = 10**6
  trial("trainer: bad configs", lambda: trainer.train_and_evaluate(c, SANDBOX / "run"))
  afile = SANDBOX / "wfile"
  afile.write_text("x")
  trial("trainer: bad configs", lambda: trainer.train_and_evaluate(config(), afile))
  ROWS["trainer: bad configs"]["left"] += int((SANDBOX / "run").exists())


def concurrency(rounds=3):
  """2 shippers (--replace) + 2 loaders (by name and local-dir:) in separate processes, `rounds` each."""
  ckpts = SANDBOX / "conc" / "checkpoints"
  env = {**os.environ, "ZOO_CHECKPOINTS": str(ckpts), "PYTHONPATH": str(ROOT)}
  export = fresh()
  subprocess.run([sys.executable, "-c", f"from zoo import hub; hub.ship({str(export)!r})"], cwd=ROOT, env=env,
                 check=True, capture_output=True)
  ship = f"from zoo import hub\nfor _ in range({rounds}): hub.ship({str(export)!r}, replace=True)\n"
  load = (f"import zoo\nfor _ in range({rounds}):\n  zoo.load('massnet-sir')\n"
          f"  zoo.load('local-dir:{ckpts / 'massnet-sir'}')\n")
  procs = [subprocess.Popen([sys.executable, "-c", c], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
           for c in (ship, ship, load, load)]
  for p in procs:
    row = ROWS.setdefault("concurrency: 2 shippers + 2 loaders", dict(trials=0, typed=0, ok=0, hangs=0, raw=0,
                                                                      wrong=0, left=0))
    row["trials"] += 1
    try:
      _, err = p.communicate(timeout=600)
    except subprocess.TimeoutExpired:
      p.kill()
      row["hangs"] += 1
      continue
    if p.returncode == 0:
      row["ok"] += 1
    else:
      row["typed" if "zoo.errors" in err.splitlines()[-1] else "raw"] += 1
      print("  [concurrency]", err.splitlines()[-1][:300])


def main() -> None:
  global SAVED
  start = time.perf_counter()
  SAVED = checkpoint.save(ORIGINAL, SANDBOX / "saved" / "massnet-sir", name="massnet-sir",
                          model_kwargs=ORIGINAL_KWARGS)
  for step in (byte_flips, edited_kwargs, malformed, hostile_dirs, network, cli_errors, ship_names,
               trainer_configs, concurrency):
    t = time.perf_counter()
    before = set(ROWS)
    step()
    stray = sum(1 for p in SANDBOX.rglob("*") if ".tmp-" in p.name or p.name.endswith(".old"))
    for cls in set(ROWS) - before:  # temporary folders anywhere in the sandbox, charged to this step's classes
      ROWS[cls]["left"] += stray
    print(f"{step.__name__}: {time.perf_counter() - t:.1f} s", flush=True)
  total = {k: sum(r[k] for r in ROWS.values()) for k in ("trials", "typed", "ok", "hangs", "raw", "wrong", "left")}
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / "faults.json").write_text(json.dumps(
      {"classes": ROWS, "total": total, "seconds": round(time.perf_counter() - start, 1),
       "columns": {"trials": "attempts", "typed": "zoo.errors.ZooError raised (CLI: one line, exit != 0)",
                   "ok": "succeeded with the original model (a harmless or legitimate input)",
                   "hangs": "did not return in the trial's bound", "raw": "any other exception",
                   "wrong": "succeeded with a different model (silent wrong load)",
                   "left": "temporary/.old folders or files outside the sandbox left behind"}},
      indent=2) + "\n")
  lines = ["# Fault injection (issue 15)", "",
           "`python benchmarks/faults.py`: every class of fault, its trials, and how each ended. The last four "
           "columns must be zero.", "",
           "| class | trials | typed errors | correct loads | hangs | raw exceptions | silent wrong loads | "
           "files left behind |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for cls, r in list(ROWS.items()) + [("**total**", total)]:
    lines.append(f"| {cls} | {r['trials']} | {r['typed']} | {r['ok']} | {r['hangs']} | {r['raw']} | {r['wrong']} | "
                 f"{r['left']} |")
  (RESULTS / "faults.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))
  shutil.rmtree(SANDBOX, ignore_errors=True)
  os._exit(0 if total["hangs"] == total["raw"] == total["wrong"] == total["left"] == 0 else 1)


if __name__ == "__main__":
  main()
