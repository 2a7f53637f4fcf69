"""The `train` experiment: train (and gradually prune) a model, then export it.

    python -m experiments.run --config=configs/tw_digits.py --workdir=DIR

Assembled from the building blocks of `tasd_jax.training`, with the config
read into their arguments by `experiments.train_config` (config fields are
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
* Checks first (`experiments.checks.check_run`): the config and the workdir
  are checked before any data is read or anything written; a problem is a
  `ConfigError` (`experiments.errors`) whose message says what to change.
* Checkpoints every `checkpoint_every` steps, the last `keep_checkpoints`
  kept, each verified against its sha256 manifest when restoring. Rerunning
  the same command resumes from the newest intact one (a corrupted newer one
  is skipped with a warning); on CPU the resumed run ends with parameters
  bitwise equal to an uninterrupted run.
* Resume only what was started (`experiments.resume`): the first start
  stores the config as `config.json`; a rerun whose config differs is
  refused, except for the fields of `CHANGEABLE_ON_RESUME` with
  `config.resume_with_changes` (`--resume_with_changes` on the command line).
* A non-finite loss (or update) stops the run (`FloatingPointError` naming the
  step) before anything of that step is saved; earlier checkpoints are kept.

Outputs in `workdir` (one directory shared by all processes of a
multi-process run): `config.json`, `metrics.jsonl` (one JSON object per
logged step; the rows a checkpoint covers are on disk before it is saved),
`results.json`, `plots.png`, `checkpoints/` and `export/` (the weights and
model description every later stage reads, `tasd_jax.export`).
"""

import functools
import json
import os
import time
from typing import Any, Callable, NamedTuple

from absl import logging
import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from experiments import checks
from experiments import exports
from experiments import outputs
from experiments import progress
from experiments import resume
from experiments import train_config
from experiments.errors import config_errors
from tasd_jax import data as data_lib
from tasd_jax import export as export_lib
from tasd_jax import pruning
from tasd_jax import training


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


class Run(NamedTuple):
    """What the training loop runs on, built once the config passed its checks.

    Attributes:
      state: the initial train state, replicated over the mesh.
      inputs: the input pipeline (this process's rows of every global batch).
      put: this process's rows of a batch -> the global batch, sharded along its rows.
      train_step, eval_step: the jitted `tasd_jax.training` steps.
      sparsity: jitted state -> the pruner's sparsity metrics ({} for a dense run).
    """

    state: training.TrainState
    inputs: data_lib.InputPipeline
    put: Callable[[Any], Any]
    train_step: Callable[..., Any]
    eval_step: Callable[..., Any]
    sparsity: Callable[[training.TrainState], dict]

    def evaluate(self, state: training.TrainState) -> dict[str, float]:
        """{"test_loss", "test_accuracy"} of `state` over the evaluation data."""
        return training.evaluate(lambda b: self.eval_step(state, b), self.inputs.eval_batches, self.put)


def build_run(
    config: ml_collections.ConfigDict, devices: list[jax.Device], plan: checks.Plan,
    init_export: export_lib.Export | None,
) -> Run:
    """The data, the model's state (from `init_export` when given) and the jitted steps.

    Raises:
      ConfigError: what only the data, the model or the export can tell (an
        unknown model or data set, a pruning rule matching no parameter, an
        export that does not fit the model).
    """
    with config_errors():
        inputs = train_config.make_inputs(config, len(devices), grain.sharding.ShardByJaxProcess())
        model = train_config.make_model(config, inputs.num_classes)
        state = training.create_train_state(
            jax.random.PRNGKey(config.seed), model, inputs.example_batch, plan.tx
        )
        if plan.pruner is not None:
            plan.pruner.targets(state.params)  # a rule matching nothing fails here, before training
        if init_export is not None:
            state = training.init_from_export(state, init_export)
    mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    pruner = plan.pruner
    return Run(
        state=jax.device_put(state, replicated),
        inputs=inputs,
        put=functools.partial(jax.tree.map, functools.partial(
            jax.make_array_from_process_local_data, sharded)),
        train_step=jax.jit(
            training.train_step, in_shardings=(replicated, sharded),
            out_shardings=(replicated, replicated), donate_argnums=0,
        ),
        eval_step=jax.jit(
            training.eval_step, in_shardings=(replicated, sharded), out_shardings=replicated
        ),
        sparsity=jax.jit(
            lambda s: pruning.sparsity_metrics(pruner, s.params, s.opt_state) if pruner else {}
        ),
    )


