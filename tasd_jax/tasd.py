"""TASD: approximate a tensor by a series of N:M structured-sparse terms.

Jeong et al., "Enabling Unstructured Sparse Acceleration on Structured Sparse
Accelerators" (arXiv 2403.07953), §3; see docs/tasd.md. Term 1 keeps, in every
group of M1 consecutive elements along the contraction axis, the N1 largest
magnitudes; the residual goes to term 2 with N2:M2; and so on. Since
(A1 + A2) B = A1 B + A2 B, every term runs on N:M hardware, at a compute cost
of sum(Ni / Mi) of dense.

Axes (docs/conventions.md): by default (axis=None) groups run along the
contraction axis of a flax kernel (-2, or -1 for rank 1); on a kernel of rank
>= 3 (a convolution [kh, kw, cin, cout]) they run along the K = kh*kw*cin of
its GEMM view (`patterns.gemm_view.group_view`). An explicit axis is that axis
of the array, whatever its rank; pass axis=-1 for activations [..., features].
"""

import dataclasses
import functools
import math
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tasd_jax import patterns
from tasd_jax import tree_paths


@functools.partial(jax.jit, static_argnames=("series", "axis"))
def _decompose(x: jax.Array, series: patterns.Series, axis: int) -> tuple[jax.Array, ...]:
    return tuple(patterns.owners.series_terms(x, series.terms, axis))


# The two passes of a series ranked per group (`patterns.owners.series_owners`),
# each an executable of its own: compiled together, XLA fuses the ranking into
# every term's writes and redoes a group's compares for each of its elements
# (docs/measurements.md).
_owners = jax.jit(patterns.owners.series_owners, static_argnames=("terms", "axis"))
_terms_from_owners = jax.jit(patterns.owners.terms_from_owners, static_argnames=("terms", "axis"))


# One executable per (pattern, mask shape, axis) instead of one per eager
# primitive: series_metrics checks every term of every leaf it is given.
_conforms = jax.jit(lambda pattern, mask, axis: pattern.conforms(mask, axis),
                    static_argnums=(0, 2))


def decompose(
    x: jax.Array, series: "str | patterns.Pattern", axis: int | None = None
) -> tuple[jax.Array, ...]:
    """Splits `x` into the terms of a TASD series, greedily on the residual.

    Args:
      x: array of any rank >= 1 (float32, bfloat16, float16, ...).
      series: "2:4", "2:4+1:8", "dense" (one 1:1 term), or a pattern value.
      axis: the axis along which groups of M consecutive elements are formed.
        None (default): the contraction axis of a flax kernel, -2 for rank 2
        ([in, out]) and -1 for rank 1; for a kernel of rank >= 3, e.g. a
        convolution [kh, kw, cin, cout], the K = kh*kw*cin of its GEMM view
        [K, cout]. An explicit axis is that axis of `x`: on a [3, 10, 7] array
        axis=1 forms groups within each of the 3 leading slices. Pass -1 for
        activations [..., features]. A length that is not a multiple of M is
        zero-padded internally; terms come back in `x`'s shape.

    Returns:
      A tuple of arrays shaped and typed like `x`, one per term; term i is
      Ni:Mi along `axis`, supports are disjoint, and their sum equals `x`
      wherever the series keeps it. Ties go to the lower index; integers are
      ranked by their exact magnitude (|-128| of int8 is 128). An empty `x`
      gives empty terms. (XLA on CPU compares subnormal floats as 0, so
      among themselves and zeros they rank as ties.)

    Raises:
      TypeError: `x` does not hold real numbers (bool, complex, strings), or
        `axis` is not an integer.
      ValueError: `x` has NaN or +-inf (the count is named: a non-finite
        magnitude has no rank, and dropping it would report a perfect fit),
        values its jax dtype cannot hold, a bad series or axis. The values are
        checked on the host before the jitted decomposition; inside a caller's
        own jit `x` is traced and cannot be checked: there NaN ranks lowest and
        is never kept, +inf ranks highest.
    """
    x = patterns.checks.as_real_array(x, "x", allow_bool=False)
    if x.ndim == 0:
        raise ValueError("decompose needs an array of rank >= 1, got a scalar")
    series = patterns.as_series(series)
    axis = _resolve_axis(axis, x.ndim)
    if patterns.checks.is_concrete(x) and patterns.owners.packs_owners(series.terms):
        owners = _owners(x, series.terms, axis)
        return tuple(_terms_from_owners(x, owners, series.terms, axis))
    return _decompose(x, series, axis)


