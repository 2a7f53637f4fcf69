"""N:M structured sparsity, TASD series of N:M terms, vector-wise and dense.

N:M (docs/tasd.md): in every group of M consecutive elements along the axis,
keep the N largest scores; ties go to the lower index. An axis whose length is
not a multiple of M is padded internally with never-kept elements, so the last,
shorter group keeps at most N of its real elements. On the contraction axis of
a kernel of rank >= 3 the groups run along the K of its GEMM view
(`base.group_view`; docs/conventions.md), so a convolution kernel is grouped as
the GEMM the hardware runs.

The rank of each element inside its group is a count of M-1 comparisons, done
position by position on the [..., G, M, ...] view: no sort, no transpose, and
XLA fuses it into one pass over the data (docs/measurements.md).
"""

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from tasd_jax.patterns import base


# A series whose group sizes have a small common multiple is computed in one
# layout of lcm(M) positions; past this many positions the unrolled compares
# would bloat compilation, so each term gets its own layout.
_MAX_SHARED_POSITIONS = 64


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


def _join_positions(positions: list[jax.Array], axis: int, length: int) -> jax.Array:
    """Inverse of `_split_positions`: back to the unpadded array."""
    stacked = jnp.stack(positions, axis=axis + 1)
    shape = stacked.shape[:axis] + (-1,) + stacked.shape[axis + 2 :]
    return lax.slice_in_dim(stacked.reshape(shape), 0, length, axis=axis)


def _ranks(positions: list[jax.Array]) -> list[jax.Array]:
    """Rank of each position in its group (0 = largest; ties: lower index first)."""
    ranks = []
    for i, here in enumerate(positions):
        beaten = [(positions[j] >= here) for j in range(i)]
        beaten += [(positions[j] > here) for j in range(i + 1, len(positions))]
        ranks.append(sum((b.astype(jnp.int32) for b in beaten), jnp.zeros(here.shape, jnp.int32)))
    return ranks


@functools.partial(jax.jit, static_argnames=("m", "axis"))
def group_ranks(scores: jax.Array, m: int, axis: int) -> jax.Array:
    """Rank (0 = largest) of each element in its group of `m` along `axis`.

    A primitive: `axis` is taken literally (no GEMM view of kernels; the
    patterns apply `base.group_view` before calling it).

    Args:
      scores: any shape, float or int.
      m: group size (static).
      axis: the grouping axis.

    Returns:
      int32 ranks shaped like `scores`; equal scores rank the lower index first.
      Jitted, as `series_masks`.
    """
    scores = base.scores_as_float(scores)
    axis = base.normalize_axis(axis, scores.ndim)
    positions = _split_positions(scores, m, axis, -jnp.inf)
    return _join_positions(_ranks(positions), axis, scores.shape[axis])


def _series_keeps(remaining: list[jax.Array], terms: "tuple[NM, ...]") -> list[list[jax.Array]]:
    """Per term, the keep-mask of every position (of lcm(M) positions), chosen
    greedily on what earlier terms left; -inf scores are never kept."""
    keeps = []
    for term in terms:
        keep = []
        for start in range(0, len(remaining), term.m):
            group = remaining[start : start + term.m]
            keep += [(r < term.n) & (g > -jnp.inf) for r, g in zip(_ranks(group), group)]
        remaining = [jnp.where(k, -jnp.inf, r) for k, r in zip(keep, remaining)]
        keeps.append(keep)
    return keeps


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
      Elements scored -inf (taken by an earlier term, or padding) are never kept.
      Jitted: its unrolled compares would run one by one outside jit.
    """
    scores = base.scores_as_float(scores)
    view, axis = base.group_view(scores, axis)
    length = view.shape[axis]
    shared = math.lcm(*(t.m for t in terms))
    if shared > _MAX_SHARED_POSITIONS:
        masks, remaining = [], view
        for term in terms:
            masks.append((group_ranks(remaining, term.m, axis) < term.n) & (remaining > -jnp.inf))
            remaining = jnp.where(masks[-1], -jnp.inf, remaining)
    else:
        keeps = _series_keeps(_split_positions(view, shared, axis, -jnp.inf), terms)
        masks = [_join_positions(keep, axis, length) for keep in keeps]
    return [m.reshape(scores.shape) for m in masks]


def series_terms(x: jax.Array, terms: "tuple[NM, ...]", axis: int) -> list[jax.Array]:
    """The terms of the TASD decomposition of `x` (see `tasd.decompose`).

    Same selection as `series_masks(|x|, ...)` (grouping included), but |x| is
    taken per position and the terms are written straight from the positions,
    so XLA neither materialises |x| nor re-reads `x` (about 1.5x faster on CPU).
    """
    shared = math.lcm(*(t.m for t in terms))
    zero = jnp.zeros((), x.dtype)
    if shared > _MAX_SHARED_POSITIONS:
        return [jnp.where(k, x, zero) for k in series_masks(jnp.abs(x), terms, axis)]
    view, view_axis = base.group_view(x, axis)
    length = view.shape[view_axis]
    values = _split_positions(view, shared, view_axis, 0)
    # Padding scores |0| = 0 and sits after every real element of its group,
    # so it never displaces one (ties keep the lower index) and is cut off.
    keeps = _series_keeps([jnp.abs(v) for v in values], terms)
    return [
        _join_positions([jnp.where(k, v, zero) for k, v in zip(keep, values)], view_axis, length)
        .reshape(x.shape)
        for keep in keeps
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
    block = math.lcm(*(t.m for t in terms))
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
    """Keep the `n` largest of every `m` consecutive elements along the axis."""

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
    terms themselves).
    """

    terms: tuple[NM, ...]

    def __post_init__(self):
        if not self.terms:
            raise ValueError("a series needs at least one N:M term")
        if not all(isinstance(t, NM) for t in self.terms):
            raise ValueError(f"series terms {self.terms!r} must all be N:M patterns")

    @property
    def compute_cost(self) -> float:
        """Fraction of dense compute on N:M hardware: the sum of Ni/Mi."""
        return sum(t.compute_cost for t in self.terms)

    def term_masks(self, scores: jax.Array, axis: int = -2) -> list[jax.Array]:
        """Each term's keep-mask, chosen greedily on what earlier terms left."""
        return series_masks(scores, self.terms, axis)

    def mask(self, scores: jax.Array, axis: int = -2) -> jax.Array:
        masks = self.term_masks(scores, axis)
        return jnp.any(jnp.stack(masks), axis=0)

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


@base.register("vw")
@dataclasses.dataclass(frozen=True)
class VectorWise(base.ThresholdPattern):
    """Vector-wise (TW paper's VW baseline, docs/tile_wise.md): in every `v`
    consecutive elements along the contraction axis (grouped like N:M) keep
    the top round((1 - sparsity) * v)."""

    sparsity: float = 0.75
    v: int = 16

    def __post_init__(self):
        base.check_positive_int("v", self.v)
        base.check_sparsity(self.sparsity)

    def kept_per_vector(self, sparsity: Any = None) -> jax.Array:
        return jnp.round((1.0 - jnp.asarray(self._sparsity(sparsity), jnp.float32)) * self.v)

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
