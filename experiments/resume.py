"""Resuming a workdir: only the run that was started there, with the config it started with.

The first start stores the config as `config.json` (`run_config`); a rerun
whose config differs is refused (`check_resume`), except for the fields of
`CHANGEABLE_ON_RESUME` with `config.resume_with_changes`
(`--resume_with_changes` on the command line).
"""

import os
from typing import Any, Mapping

from absl import logging
import ml_collections

from experiments import outputs
from experiments.errors import ConfigError

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


def stored_config(workdir: str) -> dict[str, Any] | None:
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
    stored = stored_config(workdir)
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
