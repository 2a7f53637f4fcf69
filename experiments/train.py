"""The `train` experiment: train (and gradually prune) a model, then export it.

    python -m experiments.run --config=configs/tw_digits.py --workdir=DIR

Assembled from the building blocks of `tasd_jax.train` (config fields are
documented in configs/tw_digits.py):

* Data parallelism: a 1-D `jax.sharding.Mesh` over all devices (axis
  "data"); every batch is sharded along its leading axis, the train state is
  replicated. The same config runs on 1 or n devices (the batch sizes must be
  multiples of n), in one process or in several on JAX's multi-process
  runtime (`config.distributed`, `experiments.distributed`, docs/distributed.md):
  there the mesh spans every process's devices, process by process; each
  process reads its block of rows of every global batch and the global arrays
  are assembled from the blocks. All processes train, evaluate and checkpoint
  together; process 0 alone writes the files (config, metrics, results, plot,
  checkpoint manifests, export).
* Checks first (`check_run`): the config and the workdir are checked before
  any data is read or anything written; a problem is a `ConfigError` whose
  message says what to change.
* Checkpoints every `checkpoint_every` steps, the last `keep_checkpoints`
  kept, each verified against its sha256 manifest when restoring. Rerunning
  the same command resumes from the newest intact one (a corrupted newer one
  is skipped with a warning); on CPU the resumed run ends with parameters
  bitwise equal to an uninterrupted run.
* Resume only what was started: the first start stores the config as
  `config.json`; a rerun whose config differs is refused, except for the
  fields of `CHANGEABLE_ON_RESUME` with `config.resume_with_changes`
  (`--resume_with_changes` on the command line).
* A non-finite loss (or update) stops the run (`FloatingPointError` naming the
  step) before anything of that step is saved; earlier checkpoints are kept.

Outputs in `workdir` (one directory shared by all processes of a
multi-process run): `config.json`, `metrics.jsonl` (one JSON object per
logged step; the rows a checkpoint covers are on disk before it is saved),
`results.json`, `plots.png`, `checkpoints/` and `export/` (the weights and
model description every later stage reads, `tasd_jax.export`).
"""

import contextlib
import functools
import json
import math
import os
import time
from typing import Any, Iterator, Mapping, NamedTuple

from absl import logging
import grain
import jax
import ml_collections
import numpy as np
import optax

from experiments import distributed
from experiments import outputs
from tasd_jax import export as export_lib
from tasd_jax import pruning
from tasd_jax import train

# ----------------------------------------------------------------------------
# Checks of the config and the workdir (all before any work).

CONFIG_FILE = "config.json"

# The fields a rerun may change when it resumes a workdir (with
# `resume_with_changes`): each decides what is logged, evaluated or kept on
# disk, or where the same data is read from, never what is trained, so the
# resumed run still computes exactly what was started. Every other field
# (learning rate, pruning, seed, batch size, num_steps, model, data set, ...)
# is fixed for the life of a workdir.
CHANGEABLE_ON_RESUME = {
    "log_every": "which steps are logged; no training computation reads it",
    "eval_every": "which steps are evaluated; evaluation only reads the state",
    "checkpoint_every": "when the state is saved, not what it is",
    "keep_checkpoints": "how many saved steps stay on disk",
    "data_dir": "where the prepared data set is read from, not what it holds",
}
# Fields that say how this invocation runs, not what the run is: never stored or compared.
# `distributed` is one: like the device count, the number of processes decides only
# how the global batch is split, and a checkpoint (a replicated state and the global
# input position) resumes on any number of processes; process_id differs per process.
INVOCATION_FIELDS = ("resume_with_changes", "distributed")


class ConfigError(ValueError):
    """The config or the workdir cannot make (or resume) a run; raised before
    any data is read or any step trained, with a message saying what to change."""


class Plan(NamedTuple):
    """What `check_run` built from the config: the step budget, the optimizer
    (with the pruning wrapper) and the pruner (None for a dense run)."""

    num_steps: int
    tx: optax.GradientTransformation
    pruner: pruning.Pruner | None


@contextlib.contextmanager
def _config_errors() -> Iterator[None]:
    """Re-raises a ValueError of the enclosed checks or building as a ConfigError."""
    try:
        yield
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from err


def initialize_distributed(config: ml_collections.ConfigDict) -> None:
    """Joins JAX's multi-process runtime when `config.distributed` (or the
    environment) asks for it (`experiments.distributed.initialize`); nothing
    for a single-process run. Must come before any JAX computation.

    Raises:
      ConfigError: a bad `config.distributed` field, or a process that already used JAX.
    """
    with _config_errors():
        distributed.initialize(config)


