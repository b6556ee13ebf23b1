"""The `zoo` command line for people: tables with headers, human-readable info, help for every argument, no command
in --help that does not exist, progress on long steps, quiet local dataset preparation, the training result once."""

import argparse
import io
import json
import subprocess
import sys
import time

import pytest

from zoo import cli

from tests.conftest import ROOT, run_python


def test_list_is_a_table_with_headers_and_filters(capsys):
  assert cli.main(["list"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].split() == ["name", "family", "dataset", "pretrained", "tags"]
  assert set(lines[1].replace(" ", "")) == {"-"}
  assert cli.main(["list", "--family", "massnet"]) == 0
  rows = capsys.readouterr().out.splitlines()[2:]
  assert rows and all(r.split()[1] == "massnet" for r in rows)
  assert cli.main(["list", "--tag", "quantization", "--tag", "2-bit", "--pretrained"]) == 0
  names = [r.split()[0] for r in capsys.readouterr().out.splitlines()[2:]]
  assert names and "resnet18-digits-idkm-b2" in names and "resnet18-digits-idkm-b4" not in names
  assert cli.main(["list", "--family", "nope"]) == 1
  assert "families:" in capsys.readouterr().err
  assert cli.main(["list", "mass*", "--json"]) == 0
  assert json.loads(capsys.readouterr().out)[0]["name"] == "massnet-sir"


def test_info_is_readable_and_json_on_request(capsys):
  assert cli.main(["info", "resnet18-digits-idkm-b2"]) == 0
  out = capsys.readouterr().out
  assert not out.lstrip().startswith("{") and "\\u" not in out and '\\"' not in out
  for part in ("guarantee", "metrics on the test split of digits", "accuracy", "pass ", "training: best_step"):
    assert part in out
  assert "≥" in out  # unicode as is, not escaped
  assert cli.main(["info", "resnet18-digits-idkm-b2", "--json"]) == 0
  record = json.loads(capsys.readouterr().out)
  assert record["metrics"]["accuracy"] > 0.9 and record["family"] == "resnet"


def _subparsers(parser):
  (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # pylint: disable=protected-access
  return action


def test_every_argument_has_help_and_every_listed_command_exists(capsys):
  parser = cli.build_parser()
  action = _subparsers(parser)
  listed = {c.dest for c in action._choices_actions}  # pylint: disable=protected-access
  assert listed == set(action.choices)
  for name, sub in action.choices.items():
    for a in sub._actions:  # pylint: disable=protected-access
      if not isinstance(a, argparse._HelpAction) and name != "train":  # pylint: disable=protected-access
        assert a.help, f"zoo {name}: argument {a.dest} has no help"
  # every `zoo X` written in the usage text at the top of --help is a command that parses
  for word in {line.split()[1] for line in cli.__doc__.splitlines() if line.strip().startswith("zoo ")}:
    assert word in action.choices, word
  for part in cli.__doc__.split("  zoo ")[1:]:
    assert part.split()[0] in action.choices


def test_progress_says_what_runs_and_for_how_long():
  stream = io.StringIO()
  with cli.progress("compiling", stream=stream, every=0.05, delay=0):
    time.sleep(0.2)
  lines = stream.getvalue().splitlines()
  assert lines[0] == "compiling ..." and any("s so far" in l for l in lines) and "done in" in lines[-1]
  quiet = io.StringIO()
  with cli.progress("quick", stream=quiet, delay=5):
    pass
  assert quiet.getvalue() == ""  # a quick step says nothing
  failed = io.StringIO()
  with pytest.raises(RuntimeError), cli.progress("failing", stream=failed, delay=0, every=10):
    time.sleep(0.05)
    raise RuntimeError
  assert failed.getvalue() == "failing ...\n"  # no "done" after a failure


def test_verify_and_run_report_progress(tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(cli, "PROGRESS_DELAY", 0.0)
  assert cli.main(["verify", "massnet-sir"]) == 0
  err = capsys.readouterr().err
  assert "loading massnet-sir ..." in err and "checking the guarantee" in err and "done in" in err
  assert cli.main(["run", "massnet-sir", "--out", str(tmp_path)]) == 0
  err = capsys.readouterr().err
  assert "evaluating massnet-sir" in err and "plotting" in err


def test_local_dataset_preparation_does_not_say_downloading(tmp_path):
  out = run_python("import zoo.data; zoo.data.load('sir', 'test')", env={"ZOO_DATA_DIR": str(tmp_path)})
  assert out.returncode == 0, out.stderr[-2000:]
  text = out.stdout + out.stderr
  assert "Downloading" not in text and "Unknown size" not in text and "WARNING" not in text
  assert "generated locally, no download" in text


@pytest.mark.slow
def test_training_prints_its_result_once(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "train", "--config=configs/massnet.py:sir,smoke",
                         f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert (proc.stdout + proc.stderr).count("test_mse") == 2  # the eval log line and the final result
  assert proc.stdout.count("done:") == 1 and "{" not in proc.stdout
  assert json.loads((tmp_path / "result.json").read_text())["metrics"]["test_mse"] >= 0
