"""grain input pipelines for image classification.

Training: endless epochs, each a fresh seeded permutation of the split cut into
batches of `batch_size` (the remainder of every epoch is dropped), optional
CIFAR-style augmentation (zero-pad, random crop, horizontal flip) seeded per
step. Batch i depends only on (seed, i): that is what makes resuming exact.

Evaluation: one pass in source order, the last batch padded to `batch_size`
with `mask == False` rows so every example counts exactly once.

Multi-process runs: with `shard` (grain's `ShardOptions`) every batch is
process `shard.shard_index`'s block of rows of the global batch, the
`shard_index`-th of `shard_count` equal blocks (`shard_rows`); the default,
`NoSharding()`, is the whole global batch. A process picks the global batch's
indices and augmentation draws exactly as a single process does, then reads,
augments and scales only its block's examples: no example is read by two
processes, the blocks in process order make up the single-process batch bit
for bit. One exception: augmented training on images of varying size reads
the whole global batch and keeps the block, because the random cut of every
resized image draws from the batch's generator in turn, and how much of the
stream a draw takes depends on the size of its image: a block's draws are only
known once the images before it were read.

Batches are dicts of numpy arrays:
    image float32 [B, H, W, C] in [0, 1] (divided by the data set's pixel_max),
    label int32 [B], and for evaluation mask bool [B].

Work is per batch, not per example: one function picks a batch's indices from
the epoch's permutation, then reads, augments and scales the batch (or the
process's block of it) with numpy, so the Python overhead is one call per
batch; grain supplies the iterator, its checkpointable state and background
prefetching.

Checkpointing: `train_iterator` returns a `grain.DatasetIterator`; its
`get_state()` is a small JSON-able dict ({"next_index": steps taken}) and
`set_state(state)` on a fresh iterator built with the same arguments resumes
with exactly the batches an uninterrupted run would have seen. Save it with the
training checkpoint, e.g. orbax `ocp.args.JsonSave(it.get_state())`, or with
grain's orbax handler `grain.checkpoint.CheckpointSave(it)` /
`grain.checkpoint.CheckpointRestore(it)`.

Images of varying size (ImageNet) need `image_size`: the shorter side is scaled
to image_size / CROP_FRACTION, then an image_size x image_size square is cut,
centred for evaluation and at a random place for augmented training (which then
only adds the flip: the random cut replaces the zero-pad crop).
"""

import functools
import sys
from collections.abc import Sequence

import grain
import numpy as np
from PIL import Image

from tasd_jax.data import sources

# Share of the resized shorter side kept by the crop (the usual ImageNet 0.875).
CROP_FRACTION = 0.875


def _check_batch_size(batch_size: int, num_devices: int) -> None:
    if not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"num_devices must be a positive int, got {num_devices!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if batch_size % num_devices:
        raise ValueError(
            f"batch_size {batch_size} must be a multiple of num_devices "
            f"{num_devices}: every batch is split evenly over the devices."
        )


def shard_rows(batch_size: int, shard: grain.sharding.ShardOptions) -> slice:
    """The rows of a global batch of `batch_size` rows that process `shard.shard_index`
    holds: the `shard_index`-th of `shard.shard_count` equal blocks.

    Raises:
      ValueError: `batch_size` is not a multiple of `shard.shard_count`.
    """
    if batch_size % shard.shard_count:
        raise ValueError(
            f"batch size {batch_size} must be a multiple of the {shard.shard_count} processes "
            "(every process holds an equal block of each global batch)"
        )
    size = batch_size // shard.shard_count
    return slice(shard.shard_index * size, (shard.shard_index + 1) * size)


def _check_image_size(image_shape: tuple[int | None, ...], image_size: int | None) -> None:
    """`image_size` must be given exactly when images vary in size."""
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}.")
    varying = None in image_shape[:2]
    if varying and image_size is None:
        raise ValueError(
            f"images vary in size (shape {image_shape}): pass image_size to "
            f"resize and crop them to image_size x image_size."
        )
    if not varying and image_size is not None:
        raise ValueError(
            f"image_size={image_size} applies to images of varying size only; "
            f"these all have shape {image_shape}: leave image_size=None."
        )


