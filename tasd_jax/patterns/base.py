"""Pattern values, the registry, and the spec-string parser.

A pattern is a frozen dataclass with a pure, jit-able `mask(scores, axis)` that
returns a boolean keep-mask shaped like `scores` (scores are importances, e.g.
|w|). Patterns with a target `sparsity` also support one threshold across many
arrays (`ThresholdPattern.masks`), as tile-wise pruning needs (docs/tile_wise.md).

Axes (docs/conventions.md): the default axis -2 is the contraction axis K of a
flax kernel [..., in, out]. A kernel of rank >= 3 (a convolution
[kh, kw, cin, cout]) is pruned as its GEMM weight [K = kh*kw*cin, N = cout]:
`as_matrix` gives that view to the GEMM-weight patterns, `group_view` to the
patterns that group consecutive elements (N:M, series, VW).

Spec strings (the user's language):
  "dense"                      keep everything
  "2:4"  "1:8"                 N:M along the axis
  "2:4+1:8"                    a TASD series of N:M terms
  "name" / "name(k=v,k=v)"     a registered pattern with parameters; values are
                               ints, floats, "AxB" tuples (block=32x32) or words.
"""

import abc
import dataclasses
import functools
import math
import re
from typing import Any, Callable, ClassVar, Sequence, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

_REGISTRY: dict[str, type["Pattern"]] = {}
P = TypeVar("P", bound=type)


def _checking_scores(method: Callable, many: bool) -> Callable:
    """Wraps a pattern's `mask` (many=False) or `masks` (many=True) with the
    checks of `Pattern`, before any work; empty arrays never reach `method`."""
    if getattr(method, "_checks_scores", False):  # already wrapped (an alias)
        return method

    @functools.wraps(method)
    def checked(self, scores, axis=-2, **kwargs):
        check_axis_type(axis)
        if many:
            if isinstance(scores, (str, bytes)) or not isinstance(scores, Sequence):
                raise TypeError(
                    f"scores must be a list of arrays (one per layer), got {type(scores).__name__}"
                )
            arrays = [as_score_array(s, f"scores[{i}]") for i, s in enumerate(scores)]
        else:
            arrays = [as_score_array(scores, "scores")]
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
    def mask(self, scores: jax.Array, axis: int = -2) -> jax.Array:
        """Keep-mask (bool, shaped like `scores`) chosen from importances `scores`."""

    def conforms(self, mask: jax.Array, axis: int = -2) -> jax.Array:
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

    def mask(self, scores: jax.Array, axis: int = -2, *, sparsity: Any = None) -> jax.Array:
        return self.masks([scores], axis, sparsity=sparsity)[0]

    @abc.abstractmethod
    def masks(
        self, scores: Sequence[jax.Array], axis: int = -2, *, sparsity: Any = None
    ) -> list[jax.Array]:
        """Keep-masks for all arrays, with one threshold across them."""

    def validate_sparsity(self, sparsity: Any) -> None:
        """Raises ValueError unless `sparsity` suits this pattern (skipped when
        traced): the one check of the field (in `__post_init__`) and of a
        `sparsity=` override. Patterns with a narrower range override it."""
        check_sparsity(sparsity)

    def _sparsity(self, sparsity: Any) -> Any:
        """The sparsity in force: the field, or a checked `sparsity=` override."""
        if sparsity is None:
            return self.sparsity
        self.validate_sparsity(sparsity)
        return sparsity


def register(name: str) -> Callable[[P], P]:
    """Class decorator: makes the pattern class parseable as `name(...)`."""

    def wrap(cls: P) -> P:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"pattern name {name!r} must be lower-case letters, digits, '_'")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"pattern name {name!r} is already registered to {_REGISTRY[name]}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def registered() -> dict[str, type[Pattern]]:
    """Name -> pattern class of every registered pattern."""
    return dict(_REGISTRY)


