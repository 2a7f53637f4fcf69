"""TASD: approximate a tensor by a series of N:M structured-sparse terms.

Jeong et al., "Enabling Unstructured Sparse Acceleration on Structured Sparse
Accelerators" (arXiv 2403.07953), §3; DESIGN.md §2. Term 1 keeps, in every
group of M1 consecutive elements along the contraction axis, the N1 largest
magnitudes; the residual goes to term 2 with N2:M2; and so on. Since
(A1 + A2) B = A1 B + A2 B, every term runs on N:M hardware, at a compute cost
of sum(Ni / Mi) of dense.
"""

import dataclasses
import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tasd_jax import patterns
from tasd_jax import tree_paths


@functools.partial(jax.jit, static_argnames=("series", "axis"))
def _decompose(x: jax.Array, series: patterns.Series, axis: int) -> tuple[jax.Array, ...]:
    masks = series.term_masks(jnp.abs(x), axis)
    return tuple(jnp.where(keep, x, jnp.zeros((), x.dtype)) for keep in masks)


def decompose(
    x: jax.Array, series: "str | patterns.Pattern", axis: int = -1
) -> tuple[jax.Array, ...]:
    """Splits `x` into the terms of a TASD series, greedily on the residual.

    Args:
      x: array of any rank (float32, bfloat16, float16, ...).
      series: "2:4", "2:4+1:8", "dense" (one 1:1 term), or a pattern value.
      axis: the axis along which groups of M consecutive elements are formed
        (the contraction axis: -2 for a flax kernel [in, out], -1 for
        activations [..., features]). A length that is not a multiple of M is
        zero-padded internally; terms come back in `x`'s shape.

    Returns:
      A tuple of arrays shaped and typed like `x`, one per term; term i is
      Ni:Mi along `axis`, supports are disjoint, and their sum equals `x`
      wherever the series keeps it. Ties go to the lower index.
    """
    x = jnp.asarray(x)
    series = patterns.as_series(series)
    axis = patterns.base.normalize_axis(axis, x.ndim) if x.ndim else axis
    if x.ndim == 0:
        raise ValueError("decompose needs an array of rank >= 1, got a scalar")
    return _decompose(x, series, axis)


def decompose_reference(
    x: np.ndarray, series: "str | patterns.Pattern", axis: int = -1
) -> tuple[np.ndarray, ...]:
    """Straightforward numpy `decompose` (argsort within each group): the
    independent reference for tests and the baseline of the benchmark."""
    moved = np.moveaxis(np.asarray(x), axis, -1)
    residual, terms = moved.copy(), []
    for term in patterns.as_series(series).terms:
        pad = -residual.shape[-1] % term.m
        padded = np.pad(residual, [(0, 0)] * (residual.ndim - 1) + [(0, pad)])
        groups = padded.reshape(padded.shape[:-1] + (-1, term.m))
        order = np.argsort(-np.abs(groups), axis=-1, kind="stable")
        keep = np.zeros(groups.shape, bool)
        np.put_along_axis(keep, order[..., : term.n], True, axis=-1)
        keep = keep.reshape(padded.shape)[..., : residual.shape[-1]]
        terms.append(np.where(keep, residual, 0).astype(moved.dtype))
        residual = np.where(keep, 0, residual).astype(moved.dtype)
    return tuple(np.moveaxis(t, -1, axis) for t in terms)


def reconstruct(terms: Sequence[jax.Array]) -> jax.Array:
    """Sum of the terms of a series: the approximation of the original."""
    if not terms:
        raise ValueError("reconstruct needs at least one term")
    return functools.reduce(jnp.add, terms)


class SeriesMetrics(NamedTuple):
    """How well a series approximates x (fractions in [0, 1] unless stated)."""

    kept_nonzero: float  # non-zeros of x kept by the series / non-zeros of x
    kept_l1: float  # sum |approx| / sum |x|
    kept_l2: float  # sum approx^2 / sum x^2 (energy)
    rel_error: float  # ||x - approx||_F / ||x||_F
    compute_cost: float  # sum(Ni / Mi): fraction of dense compute on N:M hardware