def _resize_crop(image: np.ndarray, size: int, rng: np.random.Generator | None) -> np.ndarray:
    """Scales the shorter side of image [H, W, C] to size / CROP_FRACTION and cuts
    a size x size square: centred when rng is None, else at a random place."""
    h, w = image.shape[:2]
    scale = size / CROP_FRACTION / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    resized = np.asarray(pil.resize((new_w, new_h), Image.BILINEAR)).reshape(
        new_h, new_w, image.shape[-1]
    )
    if rng is None:
        top, left = (new_h - size) // 2, (new_w - size) // 2
    else:
        top, left = rng.integers(0, new_h - size + 1), rng.integers(0, new_w - size + 1)
    return resized[top : top + size, left : left + size]


def _read(
    source: Sequence,
    indices: np.ndarray,
    image_size: int | None,
    rng: np.random.Generator | None,
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [B, H, W, C] and labels [B] of the examples at `indices`."""
    if isinstance(source, sources.ArraySource):
        batch = source.gather(indices)
        return batch["image"], batch["label"]
    examples = source.__getitems__([int(i) for i in indices])
    images = [ex["image"] for ex in examples]
    if image_size is not None:
        images = [_resize_crop(im, image_size, rng) for im in images]
    return np.stack(images), np.asarray([ex["label"] for ex in examples])


def _crop_flip_draws(
    batch_size: int, padding: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The random window tops [B], lefts [B] and flips bool [B] of `random_crop_flip`."""
    top = rng.integers(0, 2 * padding + 1, size=batch_size)
    left = rng.integers(0, 2 * padding + 1, size=batch_size)
    flip = rng.random(batch_size) < 0.5
    return top, left, flip


def _crop_flip(
    images: np.ndarray, padding: int, top: np.ndarray, left: np.ndarray, flip: np.ndarray
) -> np.ndarray:
    """Cuts image i's window at (top[i], left[i]) of its zero-padded copy, mirrored
    where flip[i]."""
    b, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    rows = top[:, None] + np.arange(h)  # [B, H]
    # a flipped image reads its window's columns right to left
    cols = left[:, None] + np.where(flip[:, None], np.arange(w)[::-1], np.arange(w))  # [B, W]
    return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_crop_flip(images: np.ndarray, padding: int, rng: np.random.Generator) -> np.ndarray:
    """CIFAR-style augmentation of a batch: zero-pad by `padding` on every side,
    cut a random window of the original size, flip left-right with p = 1/2.

    Args:
        images: [B, H, W, C].
        padding: pixels of zeros added on each side before cropping (>= 0).
        rng: numpy generator; one crop offset and one flip per image.

    Returns:
        [B, H, W, C], same dtype.
    """
    return _crop_flip(images, padding, *_crop_flip_draws(len(images), padding, rng))


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The order of the examples in training epoch `epoch`: int [num_examples].

    A pure function of (seed, epoch), so a resumed run replays it exactly; cached
    because every batch of the epoch slices the same permutation.
    """
    return np.random.default_rng((seed, epoch)).permutation(num_examples)


def _train_batch(
    step: int,
    *,
    source: Sequence,
    seed: int,
    batch_size: int,
    pixel_max: float,
    augment: bool,
    crop_padding: int,
    image_size: int | None,
    rows: slice,
) -> dict[str, np.ndarray]:
    """This shard's `rows` of global training batch `step`."""
    epoch, position = divmod(step, len(source) // batch_size)
    indices = epoch_permutation(seed, epoch, len(source))[
        position * batch_size : (position + 1) * batch_size
    ]
    # a key of another length than the permutation's: an independent stream
    rng = np.random.default_rng((seed, epoch, position, 1)) if augment else None
    if augment and image_size:
        # The random cuts draw from rng image by image, each taking as much of the
        # stream as its image's size needs: the block's cuts and the flips after
        # them are only those of the global batch once the whole batch was read.
        images, labels = _read(source, indices, image_size, rng)
        # resized images were already cut at a random place: only flip those
        images, labels = random_crop_flip(images, 0, rng)[rows], labels[rows]
    else:
        images, labels = _read(source, indices[rows], image_size, None)
        if augment:
            # the global batch's draws, so that a block augments as a single process does
            draws = _crop_flip_draws(batch_size, crop_padding, rng)
            images = _crop_flip(images, crop_padding, *(d[rows] for d in draws))
    return {
        "image": images.astype(np.float32) / np.float32(pixel_max),
        "label": labels.astype(np.int32),
    }


def _eval_batch(
    batch_index: int,
    *,
    source: Sequence,
    batch_size: int,
    pixel_max: float,
    image_size: int | None,
    image_shape: tuple[int, int, int],
    rows: slice,
) -> dict[str, np.ndarray]:
    """This shard's `rows` of evaluation batch `batch_index`, padded to the block size."""
    positions = batch_index * batch_size + np.arange(batch_size)[rows]
    indices = positions[positions < len(source)]  # a prefix: the rest pads the last batch
    if len(indices):
        images, labels = _read(source, indices, image_size, None)
    else:  # this shard's block of the last batch is all padding
        images, labels = np.zeros((0, *image_shape), np.uint8), np.zeros(0, np.int32)
    pad = len(positions) - len(indices)
    # padded rows repeat nothing real: zeros, label 0, masked out
    images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
    labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
    return {
        "image": images.astype(np.float32) / np.float32(pixel_max),
        "label": labels.astype(np.int32),
        "mask": positions < len(source),
    }


def train_dataset(
    source: Sequence,
    info: sources.DatasetInfo,
    *,
    batch_size: int,
    seed: int,
    augment: bool = False,
    crop_padding: int = 4,
    image_size: int | None = None,
    num_devices: int = 1,
    shard: grain.sharding.ShardOptions = grain.sharding.NoSharding(),
) -> grain.MapDataset:
    """Endless, seeded, shuffled training batches over a random-access source.

    Args:
        source: items {"image": [H, W, C], "label": int} (`sources.load_source`).
        info: the data set's `sources.dataset_info`: images are divided by its
            pixel_max; its image_shape says whether `image_size` is needed.
        batch_size: examples per batch; a multiple of `num_devices`; at most
            len(source). Each epoch yields len(source) // batch_size batches.
        seed: fixes the permutation of every epoch (epochs differ from each other)
            and the augmentation.
        augment: CIFAR-style random crop (zero padding `crop_padding`) and flip;
            with `image_size`, a random cut of the resized image and flip.
        crop_padding: see `random_crop_flip`.
        image_size: crop size for images of varying size, else None.
        num_devices: devices of all processes the global batch is split over
            (data parallelism).
        shard: which block of rows of every global batch this process reads
            (module docstring); `batch_size` is a multiple of its shard_count.

    Returns:
        An infinite grain MapDataset; element i is this shard's block of global
        batch i (i // batches-per-epoch is its epoch): {"image": float32
        [B, H, W, C], "label": int32 [B]}, B = batch_size / shard.shard_count.
    """
    _check_batch_size(batch_size, num_devices)
    rows = shard_rows(batch_size, shard)
    if batch_size > len(source):
        raise ValueError(
            f"batch_size {batch_size} exceeds the {len(source)} examples of the "
            f"split: every epoch would be empty after dropping the remainder."
        )
    if crop_padding < 0:
        raise ValueError(f"crop_padding must be >= 0, got {crop_padding}.")
    _check_image_size(info.image_shape, image_size)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}.")
    # One element per training step: a whole-batch numpy read beats grain's
    # per-example shuffle and batch (about 40 us per example in Python).
    return grain.MapDataset.range(sys.maxsize).map(
        functools.partial(
            _train_batch,
            source=source,
            seed=seed,
            batch_size=batch_size,
            pixel_max=info.pixel_max,
            augment=augment,
            crop_padding=crop_padding,
            image_size=image_size,
            rows=rows,
        )
    )


def eval_dataset(
    source: Sequence,
    info: sources.DatasetInfo,
    *,
    batch_size: int,
    image_size: int | None = None,
    num_devices: int = 1,
    shard: grain.sharding.ShardOptions = grain.sharding.NoSharding(),
) -> grain.MapDataset:
    """One pass over a source in order, in fixed-size batches with a mask.

    Args:
        source: items {"image": [H, W, C], "label": int}.
        info: the data set's `sources.dataset_info` (pixel_max, image shape).
        batch_size: examples per batch, a multiple of `num_devices`.
        image_size: centre-crop size for images of varying size, else None.
        num_devices: devices of all processes the global batch is split over.
        shard: which block of rows of every global batch this process reads
            (module docstring); `batch_size` is a multiple of its shard_count.

    Returns:
        A MapDataset of ceil(len(source) / batch_size) batches, this shard's
        blocks of the global ones: {"image": float32 [B, H, W, C], "label":
        int32 [B], "mask": bool [B]}, B = batch_size / shard.shard_count; mask is
        False only on the zero rows that pad the last global batch.
    """
    _check_batch_size(batch_size, num_devices)
    rows = shard_rows(batch_size, shard)
    _check_image_size(info.image_shape, image_size)
    height, width, channels = info.image_shape
    num_batches = -(-len(source) // batch_size)
    return grain.MapDataset.range(num_batches).map(
        functools.partial(
            _eval_batch,
            source=source,
            batch_size=batch_size,
            pixel_max=info.pixel_max,
            image_size=image_size,
            image_shape=(height or image_size, width or image_size, channels),
            rows=rows,
        )
    )


def _read_options(prefetch: int) -> grain.ReadOptions:
    if not isinstance(prefetch, int) or prefetch < 0:
        raise ValueError(f"prefetch must be an int >= 0 batches, got {prefetch!r}.")
    # threads prepare whole batches; more threads than buffered batches idle
    return grain.ReadOptions(num_threads=prefetch, prefetch_buffer_size=max(prefetch, 1))


def train_iterator(
    name: str,
    *,
    batch_size: int,
    seed: int,
    split: str = "train",
    data_dir: str | None = None,
    augment: bool = False,
    crop_padding: int = 4,
    image_size: int | None = None,
    num_devices: int = 1,
    in_memory: bool | None = None,
    prefetch: int = 2,
) -> grain.DatasetIterator:
    """The training iterator of data set `name` (see `train_dataset`).

    Args:
        name, split, data_dir, in_memory: see `sources.load_source`.
        prefetch: batches prepared ahead by background threads (0: none).
        others: see `train_dataset`.

    Returns:
        An endless `grain.DatasetIterator` of batches; `get_state()` /
        `set_state()` save and restore its position (module docstring).
    """
    info = sources.dataset_info(name, data_dir)
    source = sources.load_source(name, split, data_dir, in_memory)
    dataset = train_dataset(
        source,
        info,
        batch_size=batch_size,
        seed=seed,
        augment=augment,
        crop_padding=crop_padding,
        image_size=image_size,
        num_devices=num_devices,
    )
    return iter(dataset.to_iter_dataset(_read_options(prefetch)))


def eval_batches(
    name: str,
    *,
    batch_size: int,
    split: str = "test",
    data_dir: str | None = None,
    image_size: int | None = None,
    num_devices: int = 1,
    in_memory: bool | None = None,
    prefetch: int = 2,
) -> grain.IterDataset:
    """The evaluation batches of data set `name` (see `eval_dataset`).

    Returns:
        A re-iterable grain IterDataset: every `for batch in ...` is one full pass.
    """
    info = sources.dataset_info(name, data_dir)
    source = sources.load_source(name, split, data_dir, in_memory)
    dataset = eval_dataset(
        source,
        info,
        batch_size=batch_size,
        image_size=image_size,
        num_devices=num_devices,
    )
    return dataset.to_iter_dataset(_read_options(prefetch))