def mesh_devices() -> list[jax.Device]:
    """Every device of the run, process by process (in `jax.devices()` order within
    one): along the mesh's "data" axis process p then holds the p-th block of rows
    of every global batch, the block its input pipeline reads.

    Raises:
      ConfigError: the processes have different numbers of devices (the blocks
        would differ in size).
    """
    if jax.device_count() != jax.local_device_count() * jax.process_count():
        raise ConfigError(
            f"this process has {jax.local_device_count()} devices, but the {jax.process_count()} "
            f"processes have {jax.device_count()} together: every process needs the same number"
        )
    return sorted(jax.devices(), key=lambda d: d.process_index)


def check_run(config: ml_collections.ConfigDict, workdir: str, num_devices: int) -> Plan:
    """Every check that needs no data, before anything is read or written.

    Checks the numbers of the config (intervals, step budget, batch sizes
    against the `num_devices` of all processes, learning rate), the optimizer,
    the pruning rules and schedule (which must finish within `num_steps`),
    that `workdir` is a writable directory, and that a run already in it was
    started with this config (`check_resume`).

    Raises:
      ConfigError: the first problem found.
    """
    with _config_errors():
        num_steps = train.resolve_num_steps(config)
        _check_numbers(config, num_steps, num_devices)
        tx = train.make_optimizer(config)
        pruner = train.make_pruner(config)
        _check_schedule_ends(config, pruner, num_steps)
    check_workdir(workdir)
    check_resume(config, workdir)
    return Plan(num_steps, pruning.prune(tx, pruner) if pruner is not None else tx, pruner)


def _check_numbers(config: ml_collections.ConfigDict, num_steps: int, num_devices: int) -> None:
    for field in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
        if not isinstance(config[field], int) or config[field] < 1:
            raise ValueError(f"config.{field}={config[field]!r} must be an integer >= 1")
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"config.num_steps={num_steps!r} must be an integer >= 1")
    for field in ("batch_size", "eval_batch_size"):
        if config[field] % num_devices:
            raise ValueError(
                f"config.{field}={config[field]} must be a multiple of the {num_devices} "
                "devices of the run (the global batch is split evenly across them)"
            )
    lr = config.learning_rate
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
        raise ValueError(f"config.learning_rate={lr!r} must be a finite number >= 0")
    if lr == 0 and not config.get("init_from"):
        raise ValueError(
            "config.learning_rate=0 would train nothing from random initial weights; give a "
            "positive rate (a zero rate only serves to keep weights imported with config.init_from)"
        )


def _check_schedule_ends(
    config: ml_collections.ConfigDict, pruner: pruning.Pruner | None, num_steps: int
) -> None:
    """The pruning schedule's last mask update runs within the run: the update
    at step `s` happens in the step that takes the state from `s` to `s + 1`."""
    if pruner is None or pruner.schedule.steps[-1] < num_steps:
        return
    pc = config.pruning
    set_by = {
        "cubic": f"pruning.end={pc.end}",
        "one_shot": f"pruning.begin={pc.begin}",
        "staged": (
            f"pruning.begin={pc.begin} + {len(pruner.schedule.steps) - 1} x "
            f"pruning.steps_per_stage={pc.steps_per_stage} + "
            f"pruning.mask_delay={pc.get('mask_delay', 0)}"
        ),
    }[pc.schedule]
    last = pruner.schedule.steps[-1]
    raise ValueError(
        f"config.num_steps={num_steps} ends before the {pc.schedule} pruning schedule does: its "
        f"last mask update (to sparsity {pruner.schedule.final_sparsity:g}) is at step {last} "
        f"({set_by}); num_steps must be > {last}, or the schedule must end earlier"
    )


def _writable(directory: str) -> bool:
    """Whether this process may create files in `directory`. A directory with no
    write permission bit counts as read-only even for root (whom `os.access`
    lets write anywhere): whoever removed the bits meant it."""
    return os.access(directory, os.W_OK) and bool(os.stat(directory).st_mode & 0o222)


