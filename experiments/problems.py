"""The TASDER problem of a training export, shared by the drivers that search one
(`experiments.tasder`, `experiments.repro_tasd`): the export's model, top-1
accuracy on its test split as the metric, training images to calibrate on."""

import functools
import itertools

import jax
import numpy as np

from tasd_jax import data, models
from tasd_jax import export as export_lib
from tasd_jax import tasder


def from_export(export: export_lib.Export, *, calibration_examples: int, eval_batch_size: int,
                seed: int, data_dir: str | None = None,
                eval_examples: int | None = None) -> tasder.Problem:
    """The TASDER problem of a training export: top-1 accuracy on its test split (its
    first `eval_examples` images, a multiple of `eval_batch_size`; None: all of it),
    `calibration_examples` training images to calibrate on."""
    model, like = models.init_model(export.model, export.input_shape, seed=None, **export.model_kwargs)
    variables = jax.tree.map(np.asarray, export.variables_like(like))
    inputs = data.image_inputs(export.dataset, batch_size=calibration_examples,
                               eval_batch_size=eval_batch_size, seed=seed, data_dir=data_dir)
    return tasder.Problem(functools.partial(model.apply, train=False), variables,
                          evaluate=tasder.top1_accuracy(itertools.islice(
                              inputs.eval_batches,
                              None if eval_examples is None else eval_examples // eval_batch_size)),
                          calibration=next(inputs.train)["image"])
