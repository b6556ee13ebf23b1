"""Fashion-MNIST from Debian's dataset-fashion-mnist as an offline TFDS builder.

Tests that read the data skip, with the install command in the reason, where the files are absent; CI installs
them (`.ci/run`) and sets ZOO_REQUIRE_DATA=1, which turns that skip into a failure. The error path (files absent
or wrong) runs everywhere on fabricated files.
"""

from __future__ import annotations

import gzip
import hashlib
import os

import numpy as np
import pytest

import zoo.data
from zoo import errors
from zoo.data import fashion_mnist as fm

SKIP_REASON = (f"Fashion-MNIST is not installed: run `{fm.INSTALL}` (as root; `make data` does it) or set "
               f"ZOO_FASHION_MNIST_DIR (see zoo/data/fashion_mnist.py)")
needs_data = pytest.mark.skipif(not fm.available() and not os.environ.get("ZOO_REQUIRE_DATA"), reason=SKIP_REASON)


def _write_idx(path, magic: int, array: np.ndarray) -> None:
  header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def _fake_files(directory, labels_fn=lambda n: np.arange(n) % 10) -> None:
  for split, (images, labels) in fm.FILES.items():
    n = 10 * fm.PER_CLASS[split]
    _write_idx(directory / images, 0x803, np.zeros((n, 28, 28), np.uint8))
    _write_idx(directory / labels, 0x801, labels_fn(n))


def test_missing_files_raise_data_unavailable_naming_the_install_command(tmp_path, monkeypatch):
  monkeypatch.setenv("ZOO_FASHION_MNIST_DIR", str(tmp_path / "absent"))
  assert not fm.available()
  with pytest.raises(errors.DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
    fm.arrays("test")
  monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "data"))  # nothing prepared there
  with pytest.raises(errors.DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
    zoo.data.load("fashion_mnist", "test")


def test_wrong_arrays_are_refused_by_their_decoded_sha256(tmp_path, monkeypatch):
  """Files with the right headers and balanced classes but other pixels: the decoded-array check refuses them."""
  _fake_files(tmp_path)
  monkeypatch.setenv("ZOO_FASHION_MNIST_DIR", str(tmp_path))
  assert fm.available()
  with pytest.raises(errors.DataUnavailableError, match="sha256"):
    fm.arrays("test")


def test_a_truncated_file_is_refused_by_its_header(tmp_path, monkeypatch):
  _fake_files(tmp_path)
  with gzip.open(tmp_path / fm.FILES["test"][1], "wb") as f:
    f.write((0x801).to_bytes(4, "big") + (10000).to_bytes(4, "big") + b"\0" * 10)
  monkeypatch.setenv("ZOO_FASHION_MNIST_DIR", str(tmp_path))
  with pytest.raises(errors.DataUnavailableError, match="not the Fashion-MNIST IDX file"):
    fm.arrays("test")


@needs_data
def test_decoded_arrays_are_fashion_mnist():
  for split, n in (("train", 60000), ("test", 10000)):
    images, labels = fm.arrays(split)
    assert images.shape == (n, 28, 28, 1) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert np.all(np.bincount(labels, minlength=10) == n // 10)
    assert hashlib.sha256(images[..., 0].tobytes()).hexdigest() == fm.SHA256[split][0]
  train_images, _ = fm.arrays("train")
  assert abs(train_images.mean() / 255 - 0.2860) < 1e-3   # the published pixel mean


@needs_data
def test_tfds_builder_serves_the_checked_arrays():
  """The TFDS builder (array_record, no TensorFlow) returns exactly the decoded arrays, in file order."""
  test = zoo.data.load("fashion_mnist", "test")
  images, labels = fm.arrays("test")
  assert test["image"].shape == (10000, 28, 28, 1) and test["image"].dtype == np.uint8
  np.testing.assert_array_equal(test["image"], images)
  np.testing.assert_array_equal(test["label"], labels)
  builder = zoo.data.builder("fashion_mnist")
  assert builder.info.splits["train"].num_examples == 60000
  assert builder.info.features["label"].names[0] == "T-shirt/top"


def _catalogue_builder():
  """TFDS's own catalogue `fashion_mnist` (3.0.1) where it is prepared in ZOO_TFDS_CATALOGUE_DIR or
  ~/tensorflow_datasets; None otherwise (it needs a download)."""
  import tensorflow_datasets as tfds
  for root in filter(None, (os.environ.get("ZOO_TFDS_CATALOGUE_DIR"), os.path.expanduser("~/tensorflow_datasets"))):
    try:
      b = tfds.builder("fashion_mnist:3.*.*", data_dir=root, file_format="array_record")
    except Exception:  # noqa: BLE001  (not in this TFDS version's catalogue, or unreadable)
      continue
    if b.is_prepared():
      return b
  return None


@needs_data
def test_equal_to_the_tfds_catalogue_where_both_are_present():
  """TFDS's catalogue `fashion_mnist` (network download) holds the same examples (its own order): compared as sets
  of (image bytes, label)."""
  catalogue = _catalogue_builder()
  if catalogue is None:
    pytest.skip("TFDS's catalogue fashion_mnist is not prepared here (it needs a download: `tfds build "
                "fashion_mnist --file_format=array_record`, then ZOO_TFDS_CATALOGUE_DIR=DIR)")
  for split in ("train", "test"):
    images, labels = fm.arrays(split)
    source = catalogue.as_data_source(split)
    theirs = sorted(hashlib.sha256(np.asarray(ex["image"], np.uint8).tobytes() + bytes([int(ex["label"])])).digest()
                    for ex in source.__getitems__(list(range(len(source)))))
    ours = sorted(hashlib.sha256(images[i].tobytes() + bytes([int(labels[i])])).digest() for i in range(len(labels)))
    assert theirs == ours