def _resolve_axis(axis: int | None, ndim: int) -> int | None:
    """The grouping axis, normalised; None (the kernel's contraction axis, read
    by `patterns.gemm_view.group_view`) stays None."""
    patterns.checks.check_axis_type(axis, allow_none=True)
    return None if axis is None else patterns.checks.normalize_axis(axis, ndim)


def decompose_reference(
    x: np.ndarray, series: "str | patterns.Pattern", axis: int | None = None
) -> tuple[np.ndarray, ...]:
    """Straightforward numpy `decompose` (argsort within each group): the
    independent reference for tests and the baseline of the benchmark. Same
    arguments, axis default and grouping as `decompose`."""
    x = np.asarray(x)
    view, view_axis = patterns.gemm_view.group_view(x, _resolve_axis(axis, x.ndim))
    moved = np.moveaxis(view, view_axis, -1)
    residual, terms = moved.copy(), []
    for term in patterns.as_series(series).terms:
        pad = -residual.shape[-1] % term.m
        padded = np.pad(residual, [(0, 0)] * (residual.ndim - 1) + [(0, pad)])
        groups = padded.reshape(padded.shape[:-1] + (-1, term.m))
        order = np.argsort(_descending_magnitude(groups), axis=-1, kind="stable")
        keep = np.zeros(groups.shape, bool)
        np.put_along_axis(keep, order[..., : term.n], True, axis=-1)
        keep = keep.reshape(padded.shape)[..., : residual.shape[-1]]
        terms.append(np.where(keep, residual, 0).astype(moved.dtype))
        residual = np.where(keep, 0, residual).astype(moved.dtype)
    return tuple(np.moveaxis(t, -1, view_axis).reshape(x.shape) for t in terms)


def _descending_magnitude(x: np.ndarray) -> np.ndarray:
    """Keys whose ascending order is |x| descending, exact for integers: |x| of
    a signed integer goes through int64 and is read as uint64, so np.abs's
    wrap of the most negative value (|-128| of int8 is -128) cannot misrank it."""
    if np.issubdtype(x.dtype, np.signedinteger):
        return ~np.abs(x.astype(np.int64)).astype(np.uint64)  # ~ reverses unsigned order
    if np.issubdtype(x.dtype, np.unsignedinteger):
        return ~x.astype(np.uint64)
    return -np.abs(x)


def reconstruct(terms: Sequence[jax.Array]) -> jax.Array:
    """Sum of the terms of a series: the approximation of the original.

    Raises ValueError for no terms or terms of different shapes (a series'
    terms share the original's shape; broadcasting would hide a mix-up).
    """
    if isinstance(terms, (str, bytes)) or not isinstance(terms, Sequence):
        raise ValueError(f"terms must be a sequence of arrays (a list or tuple), got "
                         f"{type(terms).__name__}")
    if not terms:
        raise ValueError("reconstruct needs at least one term")
    shapes = [tuple(np.shape(t)) for t in terms]
    if len(set(shapes)) > 1:
        raise ValueError(f"terms of a series must share one shape, got shapes {shapes}")
    return functools.reduce(_add_exact_where_disjoint, terms)


