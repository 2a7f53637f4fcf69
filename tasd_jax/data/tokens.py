"""Pre-tokenized text classification (the BERT recipe) from a prepared tfds data set.

The data set needs features `input_ids` (int [L]) and `label` (ClassLabel),
optionally `token_type_ids` and `attention_mask` (int/bool [L]), stored as
array_record (read with tfds data sources, no TensorFlow). Training batches
are shuffled per epoch with the seed (grain); evaluation is one ordered pass,
the last batch padded and marked by `mask`.
"""

import grain
import numpy as np
import tensorflow_datasets as tfds

from tasd_jax.data.inputs import InputPipeline

TOKEN_FEATURES = ("input_ids", "token_type_ids", "attention_mask")


def token_inputs(
    dataset: str,
    *,
    batch_size: int,
    eval_batch_size: int,
    seed: int,
    data_dir: str | None = None,
    eval_split: str = "test",
) -> InputPipeline:
    """Batches {"input_ids" int32 [B, L], optional "token_type_ids" / "attention_mask", "label"}.

    Raises:
      ValueError: not a tfds builder, or it lacks `input_ids` / `label`.
      FileNotFoundError: the data set is not prepared in the data dir.
    """
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

    def stack(examples: list[dict]) -> dict[str, np.ndarray]:
        return {k: np.stack([np.asarray(e[k]) for e in examples]).astype(np.int32) for k in keys}

    train_source = builder.as_data_source(split="train")
    train = (
        grain.MapDataset.range(len(train_source))
        .seed(seed)
        .shuffle()
        .batch(batch_size, drop_remainder=True)
        .map(lambda idx: stack(train_source.__getitems__([int(i) for i in idx])))
        .repeat(None)
    )
    eval_source = builder.as_data_source(split=eval_split)

    def eval_batch(i: int) -> dict[str, np.ndarray]:
        idx = range(i * eval_batch_size, min((i + 1) * eval_batch_size, len(eval_source)))
        batch = stack(eval_source.__getitems__(list(idx)))
        pad = eval_batch_size - len(idx)
        batch = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}
        return {**batch, "mask": np.arange(eval_batch_size) < len(idx)}

    options = grain.ReadOptions(num_threads=2, prefetch_buffer_size=2)
    eval_batches = (
        grain.MapDataset.range(-(-len(eval_source) // eval_batch_size)).map(eval_batch)
        .to_iter_dataset(options)
    )
    example = {k: np.zeros((1, *features[k].shape), np.int32) for k in keys if k != "label"}
    return InputPipeline(
        features["label"].num_classes, iter(train.to_iter_dataset(options)), eval_batches, example
    )
