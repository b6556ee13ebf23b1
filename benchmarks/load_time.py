r"""zoo.load warm time vs a bare orbax restore of the same state; cold load from a local Hub.

    python benchmarks/load_time.py [--models massnet-sir,...] [--repeats 20]

Warm: the checkpoint is on local disk (the embedded copy) and everything is imported and compiled once.
"bare orbax" is what a user would write without the zoo: nnx.eval_shape -> nnx.split -> StandardCheckpointer
restore -> nnx.merge. zoo.load adds the sha256 check of every file and the tree/shape comparison.
Cold Hub: a fresh HF cache and a Hub-compatible server on 127.0.0.1 (tests/hub_server.py): zoo.load downloads
the manifest and the files it lists. Goal: warm zoo.load <= 1.5x bare orbax. Writes
benchmarks/results/load_time.json and load_time.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _median_time(fn, repeats: int) -> float:
  fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="")
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()

  import orbax.checkpoint as ocp
  from flax import nnx

  import zoo
  from zoo import checkpoint, hub, registry
  from tests import hub_server

  names = args.models.split(",") if args.models else [
      n for n in zoo.list_models() if (hub.checkpoints_dir() / n / "manifest.json").is_file()]
  rows = []
  for name in names:
    spec = registry.get_spec(name)
    directory = hub.checkpoints_dir() / name
    manifest = checkpoint.read_manifest(directory)

    def bare():
      with spec.family.precision():
        abstract = nnx.eval_shape(lambda: spec.family.module(**manifest["model_kwargs"], rngs=nnx.Rngs(0)))
        graphdef, state = nnx.split(abstract)
        target = checkpoint._storable_target(state.to_pure_dict())
        with ocp.StandardCheckpointer() as ckptr:
          restored = ckptr.restore(directory / "state", target)
        nnx.replace_by_pure_dict(state, checkpoint._from_storable(restored, state.to_pure_dict()))
        return nnx.merge(graphdef, state)

    t_bare = _median_time(bare, args.repeats)
    t_zoo = _median_time(lambda: zoo.load(name), args.repeats)

    with tempfile.TemporaryDirectory() as tmp:
      tmp = pathlib.Path(tmp)
      with hub_server.serve(tmp / "hub") as server:
        os.environ["HF_ENDPOINT"] = server.url
        os.environ["ZOO_CHECKPOINTS"] = str(tmp / "none")
        repo = spec.pretrained.repo_id if spec.pretrained else f"bench/{name}"
        zoo.push_to_hub(directory, repo_id=repo)
        colds = []
        for i in range(3):
          os.environ["HF_HOME"] = str(tmp / f"hf{i}")
          t = time.perf_counter()
          zoo.load(name if spec.pretrained else f"hf://{repo}")
          colds.append(time.perf_counter() - t)
        os.environ.pop("ZOO_CHECKPOINTS")
      files = len(manifest["files"]) + 1
      size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    rows.append({"model": name, "files": files, "bytes": size, "bare_orbax_s": t_bare, "zoo_load_warm_s": t_zoo,
                 "ratio": t_zoo / t_bare, "cold_hub_s": statistics.median(colds)})
    print(json.dumps(rows[-1]))

  out = ROOT / "benchmarks" / "results"
  out.mkdir(parents=True, exist_ok=True)
  meta = {"repeats": args.repeats, "cpu_count": os.cpu_count(), "versions": checkpoint.versions()}
  (out / "load_time.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
  lines = ["| model | files | KiB | bare orbax (ms) | zoo.load warm (ms) | ratio | cold from local Hub (ms) |",
           "|---|---|---|---|---|---|---|"]
  lines += [f"| {r['model']} | {r['files']} | {r['bytes'] / 1024:.0f} | {1e3 * r['bare_orbax_s']:.1f} | "
            f"{1e3 * r['zoo_load_warm_s']:.1f} | {r['ratio']:.2f} | {1e3 * r['cold_hub_s']:.0f} |" for r in rows]
  (out / "load_time.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
