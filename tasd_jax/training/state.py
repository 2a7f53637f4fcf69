"""The train state: flax's `TrainState` plus BatchNorm statistics and a dropout key."""

from typing import Any

from flax.training import train_state
import flax
import jax
import jax.numpy as jnp
import optax

from tasd_jax import export as export_lib
from tasd_jax.training import batches


class TrainState(train_state.TrainState):
    """Everything a training step reads and writes (checkpointed as a whole).

    Besides flax's fields (`step`, `params`, `opt_state`, and the static
    `apply_fn` and `tx`; `apply_gradients` updates the first three):

    Attributes:
      batch_stats: the "batch_stats" collection ({} for models without BatchNorm).
      rng: uint32[2] key; step `t` uses `fold_in(rng, t)` for dropout, so a resumed
        run draws the same dropout masks.

    `opt_state` is a `pruning.PruneState` (masks inside) when pruning.
    """

    batch_stats: Any
    rng: jax.Array


def create_train_state(
    rng: jax.Array,
    model: flax.linen.Module,
    example_batch: dict[str, Any],
    tx: optax.GradientTransformation,
) -> TrainState:
    """Initialises the model on `example_batch` (only its shapes matter) and the optimizer."""
    args, kwargs = batches.model_inputs(example_batch)
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