class MetricsLog:
    """The rows of `metrics.jsonl`, appended row by row (process 0 writes the file; the
    other processes compute the same rows from global metrics and write them nowhere)."""

    def __init__(self, path: str, rows: list[dict], primary: bool):
        self.rows, self._primary = rows, primary
        self._file = open(path if primary else os.devnull, "a")

    def log(self, row: dict) -> None:
        self.rows.append(row)
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def sync(self) -> None:
        """Puts the rows logged so far on disk (before the checkpoint that covers them)."""
        self._file.flush()
        if self._primary:  # os.devnull cannot be synced
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def resume_or_start(
    manager: ocp.CheckpointManager, run: Run, workdir: str, record: dict, primary: bool
) -> tuple[training.TrainState, MetricsLog]:
    """The state of the newest intact checkpoint (the input iterator set to its position)
    and the metrics rows up to it; the initial state and no rows when there is none.
    Process 0 also stores the config the run started with."""
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    restored = training.restore_latest(manager, run.state)
    if restored is not None:
        state, data_state = restored
        run.inputs.train.set_state(data_state)
        start = int(state.step)
        # Rows logged after the checkpoint are logged again by the resumed run.
        rows = [r for r in outputs.read_jsonl(metrics_path) if r["step"] <= start]
        logging.info("Resumed from the checkpoint at step %d in %s", start, manager.directory)
    else:
        state, rows = run.state, []
    if primary:
        outputs.write_jsonl(metrics_path, rows)
        if resume.stored_config(workdir) != record:  # the first start, or a resume with allowed changes
            outputs.write_json(os.path.join(workdir, resume.CONFIG_FILE), record)
    return state, MetricsLog(metrics_path, rows, primary)


def dense_eval_step(pruner: pruning.Pruner | None, from_export: bool) -> int | None:
    """The step whose dense model is the baseline the pruned one is held to: just
    before the first mask (at step 0 only when it starts from trained weights)."""
    step = pruner.schedule.begin if pruner is not None else None
    return None if step == 0 and not from_export else step


def train_loop(
    config: ml_collections.ConfigDict, run: Run, state: training.TrainState, num_steps: int,
    manager: ocp.CheckpointManager, metrics: MetricsLog, dense_step: int | None,
) -> training.TrainState:
    """Trains from `state.step` to `num_steps`, logging, evaluating and checkpointing
    at the config's intervals.

    Raises:
      FloatingPointError: the loss or the updated parameters became NaN or inf
        (before anything of that step is saved).
    """
    step, t_last, steps_since = int(state.step), time.perf_counter(), 0
    # One bar for the whole run, drawn by the process that writes the files.
    bar = (progress.Progress("train", num_steps - step)
           if step < num_steps and jax.process_index() == 0 else None)
    while step < num_steps:
        if step == dense_step and not any("dense_test_accuracy" in r for r in metrics.rows):
            metrics.log({"step": step, **{f"dense_{k}": v for k, v in run.evaluate(state).items()}})
        state, step_metrics = run.train_step(state, run.put(next(run.inputs.train)))
        loss = float(step_metrics["loss"])  # a sync per step: catches the first bad step
        step += 1
        steps_since += 1
        if bar is not None:
            bar.advance()
        if not (np.isfinite(loss) and bool(step_metrics["params_finite"])):
            manager.wait_until_finished()
            what = f"loss is {loss}" if not np.isfinite(loss) else "the updated parameters are not finite"
            raise FloatingPointError(
                f"training {what} at step {step}; stopped. The last good checkpoint "
                f"(step {manager.latest_step()}) is kept in {manager.directory}"
            )
        is_eval = step % config.eval_every == 0 or step == num_steps
        if step % config.log_every == 0 or is_eval:
            row = {"step": step, "train_loss": loss, "train_accuracy": float(step_metrics["accuracy"])}
            row.update(_to_python(run.sparsity(state)))
            if is_eval:
                row.update(run.evaluate(state))
            now = time.perf_counter()
            steps_per_s, t_last, steps_since = steps_since / (now - t_last), now, 0
            metrics.log(row)
            _log_progress(row, num_steps, steps_per_s)
        if step % config.checkpoint_every == 0 or step == num_steps:
            metrics.sync()
            training.save_checkpoint(
                manager, state, run.inputs.train.get_state(), keep=config.keep_checkpoints,
                force=step == num_steps,
            )
    return state