@jax.jit
def _metric_sums(x: jax.Array, approx: jax.Array) -> jax.Array:
    x, approx = x.astype(jnp.float32), approx.astype(jnp.float32)
    return jnp.stack([
        jnp.sum(x != 0), jnp.sum((approx != 0) & (x != 0)),
        jnp.sum(jnp.abs(x)), jnp.sum(jnp.abs(approx)),
        jnp.sum(x * x), jnp.sum(approx * approx), jnp.sum(jnp.square(x - approx)),
    ])


def series_metrics(x: jax.Array, terms: Sequence[jax.Array], series: Any = None) -> SeriesMetrics:
    """Metrics of a decomposition of `x` into `terms`; `series` (spec or
    pattern) gives compute_cost, which is NaN when it is not given."""
    sums = np.asarray(_metric_sums(jnp.asarray(x), reconstruct(terms)), np.float64)
    nnz, kept_nnz, l1, kept_l1, l2, kept_l2, err = sums

    def ratio(a, b):
        return float(a / b) if b > 0 else 1.0

    cost = patterns.as_series(series).compute_cost if series is not None else float("nan")
    return SeriesMetrics(
        kept_nonzero=ratio(kept_nnz, nnz), kept_l1=ratio(kept_l1, l1), kept_l2=ratio(kept_l2, l2),
        rel_error=float(np.sqrt(err / l2)) if l2 > 0 else 0.0, compute_cost=cost,
    )


@dataclasses.dataclass(frozen=True)
class LeafReport:
    """What `decompose_tree` did to one leaf."""

    path: str
    shape: tuple[int, ...]
    series: str  # canonical spec, "dense" for unmatched leaves
    axis: int | None  # None for leaves left dense
    matched: bool  # False: no rule matched, the leaf stays dense
    metrics: SeriesMetrics


class TreeDecomposition(NamedTuple):
    terms: dict[str, tuple[jax.Array, ...]]  # path -> terms ((leaf,) if dense)
    report: list[LeafReport]


def decompose_tree(
    params: Any, rules: Sequence[tree_paths.Rule | tuple], *, require_all: bool = True
) -> TreeDecomposition:
    """Decomposes the leaves of a parameter pytree selected by path rules.

    Args:
      params: any pytree of arrays (e.g. flax `variables["params"]`).
      rules: (path_regex, series[, axis]) in order; the first regex that
        `re.search`es a leaf's '/'-joined path picks its series. The axis
        defaults to -2 for rank >= 2 (flax kernels [..., in, out]) else -1.
      require_all: raise ValueError if a rule matches no leaf.

    Returns:
      `TreeDecomposition`: terms per path ('/'-joined) and a per-leaf report;
      leaves no rule matched stay dense and are reported with matched=False.
    """
    flat = tree_paths.flatten(params)
    rules = [tree_paths.Rule(r.pattern, patterns.as_series(r.value), r.axis) for r in tree_paths.as_rules(rules)]
    chosen = tree_paths.match_rules(list(flat), rules, require_all=require_all)
    terms, report = {}, []
    for path, leaf in flat.items():
        rule = chosen[path]
        if rule is None:
            terms[path] = (leaf,)
            report.append(LeafReport(path, tuple(leaf.shape), "dense", None, False,
                                     series_metrics(leaf, (leaf,), "dense")))
            continue
        axis = tree_paths.default_axis(leaf.ndim) if rule.axis is None else rule.axis
        terms[path] = decompose(leaf, rule.value, axis)
        report.append(LeafReport(path, tuple(leaf.shape), rule.value.spec(), axis, True,
                                 series_metrics(leaf, terms[path], rule.value)))
    return TreeDecomposition(terms, report)


def reconstruct_tree(decomposition: TreeDecomposition, like: Any) -> Any:
    """The approximated parameter pytree (shaped like `like`) from a decomposition."""
    return tree_paths.unflatten({p: reconstruct(t) for p, t in decomposition.terms.items()}, like)