def parse(spec: "str | Pattern") -> Pattern:
    """Turns a spec string (or a pattern, returned as is) into a pattern value.

    Raises:
      ValueError: naming the spec and the rule it broke.
    """
    if isinstance(spec, Pattern):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"pattern spec {spec!r} must be a string or a Pattern")
    text = spec.strip().lower()
    try:
        if ":" in text:
            return _parse_series(text)
        call = re.fullmatch(r"([a-z_][a-z0-9_]*)\s*(?:\((.*)\))?", text)
        if not call:
            raise ValueError("expected 'N:M[+N:M...]' or 'name' or 'name(k=v,...)'")
        name, arg_text = call.group(1), call.group(2)
        if name not in _REGISTRY:
            raise ValueError(f"unknown pattern {name!r}; known: {sorted(_REGISTRY)}")
        cls = _REGISTRY[name]
        kwargs = _parse_kwargs(arg_text or "")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for {name}; known: {sorted(known)}")
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.init and f.name not in kwargs
                         and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if missing:
            hint = " (a series is spelled 'N:M+N:M', e.g. '2:4+1:8')" if name == "series" else ""
            raise ValueError(f"pattern {name!r} needs parameter(s) {missing}{hint}")
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        if str(err).startswith("pattern spec"):
            raise
        raise ValueError(f"pattern spec {spec!r}: {err}") from None


@functools.lru_cache(maxsize=4096)  # specs are parsed in searches' inner loops; values are immutable
def _parse_series(text: str) -> Pattern:
    parts = text.split("+")
    if any(not p.strip() for p in parts):
        raise ValueError("a series has an empty term: terms are 'N:M' joined by '+'")
    # Checked before building the terms, so a huge spec costs nothing (the
    # limit itself, and why, are in `nm.Series`).
    _REGISTRY["series"].check_term_count(len(parts))
    terms = []
    for part in parts:
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", part)
        if not match:
            raise ValueError(f"term {part.strip()!r} is not 'N:M' with integer N and M")
        terms.append(_REGISTRY["nm"](int(match.group(1)), int(match.group(2))))
    return terms[0] if len(terms) == 1 else _REGISTRY["series"](tuple(terms))


def _parse_kwargs(arg_text: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for item in filter(None, (a.strip() for a in arg_text.split(","))):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise ValueError(f"parameter {item!r} is not 'key=value'")
        if key in kwargs:
            raise ValueError(f"parameter {key!r} is given twice")
        kwargs[key] = _parse_value(value)
    return kwargs


def _parse_value(value: str) -> Any:
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    if re.fullmatch(r"\d+(x\d+)+", value):
        return tuple(int(v) for v in value.split("x"))
    if re.fullmatch(r"[a-z_][a-z0-9_]*", value):
        return value
    raise ValueError(f"parameter value {value!r} is not a number, an AxB shape or a word")


def _format_value(value: Any) -> str:
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return "x".join(map(str, value))
    return str(value)


# --- validation helpers shared by the pattern classes -----------------------


def is_concrete(value: Any) -> bool:
    """False for tracers: their value is only checked where it is known."""
    return not isinstance(value, jax.core.Tracer)


def check_sparsity(
    sparsity: Any, lower: float = 0.0, upper: float = 1.0, reason: str = ""
) -> None:
    """Raises ValueError unless lower <= sparsity < upper (skipped for traced values)."""
    if not is_concrete(sparsity):
        return
    rule = f"must be in [{lower:g}, {upper:g})" + (f": {reason}" if reason else "")
    if np.ndim(sparsity) != 0 or not jnp.issubdtype(np.asarray(sparsity).dtype, jnp.number):
        raise ValueError(f"sparsity={sparsity!r} must be a number: it {rule}")
    if not lower <= float(sparsity) < upper:
        raise ValueError(f"sparsity={sparsity} {rule}")


# Sizes (group, vector, tile, block lengths) end up in int32 index arithmetic.
MAX_SIZE = 2**31 - 1


def check_positive_int(name: str, value: Any) -> None:
    """Raises ValueError unless `value` is an integer (not a bool) in [1, MAX_SIZE]."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r} must be an integer >= 1")
    if value > MAX_SIZE:
        raise ValueError(f"{name}={value} must be <= {MAX_SIZE}: sizes are int32 indices")


def check_axis_type(axis: Any) -> None:
    """Raises TypeError unless `axis` is an integer (not a bool)."""
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"axis={axis!r} must be an integer, got {type(axis).__name__}")


def normalize_axis(axis: Any, ndim: int) -> int:
    """`axis` in [0, ndim). Raises TypeError for a non-integer axis, ValueError out of range."""
    check_axis_type(axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis} is out of range for an array of rank {ndim}")
    return int(axis) % ndim


def check_real_dtype(dtype: Any, what: str, *, allow_bool: bool) -> None:
    """Raises TypeError unless `dtype` is a real number type (integer or
    floating, bfloat16 included; bool if `allow_bool`): strings, objects and
    complex numbers have no order to rank by."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        if allow_bool:
            return
    elif jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating):
        return
    kinds = "integer, floating or bool" if allow_bool else "integer or floating"
    raise TypeError(f"{what} has dtype {dtype}; it must hold real numbers ({kinds})")