def _log_progress(row: dict, num_steps: int, steps_per_s: float) -> None:
    logging.info(
        "step %d/%d  loss %.4f  train acc %.4f%s%s  %.1f steps/s",
        row["step"], num_steps, row["train_loss"], row["train_accuracy"],
        f"  test acc {row['test_accuracy']:.4f}" if "test_accuracy" in row else "",
        f"  sparsity {row['sparsity']:.3f}" if "sparsity" in row else "",
        steps_per_s,
    )


def final_metrics(run: Run, state: training.TrainState, rows: list[dict]) -> dict[str, Any]:
    """The `final` entry of results.json: test metrics, sparsity, and the accuracy
    drop from the dense baseline when one was evaluated."""
    sparsity = _to_python(run.sparsity(state))
    final = {
        "step": int(state.step),
        **run.evaluate(state),
        "sparsity": sparsity.pop("sparsity", 0.0),
        "pattern_valid": sparsity.pop("pattern_valid", True),
        "layer_sparsity": {k.removeprefix("sparsity/"): v for k, v in sparsity.items()},
    }
    dense_rows = [r for r in rows if "dense_test_accuracy" in r]
    if dense_rows:
        final["dense_test_accuracy"] = dense_rows[-1]["dense_test_accuracy"]
        final["accuracy_drop"] = final["dense_test_accuracy"] - final["test_accuracy"]
    return final


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (and prunes) `config.model` on `config.dataset`; writes results to `workdir`.

    Returns:
      The contents of `workdir/results.json`.

    Every process of a multi-process run calls it with the same config (but
    `distributed.process_id`) and the same shared `workdir`; all return the
    same results, process 0 writes them.

    Raises:
      ConfigError: bad config or workdir (see `checks.check_run`; a bad
        `config.distributed`; unknown model or data set, a pruning rule that
        matches no parameter, an `init_from` that is not a fitting export),
        before training.
      tasd_jax.training.CheckpointError: the workdir has checkpoints, none intact.
      FloatingPointError: the training loss became NaN or inf.
    """
    checks.initialize_distributed(config)
    devices = checks.mesh_devices()
    plan = checks.check_run(config, workdir, len(devices))
    record = resume.run_config(config)
    primary = jax.process_index() == 0  # the one process that writes files
    with config_errors():
        init_export = exports.load_export(config.init_from) if config.get("init_from") else None
        os.makedirs(workdir, exist_ok=True)
    run = build_run(config, devices, plan, init_export)

    manager = training.checkpoint_manager(workdir, config.checkpoint_every)
    state, metrics = resume_or_start(manager, run, workdir, record, primary)
    try:
        state = train_loop(
            config, run, state, plan.num_steps, manager, metrics,
            dense_eval_step(plan.pruner, from_export=init_export is not None),
        )
    finally:
        metrics.close()
    manager.wait_until_finished()
    manager.close()

    final = final_metrics(run, state, metrics.rows)
    results = {
        "final": final,
        "num_devices": len(devices),
        "num_processes": jax.process_count(),
        "num_steps": plan.num_steps,
        "pruned_params": [t.path for t in plan.pruner.targets(state.params)] if plan.pruner else [],
        "init_from": init_export.describe() if init_export is not None else None,
        "config": record,
    }
    if primary:
        train_config.export_state(state, os.path.join(workdir, "export"), config, run.inputs)
        outputs.write_json(os.path.join(workdir, exports.RESULTS_FILE), results)
        plot_metrics(metrics.rows, os.path.join(workdir, "plots.png"))
    logging.info("Final: %s", {k: v for k, v in final.items() if k != "layer_sparsity"})
    return results


def train_once(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """`train_and_evaluate`, or the results of a run that already finished in `workdir`
    (its results.json is written last, after the export) with this config."""
    done = os.path.join(workdir, exports.RESULTS_FILE)
    if os.path.exists(done):
        resume.check_resume(config, workdir)
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
    return exports.load_export(export_dir)
