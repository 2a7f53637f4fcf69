"""Classifier scores from logits: the one definition of a correct prediction."""

import jax
import jax.numpy as jnp


def correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Whether each prediction is right: float32 [B], 1.0 where the top class is the label.

    Args:
      logits: [B, classes] scores.
      labels: [B] integer class ids, or [B, classes] one-hot / soft labels
        (their argmax is the class).
    """
    if labels.ndim == logits.ndim:
        labels = jnp.argmax(labels, -1)
    return (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
