"""Tests of the idx reader and the Fashion-MNIST builder, on idx files written here
(and on the Debian package's files where they are installed)."""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

from tasd_jax import data
from tasd_jax.data import fashion_mnist, idx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TYPE_CODES = {np.dtype(d).newbyteorder("="): code for code, d in idx.IDX_DTYPES.items()}


def idx_bytes(array: np.ndarray) -> bytes:
    """`array` in the idx format, written from the format's definition."""
    code = _TYPE_CODES[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array: np.ndarray, compress: bool = True) -> None:
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(idx_bytes(array))


def fake_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (count, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, count).astype(np.uint8))


def write_fake_fashion_mnist(idx_dir, compress: bool = True) -> dict:
    """Four idx files of 23 train and 7 test random images; their arrays by split."""
    os.makedirs(idx_dir, exist_ok=True)
    arrays = {"train": fake_split(23, 0), "test": fake_split(7, 1)}
    for split, (images_stem, labels_stem) in fashion_mnist.IDX_FILES.items():
        suffix = ".gz" if compress else ""
        write_idx(os.path.join(idx_dir, images_stem + suffix), arrays[split][0], compress)
        write_idx(os.path.join(idx_dir, labels_stem + suffix), arrays[split][1], compress)
    return arrays


# --- the idx format -------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("compress", [True, False], ids=["gz", "plain"])
def test_read_idx_reads_back_every_type(tmp_path, dtype, compress):
    array = (np.arange(-30, 30).reshape(3, 4, 5) * 3).astype(dtype)
    write_idx(tmp_path / "a.idx", array, compress)
    got = idx.read_idx(tmp_path / "a.idx")
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, array)


def test_the_header_is_read_as_the_format_defines_it():
    # 2 x 3 big-endian int16: 0x0102 is 258, not 513
    raw = bytes([0, 0, 0x0B, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes([1, 2] * 6)
    np.testing.assert_array_equal(idx.parse_idx(raw), np.full((2, 3), 258, np.int16))


@pytest.mark.parametrize("raw, message", [
    (b"\x00\x00", "too short for an idx header"),
    (b"\x1f\x00\x08\x01\x00\x00\x00\x01\x05", "does not start with two zero bytes"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code 0x07 is not one of"),
    (b"\x00\x00\x08\x00", "at least one dimension, it declares 0"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x01", "too short for the header of 2 dimensions"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05\x06", r"shape \(3,\) of uint8 needs 3 data bytes, the file has 2"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", r"needs 1 data bytes, the file has 2"),
])
def test_malformed_idx_bytes_are_refused_naming_the_rule(raw, message):
    with pytest.raises(idx.IdxFormatError, match=message):
        idx.parse_idx(raw, "x.idx")


def test_a_cut_gzip_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "cut.idx.gz"
    write_idx(path, np.zeros((50, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(idx.IdxFormatError, match=f"{path}: not a readable gzip file"):
        idx.read_idx(path)


# --- the Fashion-MNIST builder --------------------------------------------------


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "plain"])
def test_the_builder_prepares_exactly_the_files_examples(tmp_path, compress):
    arrays = write_fake_fashion_mnist(tmp_path / "idx", compress)
    data_dir = tmp_path / "tfds"
    data.FashionMnistIdx(data_dir=data_dir, idx_dir=tmp_path / "idx").download_and_prepare(
        file_format="array_record")

    info = data.dataset_info("fashion_mnist_idx", data_dir)  # now prepared: found by name
    assert (info.num_classes, info.image_shape, dict(info.splits), info.pixel_max) == (
        10, (28, 28, 1), {"train": 23, "test": 7}, 255.0)
    label = data.get_builder("fashion_mnist_idx", data_dir).info.features["label"]
    assert label.int2str(0) == "T-shirt/top" and label.int2str(9) == "Ankle boot"
    for split, (images, labels) in arrays.items():
        source = data.load_source("fashion_mnist_idx", split, data_dir)
        got = sorted((int(ex["label"]), ex["image"][..., 0].tobytes()) for ex in source)
        assert got == sorted((int(l), im.tobytes()) for im, l in zip(images, labels))


def test_missing_files_fail_in_one_line_naming_the_package_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEFAULT_IDX_DIR", str(tmp_path / "nowhere"))
    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    with pytest.raises(data.DataNotFoundError) as err:
        data.dataset_info("fashion_mnist_idx", data_dir)
    message = str(err.value)
    assert "\n" not in message
    assert f"{tmp_path / 'nowhere'} has no train-images-idx3-ubyte.gz" in message
    assert "`apt-get install dataset-fashion-mnist`" in message
    assert not os.listdir(data_dir)  # nothing was written


@pytest.mark.parametrize("split, file, array, message", [
    ("train", "train-images", np.zeros((23, 28, 28), np.int32),
     r"images are uint8 \[N, 28, 28\], this file holds int32 \[23, 28, 28\]"),
    ("train", "train-images", np.zeros((23, 32, 32), np.uint8),
     r"this file holds uint8 \[23, 32, 32\]"),
    ("test", "t10k-labels", np.zeros((7, 1), np.uint8),
     r"labels are uint8 \[N\], this file holds uint8 \[7, 1\]"),
    ("test", "t10k-labels", np.zeros(6, np.uint8), "holds 7 images but .* holds 6 labels"),
    ("test", "t10k-labels", np.full(7, 10, np.uint8), r"label 10 is outside 0\.\.9"),
], ids=["dtype", "size", "label_rank", "counts", "label_range"])
def test_files_that_are_not_fashion_mnist_are_refused_naming_the_file(
        tmp_path, split, file, array, message):
    write_fake_fashion_mnist(tmp_path / "idx")
    rank = 3 if "images" in file else 1
    path = tmp_path / "idx" / f"{file}-idx{rank}-ubyte.gz"
    write_idx(path, array)
    with pytest.raises(data.IdxFormatError, match=message) as err:
        fashion_mnist.read_split(str(tmp_path / "idx"), split)
    assert str(path) in str(err.value)


def test_the_cli_reports_missing_files_in_one_line(tmp_path):
    plant = tmp_path / "elsewhere.py"  # points the default at an empty directory
    plant.write_text("from tasd_jax.data import fashion_mnist\n"
                     f"fashion_mnist.DEFAULT_IDX_DIR = {str(tmp_path / 'nowhere')!r}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", "--config=configs/mnist.py",
         f"--workdir={tmp_path / 'run'}", f"--imports={plant}",
         "--config.dataset=fashion_mnist_idx", f"--config.data_dir={tmp_path / 'tfds'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: data set 'fashion_mnist_idx' cannot be prepared:")
    assert "apt-get install dataset-fashion-mnist" in lines[-1]
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not os.path.isdir(fashion_mnist.DEFAULT_IDX_DIR),
                    reason="needs the Debian package: apt-get install dataset-fashion-mnist")
def test_the_debian_packages_files_are_the_standard_split():
    for split, count in (("train", 60_000), ("test", 10_000)):
        images, labels = fashion_mnist.read_split(fashion_mnist.DEFAULT_IDX_DIR, split)
        assert images.shape == (count, 28, 28) and images.dtype == np.uint8
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, count // 10))
