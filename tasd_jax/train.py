"""Training building blocks: state, optimizer and pruner from a config, jitted steps, checkpoints, export.

The tile-wise paper's prune / fine-tune loop (docs/tile_wise.md) is assembled
from these by the `train` experiment (`experiments/train.py`, run as
`python -m experiments.run --config=configs/tw_digits.py --workdir=DIR`), in
the flax-examples layout: `create_train_state`, pure `train_step` /
`eval_step` (jit-able; the driver jits them with the mesh shardings).

* Optimizer: optax sgd / momentum / adam / adamw with a learning-rate schedule,
  wrapped by `tasd_jax.pruning.prune` when `config.pruning.rules` is non-empty,
  so the masks live in the optimizer state.
* Schedules: a staged schedule's stage list is cut at the rules' target
  sparsity, and its step budget (`num_steps`) follows from it when the config
  leaves `num_steps` unset (`resolve_num_steps`).
* Checkpoints (orbax): the train state (with the masks) and the input
  iterator's state, so a rerun resumes exactly (`checkpoint_manager`,
  `save_checkpoint`, `restore_latest`). Each step directory gets a manifest
  (size and sha256 of every file) once orbax has finished it; restoring takes
  the newest step that matches its manifest, so a truncated, garbled or
  half-written checkpoint is skipped, never restored. In a run on JAX's
  multi-process runtime every process calls these together (orbax's saves,
  restores and deletions are collective); process 0 alone writes the manifest.
* Export: `export_state` writes the weights and the model description that
  every later stage reads back with `tasd_jax.export.load_export`;
  `init_from_export` starts a run from one.
"""

import hashlib
import json
import logging as std_logging
import os
from typing import Any, Callable, Iterable, Mapping

from absl import logging
import flax
from flax import struct
import grain
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from tasd_jax import data as data_lib
from tasd_jax import export as export_lib
from tasd_jax import models
from tasd_jax import patterns
from tasd_jax import pruning

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
LR_SCHEDULES = ("constant", "cosine", "warmup_cosine", "linear")
PRUNING_SCHEDULES = ("one_shot", "staged", "cubic")


class TrainState(struct.PyTreeNode):
    """Everything a training step reads and writes (checkpointed as a whole).

    Attributes:
      step: int32 scalar, number of optimizer updates applied.
      params: the model's "params" collection.
      batch_stats: the "batch_stats" collection ({} for models without BatchNorm).
      opt_state: the optimizer state; a `pruning.PruneState` (masks inside) when
        pruning.
      rng: uint32[2] key; step `t` uses `fold_in(rng, t)` for dropout, so a resumed
        run draws the same dropout masks.
      apply_fn, tx: the model's apply and the optimizer (static, not saved).
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: optax.OptState
    rng: jax.Array
    apply_fn: Callable[..., Any] = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)


class _OrbaxInfoFilter(std_logging.Filter):
    """Drops orbax's INFO records (dozens per checkpoint) so the progress lines stay readable."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno > std_logging.INFO or "orbax" not in record.pathname


def quiet_orbax() -> None:
    """Keeps orbax's per-checkpoint INFO records out of the absl log."""
    handler = logging.get_absl_handler()
    if not any(isinstance(f, _OrbaxInfoFilter) for f in handler.filters):
        handler.addFilter(_OrbaxInfoFilter())


# --------------------------------------------------------------------------
# Building blocks from the config (all checks happen before training starts).


