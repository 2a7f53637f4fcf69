"""Ranking inside groups of consecutive elements: the primitive every N:M,
series and VW mask goes through.

N:M (docs/tasd.md): in every group of M consecutive elements along the axis,
keep the N largest scores; ties go to the lower index. An axis whose length is
not a multiple of M is padded internally with never-kept elements, so the last,
shorter group keeps at most N of its real elements.

The rank of each element inside its group: for groups of up to
`COMPARE_MAX_M` elements a count of M-1 comparisons, done position by
position on the [..., G, M, ...] view: no sort, no transpose, and XLA fuses it
into one pass over the data (docs/measurements.md). That graph grows like M^2
(times the terms of a series), so larger groups are ranked by `lax.top_k`,
which keeps the same tie rule (the lower index first) and compiles in a
fraction of a second for any M. Scores that are NaN rank lowest
(`rank_keys`), like the padding; the decomposition ranks exact magnitudes
(`magnitudes`: right for the most negative integer too).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from tasd_jax.patterns import checks


def scores_as_float(scores: jax.Array) -> jax.Array:
    """Scores as a floating array (integers and bools as float32)."""
    scores = jnp.asarray(scores)
    return scores if jnp.issubdtype(scores.dtype, jnp.floating) else scores.astype(jnp.float32)


def rank_keys(scores: jax.Array) -> jax.Array:
    """Float scores as keys to rank by: NaN becomes -inf, the lowest, and -0.0
    becomes 0.0; +inf stays the highest.

    The one rule for scores that are not finite, applied by both ranking
    primitives every pattern goes through (`group_ranks` and the series
    masks for elements in groups, `selection.prune_lowest` for units under a
    threshold). Concrete scores never get here non-finite (`Pattern` raises);
    traced ones (inside a jitted train step) may, and then NaN is pruned first
    while the mask keeps its pattern's structure. A unit aggregated from
    elements (a column's, a tile row segment's or a block's RMS) is NaN, hence
    lowest, if any of its scores is NaN, and +inf if one is infinite (an RMS
    squares its scores, so there -inf counts as the largest magnitude; an
    element pattern ranks -inf lowest). -0.0 is mapped because `lax.top_k`
    orders it below 0.0 while comparisons treat the two as equal.
    """
    return nan_lowest(jnp.where(scores == 0, 0, scores).astype(scores.dtype))


def nan_lowest(scores: jax.Array) -> jax.Array:
    """`rank_keys` without its -0.0 rule: NaN becomes -inf (same shape and dtype).

    Enough for keys that are only compared with each other, where -0.0 and
    0.0 are equal anyway (and XLA on CPU compares subnormals as 0 as well, as
    `rank_keys` maps them): the unrolled-compare ranks of `nm` use it, and
    save the select per element that the -0.0 rule costs. A key that goes to
    `lax.top_k` or a sort needs all of `rank_keys`.
    """
    return jnp.where(jnp.isnan(scores), -jnp.inf, scores).astype(scores.dtype)


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
COMPARE_MAX_M = 8

def to_groups(x: jax.Array, size: int, axis: int, fill: float) -> jax.Array:
    """Pads `axis` to a multiple of `size` with `fill` and splits it in two:
    [..., G, size, ...], groups of `size` consecutive elements."""
    length = x.shape[axis]
    pad = -length % size
    if pad:
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, pad)
        x = jnp.pad(x, widths, constant_values=fill)
    return x.reshape(x.shape[:axis] + ((length + pad) // size, size) + x.shape[axis + 1 :])


def split_positions(x: jax.Array, size: int, axis: int, fill: float) -> list[jax.Array]:
    """For each position i in a group (see `to_groups`), the [..., G, ...] array
    of the groups' i-th elements."""
    grouped = to_groups(x, size, axis, fill)
    return [lax.index_in_dim(grouped, i, axis + 1, keepdims=False) for i in range(size)]


def from_groups(grouped: jax.Array, axis: int, length: int) -> jax.Array:
    """Inverse of `to_groups`: [..., G, size, ...] back to the unpadded array."""
    # The joined length spelled out: reshape cannot infer -1 for an empty array.
    joined = grouped.shape[axis] * grouped.shape[axis + 1]
    flat = grouped.reshape(grouped.shape[:axis] + (joined,) + grouped.shape[axis + 2 :])
    return lax.slice_in_dim(flat, 0, length, axis=axis)


def join_positions(positions: list[jax.Array], axis: int, length: int) -> jax.Array:
    """Inverse of `split_positions`: back to the unpadded array."""
    return from_groups(jnp.stack(positions, axis=axis + 1), axis, length)


def lowest_key(dtype: Any) -> Any:
    """The key below every real one: -inf for floats, 0 for unsigned integer
    magnitudes. Padding gets it, and an element keyed so is never kept."""
    return -jnp.inf if jnp.issubdtype(dtype, jnp.floating) else 0


def magnitudes(x: jax.Array) -> jax.Array:
    """|x| as keys to rank by, exact for every real dtype (same shape).

    Floats: |x| with NaN as -inf (`nan_lowest`: |x| has no -0.0, and
    the ranks of `rank_keys` keys and of these agree; `_top_k_keys` applies
    the rest of `rank_keys` where `lax.top_k` ranks). Signed integers: |x| read
    as unsigned, since `jnp.abs` of the most negative value wraps (|-128| is
    -128 in int8, which would rank last; as uint8 it is 128); an integer zero
    is then the lowest key and never kept, which changes no term. Unsigned
    integers: themselves.
    """
    dtype = jnp.dtype(x.dtype)
    if jnp.issubdtype(dtype, jnp.floating):
        return nan_lowest(jnp.abs(x))
    if jnp.issubdtype(dtype, jnp.signedinteger):
        unsigned = jnp.dtype(f"uint{8 * dtype.itemsize}")
        return lax.bitcast_convert_type(jnp.abs(x), unsigned)  # two's complement: exact
    return x


def compare_keys(x: jax.Array) -> jax.Array:
    """`magnitudes` for the unrolled compares of `series_ops`, except that a
    float NaN stays NaN rather than -inf: NaN compares false both ways, so it
    beats no element and is never alive (`> lowest`), the masks -inf gives,
    without a select per key (docs/measurements.md)."""
    return jnp.abs(x) if jnp.issubdtype(x.dtype, jnp.floating) else magnitudes(x)


def _top_k_keys(keys: jax.Array) -> jax.Array:
    """Keys in the same order for `lax.top_k`, whose fast path on CPU is
    float32 (about 40x faster than on integers): integer keys of up to 16 bits
    convert exactly; wider integer keys (|int32|) stay exact on the slow path.
    Float keys get `rank_keys` whole: `lax.top_k` orders -0.0 below 0.0,
    and subnormals must tie with zero there as they do in compares."""
    if jnp.issubdtype(keys.dtype, jnp.floating):
        return rank_keys(keys)
    if jnp.dtype(keys.dtype).itemsize <= 2:
        return keys.astype(jnp.float32)
    return keys


def position_ranks(positions: list[jax.Array]) -> list[jax.Array]:
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
    grouped = jnp.moveaxis(to_groups(keys, m, axis, lowest_key(keys.dtype)), axis + 1, -1)
    _, top = lax.top_k(_top_k_keys(grouped), k)
    return top, lax.broadcasted_iota(jnp.int32, grouped.shape, grouped.ndim - 1)


def _scatter_to_groups(
    values: jax.Array, top: jax.Array, like: jax.Array, axis: int, length: int
) -> jax.Array:
    """Writes `values` at positions `top` of zero groups shaped like `like`
    ([..., G, ..., m]) and returns them in the input's layout."""
    zeros = jnp.zeros_like(like, values.dtype)
    out = jnp.put_along_axis(zeros, top, values, axis=-1, inplace=False)
    return from_groups(jnp.moveaxis(out, -1, axis + 1), axis, length)


def _group_ranks(keys: jax.Array, m: int, axis: int) -> jax.Array:
    """`group_ranks` of keys already fit to rank (`rank_keys`, `magnitudes`)."""
    if m <= COMPARE_MAX_M:
        positions = split_positions(keys, m, axis, lowest_key(keys.dtype))
        return join_positions(position_ranks(positions), axis, keys.shape[axis])
    order, iota = _top_k_in_groups(keys, m, m, axis)
    return _scatter_to_groups(iota, order, iota, axis, keys.shape[axis])


def keep_largest(keys: jax.Array, n: int, m: int, axis: int) -> jax.Array:
    """Bool mask of the `n` largest keys of every group of `m` along `axis`
    (ties: the lower index), whatever their values."""
    if m <= COMPARE_MAX_M:
        return _group_ranks(keys, m, axis) < n
    top, iota = _top_k_in_groups(keys, n, m, axis)
    return _scatter_to_groups(jnp.ones(top.shape, bool), top, iota, axis, keys.shape[axis])


@functools.partial(jax.jit, static_argnames=("m", "axis"))
def group_ranks(scores: jax.Array, m: int, axis: int) -> jax.Array:
    """Rank (0 = largest) of each element in its group of `m` along `axis`.

    A primitive: `axis` is taken literally (no GEMM view of kernels; the
    patterns apply `gemm_view.group_view` before calling it).

    Args:
      scores: any shape, float or int (ranked as float32); NaN ranks lowest.
      m: group size (static).
      axis: the grouping axis.

    Returns:
      int32 ranks shaped like `scores`; equal scores rank the lower index first.
      Jitted, as `series_masks`.
    """
    keys = rank_keys(scores_as_float(scores))
    return _group_ranks(keys, m, checks.normalize_axis(axis, keys.ndim))


def group_counts(mask: jax.Array, m: int, axis: int) -> jax.Array:
    """Number of kept elements in each group of `m` along `axis` ([..., G, ...]).

    A primitive like `group_ranks`: `axis` is taken literally.
    """
    axis = checks.normalize_axis(axis, mask.ndim)
    return jnp.sum(to_groups(jnp.asarray(mask), m, axis, False).astype(jnp.int32), axis=axis + 1)
