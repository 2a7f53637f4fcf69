"""The checks of a training run that need no data, all made before anything is read or written."""

import math
import os
from typing import NamedTuple

import jax
import ml_collections
import optax

from experiments import distributed
from experiments import resume
from experiments import train_config
from experiments.errors import ConfigError, config_errors
from tasd_jax import pruning


class Plan(NamedTuple):
    """What `check_run` built from the config: the step budget, the optimizer
    (with the pruning wrapper) and the pruner (None for a dense run)."""

    num_steps: int
    tx: optax.GradientTransformation
    pruner: pruning.Pruner | None


def initialize_distributed(config: ml_collections.ConfigDict) -> None:
    """Joins JAX's multi-process runtime when `config.distributed` (or the
    environment) asks for it (`experiments.distributed.initialize`); nothing
    for a single-process run. Must come before any JAX computation.

    Raises:
      ConfigError: a bad `config.distributed` field, or a process that already used JAX.
    """
    with config_errors():
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
    with config_errors():
        num_steps = train_config.resolve_num_steps(config)
        _check_numbers(config, num_steps, num_devices)
        tx = train_config.make_optimizer(config, num_steps)
        pruner = train_config.make_pruner(config)
        _check_schedule_ends(config, pruner, num_steps)
    check_workdir(workdir)
    resume.check_resume(config, workdir)
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
