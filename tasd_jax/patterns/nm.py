"""N:M structured sparsity, TASD series of N:M terms, and dense.

The pattern classes; their masks come from `series_ops` (built on `ranking`),
the decomposition's terms from `owners`.
"""

import dataclasses

import jax
import jax.numpy as jnp

from tasd_jax.patterns import base, checks, registry, series_ops


# The largest group and the most terms a spec may ask for. The hardware this
# library models groups at most 8 elements and runs at most two terms per
# pass (docs/tasd.md); the caps leave room to explore, and keep a typo such as
# "1:64000" or a runaway generated series from compiling for minutes.
MAX_M = 256
MAX_TERMS = 8

@registry.register("nm")
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

    def mask(self, scores: jax.Array, axis: int | None = None) -> jax.Array:
        return series_ops.series_masks(scores, (self,), axis)[0]

    def conforms(self, mask: jax.Array, axis: int | None = None) -> jax.Array:
        return jnp.all(series_ops.kept_per_group(mask, self.m, axis) <= self.n)

    def spec(self) -> str:
        return f"{self.n}:{self.m}"


@registry.register("series")
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

    @property
    def canonical(self) -> str:
        """The spec hardware tables and searches key by: "dense" for a single
        n:n term, else the terms ("2:4 + 1:4" -> "2:4+1:4", "8:8" -> "dense")."""
        if len(self.terms) == 1 and self.terms[0].n == self.terms[0].m:
            return "dense"
        return self.spec()

    def term_masks(self, scores: jax.Array, axis: int | None = None) -> list[jax.Array]:
        """Each term's keep-mask, chosen greedily on what earlier terms left
        (scores checked as in `mask`)."""
        scores = checks.as_score_array(scores, "scores")
        if not scores.size:
            return [jnp.zeros(scores.shape, bool) for _ in self.terms]
        return series_ops.series_masks(scores, self.terms, axis)

    def mask(self, scores: jax.Array, axis: int | None = None) -> jax.Array:
        return jnp.any(jnp.stack(series_ops.series_masks(scores, self.terms, axis)), axis=0)

    def conforms(self, mask: jax.Array, axis: int | None = None) -> jax.Array:
        """Whether the kept elements can be shared out among the terms, each
        Ni:Mi (exact; see `series_fits`)."""
        return series_ops.series_fits(mask, self.terms, axis)

    def spec(self) -> str:
        return "+".join(t.spec() for t in self.terms)


def as_series(pattern: "str | base.Pattern") -> Series:
    """A TASD series from a spec or pattern: N:M -> one term, dense -> 1:1."""
    pattern = registry.parse(pattern)
    if isinstance(pattern, Series):
        return pattern
    if isinstance(pattern, NM):
        return Series((pattern,))
    if isinstance(pattern, Dense):
        return Series((NM(1, 1),))
    raise ValueError(
        f"pattern {pattern.spec()!r} is not a TASD series: use 'dense', 'N:M' or 'N:M+N:M...'"
    )


@registry.register("dense")
@dataclasses.dataclass(frozen=True)
class Dense(base.Pattern):
    """Keep everything."""

    @property
    def compute_cost(self) -> float:
        return 1.0

    def mask(self, scores: jax.Array, axis: int | None = None) -> jax.Array:
        del axis
        return jnp.ones(jnp.shape(scores), bool)

    def conforms(self, mask: jax.Array, axis: int | None = None) -> jax.Array:
        del axis
        return jnp.all(mask)

    def spec(self) -> str:
        return "dense"