@jax.jit  # one executable per shape, not one per primitive: reconstruct runs eagerly per leaf
def _add_exact_where_disjoint(a: jax.Array, b: jax.Array) -> jax.Array:
    """a + b, but bit-exact where one of them is +0.0: XLA on CPU flushes a
    subnormal sum to zero (4.9e-43 + 0 is 0), which would drop a term's
    tiniest values. Tested on the integer bits: a float test would be flushed
    too (LLVM turns even a masked-bits test into one)."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.dtype != b.dtype or not jnp.issubdtype(a.dtype, jnp.floating):
        return a + b
    as_int = jnp.dtype(f"int{8 * jnp.dtype(a.dtype).itemsize}")
    ia, ib = jax.lax.bitcast_convert_type(a, as_int), jax.lax.bitcast_convert_type(b, as_int)
    either_zero = (ia == 0) | (ib == 0)
    return jnp.where(either_zero, jax.lax.bitcast_convert_type(ia | ib, a.dtype), a + b)


class SeriesMetrics(NamedTuple):
    """How well a series approximates x (fractions in [0, 1] unless stated)."""

    kept_nonzero: float  # non-zeros of x kept by the series / non-zeros of x
    kept_l1: float  # sum |approx| / sum |x|
    kept_l2: float  # sum approx^2 / sum x^2 (energy)
    rel_error: float  # ||x - approx||_F / ||x||_F
    density: float  # non-zeros of the approximation / elements: what N:M hardware executes
    compute_cost: float  # sum(Ni / Mi): fraction of dense compute on N:M hardware


def series_metrics(x: jax.Array, terms: Sequence[jax.Array], series: Any = None,
                   axis: int | None = None) -> SeriesMetrics:
    """Metrics of a decomposition of `x` into `terms`; `series` (spec or
    pattern) gives compute_cost, which is NaN when it is not given.

    Computed in numpy (float64), so leaves of every shape share no compilation.
    An empty `x` keeps everything it has (fractions 1, error 0, density 0).

    Raises:
      TypeError: `x` or a term does not hold real numbers.
      ValueError: `x` or a term has NaN or +-inf (named, with the count); a
        term's shape differs from `x`'s; `series` has another number of terms;
        or the terms are not a decomposition of `x` (where their sum is
        non-zero it must equal `x`, as `decompose` guarantees), which would
        report fractions above 1; or, with `series`, a term keeps more than its
        N:M allows along `axis` (as `decompose`'s: None is the kernel's
        contraction axis), which would report the wrong compute cost.
    """
    series = None if series is None else patterns.as_series(series)  # parsed once
    _check_decomposition(x, terms, series, axis)
    x = np.asarray(x, np.float64)
    approx = np.asarray(reconstruct(terms), np.float64)
    nonzero = x != 0
    nnz, l1, l2 = np.count_nonzero(nonzero), np.abs(x).sum(), np.square(x).sum()

    def ratio(a, b):
        return float(a / b) if b > 0 else 1.0

    cost = series.compute_cost if series is not None else float("nan")
    return SeriesMetrics(
        kept_nonzero=ratio(np.count_nonzero((approx != 0) & nonzero), nnz),
        kept_l1=ratio(np.abs(approx).sum(), l1),
        kept_l2=ratio(np.square(approx).sum(), l2),
        rel_error=float(np.sqrt(np.square(x - approx).sum() / l2)) if l2 > 0 else 0.0,
        density=float(np.count_nonzero(approx)) / max(x.size, 1),
        compute_cost=cost,
    )


def _check_decomposition(x: Any, terms: Sequence[Any], series: "patterns.Series | None",
                         axis: int | None) -> None:
    """The checks of `series_metrics`, on the host, before any work."""
    x = np.asarray(patterns.checks.as_real_array(x, "x", allow_bool=False))
    if isinstance(terms, (str, bytes)) or not isinstance(terms, Sequence) or not terms:
        raise ValueError(f"terms must be a non-empty sequence of arrays, got {terms!r:.80}")
    expected = series.terms if series is not None else terms
    if len(terms) != len(expected):
        raise ValueError(
            f"{len(terms)} terms given for series {series.spec()!r} "
            f"of {len(expected)} terms"
        )
    total = np.zeros(x.shape, np.float64)
    for i, term in enumerate(terms):
        term = np.asarray(patterns.checks.as_real_array(term, f"terms[{i}]", allow_bool=False))
        if term.shape != x.shape:
            raise ValueError(f"terms[{i}] has shape {term.shape}, x has {x.shape}: they must match")
        total += term
    stray = np.count_nonzero((total != 0) & (total != x.astype(np.float64)))
    if stray:
        raise ValueError(
            f"the terms are not a decomposition of x: at {stray} element(s) their sum is "
            "non-zero and differs from x (terms must be x's values on disjoint supports)"
        )
    if series is not None and x.ndim:
        resolved = _resolve_axis(axis, x.ndim)
        # None is named by its index, the kernel's contraction axis.
        shown = tree_paths.default_axis(x.ndim) % x.ndim if resolved is None else resolved
        for i, (term, pattern) in enumerate(zip(terms, expected)):
            if not bool(_conforms(pattern, np.asarray(term) != 0, resolved)):
                raise ValueError(
                    f"terms[{i}] keeps more than {pattern.spec()} allows along axis {shown}: "
                    f"it is not term {i} of series {series.spec()!r}")


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
        defaults to -2 for rank >= 2 (flax kernels [..., in, out]) else -1,
        and is grouped as in `decompose` (a convolution kernel along the K of
        its GEMM view).
      require_all: raise ValueError if a rule matches no leaf.

    Raises:
      ValueError: a rule matches no leaf (with `require_all`); a rule with a
        sparse series selects a leaf of rank < 2 (a bias: as pruning refuses
        it); a leaf has NaN or +-inf (naming its path and the count); two
        leaves flatten to one path.
      TypeError: a leaf does not hold real numbers.

    Returns:
      `TreeDecomposition`: terms per path ('/'-joined) and a per-leaf report;
      leaves no rule matched stay dense and are reported with matched=False.
    """
    flat = tree_paths.flatten(params)
    rules = [tree_paths.Rule(r.pattern, patterns.as_series(r.value), r.axis) for r in tree_paths.as_rules(rules)]
    chosen = tree_paths.match_rules(list(flat), rules, require_all=require_all)
    # Every leaf is reported with metrics, so every leaf is checked, by path.
    for path, leaf in flat.items():
        patterns.checks.as_real_array(leaf, f"leaf {path!r}", allow_bool=chosen[path] is None)
        if chosen[path] is not None and chosen[path].value.compute_cost < 1.0:
            tree_paths.check_kernel(chosen[path], path, np.shape(leaf), "decomposed")
    # The rule's axis groups (None: the kernel's contraction axis, the GEMM K
    # of a convolution); the report names None by its index for the kernel.
    axes = {path: rule.axis for path, rule in chosen.items() if rule is not None}
    terms = _decompose_batched({p: flat[p] for p in axes}, {p: chosen[p].value for p in axes}, axes)
    report = []
    for path, leaf in flat.items():
        rule = chosen[path]
        if rule is None:
            terms[path] = (leaf,)
            report.append(LeafReport(path, tuple(leaf.shape), "dense", None, False,
                                     series_metrics(leaf, (leaf,), "dense")))
        else:
            axis = tree_paths.default_axis(leaf.ndim) if axes[path] is None else axes[path]
            report.append(LeafReport(path, tuple(leaf.shape), rule.value.spec(), axis, True,
                                     series_metrics(leaf, terms[path], rule.value, axes[path])))
    return TreeDecomposition({p: terms[p] for p in flat}, report)