def make_lr_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Learning rate against step: constant, cosine, warmup_cosine or linear decay to 0."""
    lr, steps = config.learning_rate, config.num_steps
    name = config.get("lr_schedule", "constant")
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "cosine":
        return optax.cosine_decay_schedule(lr, steps)
    if name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, config.warmup_steps, steps)
    if name == "linear":
        return optax.linear_schedule(lr, 0.0, steps)
    raise ValueError(f"config.lr_schedule={name!r} is not one of {LR_SCHEDULES}")


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The inner optimizer (before pruning) named by `config.optimizer`."""
    lr = make_lr_schedule(config)
    name, wd = config.optimizer, config.get("weight_decay", 0.0)
    if name in ("sgd", "momentum"):
        momentum = config.get("momentum", 0.9) if name == "momentum" else None
        sgd = optax.sgd(lr, momentum=momentum, nesterov=config.get("nesterov", False))
        # Coupled (L2) decay as in torch.optim.SGD, the TW paper's optimizer.
        return optax.chain(optax.add_decayed_weights(wd), sgd) if wd else sgd
    if name == "adam":
        return optax.adam(lr)
    if name == "adamw":
        return optax.adamw(lr, weight_decay=wd)
    raise ValueError(f"config.optimizer={name!r} is not one of {OPTIMIZERS}")


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


RULES_FORM = (
    'a tuple of (path regex, pattern spec[, axis]) tuples, e.g. '
    '(("dense_[01]/kernel$", "tw(sparsity=0.75,g=32)"),)'
)


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


def model_inputs(batch: Mapping[str, jax.Array]) -> tuple[tuple, dict]:
    """Positional and keyword model inputs of a batch (images, or BERT token ids)."""
    if "input_ids" in batch:
        kwargs = {k: batch[k] for k in ("token_type_ids", "attention_mask") if k in batch}
        return (batch["input_ids"],), kwargs
    return (batch["image"],), {}


def create_train_state(
    rng: jax.Array,
    model: flax.linen.Module,
    example_batch: Mapping[str, Any],
    tx: optax.GradientTransformation,
) -> TrainState:
    """Initialises the model on `example_batch` (only its shapes matter) and the optimizer."""
    args, kwargs = model_inputs(example_batch)
    init_rng, rng = jax.random.split(rng)
    variables = model.init(init_rng, *args, **kwargs, train=False)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros([], jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=rng,
        apply_fn=model.apply,
        tx=tx,
    )


# --------------------------------------------------------------------------
# Steps.


def _forward(state: TrainState, params: Any, batch: Mapping[str, jax.Array], train: bool):
    args, kwargs = model_inputs(batch)
    variables = {"params": params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    if train:
        rngs = {"dropout": jax.random.fold_in(state.rng, state.step)}
        mutable = ["batch_stats"] if state.batch_stats else []
        logits, updated = state.apply_fn(
            variables, *args, **kwargs, train=True, rngs=rngs, mutable=mutable
        )
        return logits, updated.get("batch_stats", state.batch_stats)
    return state.apply_fn(variables, *args, **kwargs, train=False), state.batch_stats


def train_step(state: TrainState, batch: Mapping[str, jax.Array]) -> tuple[TrainState, dict]:
    """One optimizer step on `batch` ({"image" [B,H,W,C] | "input_ids" [B,L], "label" [B]}).

    Returns the new state and {"loss", "accuracy"} of the batch (before the update),
    plus "params_finite": whether every updated parameter is finite.
    """

    def loss_fn(params):
        logits, batch_stats = _forward(state, params, batch, train=True)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, (logits, batch_stats)

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        batch_stats=batch_stats,
        opt_state=opt_state,
    )
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    # A finite loss can still produce an overflowing update: check what gets checkpointed.
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(new_state.params)]))
    return new_state, {"loss": loss, "accuracy": accuracy, "params_finite": finite}


def eval_step(state: TrainState, batch: Mapping[str, jax.Array]) -> dict:
    """Sums over the real examples of a padded batch (`mask` [B] bool marks them).

    Returns {"loss_sum", "correct", "count"} as scalars.
    """
    logits, _ = _forward(state, state.params, batch, train=False)
    return batch_metrics(logits, batch)


def batch_metrics(logits: jax.Array, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """{"loss_sum", "correct", "count"} of logits [B, classes] over the rows where
    `batch["mask"]` [B] is True (the real examples of a padded batch)."""
    mask = batch["mask"].astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(loss * mask),
        "correct": jnp.sum(correct * mask),
        "count": jnp.sum(mask),
    }




