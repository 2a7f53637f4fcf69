"""Element-wise (EW), block-wise (BW) and channel pruning: the TW paper's
baselines (docs/tile_wise.md), each a threshold on units of a leaf.

* EW ("ew"): elements by score (global magnitude pruning in global mode).
* BW ("bw"): blocks of block=(bk, bn) on the GEMM view [K, N] by RMS score
  (L2 / sqrt(size), so the smaller edge blocks compete fairly).
* Channel ("channel"): whole output columns N by RMS (L2 / sqrt(K): the same
  ranking as L2 within a layer, and layers of different K compete fairly).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp

from tasd_jax.patterns import base, checks, gemm_view, ranking, registry
from tasd_jax.patterns.selection import prune_lowest, target_count


def _total(scores) -> int:
    return sum(s.size for s in scores)


@registry.register("ew")
@dataclasses.dataclass(frozen=True)
class ElementWise(base.ThresholdPattern):
    """Element-wise (unstructured) magnitude pruning."""

    sparsity: float = 0.75

    def __post_init__(self):
        self.validate_sparsity(self.sparsity)

    def masks(self, scores, axis=None, *, sparsity=None):
        scores = [ranking.scores_as_float(s) for s in scores]
        for s in scores:  # no grouping axis, but a bad one is refused as by every pattern
            if axis is not None:
                checks.normalize_axis(axis, max(jnp.ndim(s), 1))
        return prune_lowest(scores, [1] * len(scores), target_count(_total(scores), self._sparsity(sparsity)))


@registry.register("channel")
@dataclasses.dataclass(frozen=True)
class Channel(base.ThresholdPattern):
    """Prune whole output columns (the last axis) by their RMS (`gemm_view.column_rms`)."""

    sparsity: float = 0.5

    def __post_init__(self):
        self.validate_sparsity(self.sparsity)

    def masks(self, scores, axis=None, *, sparsity=None):
        matrices = [gemm_view.as_matrix(ranking.scores_as_float(s), axis) for s in scores]
        keep_columns = prune_lowest(
            [gemm_view.column_rms(w) for w in matrices],
            [w.shape[0] for w in matrices],
            target_count(_total(matrices), self._sparsity(sparsity)),
        )
        return [jnp.broadcast_to(k, s.shape) for k, s in zip(keep_columns, scores)]

    def conforms(self, mask: jax.Array, axis: int | None = None) -> jax.Array:
        matrix = gemm_view.as_matrix(mask, axis)
        return jnp.all(matrix == matrix[:1])


@registry.register("bw")
@dataclasses.dataclass(frozen=True)
class BlockWise(base.ThresholdPattern):
    """Prune [bk, bn] blocks of the GEMM view [K, N] by RMS score."""

    sparsity: float = 0.75
    block: tuple[int, int] = (32, 32)

    def __post_init__(self):
        if not (isinstance(self.block, tuple) and len(self.block) == 2):
            raise ValueError(f"block={self.block!r} must be two integers, e.g. block=32x32")
        for size in self.block:
            checks.check_positive_int("block size", size)
        self.validate_sparsity(self.sparsity)

    def masks(self, scores, axis=None, *, sparsity=None):
        return _block_masks(scores, axis, self._sparsity(sparsity), self.block)

    def conforms(self, mask: jax.Array, axis: int | None = None) -> jax.Array:
        matrix = gemm_view.as_matrix(mask, axis)
        kept = jnp.sum(_blocked(matrix.astype(jnp.int32), self.block), axis=(1, 3))
        size = jnp.sum(_blocked(jnp.ones(matrix.shape, jnp.int32), self.block), axis=(1, 3))
        return jnp.all((kept == 0) | (kept == size))


def _block_edges(shape: tuple[int, int], block: tuple[int, int]) -> tuple[int, int]:
    """The block's edges on a [K, N] matrix: an edge longer than the matrix
    covers all of it (the same blocks, without padding to a huge edge)."""
    return min(block[0], max(shape[0], 1)), min(block[1], max(shape[1], 1))


def _blocked(matrix: jax.Array, block: tuple[int, int]) -> jax.Array:
    """[K, N] -> [K / bk, bk, N / bn, bn], zero-padded to whole blocks."""
    bk, bn = _block_edges(matrix.shape, block)
    padded = jnp.pad(matrix, ((0, -matrix.shape[0] % bk), (0, -matrix.shape[1] % bn)))
    return padded.reshape(padded.shape[0] // bk, bk, padded.shape[1] // bn, bn)


# Jitted: outside jit its small ops would each run (and compile) alone.
@functools.partial(jax.jit, static_argnames=("axis", "block"))
def _block_masks(scores, axis, sparsity, block):
    matrices = [gemm_view.as_matrix(ranking.scores_as_float(s), axis) for s in scores]
    block_scores, block_sizes = [], []
    for w in matrices:
        # Edge blocks are smaller: their size counts only real weights.
        size = jnp.sum(_blocked(jnp.ones_like(w), block), axis=(1, 3))
        block_sizes.append(size)
        block_scores.append(jnp.sqrt(jnp.sum(_blocked(jnp.square(w), block), axis=(1, 3)) / size))
    keep_blocks = prune_lowest(block_scores, block_sizes, target_count(_total(matrices), sparsity))
    out = []
    for keep, w, s in zip(keep_blocks, matrices, scores):
        bk, bn = _block_edges(w.shape, block)
        full = jnp.repeat(jnp.repeat(keep, bk, axis=0), bn, axis=1)
        out.append(full[: w.shape[0], : w.shape[1]].reshape(s.shape))
    return out
