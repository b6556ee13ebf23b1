"""The `zoo` command line.

    zoo list ['elcd-*'] [--family F] [--tag T] [--pretrained]   zoo info NAME [--json]
    zoo verify NAME|hf://ORG/REPO@REV|local-dir:PATH                zoo run NAME [--out DIR]
    zoo download ORG/REPO [--revision REV]                          zoo push NAME|DIR --repo-id ORG/NAME
    zoo export NAME --format safetensors [--out DIR]                zoo cards [--check]
    zoo ship WORKDIR/export [--section TITLE=FILE.md] [--replace]
    zoo train --config configs/FAMILY.py:VARIANT --workdir DIR      (python -m train, from a clone of the repo)

Errors print one line and exit non-zero (2: a zoo error, 3: unexpected); `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import subprocess
import sys
from typing import Iterator

from zoo import errors


class UsageError(errors.ZooError):
  """A command-line argument that cannot work (the message says which and why)."""


def _table(rows: list[list[str]], header: list[str]) -> str:
  """A plain-text table with a header row and a rule under it."""
  widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
  line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
  return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _cmd_list(args) -> int:
  from zoo import registry  # pylint: disable=import-outside-toplevel

  index = registry.index()  # the cached index: no model code imported
  records = [registry.with_pin(index[n]) for n in registry.list_models(args.pattern, pretrained=args.pretrained)]
  if args.family:
    records = [r for r in records if r["family"] == args.family]
  for tag in args.tag:
    records = [r for r in records if tag in r["tags"]]
  if not records:
    families = sorted({r["family"] for r in index.values()})
    print(f"no model matches {args.pattern!r}" + (f" in family {args.family!r}" if args.family else "")
          + (f" with tags {args.tag}" if args.tag else "") + f" (families: {', '.join(families)})", file=sys.stderr)
    return 1
  if args.json:
    print(json.dumps(records, indent=2, ensure_ascii=False))
    return 0
  rows = [[r["name"], r["family"], r["dataset"], "yes" if r["pretrained"] else "-", ", ".join(r["tags"])]
          for r in records]
  print(_table(rows, ["name", "family", "dataset", "pretrained", "tags"]))
  return 0


def _wrap(text: str, indent: int = 2, width: int = 100) -> str:
  import textwrap  # pylint: disable=import-outside-toplevel

  paragraphs = [" ".join(p.split()) for p in str(text).split("\n\n") if p.strip()]
  return "\n\n".join(textwrap.fill(p, width, initial_indent=" " * indent, subsequent_indent=" " * indent)
                     for p in paragraphs)


def _num(v) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def format_info(out: dict) -> str:
  """`zoo info NAME` for people: the spec, the guarantee, the embedded checkpoint's checks and metrics."""
  from zoo import cards  # pylint: disable=import-outside-toplevel

  shape = tuple(out["input_shape"])
  kwargs = " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in out["model_kwargs"].items())
  params = f", {out['num_params']:,} parameters" if out.get("num_params") else ""
  lines = [f"{out['name']}  (family {out['family']}{params})", _wrap(out["description"]), ""]
  facts = [("input", f"one example {shape}; call on (batch, {', '.join(map(str, shape))})"),
           ("dataset", out["dataset"]), ("tags", ", ".join(out["tags"])), ("license", out["license"]),
           ("pretrained", f"{out['pretrained']} (manifest sha256 {out['manifest_sha256'][:12]}...)"
            if out.get("pretrained") else "none yet (zoo.create only)"),
           ("embedded", out.get("embedded") or "not in this installation (fetched from the Hub on zoo.load)"),
           ("arguments", kwargs), ("float64", "yes" if out.get("float64") else "no")]
  lines += [f"  {k:<11} {v}" for k, v in facts]
  lines += ["", "guarantee", _wrap(out["guarantee"]), ""]
  if out.get("checks"):
    lines.append("checks measured on the embedded weights (zoo verify re-runs them)")
    for c in out["checks"]:
      lines.append(f"  {'pass' if c['passed'] else 'FAIL'}  {c['name']}: {_num(c['value'])} (bound {_num(c['bound'])})")
    lines.append("")
  if out.get("metrics"):
    evals, size, book = cards.split_metrics(out["metrics"])
    lines.append(f"metrics on the {out.get('eval_split') or 'test'} split of {out['dataset']}")
    width = max(map(len, evals), default=0)
    lines += [f"  {k:<{width}}  {_num(v)}" for k, v in evals.items()]
    if size:
      lines.append("  size: " + ", ".join(f"{k} {_num(v)}" for k, v in size.items()))
    if book:
      lines.append("  training: " + ", ".join(f"{k} {_num(v)}" for k, v in book.items()))
    lines.append("")
  lines += ["paper", _wrap(out["paper"]), ""]
  if out.get("deviations"):
    lines += ["deviations from the paper", _wrap(out["deviations"]), ""]
  lines.append(f"more: zoo verify {out['name']} | zoo run {out['name']} | zoo info {out['name']} --json")
  return "\n".join(lines)


