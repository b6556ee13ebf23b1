"""Model cards: parseable Hub metadata with the measured metrics; MODEL_CARDS.md in sync with the registry."""

import json

import pytest
from huggingface_hub import ModelCard

import zoo
from zoo import cards, checkpoint, hub
from zoo.registry import specs

from tests.conftest import ROOT


def test_model_cards_index_is_up_to_date():
  expected = cards.index_markdown(hub.checkpoints_dir(), [ROOT / t for t in cards.INDEX_TABLES])
  assert (ROOT / "MODEL_CARDS.md").read_text() == expected, "MODEL_CARDS.md is stale: run `zoo cards`"
  for spec in specs():
    assert f"`{spec.name}`" in expected


@pytest.mark.parametrize("name", [s.name for s in specs() if (hub.checkpoints_dir() / s.name).is_dir()])
def test_embedded_card_metadata_matches_the_manifest(name):
  card = ModelCard.load(hub.checkpoints_dir() / name / "README.md")
  data = card.data.to_dict()
  assert data["library_name"] == "nnx-zoo"
  assert {"flax", "jax", "nnx"} <= set(data["tags"])
  info = zoo.info(name)
  measured = {r.metric_type: r.metric_value for r in card.data.eval_results}
  for key, value in cards.split_metrics(info["metrics"])[0].items():  # the evaluation metrics (no step counts)
    assert measured[key] == pytest.approx(value)
  assert info["guarantee"] in card.text
  for png in (hub.checkpoints_dir() / name).glob("*.png"):
    assert f"]({png.name})" in card.text



def _card(manifest, name, repo_id=None, tmp_path=None):
  from zoo import registry
  spec = registry.get_spec(name)
  path = cards.write_card(tmp_path, manifest, spec, repo_id=repo_id)
  return ModelCard.load(path)


def test_card_metadata_the_hub_understands(tmp_path):
  """Task type and pipeline_tag per family, the split of every metric, no bookkeeping as eval results, base_model on a
  quantized derivative, a BibTeX citation and a limitations section (rendered from a shipped manifest)."""
  import json
  manifest = json.loads((hub.checkpoints_dir() / "resnet18-digits-idkm-b2" / "manifest.json").read_text())
  card = _card(manifest, "resnet18-digits-idkm-b2", tmp_path=tmp_path)
  data = card.data.to_dict()
  assert data["pipeline_tag"] == "image-classification"
  assert data["base_model"] == "nnx-zoo/resnet18-digits" and data["base_model_relation"] == "quantized"
  results = card.data.eval_results
  assert results and {r.task_type for r in results} == {"image-classification"}
  assert {r.dataset_split for r in results} == {"test"}
  names = {r.metric_type for r in results}
  assert "accuracy" in names and not names & {"best_step", "train_steps", "state_bytes"}
  assert "## Limitations" in card.text and "```bibtex" in card.text and "@inproceedings{he2016resnet" in card.text
  assert "@misc{jaffe2023idkm" in card.text
  for family, name in (("elcd", "elcd-lasa8d"), ("massnet", "massnet-sir")):
    m = json.loads((hub.checkpoints_dir() / name / "manifest.json").read_text())
    d = _card(m, name, tmp_path=tmp_path).data
    assert d.pipeline_tag == cards.TASKS[family]
    assert not {r.metric_type for r in d.eval_results} & {"best_step", "train_steps", "rollout_steps"}
    assert not any(r.metric_type.startswith("rollout_steps") for r in d.eval_results)
  assert _card(m, "massnet-sir", tmp_path=tmp_path).data.to_dict().get("base_model") is None


def test_a_pushed_custom_untrained_model_gets_its_own_card(hub, tmp_path):
  from zoo import checkpoint
  model = zoo.create("massnet-sir", hidden=20)
  zoo.push_to_hub(model, repo_id="me/x")
  snapshot = hub_module_download("me/x")
  card = ModelCard.load(snapshot / "README.md")
  assert 'zoo.load("hf://me/x")' in card.text and 'zoo.load("massnet-sir")  #' not in card.text
  assert "**untrained**" in card.text and "# massnet-sir (custom: hidden=20)" in card.text
  assert '"hidden": 20' in card.text  # its real arguments
  assert "untrained" in card.data.tags and not card.data.eval_results
  assert checkpoint.read_manifest(snapshot)["model_kwargs"]["hidden"] == 20


def hub_module_download(repo_id):
  return hub.download(repo_id)


def test_a_pushed_registered_model_keeps_its_card_but_loads_from_its_repo(hub, tmp_path):
  model = zoo.load("massnet-sir")
  zoo.push_to_hub(model, repo_id="me/sir-copy")
  card = ModelCard.load(hub_module_download("me/sir-copy") / "README.md")
  assert 'zoo.load("hf://me/sir-copy")' in card.text and "untrained" not in card.text
  assert card.data.eval_results


