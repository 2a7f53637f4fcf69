"""Fashion-MNIST from its standard idx files: the tfds builder "fashion_mnist_idx".

Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017) is 70,000 28x28 grey images of
ten kinds of clothing, values 0..255, in its own fixed split: 60,000 `train`
and 10,000 `test`. The Debian package `dataset-fashion-mnist`
(`apt-get install dataset-fashion-mnist`) installs the four standard files in
`DEFAULT_IDX_DIR`:

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

(the same names without `.gz` are read too). Like the digits, the builder needs
no network and no TensorFlow: it is prepared once as array_record into the tfds
data dir, the first time `tasd_jax.data` is asked for "fashion_mnist_idx", and
read back with `tfds.data_source`. Files elsewhere:

    FashionMnistIdx(data_dir=..., idx_dir="path/to/idx").download_and_prepare(
        file_format="array_record")

Features: `image` uint8 [28, 28, 1], `label` ClassLabel with the ten names.
(tfds' own "fashion_mnist" builder downloads the files instead; this one has its
own name so that both can live in one data dir.)
"""

import os

import numpy as np
import tensorflow_datasets as tfds

from tasd_jax.data import digits
from tasd_jax.data.idx import IdxFormatError, read_idx

DEFAULT_IDX_DIR = "/usr/share/datasets/fashion-mnist"
INSTALL_COMMAND = "apt-get install dataset-fashion-mnist"
# Split -> (images file, labels file), without the optional `.gz`.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
LABEL_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def idx_path(idx_dir: str, stem: str) -> str:
    """`idx_dir/stem.gz`, or `idx_dir/stem` where only that exists.

    Raises:
        FileNotFoundError: neither exists; the message names the directory, the
            file and the package that installs it.
    """
    for name in (stem + ".gz", stem):
        path = os.path.join(idx_dir, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"Fashion-MNIST: {idx_dir} has no {stem}.gz; install the files with "
        f"`{INSTALL_COMMAND}` (Debian, Ubuntu), or pass idx_dir= a directory "
        f"holding the four standard idx files.")


def read_split(idx_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels uint8 [N]) of `split` ("train" or "test").

    Raises:
        FileNotFoundError: a missing file (see `idx_path`).
        IdxFormatError: a malformed file, images not uint8 [N, 28, 28], labels
            not uint8 [N] in 0..9, or counts that disagree; the message names
            the file.
    """
    images_file, labels_file = (idx_path(idx_dir, stem) for stem in IDX_FILES[split])
    images, labels = read_idx(images_file), read_idx(labels_file)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise IdxFormatError(
            f"{images_file}: Fashion-MNIST images are uint8 [N, 28, 28], this file holds "
            f"{images.dtype.name} {list(images.shape)}.")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IdxFormatError(
            f"{labels_file}: Fashion-MNIST labels are uint8 [N], this file holds "
            f"{labels.dtype.name} {list(labels.shape)}.")
    if len(images) != len(labels):
        raise IdxFormatError(
            f"{images_file} holds {len(images)} images but {labels_file} holds "
            f"{len(labels)} labels.")
    if labels.size and labels.max() >= len(LABEL_NAMES):
        raise IdxFormatError(
            f"{labels_file}: label {int(labels.max())} is outside 0..{len(LABEL_NAMES) - 1}.")
    return images, labels


class FashionMnistIdx(digits.PackagedImages):
    """Fashion-MNIST read from the standard idx files in `idx_dir`.

    Args:
        idx_dir: the directory of the four idx files; None means
            `DEFAULT_IDX_DIR`, where the Debian package installs them.
        **kwargs: tfds builder arguments (data_dir, file_format, ...).
    """

    name = "fashion_mnist_idx"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "The standard 60,000 / 10,000 split from the idx files."}
    IMAGE_SIZE = 28
    PIXEL_MAX = 255
    DESCRIPTION = (
        "Fashion-MNIST (Zalando Research): 28x28 grey images of ten kinds of clothing, "
        "values 0..255, read from the standard idx files.")
    HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
    SPLIT_DESCRIPTION = "The standard split: 60,000 train, 10,000 test."
    LABEL_NAMES = LABEL_NAMES

    def __init__(self, *, idx_dir: str | os.PathLike | None = None, **kwargs):
        self.idx_dir = os.fspath(idx_dir) if idx_dir is not None else DEFAULT_IDX_DIR
        super().__init__(**kwargs)

    def download_and_prepare(self, *args, **kwargs):
        # The files are looked for before tfds creates any directory.
        for stems in IDX_FILES.values():
            for stem in stems:
                idx_path(self.idx_dir, stem)
        return super().download_and_prepare(*args, **kwargs)

    def split_arrays(self) -> digits.SplitArrays:
        arrays = {}
        for split in IDX_FILES:
            images, labels = read_split(self.idx_dir, split)
            arrays[split] = (images, labels, np.arange(len(labels)))
        return arrays
