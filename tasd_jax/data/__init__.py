"""Data for tasd_jax: tfds sources by name and grain pipelines.

    from tasd_jax import data
    info = data.dataset_info("sklearn_digits")    # prepared on first use
    it = data.train_iterator("sklearn_digits", batch_size=128, seed=0)
    batch = next(it)        # {"image": float32 [128, 8, 8, 1], "label": int32 [128]}
    state = it.get_state()  # JSON-able; it.set_state(state) resumes exactly
    for batch in data.eval_batches("sklearn_digits", batch_size=128):
        ...                 # + "mask": bool [128], False on the padding rows

"fashion_mnist_idx" (Fashion-MNIST from the idx files of the Debian package
`dataset-fashion-mnist`) is prepared on first use too. Any tfds
image-classification data set prepared as array_record in the tfds
data dir ("mnist", "cifar10", "imagenet2012") works the same way by name;
`image_inputs` / `token_inputs` bundle a run's training iterator, evaluation
batches and example batch as an `InputPipeline`.
"""

from tasd_jax.data.digits import MlxtendMnist, SklearnDigits
from tasd_jax.data.fashion_mnist import FashionMnistIdx
from tasd_jax.data.idx import IdxFormatError, read_idx
from tasd_jax.data.inputs import InputPipeline, image_inputs
from tasd_jax.data.pipeline import (
    CROP_FRACTION,
    eval_batches,
    eval_dataset,
    random_crop_flip,
    train_dataset,
    train_iterator,
)
from tasd_jax.data.sources import (
    AUTO_PREPARED,
    ArraySource,
    DataNotFoundError,
    DatasetInfo,
    dataset_info,
    get_builder,
    load_source,
)
from tasd_jax.data.tokens import TOKEN_FEATURES, token_inputs

__all__ = [
    "AUTO_PREPARED",
    "ArraySource",
    "CROP_FRACTION",
    "DataNotFoundError",
    "DatasetInfo",
    "FashionMnistIdx",
    "IdxFormatError",
    "InputPipeline",
    "MlxtendMnist",
    "SklearnDigits",
    "TOKEN_FEATURES",
    "dataset_info",
    "eval_batches",
    "eval_dataset",
    "get_builder",
    "image_inputs",
    "load_source",
    "read_idx",
    "random_crop_flip",
    "token_inputs",
    "train_dataset",
    "train_iterator",
]
