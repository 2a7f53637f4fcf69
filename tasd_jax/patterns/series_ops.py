"""Masks, fits and sums of TASD series of N:M terms (`nm.Series`).

Each term keeps Ni:Mi of what the earlier terms left. On the contraction axis
of a kernel of rank >= 3 the groups run along the K of its GEMM view
(`gemm_view.group_view`; docs/conventions.md). `series_sum` gives the terms'
sum in one pass, for activations decomposed inside a forward; the terms
themselves come from `owners.series_terms`.
"""

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jax import lax

from tasd_jax.patterns import checks, gemm_view, ranking

if TYPE_CHECKING:  # nm imports this module
    from tasd_jax.patterns.nm import NM


# A series is computed in one layout of lcm(M) positions (faster to run than
# a layout per term) only while its unrolled compares, lcm(M) * sum(Mi - 1),
# stay within this budget; past it XLA's fusion of the chained terms blows
# up. `series_terms` at 2048x2048, shared vs per term (steady run): 2:4+1:8
# (80 compares) 21.5 vs 23.0 ms, 1:8+1:8 (112) 12.6 vs 24.0 ms, 1:4+1:8+1:8
# (136) 444 vs 71 ms, 1:8+1:8+1:8 (168) 547 vs 76 ms; at 1024x1024, 1:7+1:8
# (728) compiled in 4.7 s vs 0.4 s and eight 1:8 terms in 105 s vs 2.4 s.
MAX_SHARED_COMPARES = 128


def _series_keeps(
    remaining: list[jax.Array], terms: "tuple[NM, ...]", lowest: Any
) -> list[list[jax.Array]]:
    """Per term, the keep-mask of every position (of lcm(M) positions), chosen
    greedily on what earlier terms left; keys equal to `lowest` are never kept.

    A run of consecutive terms of one M is ranked once: where a term took the
    N largest of a group, every element it left that can still be kept was
    beaten by all N, so its rank among what is left is its rank minus N, and
    the run's term t keeps ranks [N1 + ... + N(t-1), N1 + ... + Nt) (ties in
    the same order). 2:8+1:8 costs the compares of one 2:8, not two.
    """
    keeps: list[list[jax.Array]] = []
    for start, stop in same_m_runs(terms):
        m = terms[start].m
        ranks = [r for g in range(0, len(remaining), m)
                 for r in ranking.position_ranks(remaining[g : g + m])]
        alive = [k > lowest for k in remaining]
        taken = 0
        for term in terms[start:stop]:
            below = [r < taken + term.n for r in ranks]
            # Ranks below `taken` went to the run's earlier terms.
            keeps.append([b & a & (r >= taken) if taken else b & a
                          for b, a, r in zip(below, alive, ranks)])
            taken += term.n
        remaining = [jnp.where(b & a, lowest, k) for b, a, k in zip(below, alive, remaining)]
    return keeps


def same_m_runs(terms: "tuple[NM, ...]") -> list[tuple[int, int]]:
    """[start, stop) of every run of consecutive terms with one M."""
    starts = [i for i in range(len(terms)) if i == 0 or terms[i].m != terms[i - 1].m]
    return list(zip(starts, starts[1:] + [len(terms)]))


def shares_positions(terms: "tuple[NM, ...]") -> bool:
    """Whether a series is computed in one layout of lcm(M) positions."""
    compares = math.lcm(*(t.m for t in terms)) * sum(t.m - 1 for t in terms)
    return max(t.m for t in terms) <= ranking.COMPARE_MAX_M and compares <= MAX_SHARED_COMPARES


def ranked_positions(
    view: jax.Array, terms: "tuple[NM, ...]", axis: int
) -> tuple[list[jax.Array], list[list[jax.Array]]]:
    """The lcm(M) positions of `view` grouped along `axis` (each its own array)
    and, per term, every position's keep-mask (`_series_keeps`), for a series
    with `shares_positions`."""
    # Padding values are 0, keyed |0|: after every real element of its group,
    # so it never displaces one (ties keep the lower index), and it is cut off.
    values = ranking.split_positions(view, math.lcm(*(t.m for t in terms)), axis, 0)
    keys = [ranking.compare_keys(v) for v in values]
    return values, _series_keeps(keys, terms, ranking.lowest_key(keys[0].dtype))


