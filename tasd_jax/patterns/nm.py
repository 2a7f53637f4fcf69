"""N:M structured sparsity, TASD series of N:M terms, vector-wise and dense.

N:M (docs/tasd.md): in every group of M consecutive elements along the axis,
keep the N largest scores; ties go to the lower index. An axis whose length is
not a multiple of M is padded internally with never-kept elements, so the last,
shorter group keeps at most N of its real elements. On the contraction axis of
a kernel of rank >= 3 the groups run along the K of its GEMM view
(`base.group_view`; docs/conventions.md), so a convolution kernel is grouped as
the GEMM the hardware runs.

The rank of each element inside its group: for groups of up to
`_COMPARE_MAX_M` elements a count of M-1 comparisons, done position by
position on the [..., G, M, ...] view: no sort, no transpose, and XLA fuses it
into one pass over the data (docs/measurements.md). That graph grows like M^2
(times the terms of a series), so larger groups are ranked by `lax.top_k`,
which keeps the same tie rule (the lower index first) and compiles in a
fraction of a second for any M.

Scores that are NaN rank lowest (`base.rank_keys`), like the padding. The
decomposition ranks exact magnitudes (`magnitudes`: right for the most
negative integer too). It runs in two passes where the series is ranked in
one layout of positions: `series_owners` ranks every group once and packs
which term keeps each element into a small integer per group, and
`terms_from_owners` writes each term with one select per element; one fused
pass would redo a group's compares for each of its elements
(docs/measurements.md). `series_sum` gives the terms' sum in one pass, for
activations decomposed inside a forward.
"""

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tasd_jax.patterns import base


# The largest group and the most terms a spec may ask for. The hardware this
# library models groups at most 8 elements and runs at most two terms per
# pass (docs/tasd.md); the caps leave room to explore, and keep a typo such as
# "1:64000" or a runaway generated series from compiling for minutes.
MAX_M = 256
MAX_TERMS = 8

# Groups of up to this many elements are ranked by unrolled compares, larger
# ones by `lax.top_k`. Measured on this project's 2-core x86-64 CPU, jax
# 0.10.2, `tasd.decompose(x, "1:M")` of a 1024x1024 float32 array along K,
# compile + first run (steady run), unrolled compares vs top_k (other jobs
# shared the machine: timings vary by about 30%):
#   M =  4:  0.084 s (0.6 ms)  vs 0.143 s (6.6 ms)
#   M =  8:  0.123 s (0.8 ms)  vs 0.140 s (5.0 ms)
#   M = 16:  0.507 s (2.5 ms)  vs 0.156 s (4.4 ms)
#   M = 32:  1.210 s (3.3 ms)  vs 0.134 s (4.0 ms)
#   M = 64:  4.701 s (14.3 ms) vs 0.123 s (4.6 ms)
# (masks "2:M": 0.095 s vs 0.116 s at M = 8, 0.431 s vs 0.118 s at M = 16), so
# top_k takes over above M = 8.
_COMPARE_MAX_M = 8

# A series is computed in one layout of lcm(M) positions (faster to run than
# a layout per term) only while its unrolled compares, lcm(M) * sum(Mi - 1),
# stay within this budget; past it XLA's fusion of the chained terms blows
# up. `series_terms` at 2048x2048, shared vs per term (steady run): 2:4+1:8
# (80 compares) 21.5 vs 23.0 ms, 1:8+1:8 (112) 12.6 vs 24.0 ms, 1:4+1:8+1:8
# (136) 444 vs 71 ms, 1:8+1:8+1:8 (168) 547 vs 76 ms; at 1024x1024, 1:7+1:8
# (728) compiled in 4.7 s vs 0.4 s and eight 1:8 terms in 105 s vs 2.4 s.
_MAX_SHARED_COMPARES = 128