def check_workdir(workdir: str) -> None:
    """`workdir` is a writable directory, or can be created as one.

    Raises:
      ConfigError: it (or a parent) is a file, or it is read-only.
    """
    existing = os.path.abspath(workdir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    is_self = existing == os.path.abspath(workdir)
    if not os.path.isdir(existing):
        where = "is a file" if is_self else f"lies under {existing!r}, which is a file"
        raise ConfigError(
            f"workdir {workdir!r} {where}, not a directory; pass a directory as --workdir"
        )
    if not _writable(existing):
        where = "" if is_self else f" (its nearest existing parent {existing!r} is)"
        raise ConfigError(
            f"workdir {workdir!r} is read-only{where}; pass a writable directory as --workdir"
        )


def run_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config as stored with the run (`config.json`, `results.json`): JSON
    values, without the `INVOCATION_FIELDS`."""
    record = outputs.jsonable(config.to_dict())
    for field in INVOCATION_FIELDS:
        record.pop(field, None)
    return record


_ABSENT = "<absent>"


def changed_fields(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = ""
) -> dict[str, tuple[Any, Any]]:
    """{dotted field path: (old value, new value)} of every field that differs
    between two nested dicts (`_ABSENT` where one lacks the field)."""
    changes = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changes.update(changed_fields(a, b, f"{prefix}{key}."))
        elif a != b:
            changes[f"{prefix}{key}"] = (a, b)
    return changes


def _stored_config(workdir: str) -> dict[str, Any] | None:
    """The config recorded by the run that started in `workdir`; None if none did."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    try:
        return outputs.read_json(path)
    except ValueError as err:
        raise ConfigError(
            f"{path} is not readable JSON ({err}), so the run in {workdir!r} cannot be checked "
            "against this config; use a new --workdir, or delete this one to start over"
        ) from err


def check_resume(config: ml_collections.ConfigDict, workdir: str) -> None:
    """A workdir that holds a run is only resumed with the config that run started with.

    Fields of `CHANGEABLE_ON_RESUME` may differ when `config.resume_with_changes`
    is set (`--resume_with_changes`); any other difference is refused.

    Raises:
      ConfigError: listing every differing field (old -> new) and how to proceed.
    """
    stored = _stored_config(workdir)
    checkpoints = os.path.join(workdir, "checkpoints")
    if stored is None:
        if os.path.isdir(checkpoints) and os.listdir(checkpoints):
            raise ConfigError(
                f"{checkpoints} has no {CONFIG_FILE} beside it recording the config it was "
                "trained with, so it cannot be resumed safely; use a new --workdir, or delete "
                f"{checkpoints} to start over"
            )
        return
    changes = changed_fields(stored, run_config(config))
    if not changes:
        return
    listed = ", ".join(f"{path} {a!r} -> {b!r}" for path, (a, b) in changes.items())
    started = f"workdir {workdir!r} holds a run started with a different config ({listed})"
    fixed = [path for path in changes if path not in CHANGEABLE_ON_RESUME]
    if fixed:
        raise ConfigError(
            f"{started}; {', '.join(fixed)} cannot change on resume (only "
            f"{', '.join(CHANGEABLE_ON_RESUME)} can, with --resume_with_changes): use a new "
            "--workdir for this config, or delete this one to start over"
        )
    if not config.get("resume_with_changes", False):
        raise ConfigError(
            f"{started}; to resume it with these changes rerun with --resume_with_changes "
            "(config.resume_with_changes=True), or use a new --workdir"
        )
    logging.warning("Resuming %s with changed fields: %s", workdir, listed)


def _to_python(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in metrics.items():
        v = np.asarray(v)
        out[k] = bool(v) if v.dtype == bool else float(v)
    return out


def plot_metrics(rows: list[dict], path: str) -> None:
    """Loss, accuracy and sparsity against step, one panel each, to a PNG."""
    fig, axes = outputs.plt.subplots(1, 3, figsize=(15, 4))
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
    outputs.save_figure(fig, path, dpi=100)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (and prunes) `config.model` on `config.dataset`; writes results to `workdir`.

    Returns:
      The contents of `workdir/results.json`.

    Every process of a multi-process run calls it with the same config (but
    `distributed.process_id`) and the same shared `workdir`; all return the
    same results, process 0 writes them.

    Raises:
      ConfigError: bad config or workdir (see `check_run`; a bad
        `config.distributed`; unknown model or data set, a pruning rule that
        matches no parameter, an `init_from` that is not a fitting export),
        before training.
      tasd_jax.train.CheckpointError: the workdir has checkpoints, none intact.
      FloatingPointError: the training loss became NaN or inf.
    """
    # ---------------------------------------------------------------- config
    initialize_distributed(config)
    devices = mesh_devices()
    num_steps, tx, pruner = check_run(config, workdir, len(devices))
    record = run_config(config)
    primary = jax.process_index() == 0  # the one process that writes files

    with _config_errors():  # what only the data, the model or the export can tell
        init_export = export_lib.load_export(config.init_from) if config.get("init_from") else None
        os.makedirs(workdir, exist_ok=True)

        # ---------------------------------------------------- input pipeline
        inputs = train.make_inputs(config, len(devices), grain.sharding.ShardByJaxProcess())
        train_iter = inputs.train

        # ------------------------------------------------ model and optimizer
        model = train.make_model(config, inputs.num_classes)
        mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        # This process's rows of a batch -> the global batch, sharded along its rows.
        put = functools.partial(jax.tree.map, functools.partial(
            jax.make_array_from_process_local_data, sharded))

        state = train.create_train_state(
            jax.random.PRNGKey(config.seed), model, inputs.example_batch, tx
        )
        if pruner is not None:
            pruner.targets(state.params)  # a rule matching nothing fails here, before training
        if init_export is not None:
            state = train.init_from_export(state, init_export)
        state = jax.device_put(state, replicated)

    # ----------------------------------------------------------- update step
    p_train_step = jax.jit(
        train.train_step, in_shardings=(replicated, sharded), out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    p_eval_step = jax.jit(train.eval_step, in_shardings=(replicated, sharded), out_shardings=replicated)
    p_sparsity = jax.jit(
        lambda s: pruning.sparsity_metrics(pruner, s.params, s.opt_state) if pruner else {}
    )

    # ------------------------------------------------------------ checkpoint
    manager = train.checkpoint_manager(workdir, config)
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    restored = train.restore_latest(manager, state)
    if restored is not None:
        state, data_state = restored
        train_iter.set_state(data_state)
        start = int(state.step)
        # Rows logged after the checkpoint are logged again by the resumed run.
        rows = [r for r in outputs.read_jsonl(metrics_path) if r["step"] <= start]
        logging.info("Resumed from the checkpoint at step %d in %s", start, manager.directory)
    else:
        start, rows = 0, []
    if primary:
        outputs.write_jsonl(metrics_path, rows)
        if _stored_config(workdir) != record:  # the first start, or a resume with allowed changes
            outputs.write_json(os.path.join(workdir, CONFIG_FILE), record)

    # ------------------------------------------------------------------ loop
    # The dense model just before the first mask is the baseline the pruned one is held to
    # (at step 0 only when it starts from trained weights).
    dense_eval_step = pruner.schedule.begin if pruner is not None else None
    if dense_eval_step == 0 and init_export is None:
        dense_eval_step = None

    def evaluate():
        return train.evaluate(lambda b: p_eval_step(state, b), inputs.eval_batches, put)

    step, t_last, steps_since = start, time.perf_counter(), 0
    # The other processes compute the same rows (from global metrics) and write them nowhere.
    with open(metrics_path if primary else os.devnull, "a") as metrics_file:

        def log(row):
            rows.append(row)
            metrics_file.write(json.dumps(row) + "\n")
            metrics_file.flush()

        while step < num_steps:
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
                    f"(step {manager.latest_step()}) is kept in {manager.directory}"
                )
            is_eval = step % config.eval_every == 0 or step == num_steps
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
                    step, num_steps, loss, row["train_accuracy"],
                    f"  test acc {row['test_accuracy']:.4f}" if is_eval else "",
                    f"  sparsity {row['sparsity']:.3f}" if "sparsity" in row else "",
                    steps_per_s,
                )
            if step % config.checkpoint_every == 0 or step == num_steps:
                # The rows up to this step reach the disk before the checkpoint that covers them.
                metrics_file.flush()
                if primary:  # os.devnull cannot be synced
                    os.fsync(metrics_file.fileno())
                train.save_checkpoint(
                    manager, state, train_iter.get_state(), keep=config.keep_checkpoints,
                    force=step == num_steps,
                )
    manager.wait_until_finished()
    manager.close()

    # --------------------------------------------------------------- results
    final_sparsity = _to_python(p_sparsity(state))
    final = {
        "step": step,
        **evaluate(),
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
        "num_processes": jax.process_count(),
        "num_steps": num_steps,
        "pruned_params": [t.path for t in pruner.targets(state.params)] if pruner else [],
        "init_from": init_export.describe() if init_export is not None else None,
        "config": record,
    }
    if primary:
        train.export_state(state, os.path.join(workdir, "export"), config, inputs)
        outputs.write_json(os.path.join(workdir, "results.json"), results)
        plot_metrics(rows, os.path.join(workdir, "plots.png"))
    logging.info("Final: %s", {k: v for k, v in final.items() if k != "layer_sparsity"})
    return results


def train_once(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """`train_and_evaluate`, or the results of a run that already finished in `workdir`
    (its results.json is written last, after the export) with this config."""
    done = os.path.join(workdir, "results.json")
    if os.path.exists(done):
        check_resume(config, workdir)
        return outputs.read_json(done)
    return train_and_evaluate(config, workdir)


def export_or_train(config: ml_collections.ConfigDict, workdir: str) -> export_lib.Export:
    """The export `config.init_from` names, or else that of `config.train` trained
    into `workdir/train` (reused when it already finished there)."""
    export_dir = config.get("init_from")
    if not export_dir:
        train_dir = os.path.join(workdir, "train")
        train_once(config.train, train_dir)
        export_dir = os.path.join(train_dir, "export")
    return export_lib.load_export(export_dir)
