"""The `zoo` command line on the embedded model."""

import json

from zoo import cli


def test_list_info_verify(capsys):
  assert cli.main(["list", "mass*"]) == 0
  assert "massnet-sir" in capsys.readouterr().out
  assert cli.main(["info", "massnet-sir", "--json"]) == 0
  assert json.loads(capsys.readouterr().out)["family"] == "massnet"
  assert cli.main(["verify", "massnet-sir"]) == 0
  assert "verified" in capsys.readouterr().out


def test_unknown_name_is_a_clear_error(capsys):
  assert cli.main(["info", "massnet-sri"]) == 2
  err = capsys.readouterr().err
  assert "UnknownModelError" in err and "massnet-sir" in err


def test_run_prints_metrics_and_plots(tmp_path, capsys):
  assert cli.main(["run", "massnet-sir", "--out", str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert "test_mse" in out and list(tmp_path.glob("*.png"))


def test_cards_check_detects_staleness(tmp_path, capsys):
  stale = tmp_path / "MODEL_CARDS.md"
  stale.write_text("old\n")
  assert cli.main(["cards", "--output", str(stale), "--check"]) == 1
  assert cli.main(["cards", "--output", str(stale)]) == 0
  assert cli.main(["cards", "--output", str(stale), "--check"]) == 0


def test_cards_carry_benchmark_tables(tmp_path, capsys):
  table = tmp_path / "t.md"
  table.write_text("# A benchmark\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
  out = tmp_path / "MODEL_CARDS.md"
  assert cli.main(["cards", "--output", str(out), "--table", str(table)]) == 0
  text = out.read_text()
  assert "\n## A benchmark\n" in text and text.index("| 1 | 2 |") > text.index("| model | family |")
  assert cli.main(["cards", "--output", str(out), "--table", str(tmp_path / "missing.md")]) != 0
  assert "missing.md" in capsys.readouterr().err


def test_ship_adds_card_sections_and_prints_the_pin(tmp_path, monkeypatch, capsys):
  import shutil

  from zoo import checkpoint, hub

  export = tmp_path / "export"
  shutil.copytree(hub.checkpoints_dir() / "massnet-sir", export)
  table = tmp_path / "bench.md"
  table.write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
  monkeypatch.setenv("ZOO_CHECKPOINTS", str(tmp_path / "ckpts"))
  assert cli.main(["ship", str(export), "--section", f"Side by side={table}"]) == 0
  out = capsys.readouterr().out
  shipped = tmp_path / "ckpts" / "massnet-sir"
  assert checkpoint.sha256_file(shipped / "manifest.json") in out
  card = (shipped / "README.md").read_text()
  assert "## Side by side" in card and "| 1 | 2 |" in card
  checkpoint.verify_files(shipped, checkpoint.read_manifest(shipped))
  assert cli.main(["ship", str(export), "--section", "no-equals-sign"]) == 2
  assert "TITLE=FILE.md" in capsys.readouterr().err
