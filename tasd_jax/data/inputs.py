"""Inputs of a classification run: training iterator, evaluation batches, an example batch.

`image_inputs` serves any tfds image-classification data set through the
grain pipelines of `pipeline`; `token_inputs` (module `tokens`) serves
pre-tokenized text. Both return an `InputPipeline`, so the training loop, the
reports and the kernels evaluate every model the same way.

Multi-process runs: with `shard` (grain's `ShardOptions`; `ShardByJaxProcess()`
in a run on JAX's multi-process runtime) every batch is process
`shard.shard_index`'s block of rows of the global batch, the `shard_index`-th of
`shard_count` equal blocks (`shard_rows`). The global batch, that is the
concatenation of the blocks in process order, is the one a single process
reads: each example of it lands in exactly one process's block, none is left
out, and augmentation draws are those of the whole global batch. Each process
reads only its block's examples; the one exception is augmented training on
images of varying size, which reads the whole global batch and keeps the block
(`pipeline` module docstring says why).
"""

from typing import Any, Iterable, Iterator, NamedTuple

import grain
import numpy as np

from tasd_jax.data import pipeline, sources
# shard_rows lives with the pipelines that apply it; `tokens` imports it from here
from tasd_jax.data.pipeline import shard_rows  # noqa: F401

# Background threads prepare whole batches, two ahead of the training step.
READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=2)


class InputPipeline(NamedTuple):
    """Attributes:
      num_classes: number of labels.
      train: endless iterator of training batches with `get_state()` /
        `set_state()` (exact resume).
      eval_batches: re-iterable; every pass yields each evaluation example once,
        the last batch padded and marked by a bool "mask" [B].
      example_batch: {input name: zeros [1, ...]}: the shapes a model is
        initialised on.
    """

    num_classes: int
    train: Iterator[dict[str, np.ndarray]]
    eval_batches: Iterable[dict[str, np.ndarray]]
    example_batch: dict[str, Any]


def image_inputs(
    dataset: str,
    *,
    batch_size: int,
    eval_batch_size: int,
    seed: int,
    data_dir: str | None = None,
    image_size: int | None = None,
    augment: bool = False,
    eval_split: str = "test",
    num_devices: int = 1,
    shard: grain.sharding.ShardOptions = grain.sharding.NoSharding(),
) -> InputPipeline:
    """Image classification: batches {"image" float32 [B, H, W, C], "label" int32 [B]}.

    `batch_size`, `eval_batch_size` and `num_devices` are global (all processes
    together); every batch holds this process's rows of it, B = batch_size /
    shard.shard_count (module docstring).
    """
    info = sources.dataset_info(dataset, data_dir)
    common = dict(info=info, image_size=image_size, num_devices=num_devices, shard=shard)
    train = pipeline.train_dataset(
        sources.load_source(dataset, "train", data_dir), batch_size=batch_size, seed=seed,
        augment=augment, **common,
    )
    eval_batches = pipeline.eval_dataset(
        sources.load_source(dataset, eval_split, data_dir), batch_size=eval_batch_size, **common
    )
    height, width, channels = info.image_shape
    example = {"image": np.zeros((1, height or image_size, width or image_size, channels), np.float32)}
    return InputPipeline(
        info.num_classes, iter(train.to_iter_dataset(READ_OPTIONS)),
        eval_batches.to_iter_dataset(READ_OPTIONS), example,
    )
