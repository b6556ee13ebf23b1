"""Model cards: parseable Hub metadata with the measured metrics; MODEL_CARDS.md in sync with the registry."""

import pytest
from huggingface_hub import ModelCard

import zoo
from zoo import cards, hub
from zoo.registry import specs

from tests.conftest import ROOT


def test_model_cards_index_is_up_to_date():
  expected = cards.index_markdown(hub.checkpoints_dir())
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
  for key, value in cards._flat_metrics(info["metrics"]).items():
    assert measured[key] == pytest.approx(value)
  assert info["guarantee"] in card.text
  for png in (hub.checkpoints_dir() / name).glob("*.png"):
    assert f"]({png.name})" in card.text



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
  assert f"| loss | 0.3 | {cards.NO_REFERENCE} |" in body and "no published number exists" in body