def _cmd_info(args) -> int:
  import zoo  # pylint: disable=import-outside-toplevel
  from zoo import cache  # pylint: disable=import-outside-toplevel

  try:
    out = zoo.info(args.name)
  except (ValueError, UnicodeDecodeError, AttributeError, TypeError) as e:
    if isinstance(e, errors.ZooError):
      raise
    raise errors.CheckpointCorruptError(
        f"the embedded manifest of {args.name} ({cache.checkpoints_dir() / args.name}) cannot be read "
        f"({e.__class__.__name__}); restore it with git checkout -- checkpoints/{args.name}.") from e
  print(json.dumps(out, indent=2, default=str, ensure_ascii=False) if args.json else format_info(out))
  return 0


PROGRESS_DELAY = 1.0  # seconds a step runs before it is announced (quick steps and instant errors stay silent)


@contextlib.contextmanager
def progress(what: str, stream=None, every: float | None = None, delay: float | None = None) -> Iterator[None]:
  """Says `what ...` once the step has run `delay` seconds (default PROGRESS_DELAY), then how long it has been
  running (in place on a terminal, a line every `every` seconds (default 10) elsewhere), and `what: done in N s`
  at the end. For steps that may take more than a few seconds; a failure prints nothing more (the error follows)."""
  import threading  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel

  stream = stream or sys.stderr
  tty = hasattr(stream, "isatty") and stream.isatty()
  every = every if every is not None else (1.0 if tty else 10.0)
  delay = PROGRESS_DELAY if delay is None else delay
  start, stop, shown = time.perf_counter(), threading.Event(), threading.Event()

  def tick() -> None:
    if stop.wait(delay):
      return
    print(f"{what} ...", end="" if tty else "\n", file=stream, flush=True)
    shown.set()
    while not stop.wait(every):
      elapsed = time.perf_counter() - start
      print(f"\r{what} ... {elapsed:.0f} s" if tty else f"  {what}: {elapsed:.0f} s so far", end="" if tty else "\n",
            file=stream, flush=True)

  thread = threading.Thread(target=tick, daemon=True)
  thread.start()
  ok = False
  try:
    yield
    ok = True
  finally:
    stop.set()
    thread.join()
    if shown.is_set():
      if ok:
        print(f"{chr(13) if tty else ''}{what}: done in {time.perf_counter() - start:.1f} s", file=stream, flush=True)
      elif tty:
        print(file=stream, flush=True)


def _load(source: str):
  import zoo  # pylint: disable=import-outside-toplevel

  with progress(f"loading {source}"):
    model = zoo.load(source)
  return model, zoo.provenance(model).name


def _check_line(c) -> str:
  detail = f"  [{c.detail}]" if getattr(c, "detail", "") else ""
  return f"  {'pass' if c.passed else 'FAIL'}  {c.name}: {_num(float(c.value))} (bound {_num(float(c.bound))}){detail}"