def count_nonfinite(x: Any) -> int:
    """Number of NaN and +-inf entries of a concrete array (0 for integers)."""
    x = np.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return 0
    return int(x.size - np.count_nonzero(np.isfinite(x)))


def check_finite(x: Any, what: str) -> None:
    """Raises ValueError naming `what` and how many of its values are NaN or
    +-inf. Concrete arrays only: a traced value is not known, so it passes."""
    if not is_concrete(x):
        return
    bad = count_nonfinite(x)
    if bad:
        raise ValueError(
            f"{what} has {bad} non-finite value(s) (NaN or +-inf) among {np.size(x)}; "
            "it must be finite"
        )


def as_real_array(x: Any, what: str, *, allow_bool: bool) -> jax.Array:
    """`x` as a jax array of real numbers, checked before any work.

    Raises:
      TypeError: `x` does not hold real numbers (`check_real_dtype`).
      ValueError: concrete `x` has NaN or +-inf (`check_finite`), or values that
        its conversion to a jax dtype would change (int64 beyond int32, float64
        beyond float32 without jax x64). Traced `x` is only type-checked.
    """
    if not isinstance(x, jax.Array):  # tracers are jax.Arrays too
        x = np.asarray(x)
        check_real_dtype(x.dtype, what, allow_bool=allow_bool)
        check_finite(x, what)
        _check_fits(x, jax.dtypes.canonicalize_dtype(x.dtype), what)
        return jnp.asarray(x)
    check_real_dtype(x.dtype, what, allow_bool=allow_bool)
    check_finite(x, what)
    return x


def _check_fits(x: np.ndarray, dtype: Any, what: str) -> None:
    """Raises ValueError if converting finite `x` to `dtype` would change a
    value (wrap an integer, overflow a float to inf)."""
    if x.dtype == dtype or not x.size or x.dtype == np.bool_:
        return
    limits = np.iinfo(dtype) if jnp.issubdtype(dtype, jnp.integer) else jnp.finfo(dtype)
    low, high = x.min(), x.max()
    if low < limits.min or high > limits.max:
        raise ValueError(
            f"{what} has values in [{low}, {high}], beyond {np.dtype(dtype).name} "
            f"(jax without x64 stores {x.dtype} as {np.dtype(dtype).name}); rescale or cast it"
        )


def as_score_array(scores: Any, what: str) -> jax.Array:
    """A score array checked as `Pattern` documents (`as_real_array`, bools allowed)."""
    return as_real_array(scores, what, allow_bool=True)


