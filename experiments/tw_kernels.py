"""The `tw_kernels` experiment: a trained tile-wise export run through the packed TW kernels.

    python -m experiments.run --config=configs/tw_kernels_digits.py --workdir=DIR
    python -m experiments.run --config=configs/tw_kernels_digits.py --workdir=DIR \\
        --config.init_from=TW_RUN/export

The export's TW-pruned kernels (those its tile-wise pruning rules selected,
2-D Dense kernels) are packed with `kernels.pack_tw_params`; the model is
rebuilt with `kernels.TWDense` in its `dense=` hook, so those layers multiply
with `kernels.tw_matmul`. The experiment evaluates the packed model and the
masked-dense export on the test split in one pass (test accuracy of each, the
largest logit difference) and times the jitted forward of both on one batch,
interleaved in one run. Without `init_from` it first trains `config.train`
into `DIR/train/` (reused when already there).

Writes `DIR/results.json`.
"""

import os
from typing import NamedTuple

from absl import logging
from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import outputs
from experiments import train as train_experiment
from experiments import train_config
from tasd_jax import data as data_lib
from tasd_jax import export as export_lib
from tasd_jax import kernels, models, patterns, timing, training, tree_paths


def tile_width(export: export_lib.Export) -> tuple[int, str]:
    """(G, regex of the TW-pruned kernels) read off the export's pruning rules.

    Raises:
      ValueError: the export was not pruned with a tile-wise pattern, or with
        several tile widths.
    """
    tw_rules = [
        (regex, p.g) for regex, spec in export.pruning_rules
        if hasattr(p := patterns.parse(spec), "g")
    ]
    widths = {g for _, g in tw_rules}
    if len(widths) != 1:
        raise ValueError(
            f"export {export.path!r} was pruned with rules {list(export.pruning_rules)}: "
            "tw_kernels needs tile-wise rules of one tile width g"
        )
    return widths.pop(), "|".join(f"(?:{regex})" for regex, _ in tw_rules)


class _Models(NamedTuple):
    """The masked-dense export and its packed TW twin, each with its variables."""

    dense: nn.Module
    variables: dict
    tw: nn.Module
    tw_variables: dict
    packed_layers: list[str]