def series_keep_masks(keys: jax.Array, terms: "tuple[NM, ...]", axis: int) -> list[jax.Array]:
    """Each term's keep-mask on keys fit to rank, grouped along `axis` as is;
    keys at `lowest_key` (padding, NaN, taken by an earlier term) are never kept."""
    lowest = ranking.lowest_key(keys.dtype)
    if shares_positions(terms):
        positions = ranking.split_positions(keys, math.lcm(*(t.m for t in terms)), axis, lowest)
        keeps = _series_keeps(positions, terms, lowest)
        return [ranking.join_positions(k, axis, keys.shape[axis]) for k in keeps]
    masks, remaining = [], keys
    for term in terms:
        masks.append(ranking.keep_largest(remaining, term.n, term.m, axis) & (remaining > lowest))
        remaining = jnp.where(masks[-1], lowest, remaining)
    return masks


@functools.partial(jax.jit, static_argnames=("terms", "axis"))
def series_masks(scores: jax.Array, terms: "tuple[NM, ...]", axis: int) -> list[jax.Array]:
    """Each term's keep-mask of a TASD series, greedily on what earlier terms left.

    Args:
      scores: importances (|x| for the decomposition), rank >= 1.
      terms: the N:M terms in order.
      axis: the grouping axis; on the contraction axis of a kernel of rank >= 3
        the groups run along its GEMM K (`gemm_view.group_view`).

    Returns:
      One bool array shaped like `scores` per term; supports are disjoint.
      Elements scored -inf or NaN (and padding) are never kept.
      Jitted: its unrolled compares would run one by one outside jit.
    """
    keys = ranking.rank_keys(ranking.scores_as_float(scores))
    view, axis = gemm_view.group_view(keys, axis)
    return [m.reshape(keys.shape) for m in series_keep_masks(view, terms, axis)]


def series_sum(x: jax.Array, terms: "tuple[NM, ...]", axis: int) -> jax.Array:
    """The sum of the terms of `series_terms` in one pass: `x` where a term
    keeps it, 0 elsewhere (bit-exact: the supports are disjoint).

    For a series used whole, as TASD-A uses an activation's (the terms only
    ever meet in the product): no term is written, and a run of terms of one
    M is a single rank test (2:8+1:8 keeps ranks 0 to 2 of every 8), done per
    element inside whatever XLA fuses around it, e.g. the ReLU before it.
    Where the series is ranked in one layout of positions, each position's
    values are selected before the positions are joined again: joining the
    keep-masks first and selecting on the whole array made the TASD-A
    forward of ResNet-20 1.37x of dense against 1.28x (docs/measurements.md).

    Args:
      x: array of rank >= 1.
      terms: the series' N:M terms.
      axis: the grouping axis, as in `series_masks`.

    Returns:
      An array shaped and typed like `x`.
    """
    view, view_axis = gemm_view.group_view(x, axis)
    merged = tuple(
        dataclasses.replace(
            terms[start], n=min(sum(t.n for t in terms[start:stop]), terms[start].m))
        for start, stop in same_m_runs(terms)
    )
    zero = jnp.zeros((), x.dtype)
    if not shares_positions(merged):
        masks = series_keep_masks(ranking.magnitudes(view), merged, view_axis)
        keep = functools.reduce(jnp.logical_or, masks)
        return jnp.where(keep, view, zero).reshape(x.shape)
    values, keeps = ranked_positions(view, merged, view_axis)
    kept = [
        jnp.where(functools.reduce(jnp.logical_or, [term[p] for term in keeps]), value, zero)
        for p, value in enumerate(values)
    ]
    return ranking.join_positions(kept, view_axis, view.shape[view_axis]).reshape(x.shape)


