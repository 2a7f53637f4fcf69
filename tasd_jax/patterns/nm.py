"""N:M structured sparsity, TASD series of N:M terms, vector-wise and dense.

N:M (DESIGN.md §2): in every group of M consecutive elements along the axis,
keep the N largest scores; ties go to the lower index. An axis whose length is
not a multiple of M is padded internally with never-kept elements, so the last,
shorter group keeps at most N of its real elements.

The rank of each element inside its group is a count of M-1 comparisons, done
position by position on the [..., G, M, ...] view: no sort, no transpose, and
XLA fuses it into one pass over the data (DESIGN.md §3).
"""

import dataclasses
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


def _split_positions(x: jax.Array, size: int, axis: int, fill: float) -> list[jax.Array]:
    """Pads `axis` to a multiple of `size` with `fill` and returns, for each
    position i in a group, the [..., G, ...] array of the groups' i-th elements."""
    length = x.shape[axis]
    pad = -length % size
    if pad:
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, pad)
        x = jnp.pad(x, widths, constant_values=fill)
    grouped = x.reshape(x.shape[:axis] + ((length + pad) // size, size) + x.shape[axis + 1 :])
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


def group_ranks(scores: jax.Array, m: int, axis: int) -> jax.Array:
    """Rank (0 = largest) of each element in its group of `m` along `axis`.

    Args:
      scores: any shape, float or int.
      m: group size (static).
      axis: the grouping axis.

    Returns:
      int32 ranks shaped like `scores`; equal scores rank the lower index first.
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


def series_masks(scores: jax.Array, terms: "tuple[NM, ...]", axis: int) -> list[jax.Array]:
    """Each term's keep-mask of a TASD series, greedily on what earlier terms left.

    Args:
      scores: importances (|x| for the decomposition), any shape.
      terms: the N:M terms in order.
      axis: the grouping axis.

    Returns:
      One bool array shaped like `scores` per term; supports are disjoint.
      Elements scored -inf (taken by an earlier term, or padding) are never kept.
    """
    scores = base.scores_as_float(scores)
    axis = base.normalize_axis(axis, scores.ndim)
    length = scores.shape[axis]
    shared = math.lcm(*(t.m for t in terms))
    if shared > _MAX_SHARED_POSITIONS:
        masks, remaining = [], scores
        for term in terms:
            masks.append((group_ranks(remaining, term.m, axis) < term.n) & (remaining > -jnp.inf))
            remaining = jnp.where(masks[-1], -jnp.inf, remaining)
        return masks
    keeps = _series_keeps(_split_positions(scores, shared, axis, -jnp.inf), terms)
    return [_join_positions(keep, axis, length) for keep in keeps]


def series_terms(x: jax.Array, terms: "tuple[NM, ...]", axis: int) -> list[jax.Array]:
    """The terms of the TASD decomposition of `x` (see `tasd.decompose`).

    Same selection as `series_masks(|x|, ...)`, but |x| is taken per position
    and the terms are written straight from the positions, so XLA neither
    materialises |x| nor re-reads `x` (about 1.5x faster on CPU).
    """
    axis = base.normalize_axis(axis, x.ndim)
    length = x.shape[axis]
    shared = math.lcm(*(t.m for t in terms))
    zero = jnp.zeros((), x.dtype)
    if shared > _MAX_SHARED_POSITIONS:
        return [jnp.where(k, x, zero) for k in series_masks(jnp.abs(x), terms, axis)]
    values = _split_positions(x, shared, axis, 0)
    # Padding scores |0| = 0 and sits after every real element of its group,
    # so it never displaces one (ties keep the lower index) and is cut off.
    keeps = _series_keeps([jnp.abs(v) for v in values], terms)
    return [
        _join_positions([jnp.where(k, v, zero) for k, v in zip(keep, values)], axis, length)
        for keep in keeps
    ]


def group_counts(mask: jax.Array, m: int, axis: int) -> jax.Array:
    """Number of kept elements in each group of `m` along `axis` ([..., G, ...])."""
    positions = _split_positions(mask, m, base.normalize_axis(axis, mask.ndim), False)
    return sum((p.astype(jnp.int32) for p in positions), jnp.zeros(positions[0].shape, jnp.int32))


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
        return jnp.all(group_counts(mask, self.m, axis) <= self.n)

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
        # A mask has the series' structure iff the greedy split of its kept
        # elements leaves nothing over.
        covered = self.mask(mask.astype(jnp.float32), axis)
        return jnp.all(covered | ~mask)

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
    """Vector-wise (TW paper's VW baseline): in every `v` consecutive elements
    along the contraction axis keep the top round((1 - sparsity) * v)."""

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
        return [group_ranks(s, self.v, axis) < keep for s in scores]

    def conforms(self, mask: jax.Array, axis: int = -2) -> jax.Array:
        return jnp.all(group_counts(mask, self.v, axis) <= self.kept_per_vector())
