"""Bad arguments to what users call get typed errors: empty batches, negative rollout steps."""

import numpy as np
import pytest

import zoo
from zoo import errors
from zoo.models import volume


@pytest.mark.parametrize("name", ["wavemix-lite-digits", "nonexpansive-resnet-digits", "massnet-sir"])
def test_an_empty_batch_is_a_typed_error(name):
  model = zoo.load(name)
  with pytest.raises(errors.InputShapeError, match="empty batch"):
    model(np.zeros((0, *zoo.get_spec(name).input_shape), np.float32))


@pytest.mark.parametrize("steps", [-1, 2.5, "3"])
def test_volnet_rollout_refuses_a_bad_step_count(steps):
  model = zoo.load("volnet-pendulum")
  z0 = np.zeros((1, 2))
  with pytest.raises(errors.InvalidArgumentError, match="whole number"):
    model.rollout(z0, steps)
  with pytest.raises(errors.InvalidArgumentError):
    volume.rollout(model, z0, steps)
  assert model.rollout(z0, 0).shape == (1, 1, 2)


def test_importing_one_family_first_still_registers_every_family():
  from tests.conftest import run_python
  out = run_python("from zoo.models import volume\nimport zoo\nprint(len(zoo.list_models()))")
  assert out.returncode == 0 and int(out.stdout) == len(zoo.list_models()) > 1, out.stderr[-2000:]