def as_matrix(x: jax.Array, axis: int) -> jax.Array:
    """GEMM weight view [K, N] of a kernel: the last axis is N (outputs), all
    others fold into the contraction axis K, which must include `axis`.

    The fold is C-order, so K runs over (kh, kw, cin) of a convolution kernel
    with cin fastest: the im2col order of NHWC inputs. Works on numpy arrays too.
    """
    if x.ndim < 2:
        raise ValueError(f"a GEMM-weight pattern needs rank >= 2, got shape {x.shape}")
    if normalize_axis(axis, x.ndim) == x.ndim - 1:
        raise ValueError(
            f"axis={axis} is the output axis of shape {x.shape}; GEMM-weight patterns prune "
            "along the contraction axis (a non-last axis, -2 for flax kernels)"
        )
    # K spelled out: reshape(-1, 0) cannot infer K for a kernel with no outputs.
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


def group_view(x: jax.Array, axis: int) -> tuple[jax.Array, int]:
    """The array and axis along which groups of consecutive elements are formed.

    The contraction axis of a kernel of rank >= 3 (`axis` is ndim - 2, e.g.
    cin of a convolution kernel [kh, kw, cin, cout]) stands for the whole K of
    its GEMM view: groups run along axis 0 of `as_matrix(x)` [K, N], across
    (kh, kw) positions, as the GEMM the hardware runs sees them. Any other
    axis, and every axis of an array of rank <= 2, is used as it is.

    Args:
      x: numpy or jax array of rank >= 1.
      axis: the grouping axis of `x` (negative counts from the end).

    Returns:
      (view, view_axis): `view` is `x` or a reshape of it; results computed on
      it go back with `.reshape(x.shape)`.
    """
    axis = normalize_axis(axis, x.ndim)
    if x.ndim >= 3 and axis == x.ndim - 2:
        return as_matrix(x, axis), 0
    return x, axis


def column_rms(w: jax.Array) -> jax.Array:
    """[N] scores of the columns of W[K, N]: their RMS, L2 / sqrt(K).

    A mean over the column's weights, so layers of different K share one scale
    under a global threshold (an L2 norm would favour long-K layers).
    """
    return jnp.sqrt(jnp.mean(jnp.square(w.astype(jnp.float32)), axis=0))


def scores_as_float(scores: jax.Array) -> jax.Array:
    """Scores as a floating array (integers and bools as float32)."""
    scores = jnp.asarray(scores)
    return scores if jnp.issubdtype(scores.dtype, jnp.floating) else scores.astype(jnp.float32)


def rank_keys(scores: jax.Array) -> jax.Array:
    """Float scores as keys to rank by: NaN becomes -inf, the lowest, and -0.0
    becomes 0.0; +inf stays the highest.

    The one rule for scores that are not finite, applied by both ranking
    primitives every pattern goes through (`nm.group_ranks` and the series
    masks for elements in groups, `selection.prune_lowest` for units under a
    threshold). Concrete scores never get here non-finite (`Pattern` raises);
    traced ones (inside a jitted train step) may, and then NaN is pruned first
    while the mask keeps its pattern's structure. A unit aggregated from
    elements (a column's, a tile row segment's or a block's RMS) is NaN, hence
    lowest, if any of its scores is NaN, and +inf if one is infinite (an RMS
    squares its scores, so there -inf counts as the largest magnitude; an
    element pattern ranks -inf lowest). -0.0 is mapped because `lax.top_k`
    orders it below 0.0 while comparisons treat the two as equal.
    """
    return nan_lowest(jnp.where(scores == 0, 0, scores).astype(scores.dtype))


def nan_lowest(scores: jax.Array) -> jax.Array:
    """`rank_keys` without its -0.0 rule: NaN becomes -inf (same shape and dtype).

    Enough for keys that are only compared with each other, where -0.0 and
    0.0 are equal anyway (and XLA on CPU compares subnormals as 0 as well, as
    `rank_keys` maps them): the unrolled-compare ranks of `nm` use it, and
    save the select per element that the -0.0 rule costs. A key that goes to
    `lax.top_k` or a sort needs all of `rank_keys`.
    """
    return jnp.where(jnp.isnan(scores), -jnp.inf, scores).astype(scores.dtype)