def test_cards_refresh_rerenders_an_embedded_card_and_repins_it(tmp_path, monkeypatch, capsys):
  import shutil
  from zoo import cli, pins
  root = tmp_path / "checkpoints"
  shutil.copytree(hub.checkpoints_dir() / "massnet-sir", root / "massnet-sir")
  monkeypatch.setenv("ZOO_CHECKPOINTS", str(root))
  old = pins.get("massnet-sir").sha256
  path = root / "massnet-sir" / "manifest.json"  # a hand-edited section (refresh re-seals what you produced)
  manifest = json.loads(path.read_text())
  manifest["card_sections"] = {**manifest.get("card_sections", {}), "A new section": "new text"}
  path.write_text(json.dumps(manifest))
  assert cli.main(["cards", "--refresh", "mass*", "--output", str(tmp_path / "MODEL_CARDS.md")]) == 0
  assert "refreshed the card of massnet-sir" in capsys.readouterr().out
  card = (root / "massnet-sir" / "README.md").read_text()
  assert "## Citation" in card and "## A new section" in card
  assert pins.get("massnet-sir").sha256 != old
  zoo.load("massnet-sir")  # the re-sealed manifest matches its new pin


SOURCE_MARKERS = ("arXiv", ".ipynb", ".txt", "README", "Table", "notebook", "github", "official")


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.name)
def test_reference_column_names_its_source_or_says_none_exists(spec):
  """Every reference entry names where the number comes from (paper / file / README) or says none is published."""
  for metric, text in spec.reference.items():
    assert text.startswith("no published number") or any(m in text for m in SOURCE_MARKERS), (metric, text)


def test_card_marks_metrics_without_a_published_number():
  spec = zoo.get_spec("wavemix-lite-fashion-mnist")
  body = cards.render({"metrics": {"accuracy": 0.9, "loss": 0.3}}, spec)
  assert "93.91%" in body and "arXiv:2203.03689" in body
  assert f"| loss | test | 0.3 | {cards.NO_REFERENCE} |" in body and "no published number exists" in body


@pytest.mark.parametrize("name, x64", [("massnet-sir", True), ("volnet-pendulum", True),
                                       ("invariance-node-spiral", True), ("resnet18-digits", False)])
def test_float64_cards_say_where_they_run(name, x64, monkeypatch):
  """A float64 family's card says it runs on CPUs and GPUs and raises Float64UnavailableError on TPUs (as loading
  it there does); the shipped card says it too."""
  import jax

  from zoo import errors
  spec = zoo.get_spec(name)
  assert spec.family.x64 is x64
  body = cards.render({"metrics": {"x": 1.0}}, spec)
  assert (cards.FLOAT64_LIMITATION in body) is x64
  assert (cards.FLOAT64_LIMITATION in (hub.checkpoints_dir() / name / "README.md").read_text()) is x64
  if x64:
    assert "Float64UnavailableError" in body and "TPU" in body
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    with pytest.raises(errors.Float64UnavailableError, match="no native float64"):
      zoo.load(name)


def _section_titles(directory, titles):
  text = (directory / "README.md").read_text()
  return sorted(titles, key=lambda t: text.index(f"## {t}\n"))


def test_card_sections_keep_their_order_through_save_refresh_and_reorder(tmp_path):
  """The manifest's keys are written sorted; the card's sections must still follow the order they were given in,
  through `refresh_card` (a replaced section stays where it was, a new one goes last) and an explicit `order`."""
  directory = tmp_path / "ckpt"
  checkpoint.save(zoo.create("massnet-sir"), directory, name="massnet-sir",
                  card_sections={"Zeta": "z", "Alpha": "a", "Mid": "m"})
  assert _section_titles(directory, ["Zeta", "Alpha", "Mid"]) == ["Zeta", "Alpha", "Mid"]
  checkpoint.refresh_card(directory, {"Alpha": "a2", "Beta": "b"})
  assert _section_titles(directory, ["Zeta", "Alpha", "Mid", "Beta"]) == ["Zeta", "Alpha", "Mid", "Beta"]
  assert "a2" in (directory / "README.md").read_text()
  checkpoint.refresh_card(directory, order=["Beta", "Mid", "Alpha", "Zeta"])
  assert _section_titles(directory, ["Zeta", "Alpha", "Mid", "Beta"]) == ["Beta", "Mid", "Alpha", "Zeta"]
  with pytest.raises(ValueError, match="every card section"):
    checkpoint.refresh_card(directory, order=["Beta"])
  assert checkpoint.read_manifest(directory)["card_section_order"] == ["Beta", "Mid", "Alpha", "Zeta"]
