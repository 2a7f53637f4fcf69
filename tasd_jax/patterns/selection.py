"""One threshold over units of different sizes, across many arrays.

Structured pruning removes *units* (columns, tile row-segments, blocks,
elements), each standing for `size` weights. `prune_lowest` removes the
lowest-scoring units until the removed weights reach a target count, so the
resulting sparsity is the target whatever the unit sizes, and a global
threshold across layers (TW pruning, docs/tile_wise.md) is the same call on the
concatenation of every layer's units.
"""

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tasd_jax.patterns import ranking


def prune_lowest(
    scores: Sequence[jax.Array], sizes: Sequence[Any], num_prune: Any
) -> list[jax.Array]:
    """Keep-masks of units after pruning the lowest-scoring ones, jointly.

    Args:
      scores: per array, unit scores of any shape (float). +inf is never
        pruned; NaN and -inf are pruned first (`ranking.rank_keys`).
      sizes: per array, unit sizes broadcastable to its scores (weights per unit;
        a size-0 unit is kept and costs nothing).
      num_prune: weights to prune in total (may be traced). Units are pruned in
        order of increasing score (ties: higher flat index first, so the lower
        index is kept, as in N:M) while the cumulative pruned size stays within
        `num_prune` (+ half a weight).

    Returns:
      Per array, a bool keep-mask shaped like its scores (all kept when there
      is no unit at all).
    """
    if sum(jnp.size(s) for s in scores) == 0:
        return [jnp.ones(jnp.shape(s), bool) for s in scores]
    uniform = {int(z) for z in sizes if isinstance(z, (int, np.integer))}
    if len(uniform) == 1 and len(sizes) == len(scores) and uniform != {0}:
        return _prune_lowest(tuple(scores), None, num_prune, unit=uniform.pop())
    return _prune_lowest(tuple(scores), tuple(sizes), num_prune, unit=None)


# One compiled program per set of shapes: called eagerly (prune_tree, reports),
# op-by-op dispatch would compile each of its dozen operations per shape.
@functools.partial(jax.jit, static_argnames="unit")
def _prune_lowest(scores: tuple, sizes: tuple | None, num_prune: Any, *, unit: int | None
                  ) -> list[jax.Array]:
    flat_scores = ranking.rank_keys(
        jnp.concatenate([jnp.ravel(s).astype(jnp.float32) for s in scores])
    )
    if unit is not None:
        keep = _prune_lowest_uniform(flat_scores, num_prune / unit)
    else:
        keep = _prune_lowest_sized(flat_scores, sizes, scores, num_prune)
    out, start = [], 0
    for s in scores:
        out.append(keep[start : start + s.size].reshape(s.shape))
        start += s.size
    return out


def _prune_lowest_uniform(flat_scores: jax.Array, num_units: Any) -> jax.Array:
    """Equal-size units: the k-th smallest score is the threshold, found by a
    value sort (about 2x cheaper than the argsort of the general case); ties at
    the threshold are pruned from the highest index down."""
    prunable = flat_scores < jnp.inf
    count = jnp.clip(jnp.floor(jnp.asarray(num_units, jnp.float32) + 0.5), 0, jnp.sum(prunable))
    count = count.astype(jnp.int32)
    ordered = jnp.sort(flat_scores)
    threshold = ordered[jnp.maximum(count - 1, 0)]
    below = flat_scores < threshold
    at = (flat_scores == threshold) & prunable
    # The last `count - #below` of the elements tied at the threshold go.
    tied_from_end = jnp.cumsum(at[::-1])[::-1]
    prune = below | (at & (tied_from_end <= count - jnp.sum(below)))
    return ~(prune & (count > 0))


def _prune_lowest_sized(flat_scores, sizes, scores, num_prune) -> jax.Array:
    flat_sizes = jnp.concatenate(
        [jnp.ravel(jnp.broadcast_to(z, s.shape)).astype(jnp.int32) for s, z in zip(scores, sizes)]
    )
    last = flat_scores.size - 1
    order = last - jnp.argsort(flat_scores[::-1], stable=True)
    cumulative = jnp.cumsum(flat_sizes[order])
    prune_sorted = (cumulative <= jnp.asarray(num_prune, jnp.float32) + 0.5) & (
        flat_scores[order] < jnp.inf
    )
    return jnp.ones_like(prune_sorted).at[order].set(~prune_sorted)


def target_count(total: Any, sparsity: Any) -> jax.Array:
    """Weights to prune for a sparsity over `total` weights (float32, jit-able)."""
    return jnp.asarray(total, jnp.float32) * jnp.asarray(sparsity, jnp.float32)
