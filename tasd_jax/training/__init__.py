"""Training building blocks, in the flax-examples layout: a train state, pure
train / eval steps (jit-able; the caller jits them with its shardings), an
evaluation pass, and checkpoints verified against manifests.

* `optim`: optimizers and learning-rate schedules from plain values;
* `state`: `TrainState` (flax's, plus BatchNorm statistics and a dropout key),
  `create_train_state`, and starting from an export (`init_from_export`);
* `steps`: `train_step`, `eval_step`;
* `evaluation`: `evaluate`, one pass over padded, masked batches;
* `checkpoints`: orbax checkpoints with sha256 manifests (`save_checkpoint`,
  `restore_latest`);
* `batches`: which keys of a batch the model reads.

Nothing here reads a config: a driver turns its config into these arguments.
With pruning, the optimizer is wrapped by `tasd_jax.pruning.prune`, so the
masks live in the optimizer state and are checkpointed with it.
"""

from tasd_jax.training.batches import INPUT_KEYS, main_input, model_inputs
from tasd_jax.training.checkpoints import (
    MANIFEST,
    CheckpointError,
    checkpoint_manager,
    checkpoint_problem,
    quiet_orbax,
    restore_latest,
    save_checkpoint,
    step_directory,
    write_manifest,
)
from tasd_jax.training.evaluation import evaluate
from tasd_jax.training.optim import LR_SCHEDULES, OPTIMIZERS, make_lr_schedule, make_optimizer
from tasd_jax.training.state import (
    TrainState,
    create_train_state,
    init_from_export,
    state_variables,
)
from tasd_jax.training.steps import batch_metrics, eval_step, train_step

__all__ = [
    "INPUT_KEYS", "LR_SCHEDULES", "MANIFEST", "OPTIMIZERS", "CheckpointError", "TrainState",
    "batch_metrics", "checkpoint_manager", "checkpoint_problem", "create_train_state",
    "eval_step", "evaluate", "init_from_export", "main_input", "make_lr_schedule",
    "make_optimizer", "model_inputs", "quiet_orbax", "restore_latest", "save_checkpoint",
    "state_variables", "step_directory", "train_step", "write_manifest",
]
