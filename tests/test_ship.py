"""Pins as data and provenance on the module: `zoo ship` writes the pin (no hand edit), refuses to replace a
shipped model or to ship a failed guarantee unless told; create / load / quantize record what a module is."""

from __future__ import annotations

import json
import shutil

import pytest

import zoo
from zoo import checkpoint, cli, errors, hub, pins, training


@pytest.fixture()
def export(tmp_path, monkeypatch):
  """A copy of the shipped massnet-sir as an export, and an empty embedded folder to ship into."""
  path = tmp_path / "export"
  shutil.copytree(hub.checkpoints_dir() / "massnet-sir", path)
  monkeypatch.setenv("ZOO_CHECKPOINTS", str(tmp_path / "ckpts"))
  return path


def _edit_metrics(directory, **metrics):
  """Re-records the export's metrics (and re-hashes it), as a new training run would."""
  manifest = checkpoint.read_manifest(directory)
  manifest["metrics"] = {**manifest["metrics"], **metrics}
  (directory / checkpoint.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
  checkpoint.refresh_card(directory)


def test_ship_writes_the_pin_and_the_model_loads_without_edits(export):
  _edit_metrics(export, test_mse=1.0)  # a different manifest: the old pin no longer matches
  old = pins.get("massnet-sir").sha256
  target, sha, replaced = hub.ship(export)
  assert replaced is None and sha != old
  assert pins.get("massnet-sir").sha256 == sha == checkpoint.sha256_file(target / checkpoint.MANIFEST)
  assert pins.get("massnet-sir").repo_id == "nnx-zoo/massnet-sir"
  assert json.loads(pins.path().read_text())["massnet-sir"]["sha256"] == sha
  assert zoo.provenance(zoo.load("massnet-sir")).manifest["metrics"]["test_mse"] == 1.0


def test_shipping_over_a_shipped_model_needs_replace_and_names_what_it_replaces(export, capsys):
  hub.ship(export)
  _edit_metrics(export, test_mse=0.5)
  with pytest.raises(errors.ShipConflictError, match=r"already ships.*test_mse.*--replace"):
    hub.ship(export)
  assert zoo.provenance(zoo.load("massnet-sir")).manifest["metrics"]["test_mse"] != 0.5  # untouched
  assert cli.main(["ship", str(export)]) == 2
  assert "ShipConflictError" in capsys.readouterr().err
  assert cli.main(["ship", str(export), "--replace"]) == 0
  out = capsys.readouterr().out
  assert "replaced the shipped model, whose metrics were" in out and "test_mse" in out
  assert zoo.provenance(zoo.load("massnet-sir")).manifest["metrics"]["test_mse"] == 0.5


def test_an_export_whose_checks_failed_is_not_shipped(export):
  manifest = checkpoint.read_manifest(export)
  manifest["checks"][0]["passed"] = False
  (export / checkpoint.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
  checkpoint.refresh_card(export)
  with pytest.raises(errors.ShipConflictError, match="checks failed"):
    hub.ship(export)
  assert not (hub.checkpoints_dir() / "massnet-sir").exists()


def test_a_malformed_pins_file_is_a_typed_error(tmp_path, monkeypatch):
  bad = tmp_path / "pins.json"
  bad.write_text('{"massnet-sir": {"repo_id": "x/y", "sha256": "not-a-hash"}}')
  monkeypatch.setenv("ZOO_PINS", str(bad))
  with pytest.raises(errors.CheckpointCorruptError, match="pins file"):
    zoo.load("massnet-sir")


def test_provenance_is_carried_by_the_module():
  created = zoo.create("massnet-sir", seed=3, hidden=8)
  origin = zoo.provenance(created)
  assert origin.name == "massnet-sir" and origin.kwargs["hidden"] == 8 and origin.manifest is None
  assert "seed=3" in origin.source
  loaded = zoo.load("massnet-sir")
  assert zoo.provenance(loaded).manifest["name"] == "massnet-sir"
  assert zoo.provenance(zoo.load("massnet-sir")) == zoo.provenance(loaded)  # hashable, equal: jit caches agree
  from flax import nnx
  assert zoo.provenance(nnx.clone(created)) == origin  # travels with split / merge
  assert zoo.verify(created)  # the name comes from the module itself


@pytest.mark.slow  # heavy: `make test-slow` (issue 13: the default run stays under 8 minutes)
def test_quantize_updates_the_provenance():
  model = zoo.load("wavemix-lite-digits")
  zoo.quantize(model, method="rtn4")
  kwargs = zoo.provenance(model).kwargs
  assert kwargs["quantized"] is True and kwargs["quant"]["method"] == "rtn4"


def test_config_variants_have_one_error_style():
  with pytest.raises(errors.UnknownVariantError, match=r"configs/massnet.py has no variant 'sri'.*Did you mean: sir"):
    training.choose("sri", {"sir": "massnet-sir"}, "configs/massnet.py")
