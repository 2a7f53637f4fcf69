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
import re
from typing import Any, Callable, ClassVar, Sequence, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

_REGISTRY: dict[str, type["Pattern"]] = {}
P = TypeVar("P", bound=type)


class Pattern(abc.ABC):
    """Base of every sparsity pattern; subclasses are frozen dataclasses."""

    name: ClassVar[str] = ""

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
    traced scalar, so schedules change it inside jit without recompiling.
    """

    sparsity: float

    def mask(self, scores: jax.Array, axis: int = -2, *, sparsity: Any = None) -> jax.Array:
        return self.masks([scores], axis, sparsity=sparsity)[0]

    @abc.abstractmethod
    def masks(
        self, scores: Sequence[jax.Array], axis: int = -2, *, sparsity: Any = None
    ) -> list[jax.Array]:
        """Keep-masks for all arrays, with one threshold across them."""

    def _sparsity(self, sparsity: Any) -> Any:
        return self.sparsity if sparsity is None else sparsity


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
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        if str(err).startswith("pattern spec"):
            raise
        raise ValueError(f"pattern spec {spec!r}: {err}") from None


def _parse_series(text: str) -> Pattern:
    parts = text.split("+")
    if any(not p.strip() for p in parts):
        raise ValueError("a series has an empty term: terms are 'N:M' joined by '+'")
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


def check_sparsity(sparsity: Any, upper: float = 1.0) -> None:
    """Raises ValueError unless 0 <= sparsity < upper (skipped for traced values)."""
    if is_concrete(sparsity) and not 0.0 <= float(sparsity) < upper:
        raise ValueError(f"sparsity={sparsity} must be in [0, {upper})")


def check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r} must be an integer >= 1")


def normalize_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis} is out of range for an array of rank {ndim}")
    return axis % ndim


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
    return x.reshape(-1, x.shape[-1])


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
    scores = jnp.asarray(scores)
    return scores if jnp.issubdtype(scores.dtype, jnp.floating) else scores.astype(jnp.float32)
