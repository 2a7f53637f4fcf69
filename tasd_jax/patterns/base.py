"""The pattern base classes: `Pattern` and `ThresholdPattern`.

A pattern is a frozen dataclass with a pure, jit-able `mask(scores, axis)` that
returns a boolean keep-mask shaped like `scores` (scores are importances, e.g.
|w|). Patterns with a target `sparsity` also support one threshold across many
arrays (`ThresholdPattern.masks`), as tile-wise pruning needs (docs/tile_wise.md).

Axes (docs/conventions.md): the default axis None is the contraction axis K of
a flax kernel [..., in, out], the K of the GEMM view for a kernel of rank >= 3
(`gemm_view`); an explicit axis is that axis of the array.
Names and spec strings live in `registry`, input checks in `checks`.
"""

import abc
import dataclasses
import functools
from typing import Any, Callable, ClassVar, Sequence

import jax
import jax.numpy as jnp

from tasd_jax.patterns import checks


def _checking_scores(method: Callable, many: bool) -> Callable:
    """Wraps a pattern's `mask` (many=False) or `masks` (many=True) with the
    checks of `Pattern`, before any work; empty arrays never reach `method`."""
    if getattr(method, "_checks_scores", False):  # already wrapped (an alias)
        return method

    @functools.wraps(method)
    def checked(self, scores, axis=None, **kwargs):
        checks.check_axis_type(axis, allow_none=True)
        if many:
            if isinstance(scores, (str, bytes)) or not isinstance(scores, Sequence):
                raise TypeError(
                    f"scores must be a list of arrays (one per layer), got {type(scores).__name__}"
                )
            arrays = [checks.as_score_array(s, f"scores[{i}]") for i, s in enumerate(scores)]
        else:
            arrays = [checks.as_score_array(scores, "scores")]
        if arrays and all(a.size for a in arrays):
            return method(self, arrays if many else arrays[0], axis, **kwargs)
        # An empty array holds no weight: its mask is empty and it moves no
        # threshold, so the other arrays' masks are computed without it.
        if kwargs.get("sparsity") is not None and isinstance(self, ThresholdPattern):
            self._sparsity(kwargs["sparsity"])  # checked even when nothing is pruned
        out = [jnp.zeros(a.shape, bool) for a in arrays]
        full = [i for i, a in enumerate(arrays) if a.size]
        if full:
            kept = method(self, [arrays[i] for i in full], axis, **kwargs)
            for i, keep in zip(full, kept):
                out[i] = keep
        return out if many else out[0]

    checked._checks_scores = True
    return checked


class Pattern(abc.ABC):
    """Base of every sparsity pattern; subclasses are frozen dataclasses.

    Scores are checked before any work, for every pattern (a subclass's `mask`
    and `masks` are wrapped by `_checking_scores` when it is defined):
    a score array must hold real numbers (TypeError otherwise); concrete scores
    must be finite (ValueError naming the count of NaN / inf). Traced scores
    (inside jit) cannot be checked: there NaN ranks lowest and +inf highest
    (`rank_keys`). An empty array's mask is an empty mask, and `masks([])` is [].
    """

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, many in (("mask", False), ("masks", True)):
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "__isabstractmethod__", False):
                setattr(cls, name, _checking_scores(method, many))

    @abc.abstractmethod
    def mask(self, scores: jax.Array, axis: int | None = None) -> jax.Array:
        """Keep-mask (bool, shaped like `scores`) chosen from importances `scores`."""

    def conforms(self, mask: jax.Array, axis: int | None = None) -> jax.Array:
        """Whether the keep-mask `mask` has this pattern's structure (bool scalar).

        The default suits unstructured patterns: any mask has their structure.
        """
        del mask, axis
        return jnp.asarray(True)

    def spec(self) -> str:
        """The canonical spec string that parses back to this pattern."""
        params = ",".join(
            f"{f.name}={_format_value(getattr(self, f.name))}" for f in dataclasses.fields(self)
        )
        return f"{self.name}({params})" if params else self.name


class ThresholdPattern(Pattern):
    """A pattern that prunes a target fraction `sparsity` of elements.

    `masks` applies one selection across all given arrays (global threshold);
    `mask` is the per-array case. `sparsity=` overrides the field and may be a
    traced scalar, so schedules change it inside jit without recompiling; a
    concrete override is range-checked like the field (`validate_sparsity`).
    """

    sparsity: float

    def mask(self, scores: jax.Array, axis: int | None = None, *, sparsity: Any = None) -> jax.Array:
        return self.masks([scores], axis, sparsity=sparsity)[0]

    @abc.abstractmethod
    def masks(
        self, scores: Sequence[jax.Array], axis: int | None = None, *, sparsity: Any = None
    ) -> list[jax.Array]:
        """Keep-masks for all arrays, with one threshold across them."""

    def validate_sparsity(self, sparsity: Any) -> None:
        """Raises ValueError unless `sparsity` suits this pattern (skipped when
        traced): the one check of the field (in `__post_init__`) and of a
        `sparsity=` override. Patterns with a narrower range override it."""
        checks.check_sparsity(sparsity)

    def _sparsity(self, sparsity: Any) -> Any:
        """The sparsity in force: the field, or a checked `sparsity=` override."""
        if sparsity is None:
            return self.sparsity
        self.validate_sparsity(sparsity)
        return sparsity


def _format_value(value: Any) -> str:
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return "x".join(map(str, value))
    return str(value)
