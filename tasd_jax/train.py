"""Training with gradual structured pruning: the tile-wise paper's prune / fine-tune loop.

Issue 5 §4; DESIGN.md §2 (recipes). flax-examples layout: `create_train_state`,
pure `train_step` / `eval_step` (jit-able; `train_and_evaluate` jits them with
the mesh shardings), and `train_and_evaluate(config, workdir)`, run by
`python -m experiments.run --config=configs/tw_digits.py --workdir=DIR`.

* Optimizer: optax sgd / momentum / adam / adamw with a learning-rate schedule,
  wrapped by `tasd_jax.pruning.prune` when `config.pruning.rules` is non-empty,
  so the masks live in the optimizer state.
* Data parallelism: a 1-D `jax.sharding.Mesh` over all local devices (axis
  "data"); every batch is sharded along its leading axis, the train state is
  replicated. The same config runs on 1 or n devices (the batch sizes must be
  multiples of n).
* Checkpoints (orbax) every `checkpoint_every` steps, the last `keep_checkpoints`
  kept; each holds the train state (with the masks) and the input iterator's
  state. Rerunning the same command resumes from the last one; on CPU the
  resumed run ends with parameters bitwise equal to an uninterrupted run.
* A non-finite loss (or update) stops the run (`FloatingPointError` naming the
  step) before anything of that step is saved; earlier checkpoints are kept.

Outputs in `workdir`: `metrics.jsonl` (one JSON object per logged step),
`results.json`, `plots.png`, `export/params.npz` (final pruned weights,
key = '/'-joined parameter path) and `export/batch_stats.npz` (if any),
`checkpoints/`.
"""

import functools
import json
import logging as std_logging
import os
import time
from typing import Any, Callable, Iterator, Mapping

from absl import logging
import flax
from flax import struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from tasd_jax import models
from tasd_jax import patterns
from tasd_jax import pruning
from tasd_jax import tree_paths

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


def _quiet_orbax() -> None:
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
            pruning.stages_up_to(pruning_config.stages, target),
            pruning_config.steps_per_stage,
            pruning_config.begin,
            pruning_config.get("mask_delay", 0),
        )
    if name == "cubic":
        return pruning.cubic(
            target, pruning_config.begin, pruning_config.end, pruning_config.frequency
        )
    raise ValueError(f"config.pruning.schedule={name!r} is not one of {PRUNING_SCHEDULES}")


def make_pruner(config: ml_collections.ConfigDict) -> pruning.Pruner | None:
    """The `Pruner` of `config.pruning`, or None when no rule is given (dense run).

    The schedule's target is the largest `sparsity` among the rules' patterns
    (other patterns follow proportionally; see `pruning.Pruner`), or 0 when
    none has one (N:M: the pattern is applied at every update).
    """
    pc = config.get("pruning")
    if pc is None or not pc.get("rules"):
        return None
    rules = tree_paths.as_rules(pc.rules)
    # Parse first so that a bad spec is reported as such, not as a schedule error.
    specs = [patterns.parse(r.value) for r in rules]
    target = max((getattr(p, "sparsity", 0.0) for p in specs), default=0.0)
    return pruning.Pruner(
        rules=rules,
        schedule=make_schedule(pc, target),
        score=pc.get("score", "magnitude"),
        taylor_steps=pc.get("taylor_steps", 1),
        global_threshold=pc.get("global_threshold", False),
    )


def make_model(config: ml_collections.ConfigDict, num_classes: int) -> flax.linen.Module:
    kwargs = dict(config.get("model_kwargs", {}))
    kwargs.setdefault("num_classes", num_classes)
    return models.get_model(config.model, **kwargs)


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
    mask = batch["mask"].astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(loss * mask),
        "correct": jnp.sum(correct * mask),
        "count": jnp.sum(mask),
    }


# --------------------------------------------------------------------------
# Data: (num_classes, endless train iterator with get_state/set_state,
# re-iterable padded eval batches with a "mask", an example batch for init).