def evaluate(
    eval_fn: Callable[[Mapping[str, Any]], Mapping[str, jax.Array]],
    batches: Iterable[Mapping[str, np.ndarray]],
    put: Callable[[Any], Any] = lambda x: x,
) -> dict[str, float]:
    """Loss and accuracy over one pass of padded, masked batches.

    Args:
      eval_fn: batch -> {"loss_sum", "correct", "count"} (e.g. a jitted `eval_step`).
      batches: the evaluation batches.
      put: places a host batch on the devices.
    """
    totals = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
    for batch in batches:
        for k, v in eval_fn(put(batch)).items():
            totals[k] += float(v)
    if totals["count"] == 0:
        raise ValueError("the evaluation data is empty: no example to score")
    return {
        "test_loss": totals["loss_sum"] / totals["count"],
        "test_accuracy": totals["correct"] / totals["count"],
    }


# --------------------------------------------------------------------------
# Checkpoints and exports.


MANIFEST = "sha256_manifest.json"  # in each step directory, written after orbax finished the step


class CheckpointError(RuntimeError):
    """A checkpoint directory holds checkpoints, but none of them is intact."""


def checkpoint_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
    """orbax manager of `workdir/checkpoints`, saving every `checkpoint_every` steps.

    Saves are synchronous, so `save_checkpoint` can checksum a step as soon as
    it returns (a few ms per step for the quick start). orbax deletes nothing
    (no `max_to_keep`): `save_checkpoint` deletes old steps itself, only after
    the new step's manifest is on disk, so a kill at any moment leaves an
    intact checkpoint behind.
    """
    quiet_orbax()
    return ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(
            save_interval_steps=config.checkpoint_every, cleanup_tmp_directories=True,
            enable_async_checkpointing=False,
        ),
    )


def step_directory(manager: ocp.CheckpointManager, step: int) -> str:
    """The directory of `step` (orbax's default step names: the bare number)."""
    return os.path.join(str(manager.directory), str(step))


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _step_files(step_dir: str) -> list[str]:
    """Every file under `step_dir` but the manifest, as sorted relative paths."""
    paths = (
        os.path.relpath(os.path.join(root, name), step_dir)
        for root, _, names in os.walk(step_dir)
        for name in names
    )
    return sorted(p for p in paths if p != MANIFEST)


def write_manifest(step_dir: str) -> None:
    """Records the size and sha256 of every file of a finished step in `step_dir/MANIFEST`."""
    paths = {rel: os.path.join(step_dir, rel) for rel in _step_files(step_dir)}
    files = {rel: {"bytes": os.path.getsize(p), "sha256": _sha256(p)} for rel, p in paths.items()}
    tmp = os.path.join(step_dir, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(step_dir, MANIFEST))


def checkpoint_problem(step_dir: str) -> str | None:
    """None when every file of the step matches its manifest; otherwise what is wrong."""
    try:
        with open(os.path.join(step_dir, MANIFEST)) as f:
            recorded = json.load(f)["files"]
    except FileNotFoundError:
        return f"it has no {MANIFEST} (its save did not finish, or the file was deleted)"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"its {MANIFEST} is unreadable ({err})"
    present = _step_files(step_dir)
    missing = sorted(set(recorded) - set(present))
    extra = sorted(set(present) - set(recorded))
    if missing or extra:
        return f"files missing {missing}, unexpected {extra}"
    for rel in present:
        path, expected = os.path.join(step_dir, rel), recorded[rel]
        size = os.path.getsize(path)
        if size != expected["bytes"]:
            return f"{rel} has {size} bytes, {expected['bytes']} were written (truncated?)"
        if _sha256(path) != expected["sha256"]:
            return f"{rel} does not match its sha256 (its bytes changed)"
    return None