def _grouped(x: jax.Array, size: int, axis: int, fill: float) -> jax.Array:
    """Pads `axis` to a multiple of `size` with `fill` and splits it in two:
    [..., G, size, ...], groups of `size` consecutive elements."""
    length = x.shape[axis]
    pad = -length % size
    if pad:
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, pad)
        x = jnp.pad(x, widths, constant_values=fill)
    return x.reshape(x.shape[:axis] + ((length + pad) // size, size) + x.shape[axis + 1 :])


def _split_positions(x: jax.Array, size: int, axis: int, fill: float) -> list[jax.Array]:
    """For each position i in a group (see `_grouped`), the [..., G, ...] array
    of the groups' i-th elements."""
    grouped = _grouped(x, size, axis, fill)
    return [lax.index_in_dim(grouped, i, axis + 1, keepdims=False) for i in range(size)]


def _ungrouped(grouped: jax.Array, axis: int, length: int) -> jax.Array:
    """Inverse of `_grouped`: [..., G, size, ...] back to the unpadded array."""
    # The joined length spelled out: reshape cannot infer -1 for an empty array.
    joined = grouped.shape[axis] * grouped.shape[axis + 1]
    flat = grouped.reshape(grouped.shape[:axis] + (joined,) + grouped.shape[axis + 2 :])
    return lax.slice_in_dim(flat, 0, length, axis=axis)


def _join_positions(positions: list[jax.Array], axis: int, length: int) -> jax.Array:
    """Inverse of `_split_positions`: back to the unpadded array."""
    return _ungrouped(jnp.stack(positions, axis=axis + 1), axis, length)


def _lowest(dtype: Any) -> Any:
    """The key below every real one: -inf for floats, 0 for unsigned integer
    magnitudes. Padding gets it, and an element keyed so is never kept."""
    return -jnp.inf if jnp.issubdtype(dtype, jnp.floating) else 0


def magnitudes(x: jax.Array) -> jax.Array:
    """|x| as keys to rank by, exact for every real dtype (same shape).

    Floats: |x| with NaN as -inf (`base.nan_lowest`: |x| has no -0.0, and
    the ranks of `rank_keys` keys and of these agree; `_top_k_keys` applies
    the rest of `base.rank_keys` where `lax.top_k` ranks). Signed integers: |x| read
    as unsigned, since `jnp.abs` of the most negative value wraps (|-128| is
    -128 in int8, which would rank last; as uint8 it is 128); an integer zero
    is then the lowest key and never kept, which changes no term. Unsigned
    integers: themselves.
    """
    dtype = jnp.dtype(x.dtype)
    if jnp.issubdtype(dtype, jnp.floating):
        return base.nan_lowest(jnp.abs(x))
    if jnp.issubdtype(dtype, jnp.signedinteger):
        unsigned = jnp.dtype(f"uint{8 * dtype.itemsize}")
        return lax.bitcast_convert_type(jnp.abs(x), unsigned)  # two's complement: exact
    return x


def _compare_keys(x: jax.Array) -> jax.Array:
    """`magnitudes` for the unrolled compares of `_series_keeps`, except that a
    float NaN stays NaN rather than -inf: NaN compares false both ways, so it
    beats no element and is never alive (`> lowest`), the masks -inf gives,
    without a select per key (docs/measurements.md)."""
    return jnp.abs(x) if jnp.issubdtype(x.dtype, jnp.floating) else magnitudes(x)


def _top_k_keys(keys: jax.Array) -> jax.Array:
    """Keys in the same order for `lax.top_k`, whose fast path on CPU is
    float32 (about 40x faster than on integers): integer keys of up to 16 bits
    convert exactly; wider integer keys (|int32|) stay exact on the slow path.
    Float keys get `base.rank_keys` whole: `lax.top_k` orders -0.0 below 0.0,
    and subnormals must tie with zero there as they do in compares."""
    if jnp.issubdtype(keys.dtype, jnp.floating):
        return base.rank_keys(keys)
    if jnp.dtype(keys.dtype).itemsize <= 2:
        return keys.astype(jnp.float32)
    return keys


def _ranks(positions: list[jax.Array]) -> list[jax.Array]:
    """Rank of each position in its group (0 = largest; ties: lower index first)."""
    ranks = []
    for i, here in enumerate(positions):
        beaten = [(positions[j] >= here) for j in range(i)]
        beaten += [(positions[j] > here) for j in range(i + 1, len(positions))]
        ranks.append(sum((b.astype(jnp.int32) for b in beaten), jnp.zeros(here.shape, jnp.int32)))
    return ranks


def _top_k_in_groups(keys: jax.Array, k: int, m: int, axis: int) -> tuple[jax.Array, jax.Array]:
    """`lax.top_k` over every group of `m` along `axis`: the [..., G, ..., k]
    positions of the k largest keys of each group (ties: lower index first),
    and the [..., G, ..., m] iota of positions to scatter them against."""
    grouped = jnp.moveaxis(_grouped(keys, m, axis, _lowest(keys.dtype)), axis + 1, -1)
    _, top = lax.top_k(_top_k_keys(grouped), k)
    return top, lax.broadcasted_iota(jnp.int32, grouped.shape, grouped.ndim - 1)


def _scatter_to_groups(
    values: jax.Array, top: jax.Array, like: jax.Array, axis: int, length: int
) -> jax.Array:
    """Writes `values` at positions `top` of zero groups shaped like `like`
    ([..., G, ..., m]) and returns them in the input's layout."""
    zeros = jnp.zeros_like(like, values.dtype)
    out = jnp.put_along_axis(zeros, top, values, axis=-1, inplace=False)
    return _ungrouped(jnp.moveaxis(out, -1, axis + 1), axis, length)


def _group_ranks(keys: jax.Array, m: int, axis: int) -> jax.Array:
    """`group_ranks` of keys already fit to rank (`base.rank_keys`, `magnitudes`)."""
    if m <= _COMPARE_MAX_M:
        positions = _split_positions(keys, m, axis, _lowest(keys.dtype))
        return _join_positions(_ranks(positions), axis, keys.shape[axis])
    order, iota = _top_k_in_groups(keys, m, m, axis)
    return _scatter_to_groups(iota, order, iota, axis, keys.shape[axis])


def _keep_largest(keys: jax.Array, n: int, m: int, axis: int) -> jax.Array:
    """Bool mask of the `n` largest keys of every group of `m` along `axis`
    (ties: the lower index), whatever their values."""
    if m <= _COMPARE_MAX_M:
        return _group_ranks(keys, m, axis) < n
    top, iota = _top_k_in_groups(keys, n, m, axis)
    return _scatter_to_groups(jnp.ones(top.shape, bool), top, iota, axis, keys.shape[axis])


@functools.partial(jax.jit, static_argnames=("m", "axis"))
def group_ranks(scores: jax.Array, m: int, axis: int) -> jax.Array:
    """Rank (0 = largest) of each element in its group of `m` along `axis`.

    A primitive: `axis` is taken literally (no GEMM view of kernels; the
    patterns apply `base.group_view` before calling it).

    Args:
      scores: any shape, float or int (ranked as float32); NaN ranks lowest.
      m: group size (static).
      axis: the grouping axis.

    Returns:
      int32 ranks shaped like `scores`; equal scores rank the lower index first.
      Jitted, as `series_masks`.
    """
    keys = base.rank_keys(base.scores_as_float(scores))
    return _group_ranks(keys, m, base.normalize_axis(axis, keys.ndim))


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
    for start, stop in _same_m_runs(terms):
        m = terms[start].m
        ranks = [r for g in range(0, len(remaining), m) for r in _ranks(remaining[g : g + m])]
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


def _same_m_runs(terms: "tuple[NM, ...]") -> list[tuple[int, int]]:
    """[start, stop) of every run of consecutive terms with one M."""
    starts = [i for i in range(len(terms)) if i == 0 or terms[i].m != terms[i - 1].m]
    return list(zip(starts, starts[1:] + [len(terms)]))


def _shares_positions(terms: "tuple[NM, ...]") -> bool:
    """Whether a series is computed in one layout of lcm(M) positions."""
    compares = math.lcm(*(t.m for t in terms)) * sum(t.m - 1 for t in terms)
    return max(t.m for t in terms) <= _COMPARE_MAX_M and compares <= _MAX_SHARED_COMPARES


def _ranked_positions(
    view: jax.Array, terms: "tuple[NM, ...]", axis: int
) -> tuple[list[jax.Array], list[list[jax.Array]]]:
    """The lcm(M) positions of `view` grouped along `axis` (each its own array)
    and, per term, every position's keep-mask (`_series_keeps`), for a series
    with `_shares_positions`."""
    # Padding values are 0, keyed |0|: after every real element of its group,
    # so it never displaces one (ties keep the lower index), and it is cut off.
    values = _split_positions(view, math.lcm(*(t.m for t in terms)), axis, 0)
    keys = [_compare_keys(v) for v in values]
    return values, _series_keeps(keys, terms, _lowest(keys[0].dtype))


def _series_keep_masks(keys: jax.Array, terms: "tuple[NM, ...]", axis: int) -> list[jax.Array]:
    """Each term's keep-mask on keys fit to rank, grouped along `axis` as is;
    keys at `_lowest` (padding, NaN, taken by an earlier term) are never kept."""
    lowest = _lowest(keys.dtype)
    if _shares_positions(terms):
        positions = _split_positions(keys, math.lcm(*(t.m for t in terms)), axis, lowest)
        keeps = _series_keeps(positions, terms, lowest)
        return [_join_positions(k, axis, keys.shape[axis]) for k in keeps]
    masks, remaining = [], keys
    for term in terms:
        masks.append(_keep_largest(remaining, term.n, term.m, axis) & (remaining > lowest))
        remaining = jnp.where(masks[-1], lowest, remaining)
    return masks


@functools.partial(jax.jit, static_argnames=("terms", "axis"))
def series_masks(scores: jax.Array, terms: "tuple[NM, ...]", axis: int) -> list[jax.Array]:
    """Each term's keep-mask of a TASD series, greedily on what earlier terms left.

    Args:
      scores: importances (|x| for the decomposition), rank >= 1.
      terms: the N:M terms in order.
      axis: the grouping axis; on the contraction axis of a kernel of rank >= 3
        the groups run along its GEMM K (`base.group_view`).

    Returns:
      One bool array shaped like `scores` per term; supports are disjoint.
      Elements scored -inf or NaN (and padding) are never kept.
      Jitted: its unrolled compares would run one by one outside jit.
    """
    keys = base.rank_keys(base.scores_as_float(scores))
    view, axis = base.group_view(keys, axis)
    return [m.reshape(keys.shape) for m in _series_keep_masks(view, terms, axis)]


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
    view, view_axis = base.group_view(x, axis)
    masks = _series_keep_masks(magnitudes(view), terms, view_axis)
    return [jnp.where(k, view, jnp.zeros((), x.dtype)).reshape(x.shape) for k in masks]


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
    view, view_axis = base.group_view(x, axis)
    merged = tuple(
        NM(min(sum(t.n for t in terms[start:stop]), terms[start].m), terms[start].m)
        for start, stop in _same_m_runs(terms)
    )
    zero = jnp.zeros((), x.dtype)
    if not _shares_positions(merged):
        keep = functools.reduce(jnp.logical_or, _series_keep_masks(magnitudes(view), merged, view_axis))
        return jnp.where(keep, view, zero).reshape(x.shape)
    values, keeps = _ranked_positions(view, merged, view_axis)
    kept = [
        jnp.where(functools.reduce(jnp.logical_or, [term[p] for term in keeps]), value, zero)
        for p, value in enumerate(values)
    ]
    return _join_positions(kept, view_axis, view.shape[view_axis]).reshape(x.shape)


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
    axis = base.normalize_axis(axis, jnp.ndim(x))
    values = _split_positions(x, m, axis, 0)
    keys = [_compare_keys(v) for v in values]
    lowest = _lowest(keys[0].dtype)
    every = jnp.asarray(keep) >= m
    kept = [jnp.where(((r < keep) & (k > lowest)) | every, v, jnp.zeros_like(v))
            for v, k, r in zip(values, keys, _ranks(keys))]
    return _join_positions(kept, axis, x.shape[axis])


def packs_owners(terms: "tuple[NM, ...]") -> bool:
    """Whether `series_owners` applies: the series is ranked in one layout of
    lcm(M) positions (`_shares_positions`)."""
    return _shares_positions(terms)


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
    (of the group view, `base.group_view`) has an owner: the 1-based number
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
    view, view_axis = base.group_view(x, axis)
    _, bits, words = _owner_layout(terms)
    _, keeps = _ranked_positions(view, terms, view_axis)
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
    view, view_axis = base.group_view(x, axis)
    size, bits, words = _owner_layout(terms)
    grouped = _grouped(view, size, view_axis, 0)  # [..., G, L, ...]
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
        _ungrouped(jnp.where(owner == t + 1, grouped, zero), view_axis, length).reshape(x.shape)
        for t in range(len(terms))
    ]


def group_counts(mask: jax.Array, m: int, axis: int) -> jax.Array:
    """Number of kept elements in each group of `m` along `axis` ([..., G, ...]).

    A primitive like `group_ranks`: `axis` is taken literally.
    """
    axis = base.normalize_axis(axis, mask.ndim)
    return jnp.sum(_grouped(jnp.asarray(mask), m, axis, False).astype(jnp.int32), axis=axis + 1)


def _kept_per_group(mask: jax.Array, m: int, axis: int) -> jax.Array:
    """`group_counts` over the groups the patterns use (`base.group_view`)."""
    view, axis = base.group_view(mask, axis)
    return group_counts(view, m, axis)


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
    view, axis = base.group_view(jnp.asarray(mask, bool), axis)
    # Past the axis' length one block holds all of it and the rest is never
    # kept, so the scan stops there: lcm(M) of large, coprime M is astronomical.
    block = min(math.lcm(*(t.m for t in terms)), max(view.shape[axis], 1))
    # [block, ...]: the position inside the block first, then every block and
    # the other axes side by side; padding is not kept.
    stacked = jnp.moveaxis(_grouped(view, block, axis, False), axis + 1, 0)
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


@base.register("nm")
@dataclasses.dataclass(frozen=True)
class NM(base.Pattern):
    """Keep the `n` largest of every `m` consecutive elements along the axis.

    1 <= n <= m <= MAX_M (256): no N:M hardware groups more elements (the
    accelerators modelled here stop at M = 8), and a larger M is a typo.
    """

    n: int
    m: int

    def __post_init__(self):
        for name in ("n", "m"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name}={value!r} must be an integer")
        if self.m < 1:
            raise ValueError(f"M={self.m} must be >= 1")
        if self.n < 1:
            raise ValueError(f"N={self.n} must be >= 1 (0:M keeps nothing)")
        if self.n > self.m:
            raise ValueError(f"N={self.n} must be <= M={self.m}")
        if self.m > MAX_M:
            raise ValueError(
                f"M={self.m} must be <= {MAX_M}: no N:M hardware groups more elements "
                "(the accelerators modelled here stop at M=8)"
            )

    @property
    def compute_cost(self) -> float:
        """Fraction of dense compute on N:M hardware: N/M."""
        return self.n / self.m

    @property
    def density(self) -> float:
        return self.n / self.m

    def mask(self, scores: jax.Array, axis: int = -2) -> jax.Array:
        return series_masks(scores, (self,), axis)[0]

    def conforms(self, mask: jax.Array, axis: int = -2) -> jax.Array:
        return jnp.all(_kept_per_group(mask, self.m, axis) <= self.n)

    def spec(self) -> str:
        return f"{self.n}:{self.m}"


@base.register("series")
@dataclasses.dataclass(frozen=True)
class Series(base.Pattern):
    """A TASD series: term i keeps Ni:Mi of what the earlier terms left.

    Its mask is the union of the terms' supports (`tasd.decompose` gives the
    terms themselves). At most MAX_TERMS (8) terms: no hardware runs more (the
    accelerators modelled here run at most two per pass), and the parser
    rejects a longer spec before building any term.
    """

    terms: tuple[NM, ...]

    def __post_init__(self):
        if not isinstance(self.terms, tuple) or not self.terms:
            raise ValueError(f"a series needs a tuple of at least one N:M term, got {self.terms!r}")
        self.check_term_count(len(self.terms))
        if not all(isinstance(t, NM) for t in self.terms):
            raise ValueError(f"series terms {self.terms!r} must all be N:M patterns")

    @staticmethod
    def check_term_count(count: int) -> None:
        """Raises ValueError for more than MAX_TERMS terms (see `MAX_TERMS`)."""
        if count > MAX_TERMS:
            raise ValueError(
                f"a series of {count} terms is more than {MAX_TERMS}: no hardware runs more "
                "(the accelerators modelled here run at most two per pass)"
            )

    @property
    def compute_cost(self) -> float:
        """Fraction of dense compute on N:M hardware: the sum of Ni/Mi."""
        return sum(t.compute_cost for t in self.terms)

    def term_masks(self, scores: jax.Array, axis: int = -2) -> list[jax.Array]:
        """Each term's keep-mask, chosen greedily on what earlier terms left
        (scores checked as in `mask`)."""
        scores = base.as_score_array(scores, "scores")
        if not scores.size:
            return [jnp.zeros(scores.shape, bool) for _ in self.terms]
        return series_masks(scores, self.terms, axis)

    def mask(self, scores: jax.Array, axis: int = -2) -> jax.Array:
        return jnp.any(jnp.stack(series_masks(scores, self.terms, axis)), axis=0)

    def conforms(self, mask: jax.Array, axis: int = -2) -> jax.Array:
        """Whether the kept elements can be shared out among the terms, each
        Ni:Mi (exact; see `series_fits`)."""
        return series_fits(mask, self.terms, axis)

    def spec(self) -> str:
        return "+".join(t.spec() for t in self.terms)


def as_series(pattern: "str | base.Pattern") -> Series:
    """A TASD series from a spec or pattern: N:M -> one term, dense -> 1:1."""
    pattern = base.parse(pattern)
    if isinstance(pattern, Series):
        return pattern
    if isinstance(pattern, NM):
        return Series((pattern,))
    if isinstance(pattern, Dense):
        return Series((NM(1, 1),))
    raise ValueError(
        f"pattern {pattern.spec()!r} is not a TASD series: use 'dense', 'N:M' or 'N:M+N:M...'"
    )


@base.register("dense")
@dataclasses.dataclass(frozen=True)
class Dense(base.Pattern):
    """Keep everything."""

    @property
    def compute_cost(self) -> float:
        return 1.0

    def mask(self, scores: jax.Array, axis: int = -2) -> jax.Array:
        del axis
        return jnp.ones(jnp.shape(scores), bool)

    def conforms(self, mask: jax.Array, axis: int = -2) -> jax.Array:
        del axis
        return jnp.all(mask)

    def spec(self) -> str:
        return "dense"


def _vector_keep(sparsity: Any, v: int, xp: Any = jnp) -> Any:
    """round((1 - sparsity) * v) in float32, halves to even; `xp=np` gives the
    same number on the host (for checks that must not trace)."""
    return xp.round((xp.float32(1) - xp.asarray(sparsity, xp.float32)) * xp.float32(v))


@base.register("vw")
@dataclasses.dataclass(frozen=True)
class VectorWise(base.ThresholdPattern):
    """Vector-wise (TW paper's VW baseline, docs/tile_wise.md): in every `v`
    consecutive elements along the contraction axis (grouped like N:M) keep
    the top k = round((1 - sparsity) * v).

    The rounding (float32, halves to even, as numpy) makes the achieved
    sparsity 1 - k / v, not the target: v=16 keeps 4 at sparsity 0.75 but 2
    (87.5%) at 0.9; v=3 keeps 1 (66.7%) at 0.75. A (v, sparsity) that keeps
    no element per vector (k = 0 when sparsity >= 1 - 0.5/v) is a
    ValueError; a traced sparsity, which cannot be checked, keeps at least
    one. v <= `MAX_M`, as an N:M group.
    """

    sparsity: float = 0.75
    v: int = 16

    def __post_init__(self):
        base.check_positive_int("v", self.v)
        if self.v > MAX_M:
            raise ValueError(f"v={self.v} must be <= {MAX_M}: a vector is an N:M group")
        self.validate_sparsity(self.sparsity)

    def validate_sparsity(self, sparsity: Any) -> None:
        base.check_sparsity(sparsity)
        if base.is_concrete(sparsity) and _vector_keep(sparsity, self.v, np) < 1:
            raise ValueError(
                f"vw(sparsity={sparsity}, v={self.v}) keeps round((1 - {sparsity}) * {self.v}) "
                "= 0 elements per vector: every vector must keep one (lower the sparsity or "
                "raise v)"
            )

    def kept_per_vector(self, sparsity: Any = None) -> jax.Array:
        """Elements kept per vector (float32 scalar), at least 1."""
        return jnp.maximum(_vector_keep(self._sparsity(sparsity), self.v), 1.0)

    def masks(self, scores, axis=-2, *, sparsity=None):
        # The structure is fixed per vector: one threshold across arrays is
        # the same as one per array.
        keep = self.kept_per_vector(sparsity)
        scores = [base.scores_as_float(s) for s in scores]
        views = [base.group_view(s, axis) for s in scores]
        return [
            (group_ranks(view, self.v, view_axis) < keep).reshape(s.shape)
            for (view, view_axis), s in zip(views, scores)
        ]

    def conforms(self, mask: jax.Array, axis: int = -2) -> jax.Array:
        return jnp.all(_kept_per_group(mask, self.v, axis) <= self.kept_per_vector())
