"""Checkpoints of a training run, each verified against a manifest before it is restored.

orbax saves the train state (with the masks) and the input iterator's state,
so a rerun resumes exactly (`checkpoint_manager`, `save_checkpoint`,
`restore_latest`). Each step directory gets a manifest (size and sha256 of
every file) once orbax has finished it; restoring takes the newest step that
matches its manifest, so a truncated, garbled or half-written checkpoint is
skipped, never restored. In a run on JAX's multi-process runtime every process
calls these together (orbax's saves, restores and deletions are collective);
process 0 alone writes the manifest.
"""

import hashlib
import json
import logging as std_logging
import os
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from tasd_jax import files as files_lib
from tasd_jax.training.state import TrainState


class _OrbaxInfoFilter(std_logging.Filter):
    """Drops orbax's INFO records (dozens per checkpoint) so the progress lines stay readable."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno > std_logging.INFO or "orbax" not in record.pathname


def quiet_orbax() -> None:
    """Keeps orbax's per-checkpoint INFO records out of the absl log."""
    handler = logging.get_absl_handler()
    if not any(isinstance(f, _OrbaxInfoFilter) for f in handler.filters):
        handler.addFilter(_OrbaxInfoFilter())


MANIFEST = "sha256_manifest.json"  # in each step directory, written after orbax finished the step


class CheckpointError(RuntimeError):
    """A checkpoint directory holds checkpoints, but none of them is intact."""


def checkpoint_manager(workdir: str, checkpoint_every: int) -> ocp.CheckpointManager:
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
            save_interval_steps=checkpoint_every, cleanup_tmp_directories=True,
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
    files_lib.write_json_atomic(os.path.join(step_dir, MANIFEST), {"files": files}, indent=1)


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