def save_checkpoint(
    manager: ocp.CheckpointManager, state: TrainState, data_state: Any, *, keep: int,
    force: bool = False,
) -> bool:
    """Saves the state and the input iterator's state at `state.step`, with its manifest.

    Then deletes all but the newest `keep` steps. Returns whether a step was
    saved (orbax skips steps off its interval unless `force`). Every process of
    a multi-process run calls it; process 0 writes the manifest, then deletes
    the old steps (orbax deletes on process 0 only, the others wait for it).
    """
    step = int(state.step)
    saved = manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
        ),
        force=force,
    )
    if saved:
        manager.wait_until_finished()  # no-op when synchronous; the manifest needs the final files
        # orbax finalizes a step on process 0 once every process has written its part.
        if jax.process_index() == 0:
            write_manifest(step_directory(manager, step))
        for old in sorted(manager.all_steps())[:-keep]:
            manager.delete(old)
    return saved


def restore_latest(
    manager: ocp.CheckpointManager, state: TrainState
) -> tuple[TrainState, Any] | None:
    """(state, input iterator state) of the newest intact checkpoint, shaped like `state`.

    Steps are tried newest first; one whose files do not match its manifest
    (missing, truncated or changed files, no manifest) is skipped with a
    warning naming it, and deleted once an older step is restored, since the
    resumed run saves that step again (orbax saves only steps newer than its
    latest). Every process of a multi-process run checks the same files (the
    checkpoint directory is shared) and all have checked before any deletes.

    Returns:
      None when there is no checkpoint.

    Raises:
      CheckpointError: there are checkpoints, but none is intact.
    """
    skipped = {}
    for step in sorted(manager.all_steps(), reverse=True):
        problem = checkpoint_problem(step_directory(manager, step))
        if problem is None:
            if skipped and jax.process_count() > 1:
                # No process may see a step vanish while it still checks it.
                multihost_utils.sync_global_devices("restore_latest: checked")
            for newer in skipped:
                manager.delete(newer)
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(
                        jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
                    ),
                    data=ocp.args.JsonRestore(),
                ),
            )
            return restored.state, restored.data
        logging.warning("Skipping the checkpoint %s: %s", step_directory(manager, step), problem)
        skipped[step] = problem
    if skipped:
        found = "; ".join(f"step {step}: {problem}" for step, problem in skipped.items())
        raise CheckpointError(
            f"no intact checkpoint in {manager.directory} ({found}); delete that directory to "
            "start the run over, or use a new workdir"
        )
    return None


def state_variables(state: TrainState) -> dict[str, Any]:
    """The model variables of a train state: {"params", "batch_stats" if any}."""
    out = {"params": state.params}
    if state.batch_stats:
        out["batch_stats"] = state.batch_stats
    return out


def init_from_export(state: TrainState, export: export_lib.Export) -> TrainState:
    """Starts from exported weights (params and batch_stats); a fresh optimizer state."""
    variables = export.variables_like(state_variables(state))
    params = variables["params"]
    return state.replace(
        params=params,
        batch_stats=variables.get("batch_stats", state.batch_stats),
        opt_state=state.tx.init(params),
    )


def export_state(
    state: TrainState,
    export_dir: str,
    config: ml_collections.ConfigDict,
    inputs: data_lib.InputPipeline,
) -> None:
    """Writes the weights and the model description of `config` (see `tasd_jax.export`)."""
    (name, example), = [(k, v) for k, v in inputs.example_batch.items() if k in ("image", "input_ids")]
    pc = config.get("pruning")
    export_lib.save_export(
        export_dir,
        jax.device_get(state_variables(state)),
        model=config.model,
        model_kwargs=model_kwargs(config, inputs.num_classes),
        input_shape=tuple(example.shape),
        input_dtype=str(example.dtype),
        dataset=config.get("dataset"),
        pruning_rules=tuple((r[0], r[1]) for r in pc.rules) if pc is not None and pc.get("rules") else (),
    )