def tw_kernels(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Evaluates and times the packed TW model against its masked-dense export.

    Returns:
      The contents of results.json: the weights used, the packed layers,
      "accuracy" {"masked_dense", "tw_kernels"}, "max_abs_logit_difference",
      "forward" {"batch", "dense_ms", "tw_ms", "speedup"} and the machine.
    """
    if config.reps < 3:
        raise ValueError(f"config.reps={config.reps} must be >= 3 (the speed is a median)")
    export = train_experiment.export_or_train(config, workdir)
    g, include = tile_width(export)
    two = _pack(export, g, include)
    inputs = _eval_inputs(config, export)
    (dense_accuracy, tw_accuracy), count, max_diff = _accuracy_in_one_pass(
        two, inputs, export.dataset)
    batch, medians = _forward_medians(config, two, inputs)
    results = {
        "weights": export.describe(),
        "g": g,
        "packed_layers": two.packed_layers,
        "sparsity_of_packed_layers": _sparsity(two.variables["params"], two.packed_layers),
        "accuracy": {"masked_dense": float(dense_accuracy), "tw_kernels": float(tw_accuracy)},
        "test_examples": int(count),
        "max_abs_logit_difference": max_diff,
        "forward": {
            "batch": batch, "reps": config.reps,
            "dense_ms": 1e3 * medians["dense"], "tw_ms": 1e3 * medians["tw"],
            "speedup": medians["dense"] / medians["tw"],
        },
        "machine": timing.machine(),
    }
    os.makedirs(workdir, exist_ok=True)
    outputs.write_json(os.path.join(workdir, "results.json"), results)
    f = results["forward"]
    print(
        f"{export.model} from {export.path}: test accuracy masked-dense {dense_accuracy:.4f}, "
        f"TW kernels {tw_accuracy:.4f} (max |logit diff| {max_diff:.2e}); forward of "
        f"{f['batch']} examples: dense {f['dense_ms']:.3f} ms, TW {f['tw_ms']:.3f} ms, "
        f"{f['speedup']:.2f}x"
    )
    return results


def _pack(export: export_lib.Export, g: int, include: str) -> _Models:
    """The export's model and the same model with the kernels matching `include`
    packed for `kernels.tw_matmul` at tile width `g`."""
    dense_model, like = models.init_model(export.model, export.input_shape, seed=None, **export.model_kwargs)
    variables = export.variables_like(like)
    tw_model = models.get_model(export.model, dense=kernels.TWDense, **export.model_kwargs)
    packed = kernels.pack_tw_params(variables["params"], g, include=include)
    packed_layers = sorted(
        "/".join(path[:-1]) for path in traverse_util.flatten_dict(packed[kernels.TW_COLLECTION])
    )
    logging.info("tw_kernels: %d layers packed with g=%d: %s", len(packed_layers), g, packed_layers)
    return _Models(dense_model, variables, tw_model, {**variables, **packed}, packed_layers)


def _eval_inputs(
    config: ml_collections.ConfigDict, export: export_lib.Export
) -> data_lib.InputPipeline:
    """The export's data set, read in batches of `config.eval_batch_size`."""
    data_config = ml_collections.ConfigDict({
        "dataset": export.dataset, "data_dir": config.get("data_dir"), "seed": 0,
        "input": "tokens" if export.model in models.TOKEN_MODELS else "image",
        "batch_size": config.eval_batch_size, "eval_batch_size": config.eval_batch_size,
    })
    return train_config.make_inputs(data_config, num_devices=1)


def _accuracy_in_one_pass(
    two: _Models, inputs: data_lib.InputPipeline, dataset: str
) -> tuple[np.ndarray, float, float]:
    """(test accuracy [masked-dense, TW], examples, largest |logit difference|) of
    both models over the test split, each batch run through both in one jitted call.

    Raises:
      ValueError: the test split is empty.
    """

    @jax.jit
    def both(batch):
        args, kwargs = training.model_inputs(batch)
        dense_logits = two.dense.apply(two.variables, *args, **kwargs, train=False)
        tw_logits = two.tw.apply(two.tw_variables, *args, **kwargs, train=False)
        diff = jnp.where(batch["mask"][:, None], jnp.abs(dense_logits - tw_logits), 0.0)
        return (
            training.batch_metrics(dense_logits, batch), training.batch_metrics(tw_logits, batch),
            jnp.max(diff),
        )

    correct, count, max_diff = np.zeros(2), 0.0, 0.0
    for batch in inputs.eval_batches:
        dense_metrics, tw_metrics, diff = both(batch)
        correct += [float(dense_metrics["correct"]), float(tw_metrics["correct"])]
        count += float(dense_metrics["count"])
        max_diff = max(max_diff, float(diff))
    if count == 0:
        raise ValueError(f"the evaluation split of {dataset!r} is empty")
    return correct / count, count, max_diff


def _forward_medians(
    config: ml_collections.ConfigDict, two: _Models, inputs: data_lib.InputPipeline
) -> tuple[int, dict[str, float]]:
    """(batch, median seconds {"dense", "tw"}) of the jitted forward of both models on
    `config.timing_batch` test examples, interleaved over `config.reps` repetitions."""
    example = next(iter(inputs.eval_batches))
    args, _ = training.model_inputs(example)
    reps = -(-config.timing_batch // args[0].shape[0])
    x = jnp.asarray(np.concatenate([args[0]] * reps)[: config.timing_batch])
    dense_forward = jax.jit(lambda v, x: two.dense.apply(v, x, train=False))
    tw_forward = jax.jit(lambda v, x: two.tw.apply(v, x, train=False))
    medians = timing.interleaved_medians(
        {"dense": lambda: dense_forward(two.variables, x),
         "tw": lambda: tw_forward(two.tw_variables, x)},
        repeats=config.reps, warmup=2,
    )
    return int(x.shape[0]), medians


def _sparsity(params: dict, layers: list[str]) -> float:
    flat = tree_paths.flatten(params)
    kernels_ = [np.asarray(flat[tree_paths.kernel_path(layer)]) for layer in layers]
    return float(sum((k == 0).sum() for k in kernels_) / max(sum(k.size for k in kernels_), 1))
