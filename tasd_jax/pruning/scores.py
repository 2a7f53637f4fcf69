"""Importance scores for pruning (the tile-wise paper's recipes, docs/tile_wise.md),
as a registry like the patterns': `register` adds a score under a name that
`Pruner(score=...)` accepts.

* "magnitude": `|w|`, the tile-wise paper's default (VGG16, NMT).
* "taylor": first-order Taylor estimate of the loss change, `|w * dL/dw|`, summed
  over the steps before a mask update.
* "taylor_squared": `sum (g * w)^2`, the tile-wise paper's BERT recipe.

Taylor scores need gradients, so they are accumulated inside the pruning optax
wrapper (`tasd_jax.pruning.masking`) from the gradients it already receives.
"""

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Score:
    """How one importance score is computed; exactly one of the two is set.

    Attributes:
      of_weight: the score of a weight at a mask update, from the weight alone
        (shaped like it).
      increment: one step's contribution `(weight, grad) -> array` shaped like
        the weight, summed over the steps before a mask update.
    """

    of_weight: Optional[Callable[[jax.Array], jax.Array]] = None
    increment: Optional[Callable[[jax.Array, jax.Array], jax.Array]] = None

    def __post_init__(self):
        if (self.of_weight is None) == (self.increment is None):
            raise ValueError("a Score needs exactly one of `of_weight` and `increment`")

    @property
    def needs_gradients(self) -> bool:
        """Whether it accumulates gradient information between mask updates."""
        return self.increment is not None


_REGISTRY: dict[str, Score] = {}


def register(name: str, score: Score) -> Score:
    """Makes `score` available as `Pruner(score=name)`; returns it."""
    if name in _REGISTRY and _REGISTRY[name] != score:
        raise ValueError(f"pruning score {name!r} is already registered")
    _REGISTRY[name] = score
    return score


def registered() -> tuple[str, ...]:
    """The names of every registered score."""
    return tuple(_REGISTRY)


def get(name: str) -> Score:
    """The score registered as `name`. Raises ValueError naming the known ones."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown pruning score {name!r}; known: {list(_REGISTRY)}")
    return _REGISTRY[name]


def magnitude(weight: jax.Array) -> jax.Array:
    """`|w|`, shaped like `weight`."""
    return jnp.abs(weight)


def _weight_times_grad(weight: jax.Array, grad: jax.Array) -> jax.Array:
    return weight.astype(jnp.float32) * grad.astype(jnp.float32)


def taylor_increment(name: str, weight: jax.Array, grad: jax.Array) -> jax.Array:
    """One step's contribution to the Taylor score `name`, shaped like `weight`."""
    score = get(name)
    if score.increment is None:
        raise ValueError(f"score {name!r} is not a Taylor score (it needs no gradients)")
    return score.increment(weight, grad)


register("magnitude", Score(of_weight=magnitude))
register("taylor", Score(increment=lambda w, g: jnp.abs(_weight_times_grad(w, g))))
register("taylor_squared", Score(increment=lambda w, g: jnp.square(_weight_times_grad(w, g))))
