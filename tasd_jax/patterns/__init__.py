"""Sparsity patterns as values: N:M, TASD series, TW/TEW/TVW, VW, BW, EW, channel.

`parse(spec)` turns the user's spec strings into pattern values; `register`
adds a pattern class under a spec name. See `registry` for the spec grammar.

Modules, one concept each: `base` (the pattern base classes), `registry`
(names and the spec parser), `checks` (input checks), `gemm_view` (kernels as
GEMM weights), `ranking` (ranks inside groups), `series_ops` (series masks,
fits and sums), `owners` (the decomposition's terms through packed owners),
`selection` (global thresholds), and the pattern classes: `nm` (N:M, series,
dense), `vector_wise`, `tilewise`, `unstructured`.
"""

from typing import Any, Sequence

import jax

from tasd_jax.patterns import base, checks, gemm_view, owners, ranking, registry, series_ops
from tasd_jax.patterns.base import Pattern, ThresholdPattern
from tasd_jax.patterns.nm import NM, Dense, Series, as_series
from tasd_jax.patterns.ranking import group_ranks
from tasd_jax.patterns.registry import parse, register, registered
from tasd_jax.patterns.selection import prune_lowest, target_count
from tasd_jax.patterns.tilewise import TileElementWise, TileVectorWise, TileWise, TileWise1
from tasd_jax.patterns.unstructured import BlockWise, Channel, ElementWise
from tasd_jax.patterns.vector_wise import VectorWise


def global_masks(
    pattern: "str | Pattern", scores: Sequence[jax.Array], axis: int | None = None, *, sparsity: Any = None
) -> list[jax.Array]:
    """Keep-masks for several arrays with one threshold across all of them.

    Patterns without a target sparsity (N:M, series, dense) have no threshold
    to share: each array gets its own mask. Scores are checked as `Pattern`
    documents, each named by its index (`scores[i]`); `[]` gives `[]`.
    """
    pattern = parse(pattern)
    if isinstance(pattern, ThresholdPattern):
        return pattern.masks(list(scores), axis, sparsity=sparsity)
    if sparsity is not None:
        raise ValueError(f"pattern {pattern.spec()!r} has no sparsity to set (got {sparsity})")
    checked = [checks.as_score_array(s, f"scores[{i}]") for i, s in enumerate(scores)]
    return [pattern.mask(s, axis) for s in checked]


__all__ = [
    "BlockWise", "Channel", "Dense", "ElementWise", "NM", "Pattern", "Series",
    "ThresholdPattern", "TileElementWise", "TileVectorWise", "TileWise", "TileWise1",
    "VectorWise", "as_series", "global_masks", "group_ranks", "parse", "prune_lowest",
    "register", "registered", "target_count",
]