def _cmd_verify(args) -> int:
  import zoo  # pylint: disable=import-outside-toplevel

  model, name = _load(args.source)
  print(f"{name}: {zoo.get_spec(name).guarantee}")
  with progress(f"checking the guarantee of {name} on its weights (the first call compiles)"):
    checks = zoo.verify(model, name)
  guaranteed = [c for c in checks if c.kind != "measured"]
  measured = [c for c in checks if c.kind == "measured"]
  for c in guaranteed:
    print(_check_line(c))
  if measured:
    print("measured by running the model (statistics against stated bounds, not guarantees):")
    for c in measured:
      print(_check_line(c).replace("  FAIL  ", "  MISS  ", 1))
  ok = all(c.passed for c in guaranteed)
  print(("verified" if ok else "GUARANTEE VIOLATED")
        + (f"; measured: {sum(c.passed for c in measured)} of {len(measured)} within their bounds" if measured else ""))
  return 0 if ok else 1


def _cmd_run(args) -> int:
  import zoo  # pylint: disable=import-outside-toplevel
  import zoo.data  # pylint: disable=import-outside-toplevel

  if args.out and pathlib.Path(args.out).exists() and not pathlib.Path(args.out).is_dir():
    raise UsageError(f"--out {args.out} is an existing file; give a directory (it is created if missing).")
  model, name = _load(args.name)
  spec = zoo.get_spec(name)
  out = pathlib.Path(args.out or f"zoo-run/{name}")
  out.mkdir(parents=True, exist_ok=True)
  print(f"{name} ({spec.family.name}): {spec.description}")
  with spec.family.precision():
    if spec.family.demo is not None:
      with progress(f"running the {spec.family.name} demo on {spec.dataset} (the first call compiles)"):
        text = spec.family.demo(model, out, spec.dataset)
      print(text)
    else:
      with progress(f"loading the {spec.dataset} test split"):
        data = zoo.data.load(spec.dataset, "test")
      with progress(f"evaluating {name} on it (the first call compiles)"):
        metrics = spec.family.evaluate(model, data)
      print("test metrics: " + ", ".join(f"{k} = {v:.4g}" for k, v in metrics.items()))
      if spec.family.plot:
        with progress("plotting"):
          plots = spec.family.plot(model, data, out)
        for p in plots:
          print(f"plot: {p}")
  return 0


def _cmd_download(args) -> int:
  from zoo import hub  # pylint: disable=import-outside-toplevel

  print(hub.download(args.repo_id, args.revision))
  return 0


def _cmd_push(args) -> int:
  from zoo import hub  # pylint: disable=import-outside-toplevel

  hub.validate_repo_id(args.repo_id, "--repo-id")
  source = args.source
  if not pathlib.Path(source).is_dir():
    source, _, _ = hub.resolve(source)
  print(hub.push_to_hub(source, repo_id=args.repo_id, revision=args.revision, private=args.private))
  return 0


def _cmd_ship(args) -> int:
  from zoo import hub, pins  # pylint: disable=import-outside-toplevel

  sections = {}
  for item in args.section:
    title, sep, file = item.partition("=")
    if not sep or not title.strip() or not pathlib.Path(file).is_file():
      raise UsageError(f"--section takes TITLE=FILE.md with an existing file; got {item!r}.")
    try:
      text = pathlib.Path(file).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
      raise UsageError(f"--section {item!r}: {file} is not UTF-8 text (a markdown file is).") from e
    if text.startswith("# "):  # the file's own title: the section's title replaces it
      text = text.split("\n", 1)[1] if "\n" in text else ""
    sections[title] = text.replace("\n## ", "\n### ")  # its subsections nest under the section's title
  path, sha, replaced = hub.ship(args.export_dir, sections, replace=args.replace)
  if replaced is not None:
    print("replaced the shipped model, whose metrics were: "
          + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(replaced.items())))
  print(f"shipped to {path}; pinned in {pins.path()} (manifest sha256 {sha})")
  return 0


def _cmd_export(args) -> int:
  from zoo import export  # pylint: disable=import-outside-toplevel

  out = pathlib.Path(args.out or f"zoo-export/{args.source.rstrip('/').split('/')[-1].split('@')[0]}-{args.format}")
  path = export.export(args.source, out, args.format)
  print(f"wrote {path} (with config.json and manifest.json beside it); read it without JAX:\n"
        f"  from safetensors.numpy import load_file; weights = load_file({str(path)!r})")
  return 0