def top_per_group(x: jax.Array, m: int, keep: Any, axis: int) -> jax.Array:
    """`x` with only the `keep` largest magnitudes of every `m` consecutive elements
    along `axis` (taken literally), 0 elsewhere; ties keep the lower index. `keep`
    may be traced (0..m): one compiled function serves every same-M series,
    bit-exact to `series_sum` of any series of that M whose Ns add up to `keep`
    (1:8 + 1:8 keeps what 2:8 keeps). `keep >= m` returns `x` as it is (NaN
    included); below that a NaN is never kept, as in `series_sum`.

    Ranked per position, as `series_sum` (the M x M compares inside whatever XLA
    fuses around them): as fast as a fixed series, where ranking the grouped
    array as a whole (`group_ranks`) made the ResNet-20 forward 2.5x of dense.
    """
    axis = checks.normalize_axis(axis, jnp.ndim(x))
    values = ranking.split_positions(x, m, axis, 0)
    keys = [ranking.compare_keys(v) for v in values]
    lowest = ranking.lowest_key(keys[0].dtype)
    every = jnp.asarray(keep) >= m
    kept = [jnp.where(((r < keep) & (k > lowest)) | every, v, jnp.zeros_like(v))
            for v, k, r in zip(values, keys, ranking.position_ranks(keys))]
    return ranking.join_positions(kept, axis, x.shape[axis])


def kept_per_group(mask: jax.Array, m: int, axis: int) -> jax.Array:
    """`group_counts` over the groups the patterns use (`gemm_view.group_view`)."""
    view, axis = gemm_view.group_view(mask, axis)
    return ranking.group_counts(view, m, axis)


@functools.partial(jax.jit, static_argnames=("terms", "axis"))
def series_fits(mask: jax.Array, terms: "tuple[NM, ...]", axis: int) -> jax.Array:
    """Whether the kept elements of `mask` can be split into terms Ni:Mi.

    Scans each block of lcm(M) positions in order and gives every kept element
    to the term, among those with room left in their current group, whose
    group ends first (ties: the earlier term). This earliest-deadline rule is
    exact: where a fitting split puts the element in another term, swapping
    it with a later element of the earlier-ending group still fits (that
    element lies in both groups). Filling the terms in series order instead
    rejects masks the series itself produces, e.g. of 1:8+1:4 or 1:3+1:4.

    Args:
      mask: bool keep-mask, rank >= 1.
      terms: the N:M terms.
      axis: grouping axis, as in `series_masks`.

    Returns:
      bool scalar. Jitted: a scan is traced anew on every call outside jit.
    """
    view, axis = gemm_view.group_view(jnp.asarray(mask, bool), axis)
    # Past the axis' length one block holds all of it and the rest is never
    # kept, so the scan stops there: lcm(M) of large, coprime M is astronomical.
    block = min(math.lcm(*(t.m for t in terms)), max(view.shape[axis], 1))
    # [block, ...]: the position inside the block first, then every block and
    # the other axes side by side; padding is not kept.
    stacked = jnp.moveaxis(ranking.to_groups(view, block, axis, False), axis + 1, 0)
    shape = (len(terms),) + (1,) * (stacked.ndim - 1)
    n = jnp.array([t.n for t in terms], jnp.int32).reshape(shape)
    m = jnp.array([t.m for t in terms], jnp.int32).reshape(shape)

    def step(carry, inputs):
        room, fits = carry
        position, kept = inputs
        room = jnp.where(position % m == 0, n, room)  # a new group of each term starts
        has_room = room > 0
        deadline = jnp.where(has_room, (position // m + 1) * m, jnp.iinfo(jnp.int32).max)
        first = jnp.argmin(deadline, axis=0)
        take = (jnp.arange(len(terms)).reshape(shape) == first) & has_room & kept
        return (room - take, fits & (~kept | jnp.any(has_room, axis=0))), None

    start = (
        jnp.zeros((len(terms),) + stacked.shape[1:], jnp.int32),
        jnp.ones(stacked.shape[1:], bool),
    )
    (_, fits), _ = lax.scan(step, start, (jnp.arange(block), stacked))
    return jnp.all(fits)
