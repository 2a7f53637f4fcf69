"""The public sparse products `tw_matmul` and `series_matmul`: checks and dispatch.

Each checks its operands, folds the leading axes of `a` into M and runs one
backend (backends.py):
* "reference", "xla": pure JAX, tw_xla.py and series_xla.py ("xla" is the CPU
  default);
* "pallas": tw_pallas.py and series_pallas.py (the GPU default; `interpret=True`
  runs them anywhere). They are imported only inside the branch that runs them,
  so the XLA path never loads `jax.experimental.pallas`.
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tasd_jax import patterns
from tasd_jax.kernels import backends, formats, series_xla, tw_xla


def _operand(a: jax.Array, k: int, what: str, shape: tuple[int, int]) -> jax.Array:
    """`a` as a jax array. Raises TypeError unless it holds real numbers,
    ValueError unless its last axis is K. Non-finite values are not checked
    (`tw_matmul` says which outputs they reach)."""
    a = a if isinstance(a, jax.Array) else np.asarray(a)
    patterns.checks.check_real_dtype(a.dtype, "a", allow_bool=False)
    if a.ndim < 1 or a.shape[-1] != k:
        raise ValueError(f"a has shape {a.shape}; its last axis must be K={k} ({what} {shape})")
    return jnp.asarray(a)


def _rows(a: jax.Array) -> jax.Array:
    """[..., K] -> [M, K]; M spelled out, since reshape(-1, 0) cannot infer it."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def _empty_product(a2: jax.Array, width: int, dtype) -> jax.Array | None:
    """The product when an operand is empty (no row of A, K = 0, no column):
    zeros [M, width], which no backend needs to compute; else None."""
    if a2.size and width:
        return None
    return jnp.zeros((a2.shape[0], width), dtype)


def tw_matmul(
    a: jax.Array,
    packed: formats.PackedTW,
    *,
    backend: str = "auto",
    interpret: bool = False,
    compact: bool = False,
    block_m: int | None = None,
):
    """`a @ W` for a packed tile-wise-sparse W (jit-able; `packed` is a pytree).

    Pruned rows are never read. Output column j is the product of `a` with the
    rows its tile keeps (a tile: `packed.g` consecutive kept columns; a row is
    kept in a tile when it has a non-zero there), so a NaN or inf in `a[..., k]`
    reaches column j only when row k is kept in j's tile, and never a pruned
    column (those are zero). This differs from the masked dense product
    `a @ unpack_tw(packed)`, where 0 * NaN is NaN in every column; on finite
    inputs the two agree. Every backend keeps this contract.

    Args:
      a: [..., K] activations (leading axes fold into M).
      packed: `pack_tw(W, g)` of W[K, N].
      backend: "xla" (CPU default), "pallas" (GPU default; `interpret=True`
        runs it anywhere), "reference", or "auto".
      interpret: run the Pallas kernel in interpret mode.
      compact: return only the compact product [..., packed.compact_width]
        (the kept columns in packing order, `compact_columns(packed)` names
        their N-indices; N marks padding columns, which hold zeros).
      block_m: rows of A per chunk (xla, default `tw_xla.auto_block_m`) or per
        program (pallas, default 64).

    Returns:
      [..., N] (zeros in pruned columns), or the compact product; dtype
      of `a` and W promoted; products accumulate in float32.
    """
    backend = backends.check_backend(backend)
    if not isinstance(packed, formats.PackedTW):
        raise TypeError(
            f"packed must be a PackedTW (from kernels.pack_tw(w, g)), got {type(packed).__name__}"
        )
    if block_m is not None and (not isinstance(block_m, int) or block_m < 1):
        raise ValueError(f"block_m={block_m!r} must be an integer >= 1")
    sizes = {} if block_m is None else {"block_m": block_m}
    a = _operand(a, packed.shape[0], "W is", packed.shape)
    lead = a.shape[:-1]
    a2 = _rows(a)
    width = packed.compact_width if compact else packed.shape[1]
    out = _empty_product(a2, width, formats.result_dtype(a, packed))
    if out is None:
        out = _tw_product(a2, packed, backend, interpret=interpret, compact=compact, **sizes)
    return out.reshape(*lead, out.shape[-1])


def _tw_product(a2: jax.Array, packed: formats.PackedTW, backend: str, **kwargs) -> jax.Array:
    """[M, K] @ W on the chosen backend (`tw_matmul`'s arguments, checked)."""
    interpret = kwargs.pop("interpret")
    if backend == "reference":
        return tw_xla.tw_matmul_reference(a2, packed, compact=kwargs["compact"])
    if backend == "xla":
        return tw_xla.tw_matmul_xla(a2, packed, **kwargs)
    from tasd_jax.kernels import tw_pallas  # Pallas is imported only when used.

    return tw_pallas.tw_matmul_pallas(a2, packed, interpret=interpret, **kwargs)


def series_matmul(
    a: jax.Array,
    terms: "formats.PackedSeries | Sequence[jax.Array]",
    *,
    series: "str | patterns.Pattern | None" = None,
    backend: str = "auto",
    interpret: bool = False,
) -> jax.Array:
    """`a @ sum(terms)` for a TASD weight series (jit-able with packed terms).

    Args:
      a: [..., K] activations (leading axes fold into M).
      terms: a `PackedSeries` (from `pack_series`), or the dense [K, N] terms
        with `series` naming their N:M patterns (they are packed here, so
        only outside jit: see `pack_nm`).
      series: the series spec, e.g. "2:4+1:8"; only with dense terms.
      backend: "xla" (CPU default), "pallas" (GPU default), "reference", "auto".
      interpret: run the Pallas kernel in interpret mode (any platform).

    Returns:
      [..., N], dtype of `a` and the terms promoted, float32 accumulation.
    """
    backend = backends.check_backend(backend)
    if isinstance(terms, formats.PackedSeries):
        if series is not None:
            raise ValueError(f"series={series!r} given with already packed terms")
        packed = terms
    else:
        if series is None:
            raise ValueError("dense terms need series= (e.g. '2:4+1:8') naming their N:M patterns")
        if isinstance(terms, jax.Array) or not isinstance(terms, Sequence):
            raise TypeError(
                f"terms must be a PackedSeries or a sequence of [K, N] arrays (one per term), "
                f"got {type(terms).__name__}"
            )
        packed = formats.pack_series(terms, series)
    k, n = packed.shape
    a = _operand(a, k, "terms are", packed.shape)
    lead = a.shape[:-1]
    a2 = _rows(a)
    dtype = jnp.result_type(a.dtype, *(t.values.dtype for t in packed.terms))
    out = _empty_product(a2, n, dtype)
    if out is None:
        out = _series_product(a2, packed, dtype, backend, interpret)
    return out.reshape(*lead, out.shape[-1])


def _series_product(
    a2: jax.Array, packed: formats.PackedSeries, dtype, backend: str, interpret: bool
) -> jax.Array:
    """[M, K] @ sum(terms) on the chosen backend (`series_matmul`'s arguments, checked)."""
    if backend == "reference":
        return series_xla.series_matmul_reference(a2, packed, dtype)
    if backend == "xla":
        return series_xla.series_matmul_xla(a2, packed, dtype)
    from tasd_jax.kernels import series_pallas  # Pallas is imported only when used.

    return series_pallas.series_matmul_pallas(a2, packed, interpret=interpret)
