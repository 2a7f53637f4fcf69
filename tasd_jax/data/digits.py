"""tfds builder for scikit-learn's 8x8 digits (the default data set).

The 1797 images of `sklearn.datasets.load_digits` ship inside scikit-learn, so
the builder needs no network and no TensorFlow: it is prepared once as
array_record into the tfds data dir and read back with `tfds.data_source`.

Split (fixed, stratified, no randomness): within each class, in the order of
`load_digits`, every fifth example (positions 4, 9, 14, ... of that class) goes
to `test`, the others to `train`. That gives 1442 train / 355 test examples
(about 80/20) with every class represented in both in the same proportion.

Features: `image` uint8 [8, 8, 1] with values 0..16 (the data set's own range,
hence `pixel_max = 16` in the metadata), `label` ClassLabel(10).
"""

from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

# One in TEST_EVERY examples of each class is held out for `test`.
TEST_EVERY = 5
PIXEL_MAX = 16


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """The fixed stratified split of the digits data set.

    Args:
        labels: int [N], the class of every example in `load_digits` order.

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


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's digits: 1797 8x8 grey images, values 0..16, 10 classes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Stratified split: every 5th example of each class is test.",
    }

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # tfds finds a packaged builder's file through `importlib_resources`,
        # which it installs only on Python < 3.9; the answer is this file.
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo is built directly (not from a metadata folder) because the
        # builder lives inside the library, not in a tfds dataset package.
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "UCI optical recognition of handwritten digits as shipped by "
                "scikit-learn (sklearn.datasets.load_digits): 8x8 images with "
                "values 0..16. Test split: every 5th example of each class."
            ),
            features=tfds.features.FeaturesDict({
                # Tensor rather than Image: no PNG codec (PIL/TF) on either side.
                "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=10),
            }),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80",
            metadata=tfds.core.MetadataDict(pixel_max=PIXEL_MAX),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # the data ships with scikit-learn
        from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

        digits = load_digits()
        images = digits.images.astype(np.uint8)[..., None]
        labels = digits.target.astype(np.int64)
        return {
            split: self._generate_examples(images, labels, indices)
            for split, indices in split_indices(labels).items()
        }

    def _generate_examples(
        self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray
    ) -> Iterator[tuple[int, dict[str, np.ndarray | int]]]:
        for i in indices:
            # the key is the index in load_digits, so examples stay traceable
            yield int(i), {"image": images[i], "label": int(labels[i])}
