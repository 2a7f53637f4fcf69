"""The pure train and eval steps (jit-able; the caller jits them with its shardings)."""

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from tasd_jax import classification
from tasd_jax.training import batches
from tasd_jax.training.state import TrainState


def _forward(state: TrainState, params: Any, batch: Mapping[str, jax.Array], train: bool):
    """(logits [B, classes], batch_stats after the pass) of the model on `batch`."""
    args, kwargs = batches.model_inputs(batch)
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
    new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    accuracy = jnp.mean(classification.correct(logits, batch["label"]))
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
    return {
        "loss_sum": jnp.sum(loss * mask),
        "correct": jnp.sum(classification.correct(logits, batch["label"]) * mask),
        "count": jnp.sum(mask),
    }
