"""Pre-tokenized text classification (the BERT recipe) from a prepared tfds data set.

The data set needs features `input_ids` (int [L]) and `label` (ClassLabel),
optionally `token_type_ids` and `attention_mask` (int/bool [L]), stored as
array_record (read with tfds data sources, no TensorFlow). Training batches
are shuffled per epoch with the seed (grain); evaluation is one ordered pass,
the last batch padded and marked by `mask`. With `shard`, a process reads only
its block of rows of every global batch (`inputs.shard_rows`).
"""

import grain
import numpy as np
import tensorflow_datasets as tfds

from tasd_jax.data.inputs import READ_OPTIONS, InputPipeline, shard_rows

TOKEN_FEATURES = ("input_ids", "token_type_ids", "attention_mask")


def token_inputs(
    dataset: str,
    *,
    batch_size: int,
    eval_batch_size: int,
    seed: int,
    data_dir: str | None = None,
    eval_split: str = "test",
    shard: grain.sharding.ShardOptions = grain.sharding.NoSharding(),
) -> InputPipeline:
    """Batches {"input_ids" int32 [B, L], optional "token_type_ids" / "attention_mask", "label"}.

    `batch_size` and `eval_batch_size` are global; B = batch size /
    shard.shard_count, this process's rows of each global batch.

    Raises:
      ValueError: not a tfds builder, or it lacks `input_ids` / `label`, or a
        batch size is not a multiple of `shard.shard_count`.
      FileNotFoundError: the data set is not prepared in the data dir.
    """
    train_rows, eval_rows = shard_rows(batch_size, shard), shard_rows(eval_batch_size, shard)
    try:
        builder = tfds.builder(dataset, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:
        raise ValueError(f"unknown data set {dataset!r}: not a tfds builder") from err
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"data set {dataset!r} is not prepared in {builder.data_dir}: prepare it once "
            "with tfds (file_format='array_record')"
        )
    features = builder.info.features
    missing = [f for f in ("input_ids", "label") if f not in features]
    if missing:
        raise ValueError(f"data set {dataset!r} lacks the token features {missing}; it has {list(features)}")
    keys = [k for k in TOKEN_FEATURES if k in features] + ["label"]

    def read(source, indices: np.ndarray) -> dict[str, np.ndarray]:
        """{key: int32 [len(indices), ...]}; zeros of that shape when `indices` is empty."""
        examples = source.__getitems__([int(i) for i in indices])
        return {
            k: np.asarray([e[k] for e in examples], np.int32).reshape(
                len(examples), *features[k].shape)
            for k in keys
        }

    train_source = builder.as_data_source(split="train")
    train = (
        grain.MapDataset.range(len(train_source))
        .seed(seed)
        .shuffle()
        .batch(batch_size, drop_remainder=True)
        .map(lambda idx: read(train_source, idx[train_rows]))
        .repeat(None)
    )
    eval_source = builder.as_data_source(split=eval_split)
    block = np.arange(eval_batch_size)[eval_rows]  # this process's rows of every eval batch

    def eval_batch(i: int) -> dict[str, np.ndarray]:
        positions = i * eval_batch_size + block
        real = positions[positions < len(eval_source)]  # a prefix: the rest pads the last batch
        batch = read(eval_source, real)
        pad = len(block) - len(real)
        batch = {
            k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in batch.items()
        }
        return {**batch, "mask": np.arange(len(block)) < len(real)}

    eval_batches = (
        grain.MapDataset.range(-(-len(eval_source) // eval_batch_size)).map(eval_batch)
        .to_iter_dataset(READ_OPTIONS)
    )
    example = {k: np.zeros((1, *features[k].shape), np.int32) for k in keys if k != "label"}
    train_iter = iter(train.to_iter_dataset(READ_OPTIONS))
    return InputPipeline(features["label"].num_classes, train_iter, eval_batches, example)