def _cmd_cards(args) -> int:
  from zoo import cards, hub  # pylint: disable=import-outside-toplevel

  path = pathlib.Path(args.output)
  if not path.parent.is_dir():
    raise UsageError(f"--output {path}: the folder {path.parent} does not exist.")
  if path.is_dir():
    raise UsageError(f"--output {path} is a directory; give a file name.")
  tables = [pathlib.Path(t) for t in (cards.INDEX_TABLES if args.table is None else args.table)]
  missing = [str(t) for t in tables if not t.is_file()]
  if missing:
    raise UsageError(f"--table {', '.join(missing)}: no such file (run from the repository root, or give paths).")
  if args.refresh:
    import fnmatch  # pylint: disable=import-outside-toplevel

    from zoo import checkpoint, pins  # pylint: disable=import-outside-toplevel

    names = sorted(d.name for d in hub.checkpoints_dir().iterdir()
                   if (d / checkpoint.MANIFEST).is_file() and any(fnmatch.fnmatchcase(d.name, p) for p in args.refresh))
    if not names:
      raise UsageError(f"--refresh {args.refresh}: no embedded checkpoint matches.")
    for name in names:  # re-render the card from the current code, re-seal the manifest, re-pin it
      with checkpoint.locked(hub.checkpoints_dir() / name):
        sha = checkpoint.refresh_card(hub.checkpoints_dir() / name)
      pin = pins.get(name)
      pins.write(name, sha, repo_id=pin.repo_id if pin else None, revision=pin.revision if pin else "main")
      print(f"refreshed the card of {name}; pinned manifest sha256 {sha}")
  text = cards.index_markdown(hub.checkpoints_dir(), tables)
  if args.check:
    if not path.is_file() or path.read_text() != text:
      print(f"{path} is stale: run `zoo cards`", file=sys.stderr)
      return 1
    print(f"{path} is up to date")
    return 0
  path.write_text(text)
  print(f"wrote {path}")
  return 0


def repo_root() -> pathlib.Path | None:
  """The source checkout this `zoo` was imported from (it has `train/` and `configs/` beside `zoo/`), or None for
  a pip install (which installs only the `zoo` package)."""
  root = pathlib.Path(__file__).resolve().parent.parent
  return root if (root / "train" / "trainer.py").is_file() and (root / "configs").is_dir() else None


def _cmd_train(rest: list[str]) -> int:
  """`zoo train ...` = `python -m train ...` run from the checkout (the trainer is not part of a pip install)."""
  import os  # pylint: disable=import-outside-toplevel

  root = repo_root()
  if root is None:
    raise UsageError("zoo train needs a clone of the nnx-zoo repository (the trainer `train/` and `configs/` are not "
                     "installed by pip): git clone the repo, pip install -e it, and run `python -m train --config "
                     "configs/FAMILY.py:VARIANT --workdir DIR` there.")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
  return subprocess.call([sys.executable, "-m", "train", *rest], env=env)