def image_data(config: ml_collections.ConfigDict, num_devices: int) -> tuple:
    """Image classification through `tasd_jax.data` (any prepared tfds image data set)."""
    from tasd_jax import data as data_lib  # imported late: tfds is slow to import

    info = data_lib.dataset_info(config.dataset, config.get("data_dir"))
    common = dict(
        data_dir=config.get("data_dir"), image_size=config.get("image_size"), num_devices=num_devices
    )
    train_iter = data_lib.train_iterator(
        config.dataset, batch_size=config.batch_size, seed=config.seed,
        augment=config.get("augment", False), **common,
    )
    eval_data = data_lib.eval_batches(
        config.dataset, batch_size=config.eval_batch_size,
        split=config.get("eval_split", "test"), **common,
    )
    height, width, channels = info.image_shape
    size = config.get("image_size")
    example = {"image": np.zeros((1, height or size, width or size, channels), np.float32)}
    return info.num_classes, train_iter, eval_data, example


TOKEN_FEATURES = ("input_ids", "token_type_ids", "attention_mask")


def token_data(config: ml_collections.ConfigDict, num_devices: int) -> tuple:
    """Pre-tokenized text classification (BERT recipe) from a prepared tfds data set.

    The data set needs features `input_ids` (int [L]) and `label` (ClassLabel),
    optionally `token_type_ids` and `attention_mask` (int/bool [L]), stored as
    array_record (read with `tfds` data sources, no TensorFlow). Training
    batches are shuffled per epoch with `config.seed` (grain); evaluation is
    one ordered pass, the last batch padded and marked by `mask`.
    """
    import grain
    import tensorflow_datasets as tfds

    del num_devices  # batch sizes were checked against it already
    try:
        builder = tfds.builder(config.dataset, data_dir=config.get("data_dir"))
    except tfds.core.registered.DatasetNotFoundError as err:
        raise ValueError(f"unknown data set {config.dataset!r}: not a tfds builder") from err
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"data set {config.dataset!r} is not prepared in {builder.data_dir}: prepare it once "
            "with tfds (file_format='array_record')"
        )
    features = builder.info.features
    missing = [f for f in ("input_ids", "label") if f not in features]
    if missing:
        raise ValueError(
            f"data set {config.dataset!r} lacks the token features {missing}; it has {list(features)}"
        )
    keys = [k for k in TOKEN_FEATURES if k in features] + ["label"]

    def stack(examples: list[dict]) -> dict[str, np.ndarray]:
        return {k: np.stack([np.asarray(e[k]) for e in examples]).astype(np.int32) for k in keys}

    train_source = builder.as_data_source(split="train")
    train = (
        grain.MapDataset.range(len(train_source))
        .seed(config.seed)
        .shuffle()
        .batch(config.batch_size, drop_remainder=True)
        .map(lambda idx: stack(train_source.__getitems__([int(i) for i in idx])))
        .repeat(None)
    )
    eval_source = builder.as_data_source(split=config.get("eval_split", "test"))
    batch_size = config.eval_batch_size

    def eval_batch(i: int) -> dict[str, np.ndarray]:
        idx = range(i * batch_size, min((i + 1) * batch_size, len(eval_source)))
        batch = stack(eval_source.__getitems__(list(idx)))
        pad = batch_size - len(idx)
        batch = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}
        return {**batch, "mask": np.arange(batch_size) < len(idx)}

    options = grain.ReadOptions(num_threads=2, prefetch_buffer_size=2)
    eval_data = (
        grain.MapDataset.range(-(-len(eval_source) // batch_size)).map(eval_batch)
        .to_iter_dataset(options)
    )
    example = {k: np.zeros((1, *features[k].shape), np.int32) for k in keys if k != "label"}
    return (
        features["label"].num_classes,
        iter(train.to_iter_dataset(options)),
        eval_data,
        example,
    )


# --------------------------------------------------------------------------
# The loop.


def _evaluate(eval_fn, batches: Iterator[Mapping[str, np.ndarray]], put) -> dict[str, float]:
    totals = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
    for batch in batches:
        for k, v in eval_fn(put(batch)).items():
            totals[k] += float(v)
    count = max(totals["count"], 1.0)
    return {"test_loss": totals["loss_sum"] / count, "test_accuracy": totals["correct"] / count}


def _read_metrics(path: str, up_to_step: int | None = None) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if up_to_step is None or r["step"] <= up_to_step]


def _write_metrics(path: str, rows: list[dict]) -> None:
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def _to_python(metrics: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in metrics.items():
        v = np.asarray(v)
        out[k] = bool(v) if v.dtype == bool else float(v)
    return out


def plot_metrics(rows: list[dict], path: str) -> None:
    """Loss, accuracy and sparsity against step, one panel each, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = (
        ("loss", ("train_loss", "test_loss")),
        ("accuracy", ("train_accuracy", "test_accuracy")),
        ("sparsity (pruned params)", ("sparsity",)),
    )
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, marker="." if len(points) < 50 else None, label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:  # a dense run has no sparsity to draw
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _load_init(init_dir: str, state: TrainState) -> TrainState:
    """Starts from exported weights (`export/` of an earlier run): params and batch_stats."""

    def load(name, like):
        path = os.path.join(init_dir, f"{name}.npz")
        if not os.path.exists(path):
            raise ValueError(f"config.init_from={init_dir!r} has no {name}.npz")
        with np.load(path) as data:
            flat = {k: jnp.asarray(data[k]) for k in data.files}
        shapes = {k: v.shape for k, v in tree_paths.flatten(like).items()}
        got = {k: v.shape for k, v in flat.items()}
        if shapes != got:
            raise ValueError(f"{path} does not fit the model: expected {shapes}, got {got}")
        return tree_paths.unflatten(flat, like=like)

    params = load("params", state.params)
    batch_stats = load("batch_stats", state.batch_stats) if state.batch_stats else state.batch_stats
    return state.replace(params=params, batch_stats=batch_stats, opt_state=state.tx.init(params))


def export_weights(state: TrainState, export_dir: str) -> None:
    """Writes params.npz (and batch_stats.npz) keyed by '/'-joined parameter path."""
    os.makedirs(export_dir, exist_ok=True)
    for name, tree in (("params", state.params), ("batch_stats", state.batch_stats)):
        flat = {k: np.asarray(jax.device_get(v)) for k, v in tree_paths.flatten(tree).items()}
        if flat:
            np.savez(os.path.join(export_dir, f"{name}.npz"), **flat)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (and prunes) `config.model` on `config.dataset`; writes results to `workdir`.

    Config fields: see configs/tw_digits.py (documented there).

    Returns:
      The contents of `workdir/results.json`.

    Raises:
      ValueError: bad config (unknown model, data set, optimizer, pattern,
        schedule, or a pruning rule that matches no parameter), before training.
      FloatingPointError: the training loss became NaN or inf.
    """
    os.makedirs(workdir, exist_ok=True)
    _quiet_orbax()
    devices = jax.local_devices()
    for field in ("num_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
        if not isinstance(config[field], int) or config[field] < 1:
            raise ValueError(f"config.{field}={config[field]!r} must be an integer >= 1")
    for field in ("batch_size", "eval_batch_size"):
        if config[field] % len(devices):
            raise ValueError(
                f"config.{field}={config[field]} must be a multiple of the {len(devices)} "
                "local devices (the batch is split evenly across them)"
            )
    tx = make_optimizer(config)
    pruner = make_pruner(config)
    if pruner is not None:
        tx = pruning.prune(tx, pruner)
    if config.get("input", "image") == "tokens":
        num_classes, train_iter, eval_data, example_batch = token_data(config, len(devices))
    else:
        num_classes, train_iter, eval_data, example_batch = image_data(config, len(devices))
    model = make_model(config, num_classes)

    mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    put = functools.partial(jax.device_put, device=sharded)

    state = create_train_state(
        jax.random.PRNGKey(config.seed), model, example_batch, tx
    )
    if pruner is not None:
        pruner.targets(state.params)  # a rule matching nothing fails here, before training
    if config.get("init_from"):
        state = _load_init(config.init_from, state)
    state = jax.device_put(state, replicated)

    p_train_step = jax.jit(
        train_step, in_shardings=(replicated, sharded), out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    p_eval_step = jax.jit(eval_step, in_shardings=(replicated, sharded), out_shardings=replicated)
    p_sparsity = jax.jit(
        lambda s: pruning.sparsity_metrics(pruner, s.params, s.opt_state) if pruner else {}
    )

    ckpt_dir = os.path.abspath(os.path.join(workdir, "checkpoints"))
    manager = ocp.CheckpointManager(
        ckpt_dir,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=config.keep_checkpoints, save_interval_steps=config.checkpoint_every,
            cleanup_tmp_directories=True,
        ),
    )
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    start = manager.latest_step()
    if start is not None:
        restored = manager.restore(
            start,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(jax.tree.map(ocp.utils.to_shape_dtype_struct, state)),
                data=ocp.args.JsonRestore(),
            ),
        )
        state = restored.state
        train_iter.set_state(restored.data)
        # Rows logged after the checkpoint are logged again by the resumed run.
        rows = _read_metrics(metrics_path, up_to_step=start)
        logging.info("Resumed from the checkpoint at step %d in %s", start, ckpt_dir)
    else:
        start, rows = 0, []
    _write_metrics(metrics_path, rows)

    # The dense model just before the first mask is the baseline the pruned one is held to
    # (at step 0 only when it starts from trained weights).
    dense_eval_step = pruner.schedule.begin if pruner is not None else None
    if dense_eval_step == 0 and not config.get("init_from"):
        dense_eval_step = None
    step, t_last, steps_since = start, time.perf_counter(), 0
    with open(metrics_path, "a") as metrics_file:

        def log(row):
            rows.append(row)
            metrics_file.write(json.dumps(row) + "\n")
            metrics_file.flush()

        def evaluate():
            return _evaluate(lambda b: p_eval_step(state, b), eval_data, put)

        while step < config.num_steps:
            if step == dense_eval_step and not any("dense_test_accuracy" in r for r in rows):
                log({"step": step, **{f"dense_{k}": v for k, v in evaluate().items()}})
            state, metrics = p_train_step(state, put(next(train_iter)))
            loss = float(metrics["loss"])  # a sync per step: catches the first bad step
            step += 1
            steps_since += 1
            if not (np.isfinite(loss) and bool(metrics["params_finite"])):
                manager.wait_until_finished()
                what = f"loss is {loss}" if not np.isfinite(loss) else "the updated parameters are not finite"
                raise FloatingPointError(
                    f"training {what} at step {step}; stopped. The last good checkpoint "
                    f"(step {manager.latest_step()}) is kept in {ckpt_dir}"
                )
            if step % config.checkpoint_every == 0 or step == config.num_steps:
                manager.save(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardSave(state),
                        data=ocp.args.JsonSave(train_iter.get_state()),
                    ),
                    force=step == config.num_steps,
                )
            is_eval = step % config.eval_every == 0 or step == config.num_steps
            if step % config.log_every == 0 or is_eval:
                row = {"step": step, "train_loss": loss, "train_accuracy": float(metrics["accuracy"])}
                row.update(_to_python(p_sparsity(state)))
                if is_eval:
                    row.update(evaluate())
                now = time.perf_counter()
                steps_per_s, t_last, steps_since = steps_since / (now - t_last), now, 0
                log(row)
                logging.info(
                    "step %d/%d  loss %.4f  train acc %.4f%s%s  %.1f steps/s",
                    step, config.num_steps, loss, row["train_accuracy"],
                    f"  test acc {row['test_accuracy']:.4f}" if is_eval else "",
                    f"  sparsity {row['sparsity']:.3f}" if "sparsity" in row else "",
                    steps_per_s,
                )
    manager.wait_until_finished()
    manager.close()

    final_eval = evaluate()
    final_sparsity = _to_python(p_sparsity(state))
    final = {
        "step": step,
        **final_eval,
        "sparsity": final_sparsity.pop("sparsity", 0.0),
        "pattern_valid": final_sparsity.pop("pattern_valid", True),
        "layer_sparsity": {k.removeprefix("sparsity/"): v for k, v in final_sparsity.items()},
    }
    dense_rows = [r for r in rows if "dense_test_accuracy" in r]
    if dense_rows:
        final["dense_test_accuracy"] = dense_rows[-1]["dense_test_accuracy"]
        final["accuracy_drop"] = final["dense_test_accuracy"] - final["test_accuracy"]
    results = {
        "final": final,
        "num_devices": len(devices),
        "pruned_params": [t.path for t in pruner.targets(state.params)] if pruner else [],
        "config": config.to_dict(),
    }
    export_weights(state, os.path.join(workdir, "export"))
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)
    plot_metrics(rows, os.path.join(workdir, "plots.png"))
    logging.info("Final: %s", {k: v for k, v in final.items() if k != "layer_sparsity"})
    return results
