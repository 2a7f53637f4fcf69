"""The GEMM view of a kernel: how a kernel of rank >= 3 (a convolution
[kh, kw, cin, cout]) is pruned as its GEMM weight [K = kh*kw*cin, N = cout]
(docs/conventions.md). `as_matrix` gives that view to the GEMM-weight
patterns, `group_view` to the patterns that group consecutive elements (N:M,
series, VW)."""

import math

import jax
import jax.numpy as jnp

from tasd_jax.patterns import checks


def as_matrix(x: jax.Array, axis: int | None = None) -> jax.Array:
    """GEMM weight view [K, N] of a kernel: the last axis is N (outputs), all
    others fold into the contraction axis K, which must include `axis` (None:
    the kernel's contraction axis -2).

    The fold is C-order, so K runs over (kh, kw, cin) of a convolution kernel
    with cin fastest: the im2col order of NHWC inputs. Works on numpy arrays too.
    """
    if x.ndim < 2:
        raise ValueError(f"a GEMM-weight pattern needs rank >= 2, got shape {x.shape}")
    axis = -2 if axis is None else axis
    if checks.normalize_axis(axis, x.ndim) == x.ndim - 1:
        raise ValueError(
            f"axis={axis} is the output axis of shape {x.shape}; GEMM-weight patterns prune "
            "along the contraction axis (a non-last axis, -2 for flax kernels)"
        )
    # K spelled out: reshape(-1, 0) cannot infer K for a kernel with no outputs.
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


def group_view(x: jax.Array, axis: int | None) -> tuple[jax.Array, int]:
    """The array and axis along which groups of consecutive elements are formed.

    `axis=None` means a kernel's contraction axis: -2 for rank 2 ([in, out]),
    -1 for rank 1, and for a kernel of rank >= 3 (a convolution [kh, kw, cin,
    cout]) the whole K of its GEMM view: groups run along axis 0 of
    `as_matrix(x)` [K, N], across (kh, kw) positions, as the GEMM the hardware
    runs sees them. An explicit axis is that axis of `x`, whatever its rank:
    groups of a [heads, in, out] weight along axis 1 never cross a head.

    Args:
      x: numpy or jax array of rank >= 1.
      axis: None, or the grouping axis of `x` (negative counts from the end).

    Returns:
      (view, view_axis): `view` is `x` or a reshape of it; results computed on
      it go back with `.reshape(x.shape)`.
    """
    if axis is None:
        if x.ndim >= 3:
            return as_matrix(x), 0
        return x, 0  # -2 of [in, out], -1 of a vector: axis 0 either way
    return x, checks.normalize_axis(axis, x.ndim)


def column_rms(w: jax.Array) -> jax.Array:
    """[N] scores of the columns of W[K, N]: their RMS, L2 / sqrt(K).

    A mean over the column's weights, so layers of different K share one scale
    under a global threshold (an L2 norm would favour long-K layers).
    """
    return jnp.sqrt(jnp.mean(jnp.square(w.astype(jnp.float32)), axis=0))
