"""Importance scores for pruning (the tile-wise paper's recipes, docs/tile_wise.md).

* "magnitude": `|w|`, the tile-wise paper's default (VGG16, NMT).
* "taylor": first-order Taylor estimate of the loss change, `|w * dL/dw|`, summed
  over the steps before a mask update.
* "taylor_squared": `sum (g * w)^2`, the tile-wise paper's BERT recipe.

Taylor scores need gradients, so they are accumulated inside the pruning optax
wrapper (`tasd_jax.pruning.masking`) from the gradients it already receives.
"""

import jax
import jax.numpy as jnp

SCORES = ("magnitude", "taylor", "taylor_squared")


def check_score(name: str) -> str:
    if name not in SCORES:
        raise ValueError(f"unknown pruning score {name!r}; known: {list(SCORES)}")
    return name


def needs_gradients(name: str) -> bool:
    """Whether `name` accumulates gradient information between mask updates."""
    return check_score(name) != "magnitude"


def magnitude(weight: jax.Array) -> jax.Array:
    """`|w|`, shaped like `weight`."""
    return jnp.abs(weight)


def taylor_increment(name: str, weight: jax.Array, grad: jax.Array) -> jax.Array:
    """One step's contribution to a Taylor score: `|w g|` or `(w g)^2`, shaped like `weight`."""
    wg = weight.astype(jnp.float32) * grad.astype(jnp.float32)
    if check_score(name) == "taylor":
        return jnp.abs(wg)
    if name == "taylor_squared":
        return wg * wg
    raise ValueError(f"score {name!r} is not a Taylor score")
