"""Tile-wise sparsity (Guo et al., SC20; docs/tile_wise.md) and its variants.

A leaf is viewed as the GEMM weight W[K, N] (`gemm_view.as_matrix`).

* tw2 (`TileWise`, spec "tw"): prune whole N-columns by their RMS at the
  per-dimension rate s' with (1 - s')^2 = 1 - s; cut the surviving columns, in
  order, into tiles of `g`; inside each tile prune K-row segments by their
  RMS (see `segment_units`) until the total sparsity is s. Both stages use
  one threshold across all arrays in global mode.
* tw1 (`TileWise1`, "tw1"): no column stage; fixed tiles of `g` consecutive
  columns, K-row segments pruned by RMS (g = 1 is element-wise).
* TEW ("tew"): TW at s + delta, then the top `delta` of all weights by score
  are added back as an unstructured remainder.
* TVW ("tvw"): TW with 2:4 inside each tile: TW at 1 - 2(1 - s), then 2:4 along
  each tile's kept K-rows (in their packed order).

Unit sizes are weights, so the achieved sparsity is the target (up to one unit)
even when tiles and layers differ in size.

Where we depart from the TW paper's code (docs/conventions.md): every score
here is an RMS, a mean over the weights a unit holds, so units of different
sizes compete on the same scale. With one global threshold across layers of
different K this matters for the column stage. The paper's code scores a
column by its L2 norm divided by K, which shrinks like 1/sqrt(K) for like
weights: long-K layers score low and lose their columns (at 75% over i.i.d.
768x768, 768x3072 and 3072x768 weights, the 3072x768 layer is emptied). A raw
L2 norm grows like sqrt(K) and does the opposite: 3072x768 keeps every column
and the two K = 768 layers end up 93% sparse. The column RMS, L2/sqrt(K),
leaves each of them within a few percent of the target. For row segments of
full tiles the RMS ranks exactly as the paper's L2/width; only the narrower
last tile differs (see `segment_units`).
"""

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from tasd_jax.patterns import base, checks, gemm_view, nm, ranking, registry
from tasd_jax.patterns.selection import prune_lowest, target_count


