"""The public sparse products `tw_matmul` and `series_matmul`: checks and dispatch.

Each checks its operands, folds the leading axes of `a` into M and runs one
backend (backends.py):
* "reference", "xla": pure JAX, tw_xla.py and series_xla.py ("xla" is the CPU
  default);
* "pallas": tw_pallas.py and series_pallas.py (the GPU default; `interpret=True`
  runs them anywhere). They are imported only inside the branch that runs them,
  so the XLA path never loads `jax.experimental.pallas`.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from tasd_jax import patterns
from tasd_jax.kernels import backends, formats, series_xla, tw_xla


def _check_operand(a: jax.Array, packed: formats.PackedTW) -> None:
    k, _ = packed.shape
    if a.ndim < 1 or a.shape[-1] != k:
        raise ValueError(
            f"a has shape {a.shape}; its last axis must be K={k} (W is {packed.shape})"
        )


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
    if block_m is not None and (not isinstance(block_m, int) or block_m < 1):
        raise ValueError(f"block_m={block_m!r} must be an integer >= 1")
    sizes = {} if block_m is None else {"block_m": block_m}
    a = jnp.asarray(a)
    _check_operand(a, packed)
    lead = a.shape[:-1]
    a2 = a.reshape(-1, a.shape[-1])
    if backend == "reference":
        out = tw_xla.tw_matmul_reference(a2, packed, compact=compact)
    elif backend == "xla":
        out = tw_xla.tw_matmul_xla(a2, packed, compact=compact, **sizes)
    else:
        from tasd_jax.kernels import tw_pallas  # Pallas is imported only when used.

        out = tw_pallas.tw_matmul_pallas(a2, packed, interpret=interpret, compact=compact, **sizes)
    return out.reshape(*lead, out.shape[-1])


def series_matmul(
    a: jax.Array,
    terms: "formats.PackedSeries | Sequence[jax.Array]",
    *,
    series: "str | patterns.Pattern | None" = None,
    backend: str = "auto",
    interpret: bool = False,
) -> jax.Array:
    """`a @ sum(terms)` for a TASD weight series (jit-able).

    Args:
      a: [..., K] activations (leading axes fold into M).
      terms: a `PackedSeries` (from `pack_series`), or the dense [K, N] terms
        with `series` naming their N:M patterns (they are packed here).
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
        packed = formats.pack_series(terms, series)
    a = jnp.asarray(a)
    k, _ = packed.shape
    if a.ndim < 1 or a.shape[-1] != k:
        raise ValueError(
            f"a has shape {a.shape}; its last axis must be K={k} (terms are {packed.shape})"
        )
    lead = a.shape[:-1]
    a2 = a.reshape(-1, k)
    dtype = jnp.result_type(a.dtype, *(t.values.dtype for t in packed.terms))
    if backend == "reference":
        out = series_xla.series_matmul_reference(a2, packed, dtype)
    elif backend == "xla":
        out = series_xla.series_matmul_xla(a2, packed, dtype)
    else:
        from tasd_jax.kernels import series_pallas  # Pallas is imported only when used.

        out = series_pallas.series_matmul_pallas(a2, packed, interpret=interpret)
    return out.reshape(*lead, out.shape[-1])