def build_parser() -> argparse.ArgumentParser:
  """The `zoo` argument parser (every subcommand and argument with its help)."""
  parser = argparse.ArgumentParser(prog="zoo", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  source_help = "a registered name (zoo list), hf://ORG/REPO[@REV], or local-dir:PATH"
  p = sub.add_parser("list", help="the registered models, as a table")
  p.add_argument("pattern", nargs="?", default="*", help="shell wildcard on the name, e.g. 'elcd-*' (default: all)")
  p.add_argument("--pretrained", action="store_true", help="only models that ship pretrained weights")
  p.add_argument("--family", default=None, help="only this family (elcd, massnet, resnet, ...)")
  p.add_argument("--tag", action="append", default=[], help="only models with this tag (repeatable: all must match)")
  p.add_argument("--json", action="store_true", help="print the specs as JSON instead of a table")
  p.set_defaults(fn=_cmd_list)
  p = sub.add_parser("info", help="a model's spec, guarantee, metrics and checks")
  p.add_argument("name", help="a registered name (zoo list)")
  p.add_argument("--json", action="store_true", help="print the record as JSON (for programs)")
  p.set_defaults(fn=_cmd_info)
  p = sub.add_parser("verify", help="check a model's guarantee on its weights")
  p.add_argument("source", help=source_help)
  p.set_defaults(fn=_cmd_verify)
  p = sub.add_parser("run", help="load a pretrained model and show what it does (metrics, plots)")
  p.add_argument("name", help=source_help)
  p.add_argument("--out", default=None, metavar="DIR", help="where plots go (default: zoo-run/NAME)")
  p.set_defaults(fn=_cmd_run)
  p = sub.add_parser("download", help="fetch a Hub checkpoint into the HF cache (then it loads offline)")
  p.add_argument("repo_id", help="the Hub repo, ORG/NAME")
  p.add_argument("--revision", default="main", help="branch, tag or commit (default: %(default)s)")
  p.set_defaults(fn=_cmd_download)
  p = sub.add_parser("push", help="upload a checkpoint (name or directory) to the Hub in one commit")
  p.add_argument("source", help="a registered name or a checkpoint directory")
  p.add_argument("--repo-id", required=True, help="the Hub repo to create or update, ORG/NAME")
  p.add_argument("--revision", default=None, help="the branch to commit to (default: main)")
  p.add_argument("--private", action="store_true", help="create the repo private")
  p.set_defaults(fn=_cmd_push)
  p = sub.add_parser("ship", help="embed an exported checkpoint into checkpoints/ and pin it")
  p.add_argument("export_dir", help="a training run's export folder (WORKDIR/export)")
  p.add_argument("--section", action="append", default=[], metavar="TITLE=FILE.md",
                 help="add a card section from a markdown file (e.g. a benchmark table); repeatable")
  p.add_argument("--replace", action="store_true",
                 help="replace a model that already ships (prints the metrics it replaces)")
  p.set_defaults(fn=_cmd_ship)
  p = sub.add_parser("export", help="write a model's weights for non-JAX readers (safetensors + config + manifest)")
  p.add_argument("source", help=source_help)
  p.add_argument("--format", default="safetensors", choices=["safetensors"], help="the file format (default: %(default)s)")
  p.add_argument("--out", default=None, metavar="DIR",
                 help="output folder (default: zoo-export/NAME-FORMAT); created if missing")
  p.set_defaults(fn=_cmd_export)
  p = sub.add_parser("cards", help="regenerate MODEL_CARDS.md from the registry and the shipped checkpoints")
  p.add_argument("--output", default="MODEL_CARDS.md", metavar="FILE", help="the file to write (default: %(default)s)")
  p.add_argument("--check", action="store_true", help="fail if the file is stale")
  p.add_argument("--table", action="append", default=None,
                 help="a benchmark's markdown table to carry below the index; repeatable (default: "
                      "zoo.cards.INDEX_TABLES, relative to the repository root)")
  p.add_argument("--refresh", action="append", default=[], metavar="PATTERN",
                 help="first re-render the embedded cards of the matching checkpoints from the current card code "
                      "(re-seals their manifests and re-pins them in pins.json; the weights are untouched); repeatable")
  p.set_defaults(fn=_cmd_cards)
  sub.add_parser("train", help="train a model from a config (= python -m train, from a clone); "
                               "zoo train --help lists its flags", add_help=False)
  return parser


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv[:1] == ["train"]:  # everything after it is the trainer's (absl flags; `zoo train --help` is its help)
    try:
      return _cmd_train(argv[1:])
    except UsageError as e:
      print(f"error: UsageError: {e}", file=sys.stderr)
      return 2
  parser = build_parser()
  debug = "--debug" in argv
  argv = [a for a in argv if a != "--debug"]  # accepted anywhere on the line
  args = parser.parse_args(argv)
  try:
    return args.fn(args)
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130
  except Exception as e:  # pylint: disable=broad-except  # one line per error; the traceback with --debug
    if debug:
      raise
    text = " ".join(str(e).split()) or repr(e)
    if isinstance(e, errors.ZooError):
      print(f"error: {e.__class__.__name__}: {text}", file=sys.stderr)
      return 2
    if isinstance(e, OSError):
      print(f"error: {e.__class__.__name__}: {text}. Check the path and permissions.", file=sys.stderr)
      return 2
    print(f"error: {e.__class__.__name__}: {text} (an unexpected error: rerun with --debug for the traceback, "
          f"and report it)", file=sys.stderr)
    return 3


if __name__ == "__main__":
  sys.exit(main())