def tile_membership(keep_columns: jax.Array, g: int, *, compact: bool) -> jax.Array:
    """One-hot [N, T] of column -> tile (T = ceil(N / g)).

    compact=True: kept columns, in order, cut into tiles of g (tw2); pruned
    columns belong to no tile. compact=False: tile j // g for every column (tw1).
    """
    num_columns = keep_columns.shape[0]
    num_tiles = -(-num_columns // g)
    if compact:
        tile = (jnp.cumsum(keep_columns.astype(jnp.int32)) - 1) // g
        tile = jnp.where(keep_columns, tile, -1)
    else:
        tile = jnp.arange(num_columns) // g
    return tile[:, None] == jnp.arange(num_tiles)[None, :]


def segment_units(w: jax.Array, membership: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Row-segment scores [K, T] and sizes (widths) [T] of each tile.

    The score is the segment's RMS, L2/sqrt(width). Among tiles of the full
    width g it ranks segments exactly as the TW paper's L2/width does (the two
    differ by a constant); unlike L2/width (which grows like 1/sqrt(width)
    for like weights) it does not favour the narrower last tile, which would
    otherwise keep nearly all its rows.
    """
    member = membership.astype(jnp.float32)
    squares = jnp.square(w.astype(jnp.float32))
    # A segment is NaN if one of its scores is (pruned first, `ranking.rank_keys`)
    # and +inf if one is infinite. A plain `squares @ member` would spread a
    # non-finite square to the segments of every tile in its row (0 * inf is
    # NaN), so finite squares are summed apart from counts of NaN and inf, in
    # one product.
    finite = jnp.isfinite(squares)
    parts = jnp.concatenate([jnp.where(finite, squares, 0.0), jnp.isnan(squares), ~finite])
    sums, nans, infinite = jnp.split(parts @ member, 3)
    width = jnp.sum(member, axis=0)
    score = jnp.sqrt(sums / jnp.maximum(width, 1.0))
    score = jnp.where(nans > 0, jnp.nan, jnp.where(infinite > 0, jnp.inf, score))
    # Empty tiles hold no weights: never prune them (size 0 anyway).
    return jnp.where(width > 0, score, jnp.inf), width


def expand_segments(keep_segments: jax.Array, membership: jax.Array) -> jax.Array:
    """[K, T] segment keep-mask -> [K, N] element keep-mask (pruned columns: False)."""
    return (keep_segments.astype(jnp.float32) @ membership.T.astype(jnp.float32)) > 0.5


def tile_conforms(mask: jax.Array, membership: jax.Array) -> jax.Array:
    """Whether every tile's columns share one K-row mask ([K, N] mask, [N, T])."""
    counts = mask.astype(jnp.float32) @ membership.astype(jnp.float32)
    width = jnp.sum(membership, axis=0).astype(jnp.float32)
    return jnp.all((counts == 0) | (counts == width[None, :]))


def _row_segment_stage(
    matrices: Sequence[jax.Array], memberships: Sequence[jax.Array], num_prune: Any, already: Any
) -> list[jax.Array]:
    units = [segment_units(w, mem) for w, mem in zip(matrices, memberships)]
    keep_segments = prune_lowest(
        [s for s, _ in units], [z[None, :] for _, z in units], num_prune - already
    )
    return [expand_segments(k, mem) for k, mem in zip(keep_segments, memberships)]


# Jitted: outside jit their dozens of small ops would each run (and compile) alone.
@functools.partial(jax.jit, static_argnames=("axis", "g"))
def _tw2_masks(scores, axis, sparsity, g):
    matrices = [gemm_view.as_matrix(ranking.scores_as_float(s), axis) for s in scores]
    total = sum(w.size for w in matrices)
    num_prune = target_count(total, sparsity)
    per_dimension = 1.0 - jnp.sqrt(1.0 - jnp.asarray(sparsity, jnp.float32))
    keep_columns = prune_lowest(
        [gemm_view.column_rms(w) for w in matrices], [w.shape[0] for w in matrices],
        target_count(total, per_dimension),
    )
    column_pruned = sum(jnp.sum(~k) * w.shape[0] for k, w in zip(keep_columns, matrices))
    memberships = [tile_membership(k, g, compact=True) for k in keep_columns]
    keeps = _row_segment_stage(matrices, memberships, num_prune, column_pruned)
    return [k.reshape(s.shape) for k, s in zip(keeps, scores)]


@functools.partial(jax.jit, static_argnames=("axis", "g"))
def _tw1_masks(scores, axis, sparsity, g):
    matrices = [gemm_view.as_matrix(ranking.scores_as_float(s), axis) for s in scores]
    total = sum(w.size for w in matrices)
    memberships = [
        tile_membership(jnp.ones(w.shape[1], bool), g, compact=False) for w in matrices
    ]
    keeps = _row_segment_stage(matrices, memberships, target_count(total, sparsity), 0)
    return [k.reshape(s.shape) for k, s in zip(keeps, scores)]


def _tw_conforms(mask: jax.Array, axis: int, g: int, compact: bool) -> jax.Array:
    matrix = gemm_view.as_matrix(mask, axis)
    keep_columns = jnp.any(matrix, axis=0) if compact else jnp.ones(matrix.shape[1], bool)
    return tile_conforms(matrix, tile_membership(keep_columns, g, compact=compact))


@dataclasses.dataclass(frozen=True)
class _Tiled(base.ThresholdPattern):
    """Fields and checks shared by the tile-wise patterns."""

    sparsity: float = 0.75
    g: int = 128

    def __post_init__(self):
        checks.check_positive_int("g", self.g)
        self.validate_sparsity(self.sparsity)


@registry.register("tw")
@dataclasses.dataclass(frozen=True)
class TileWise(_Tiled):
    """Tile-wise sparsity, tw2: column pruning by RMS, then K-row segments per tile of g."""

    def masks(self, scores, axis=None, *, sparsity=None):
        return _tw2_masks(scores, axis, self._sparsity(sparsity), self.g)

    def conforms(self, mask: jax.Array, axis: int | None = None) -> jax.Array:
        return _tw_conforms(mask, axis, self.g, compact=True)


@registry.register("tw1")
@dataclasses.dataclass(frozen=True)
class TileWise1(_Tiled):
    """Tile-wise sparsity, tw1: K-row segments in fixed tiles of g columns."""

    def masks(self, scores, axis=None, *, sparsity=None):
        return _tw1_masks(scores, axis, self._sparsity(sparsity), self.g)

    def conforms(self, mask: jax.Array, axis: int | None = None) -> jax.Array:
        return _tw_conforms(mask, axis, self.g, compact=False)


@registry.register("tew")
@dataclasses.dataclass(frozen=True)
class TileElementWise(_Tiled):
    """TEW: tw2 at sparsity + delta, plus the top `delta` of weights added back."""

    delta: float = 0.05

    def __post_init__(self):
        if checks.is_concrete(self.delta) and not 0.0 <= self.delta:
            raise ValueError(f"delta={self.delta} must be >= 0")
        super().__post_init__()

    def validate_sparsity(self, sparsity: Any) -> None:
        checks.check_sparsity(sparsity)
        if checks.is_concrete(sparsity) and sparsity + self.delta >= 1.0:
            raise ValueError(
                f"sparsity + delta = {sparsity} + {self.delta} = {sparsity + self.delta} "
                "must be < 1: the TW stage prunes sparsity + delta"
            )

    def masks(self, scores, axis=None, *, sparsity=None):
        sparsity = self._sparsity(sparsity)
        tile_keeps = _tw2_masks(scores, axis, sparsity + self.delta, self.g)
        # Everything TW kept is +inf, so pruning down to `sparsity` re-admits
        # exactly the highest-scoring `delta` of the weights TW removed.
        remainder = [jnp.where(k, jnp.inf, ranking.scores_as_float(s))
                     for k, s in zip(tile_keeps, scores)]
        total = sum(s.size for s in scores)
        return prune_lowest(remainder, [1] * len(scores), target_count(total, sparsity))


@registry.register("tvw")
@dataclasses.dataclass(frozen=True)
class TileVectorWise(_Tiled):
    """TVW: tw2 with 2:4 inside each tile along its kept K-rows.

    Its 2:4 alone is 50%, so sparsity >= 0.5; a traced sparsity below that
    (early in a gradual schedule) gives plain 2:4 in tw2 tiles of no pruning.
    """

    def validate_sparsity(self, sparsity: Any) -> None:
        checks.check_sparsity(sparsity, lower=0.5, reason="2:4 alone is 0.5")

    def masks(self, scores, axis=None, *, sparsity=None):
        tile_sparsity = 1.0 - 2.0 * (1.0 - jnp.asarray(self._sparsity(sparsity), jnp.float32))
        tile_keeps = _tw2_masks(scores, axis, tile_sparsity, self.g)
        return [
            _two_four_in_tiles(
                gemm_view.as_matrix(ranking.scores_as_float(s), axis), k.reshape(-1, s.shape[-1])
            ).reshape(s.shape)
            for s, k in zip(scores, tile_keeps)
        ]

    def conforms(self, mask: jax.Array, axis: int | None = None) -> jax.Array:
        matrix = gemm_view.as_matrix(jnp.asarray(mask, bool), axis)
        membership = tile_membership(jnp.any(matrix, axis=0), self.g, compact=True)
        return _two_four_in_some_tile_rows(matrix, membership)


@jax.jit  # a scan is traced anew on every call outside jit
def _two_four_in_some_tile_rows(mask: jax.Array, membership: jax.Array) -> jax.Array:
    """Whether every tile's columns are 2:4 along some K-rows the tile shares.

    A tile's rows are those where one of its columns keeps an element, plus
    any rows it kept whose elements 2:4 removed in every column: invisible in
    the mask, yet they shift the groups of 4 (common for narrow tiles). A scan
    over K tracks which states of the current group of 4 can be reached per
    tile: (rows in the group p, of which rows with an element k, k <= p). A row
    with an element must join the group, and may only if no column of the
    tile then holds 3 in it; an empty row may join or not.

    Args:
      mask: [K, N] bool; membership: [N, T] one-hot column -> tile.

    Returns:
      bool scalar.
    """
    member = membership.astype(jnp.float32)
    used = (mask.astype(jnp.float32) @ member) > 0  # [K, T]
    used_by_column = (used.astype(jnp.float32) @ member.T) > 0  # [K, N]

    def step(carry, row):
        reach, recent = carry  # [T, 4, 4] over (p, k); [3, N] the last 3 used rows
        kept, used_row, used_col = row
        # Kept per column over the last k used rows and this one, k = 0..3.
        earlier = jnp.cumsum(recent.astype(jnp.int32), axis=0)
        counts = jnp.concatenate([jnp.zeros_like(earlier[:1]), earlier]) + kept
        allowed = (((counts > 2).astype(jnp.float32) @ member) == 0).T  # [T, 4] over k
        close = jnp.zeros_like(reach).at[:, 0, 0].set(True)
        # A used row: (p, k) -> (p + 1, k + 1); p + 1 = 4 closes the group.
        ok = reach & allowed[:, None, :]
        joined = jnp.pad(ok[:, :3, :3], ((0, 0), (1, 0), (1, 0)))
        with_used = joined | (close & jnp.any(ok[:, 3], axis=1)[:, None, None])
        # An empty row: skip it, or (p, k) -> (p + 1, k).
        padded = jnp.pad(reach[:, :3, :], ((0, 0), (1, 0), (0, 0)))
        with_empty = reach | padded | (close & jnp.any(reach[:, 3], axis=1)[:, None, None])
        reach = jnp.where(used_row[:, None, None], with_used, with_empty)
        shifted = jnp.concatenate([kept[None], recent[:2]])
        return (reach, jnp.where(used_col[None], shifted, recent)), None

    num_tiles, num_columns = member.shape[1], member.shape[0]
    start = jnp.zeros((num_tiles, 4, 4), bool).at[:, 0, 0].set(True)
    carry = (start, jnp.zeros((3, num_columns), bool))
    (reach, _), _ = lax.scan(step, carry, (mask, used, used_by_column))
    return jnp.all(jnp.any(reach, axis=(1, 2)))


def _packed_row_order(tile_mask: jax.Array) -> jax.Array:
    """[K, N] row permutation per column putting its kept rows first, in order."""
    num_rows = tile_mask.shape[0]
    key = jnp.where(tile_mask, 0, num_rows) + jnp.arange(num_rows)[:, None]
    return jnp.argsort(key, axis=0)


@jax.jit  # as `_tw2_masks`
def _two_four_in_tiles(scores: jax.Array, tile_mask: jax.Array) -> jax.Array:
    # Every column of a tile shares the tile's kept rows, so packing each column
    # by its own kept rows is packing by the tile's.
    rows = _packed_row_order(tile_mask)
    packed_scores = jnp.take_along_axis(jnp.where(tile_mask, scores, -jnp.inf), rows, axis=0)
    packed_keep = nm.NM(2, 4).mask(packed_scores, axis=0) & jnp.take_along_axis(tile_mask, rows, axis=0)
    return jnp.zeros_like(tile_mask).at[rows, jnp.arange(tile_mask.shape[1])[None, :]].set(packed_keep)
