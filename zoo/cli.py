"""The `zoo` command line.

    zoo list ['mass*'] [--pretrained]       zoo info NAME            zoo verify NAME|hf://ORG/REPO@REV|DIR
    zoo run NAME [--out DIR]                zoo download ORG/REPO [--revision REV]
    zoo push NAME|DIR --repo-id ORG/NAME    zoo ship WORKDIR/export [--section T=F.md] [--replace]  zoo cards [--check]
    zoo train --config configs/FAMILY.py:VARIANT --workdir DIR       (same as python -m train)

Errors print one line and exit non-zero (2: a zoo error, 3: unexpected); `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

from zoo import errors


class UsageError(errors.ZooError):
  """A command-line argument that cannot work (the message says which and why)."""


def _cmd_list(args) -> int:
  from zoo import registry  # pylint: disable=import-outside-toplevel

  names = registry.list_models(args.pattern, pretrained=args.pretrained)
  if not names:
    print(f"no model matches {args.pattern!r}", file=sys.stderr)
    return 1
  width = max(map(len, names))
  for n in names:
    spec = registry.get_spec(n)
    print(f"{n:<{width}}  {spec.family.name:<14} {spec.dataset:<14} {'pretrained' if spec.pretrained else '-'}")
  return 0


def _cmd_info(args) -> int:
  import zoo  # pylint: disable=import-outside-toplevel
  from zoo import hub  # pylint: disable=import-outside-toplevel

  try:
    out = zoo.info(args.name)
  except (ValueError, UnicodeDecodeError, AttributeError, TypeError) as e:
    if isinstance(e, errors.ZooError):
      raise
    raise errors.CheckpointCorruptError(
        f"the embedded manifest of {args.name} ({hub.checkpoints_dir() / args.name}) cannot be read "
        f"({e.__class__.__name__}); restore it with git checkout -- checkpoints/{args.name}.") from e
  print(json.dumps(out, indent=2, default=str))
  return 0


def _load(source: str):
  import zoo  # pylint: disable=import-outside-toplevel

  model = zoo.load(source)
  return model, zoo.provenance(model).name


def _cmd_verify(args) -> int:
  import zoo  # pylint: disable=import-outside-toplevel

  model, name = _load(args.source)
  checks = zoo.verify(model, name)
  print(f"{name}: {zoo.get_spec(name).guarantee}")
  for c in checks:
    print(f"  {c}")
  ok = all(c.passed for c in checks)
  print("verified" if ok else "GUARANTEE VIOLATED")
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
      print(spec.family.demo(model, out, spec.dataset))
    else:
      data = zoo.data.load(spec.dataset, "test")
      metrics = spec.family.evaluate(model, data)
      print("test metrics: " + ", ".join(f"{k} = {v:.4g}" for k, v in metrics.items()))
      for p in spec.family.plot(model, data, out) if spec.family.plot else []:
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
  text = cards.index_markdown(hub.checkpoints_dir())
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


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv[:1] == ["train"]:  # everything after it is the trainer's (absl flags; `zoo train --help` is its help)
    try:
      return _cmd_train(argv[1:])
    except UsageError as e:
      print(f"error: UsageError: {e}", file=sys.stderr)
      return 2
  parser = argparse.ArgumentParser(prog="zoo", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("list", help="registered models")
  p.add_argument("pattern", nargs="?", default="*")
  p.add_argument("--pretrained", action="store_true")
  p.set_defaults(fn=_cmd_list)
  p = sub.add_parser("info", help="a model's spec, metrics and checks")
  p.add_argument("name")
  p.set_defaults(fn=_cmd_info)
  p = sub.add_parser("verify", help="check a model's guarantee on its weights")
  p.add_argument("source")
  p.set_defaults(fn=_cmd_verify)
  p = sub.add_parser("run", help="load a pretrained model and show what it does")
  p.add_argument("name")
  p.add_argument("--out", default=None)
  p.set_defaults(fn=_cmd_run)
  p = sub.add_parser("download", help="fetch a Hub checkpoint into the HF cache")
  p.add_argument("repo_id")
  p.add_argument("--revision", default="main")
  p.set_defaults(fn=_cmd_download)
  p = sub.add_parser("push", help="upload a checkpoint (name or directory) to the Hub")
  p.add_argument("source")
  p.add_argument("--repo-id", required=True)
  p.add_argument("--revision", default=None)
  p.add_argument("--private", action="store_true")
  p.set_defaults(fn=_cmd_push)
  p = sub.add_parser("ship", help="embed an exported checkpoint into checkpoints/")
  p.add_argument("export_dir")
  p.add_argument("--section", action="append", default=[], metavar="TITLE=FILE.md",
                 help="add a card section from a markdown file (e.g. a benchmark table); repeatable")
  p.add_argument("--replace", action="store_true",
                 help="replace a model that already ships (prints the metrics it replaces)")
  p.set_defaults(fn=_cmd_ship)
  p = sub.add_parser("export", help="write a model's weights for non-JAX readers (safetensors + config + manifest)")
  p.add_argument("source", help="a registered name, hf://ORG/REPO[@REV] or local-dir:PATH")
  p.add_argument("--format", default="safetensors", choices=["safetensors"], help="the file format (default: %(default)s)")
  p.add_argument("--out", default=None, metavar="DIR",
                 help="output folder (default: zoo-export/NAME-FORMAT); created if missing")
  p.set_defaults(fn=_cmd_export)
  p = sub.add_parser("cards", help="regenerate MODEL_CARDS.md")
  p.add_argument("--output", default="MODEL_CARDS.md")
  p.add_argument("--check", action="store_true", help="fail if the file is stale")
  p.set_defaults(fn=_cmd_cards)
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
