"""Input checks shared by the pattern classes: sparsities, sizes, axes,
dtypes and finiteness, each raising a one-line error naming the value."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


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


def check_axis_type(axis: Any, *, allow_none: bool = False) -> None:
    """Raises TypeError unless `axis` is an integer (not a bool), or None if
    `allow_none` (a pattern's default: the kernel's contraction axis)."""
    if axis is None and allow_none:
        return
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        kinds = "an integer or None" if allow_none else "an integer"
        raise TypeError(f"axis={axis!r} must be {kinds}, got {type(axis).__name__}")


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
