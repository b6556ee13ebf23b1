"""Registry: names, wildcards, overrides, typed errors for unknown names and bad inputs."""

import numpy as np
import pytest

import zoo
from zoo import errors


def test_unknown_name_lists_close_matches():
  with pytest.raises(errors.UnknownModelError) as e:
    zoo.load("masnet-sir")
  assert "massnet-sir" in str(e.value)
  assert "zoo list" in str(e.value)


def test_list_models_wildcards():
  assert "massnet-sir" in zoo.list_models("mass*")
  assert zoo.list_models("no-such-*") == []
  assert set(zoo.list_models(pretrained=True)) <= set(zoo.list_models())


def test_create_with_overrides_changes_the_module():
  small = zoo.create("massnet-sir", hidden=4, widths=(5,))
  assert len(small.blocks) == 1 and small.blocks[0][0].inner.kernel.shape == (5, 4)
  a, b = zoo.create("massnet-sir", seed=1), zoo.create("massnet-sir", seed=1)
  x = np.random.default_rng(0).random((2, 3))
  np.testing.assert_array_equal(a(x), b(x))


def test_info_has_the_spec():
  info = zoo.info("massnet-sir")
  assert info["family"] == "massnet" and info["input_shape"] == [3] and info["dataset"] == "sir"
  assert "Σ" in info["guarantee"]


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((2, 4)), np.zeros((2, 3), np.int32)])
def test_wrong_input_gets_a_typed_error(bad):
  model = zoo.create("massnet-sir")
  with pytest.raises(errors.InputShapeError, match=r"\(batch|dtype"):
    model(bad)
