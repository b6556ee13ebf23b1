"""Model cards: parseable Hub metadata with the measured metrics; MODEL_CARDS.md in sync with the registry."""

import pytest
from huggingface_hub import ModelCard

import zoo
from zoo import cards, hub
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
  for key, value in cards._flat_metrics(info["metrics"]).items():
    assert measured[key] == pytest.approx(value)
  assert info["guarantee"] in card.text
  for png in (hub.checkpoints_dir() / name).glob("*.png"):
    assert f"]({png.name})" in card.text

