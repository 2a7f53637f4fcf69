"""Inputs of a classification run: training iterator, evaluation batches, an example batch.

`image_inputs` serves any tfds image-classification data set through the
grain pipelines of `pipeline`; `token_inputs` (module `tokens`) serves
pre-tokenized text. Both return an `InputPipeline`, so the training loop, the
reports and the kernels evaluate every model the same way.
"""

from typing import Any, Iterable, Iterator, NamedTuple

import numpy as np

from tasd_jax.data import pipeline, sources


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
) -> InputPipeline:
    """Image classification: batches {"image" float32 [B, H, W, C], "label" int32 [B]}."""
    info = sources.dataset_info(dataset, data_dir)
    common = dict(data_dir=data_dir, image_size=image_size, num_devices=num_devices)
    train = pipeline.train_iterator(
        dataset, batch_size=batch_size, seed=seed, augment=augment, **common
    )
    eval_batches = pipeline.eval_batches(
        dataset, batch_size=eval_batch_size, split=eval_split, **common
    )
    height, width, channels = info.image_shape
    example = {"image": np.zeros((1, height or image_size, width or image_size, channels), np.float32)}
    return InputPipeline(info.num_classes, train, eval_batches, example)
