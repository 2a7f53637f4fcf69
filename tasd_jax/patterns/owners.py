"""The terms of a TASD decomposition, through owners packed per group.

Where a series is ranked in one layout of positions (`packs_owners`), the
decomposition runs in two passes: `series_owners` ranks every group once and
packs which term keeps each element into a small integer per group, and
`terms_from_owners` writes each term with one select per element; one fused
pass would redo a group's compares for each of its elements
(docs/measurements.md). `series_terms` picks that path or the masks of
`series_ops`.
"""

import functools
import math
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from jax import lax

from tasd_jax.patterns import gemm_view, ranking, series_ops

if TYPE_CHECKING:  # nm imports this module
    from tasd_jax.patterns.nm import NM


def packs_owners(terms: "tuple[NM, ...]") -> bool:
    """Whether `series_owners` applies: the series is ranked in one layout of
    lcm(M) positions (`shares_positions`)."""
    return series_ops.shares_positions(terms)


# Owners are packed into unsigned words of at most this many bits.
_WORD_BITS = 32


def _owner_layout(terms: "tuple[NM, ...]") -> tuple[int, int, list[int]]:
    """(positions per group L = lcm(M), bits per owner, positions in each word)."""
    size = math.lcm(*(t.m for t in terms))
    bits = len(terms).bit_length()  # owners 0 (no term) to len(terms)
    per_word = _WORD_BITS // bits
    return size, bits, [min(per_word, size - s) for s in range(0, size, per_word)]


def _word_dtype(bits: int) -> jnp.dtype:
    """The narrowest unsigned integer of at least `bits` (<= 32) bits."""
    return jnp.dtype(f"uint{max(8, 1 << (bits - 1).bit_length())}")


def series_owners(x: jax.Array, terms: "tuple[NM, ...]", axis: int) -> list[jax.Array]:
    """Which term keeps each element of `x`, packed per group: the first pass
    of `series_terms` for a series with `packs_owners`.

    Each position of a group of L = lcm(M) consecutive elements along `axis`
    (of the group view, `gemm_view.group_view`) has an owner: the 1-based number
    of the term that keeps it, 0 for none. Owners take `bits` =
    bit_length(number of terms) bits each, position 0 in the lowest bits, and
    are packed into unsigned words of up to 32 bits (one word whenever
    L <= 8).

    Computed per group, on the L positions as separate arrays: each group is
    ranked once, and the output is an L-th (or less) of `x`'s elements, so a
    consumer that reads it instead of re-ranking does a group's compares once,
    not once per element.

    Args:
      x: array of rank >= 1.
      terms: the series' N:M terms, with `packs_owners(terms)`.
      axis: the grouping axis, as in `series_masks`.

    Returns:
      The words, each shaped like the group view with the grouping axis
      replaced by the number of groups ceil(length / L).
    """
    view, view_axis = gemm_view.group_view(x, axis)
    _, bits, words = _owner_layout(terms)
    _, keeps = series_ops.ranked_positions(view, terms, view_axis)
    packed, first = [], 0
    for count in words:
        dtype = _word_dtype(bits * count)
        zero = jnp.zeros((), dtype)
        fields = [
            jnp.where(keep[p], jnp.asarray((t + 1) << (bits * (p - first)), dtype), zero)
            for t, keep in enumerate(keeps)
            for p in range(first, first + count)
        ]
        packed.append(functools.reduce(jnp.bitwise_or, fields))
        first += count
    return packed


def terms_from_owners(
    x: jax.Array, owners: list[jax.Array], terms: "tuple[NM, ...]", axis: int
) -> list[jax.Array]:
    """The terms of `x` from its `series_owners`: the second pass of
    `series_terms`, one elementwise select per term.

    Args:
      x: the array `owners` was computed from.
      owners: `series_owners(x, terms, axis)`.
      terms, axis: as given to `series_owners`.

    Returns:
      One array shaped and typed like `x` per term.
    """
    view, view_axis = gemm_view.group_view(x, axis)
    size, bits, words = _owner_layout(terms)
    grouped = ranking.to_groups(view, size, view_axis, 0)  # [..., G, L, ...]
    fields = []
    for word, count in zip(owners, words):
        shape = [1] * grouped.ndim
        shape[view_axis + 1] = count
        shifts = lax.broadcasted_iota(word.dtype, shape, view_axis + 1) * word.dtype.type(bits)
        mask = word.dtype.type((1 << bits) - 1)
        fields.append((jnp.expand_dims(word, view_axis + 1) >> shifts) & mask)
    owner = fields[0] if len(fields) == 1 else jnp.concatenate(
        [f.astype(jnp.uint32) for f in fields], axis=view_axis + 1)
    zero = jnp.zeros((), x.dtype)
    length = view.shape[view_axis]
    return [
        ranking.from_groups(jnp.where(owner == t + 1, grouped, zero), view_axis, length)
        .reshape(x.shape)
        for t in range(len(terms))
    ]


def series_terms(x: jax.Array, terms: "tuple[NM, ...]", axis: int) -> list[jax.Array]:
    """The terms of the TASD decomposition of `x` (see `tasd.decompose`).

    The selection of `series_masks` on `magnitudes(x)` (exact for integers;
    an integer zero is never "kept", which changes no term). A series computed
    in one layout of positions (`packs_owners`) goes through `series_owners`
    and `terms_from_owners`; `tasd.decompose` runs the two as separate
    executables, so the ranking is done once per group.
    """
    if packs_owners(terms):
        return terms_from_owners(x, series_owners(x, terms, axis), terms, axis)
    view, view_axis = gemm_view.group_view(x, axis)
    masks = series_ops.series_keep_masks(ranking.magnitudes(view), terms, view_axis)
    return [jnp.where(k, view, jnp.zeros((), x.dtype)).reshape(x.shape) for k in masks]
