"""The training config read into the library's plain arguments.

`tasd_jax.training` takes values, not configs; these functions say which
config field becomes which argument (fields are documented in
configs/tw_digits.py). A bad field raises a ValueError naming it.
"""

from typing import Any

import flax
import grain
import jax
import ml_collections
import optax

from tasd_jax import data as data_lib
from tasd_jax import export as export_lib
from tasd_jax import models
from tasd_jax import patterns
from tasd_jax import pruning
from tasd_jax import training

PRUNING_SCHEDULES = ("one_shot", "staged", "cubic")
RULES_FORM = (
    'a tuple of (path regex, pattern spec[, axis]) tuples, e.g. '
    '(("dense_[01]/kernel$", "tw(sparsity=0.75,g=32)"),)'
)


def make_optimizer(config: ml_collections.ConfigDict, num_steps: int) -> optax.GradientTransformation:
    """The inner optimizer (before pruning) of `config.optimizer`, its learning rate
    following `config.lr_schedule` over the run's `num_steps` (resolved by
    `resolve_num_steps`, so a staged run that leaves `config.num_steps` unset decays
    over the steps its schedule needs)."""
    try:
        schedule = training.make_lr_schedule(
            config.get("lr_schedule", "constant"), config.learning_rate, num_steps,
            config.get("warmup_steps", 0),
        )
        return training.make_optimizer(
            config.optimizer, schedule, weight_decay=config.get("weight_decay", 0.0),
            momentum=config.get("momentum", 0.9), nesterov=config.get("nesterov", False),
        )
    except ValueError as err:  # name the config field, as every other config error does
        message = str(err)
        for field in ("lr_schedule=", "optimizer="):
            if message.startswith(field):
                message = "config." + message
        raise ValueError(message) from err


def make_schedule(pruning_config: ml_collections.ConfigDict, target: float) -> pruning.Schedule:
    """The pruning schedule of `config.pruning`, ending at sparsity `target`."""
    name = pruning_config.schedule
    if name == "one_shot":
        return pruning.one_shot(target, pruning_config.begin)
    if name == "staged":
        return pruning.staged(
            pruning.stage_list(pruning_config.stages, target),
            pruning_config.steps_per_stage,
            pruning_config.begin,
            pruning_config.get("mask_delay", 0),
        )
    if name == "cubic":
        return pruning.cubic(
            target, pruning_config.begin, pruning_config.end, pruning_config.frequency
        )
    raise ValueError(f"config.pruning.schedule={name!r} is not one of {PRUNING_SCHEDULES}")


def _is_rule(rule: Any) -> bool:
    """Whether `rule` has the form `(path regex, pattern spec or Pattern[, axis int or None])`."""
    if isinstance(rule, str) or not isinstance(rule, (tuple, list)) or len(rule) not in (2, 3):
        return False
    axis = rule[2] if len(rule) == 3 else None
    axis_ok = axis is None or (isinstance(axis, int) and not isinstance(axis, bool))
    return isinstance(rule[0], str) and isinstance(rule[1], (str, patterns.Pattern)) and axis_ok


def pruning_rules(config: ml_collections.ConfigDict) -> tuple[tuple, ...]:
    """`config.pruning.rules` as a tuple of rules; () when there is no pruning (a dense run).

    Raises:
      ValueError: a malformed value, naming it and the form rules take
        (a plain string, or one rule not wrapped in an outer tuple, would
        otherwise be unpacked character by character).
    """
    pc = config.get("pruning")
    rules = pc.get("rules") if pc is not None else None
    if not rules:
        return ()
    if isinstance(rules, str) or not isinstance(rules, (tuple, list)):
        raise ValueError(f"config.pruning.rules={rules!r} must be {RULES_FORM}")
    for i, rule in enumerate(rules):
        if not _is_rule(rule):
            hint = (
                " (a single rule still needs the outer tuple: ((regex, spec),))"
                if isinstance(rule, str) else ""
            )
            raise ValueError(
                f"config.pruning.rules[{i}]={rule!r} is not a (path regex, pattern spec[, axis]) "
                f"tuple; config.pruning.rules must be {RULES_FORM}{hint}"
            )
    return tuple(tuple(rule) for rule in rules)


