"""Vector-wise sparsity (the TW paper's VW baseline, docs/tile_wise.md)."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tasd_jax.patterns import base, checks, gemm_view, nm, ranking, registry, series_ops


def _vector_keep(sparsity: Any, v: int, xp: Any = jnp) -> Any:
    """round((1 - sparsity) * v) in float32, halves to even; `xp=np` gives the
    same number on the host (for checks that must not trace)."""
    return xp.round((xp.float32(1) - xp.asarray(sparsity, xp.float32)) * xp.float32(v))


@registry.register("vw")
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
    one. v <= `nm.MAX_M`, as an N:M group.
    """

    sparsity: float = 0.75
    v: int = 16

    def __post_init__(self):
        checks.check_positive_int("v", self.v)
        if self.v > nm.MAX_M:
            raise ValueError(f"v={self.v} must be <= {nm.MAX_M}: a vector is an N:M group")
        self.validate_sparsity(self.sparsity)

    def validate_sparsity(self, sparsity: Any) -> None:
        checks.check_sparsity(sparsity)
        if checks.is_concrete(sparsity) and _vector_keep(sparsity, self.v, np) < 1:
            raise ValueError(
                f"vw(sparsity={sparsity}, v={self.v}) keeps round((1 - {sparsity}) * {self.v}) "
                "= 0 elements per vector: every vector must keep one (lower the sparsity or "
                "raise v)"
            )

    def kept_per_vector(self, sparsity: Any = None) -> jax.Array:
        """Elements kept per vector (float32 scalar), at least 1."""
        return jnp.maximum(_vector_keep(self._sparsity(sparsity), self.v), 1.0)

    def masks(self, scores, axis=None, *, sparsity=None):
        # The structure is fixed per vector: one threshold across arrays is
        # the same as one per array.
        keep = self.kept_per_vector(sparsity)
        scores = [ranking.scores_as_float(s) for s in scores]
        views = [gemm_view.group_view(s, axis) for s in scores]
        return [
            (ranking.group_ranks(view, self.v, view_axis) < keep).reshape(s.shape)
            for (view, view_axis), s in zip(views, scores)
        ]

    def conforms(self, mask: jax.Array, axis: int | None = None) -> jax.Array:
        return jnp.all(series_ops.kept_per_group(mask, self.v, axis) <= self.kept_per_vector())