def _decompose_batched(
    leaves: dict[str, jax.Array], series: dict[str, patterns.Series], axes: dict[str, int | None]
) -> dict[str, tuple[jax.Array, ...]]:
    """`decompose` of many leaves, one call per (series, group-axis length,
    dtype): each leaf's group view (`patterns.gemm_view.group_view`) becomes rows
    [-1, length] with its grouping axis last, the rows of a group are
    decomposed together, then split and put back in shape. A model with dozens
    of leaf shapes compiles a handful of decompositions."""
    # Concrete leaves are reshaped, gathered and split on the host: in eager
    # jax every reshape, concatenation and slice of a new shape is a compilation
    # of its own (hundreds for one model), numpy's cost nothing. Traced leaves
    # (inside a caller's jit) take the same steps in jax.
    concrete = all(patterns.checks.is_concrete(leaf) for leaf in leaves.values())
    xp = np if concrete else jnp
    rows, view_axes, groups, counts = {}, {}, {}, {}
    for path, leaf in leaves.items():
        view, view_axes[path] = patterns.gemm_view.group_view(xp.asarray(leaf), axes[path])
        rows[path] = xp.moveaxis(view, view_axes[path], -1)
        counts[path] = math.prod(rows[path].shape[:-1])  # spelled out: the length may be 0
        key = (series[path], rows[path].shape[-1], jnp.dtype(leaf.dtype))
        groups.setdefault(key, []).append(path)
    out = {}
    for (spec, _, _), paths in groups.items():
        stacked = xp.concatenate([rows[p].reshape(counts[p], rows[p].shape[-1]) for p in paths])
        bounds = np.cumsum([0] + [counts[p] for p in paths])
        group_terms = [xp.asarray(t) for t in decompose(stacked, spec, -1)]
        for path, lo, hi in zip(paths, bounds[:-1], bounds[1:]):
            out[path] = tuple(
                jnp.asarray(xp.moveaxis(t[lo:hi].reshape(rows[path].shape), -1, view_axes[path])
                            .reshape(np.shape(leaves[path])))
                for t in group_terms
            )
    return out


def reconstruct_tree(decomposition: TreeDecomposition, like: Any) -> Any:
    """The approximated parameter pytree (shaped like `like`) from a decomposition."""
    return tree_paths.unflatten({p: reconstruct(t) for p, t in decomposition.terms.items()}, like)