def make_pruner(config: ml_collections.ConfigDict) -> pruning.Pruner | None:
    """The `Pruner` of `config.pruning`, or None when no rule is given (dense run).

    The schedule's target is the largest `sparsity` among the rules' patterns
    (other patterns follow proportionally; see `pruning.Pruner`), or 0 when
    none has one (N:M: the pattern is applied at every update).
    """
    rules = pruning_rules(config)
    if not rules:
        return None
    pc = config.pruning
    # Parses the specs first, so that a bad spec is reported as such, not as a schedule error.
    target = pruning.final_sparsity(rules)
    return pruning.Pruner(
        rules=rules,
        schedule=make_schedule(pc, target),
        score=pc.get("score", "magnitude"),
        taylor_steps=pc.get("taylor_steps", 1),
        global_threshold=pc.get("global_threshold", False),
    )


def resolve_num_steps(config: ml_collections.ConfigDict) -> int:
    """`config.num_steps`, or when it is None the end of a staged schedule:
    `pruning.begin + stages * pruning.steps_per_stage` (the last stage fine-tunes
    for its full length), so the budget is derived from the target sparsity."""
    if config.num_steps is not None:
        return config.num_steps
    rules = pruning_rules(config)
    pc = config.get("pruning")
    if not rules or pc.schedule != "staged":
        raise ValueError(
            "config.num_steps is None; it can only be derived for a staged pruning schedule "
            "(set --config.num_steps)"
        )
    stages = pruning.stage_list(pc.stages, pruning.final_sparsity(rules))
    return pc.begin + len(stages) * pc.steps_per_stage


def model_kwargs(config: ml_collections.ConfigDict, num_classes: int) -> dict[str, Any]:
    """The model's fields: `config.model_kwargs` plus the data set's `num_classes`."""
    kwargs = dict(config.get("model_kwargs", {}))
    kwargs.setdefault("num_classes", num_classes)
    return kwargs


def make_model(config: ml_collections.ConfigDict, num_classes: int) -> flax.linen.Module:
    """The `tasd_jax.models` model `config.model` with `model_kwargs`."""
    return models.get_model(config.model, **model_kwargs(config, num_classes))


def make_inputs(
    config: ml_collections.ConfigDict,
    num_devices: int,
    shard: grain.sharding.ShardOptions = grain.sharding.NoSharding(),
) -> data_lib.InputPipeline:
    """The data of `config`: images (any tfds image data set) or pre-tokenized text.

    `num_devices` is the number of devices of all processes; with `shard`, each
    batch is this process's block of rows of the global batch (see
    `tasd_jax.data.inputs`).
    """
    common = dict(
        batch_size=config.batch_size, eval_batch_size=config.eval_batch_size, seed=config.seed,
        data_dir=config.get("data_dir"), eval_split=config.get("eval_split", "test"), shard=shard,
    )
    if config.get("input", "image") == "tokens":
        return data_lib.token_inputs(config.dataset, **common)
    return data_lib.image_inputs(
        config.dataset, image_size=config.get("image_size"), augment=config.get("augment", False),
        num_devices=num_devices, **common,
    )


def export_state(
    state: training.TrainState,
    export_dir: str,
    config: ml_collections.ConfigDict,
    inputs: data_lib.InputPipeline,
) -> None:
    """Writes the weights and the model description of `config` (see `tasd_jax.export`)."""
    example = training.main_input(inputs.example_batch)
    export_lib.save_export(
        export_dir,
        jax.device_get(training.state_variables(state)),
        model=config.model,
        model_kwargs=model_kwargs(config, inputs.num_classes),
        input_shape=tuple(example.shape),
        input_dtype=str(example.dtype),
        dataset=config.get("dataset"),
        pruning_rules=tuple((r[0], r[1]) for r in pruning_rules(config)),
    )
