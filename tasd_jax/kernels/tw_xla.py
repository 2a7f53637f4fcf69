"""Tile-wise (TW) sparse matmul: the XLA (CPU default) and reference backends.

Both multiply a [M, K] by a `formats.PackedTW` W[K, N] (see formats.py for the
packed layout) and return [M, N], or the compact product.

XLA backend (the CPU default). Measured on the 2-core CPU (benchmarks/
tw_matmul.py --alternatives, docs/measurements.md): gathering A's kept columns
for all tiles at once and scattering the compact product back cost as much as
the sparse GEMMs themselves, because the gathered copies of A (T x M x R) and
the output do not fit in cache; done chunk by chunk they do. So the product
runs over chunks of `block_m` rows of A; per chunk, each bucket gathers the
chunk's kept columns for its tiles, runs one batch-first GEMM
`[T, bm, R] x [T, R, G]` (the layout XLA runs at BLAS speed; batch-in-the-middle
einsums and K-major `[T, G, R] x [T, R, bm]` products ran slower), and the
compact result is scattered into the chunk's output columns while it is still
in cache.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tasd_jax.kernels import formats


def tw_matmul_reference(a: jax.Array, packed: formats.PackedTW, *, compact: bool = False):
    """Pure-JAX per-tile product: take A's kept columns, one einsum per bucket,
    scatter into the output columns. Differentiable; the test oracle."""
    _, n = packed.shape
    m = a.shape[0]
    dtype = formats.result_dtype(a, packed)
    parts = []
    for b in packed.buckets:
        gathered = jnp.take(a, b.rows, axis=1)  # [M, T, R]
        parts.append(
            jnp.einsum(
                "mtr,trg->mtg", gathered, b.weights, preferred_element_type=jnp.float32
            ).reshape(m, -1)
        )
    compact_out = jnp.concatenate(parts, axis=1) if parts else jnp.zeros((m, 0), jnp.float32)
    if compact:
        return compact_out.astype(dtype)
    columns = formats.compact_columns(packed)
    out = jnp.zeros((m, n), jnp.float32).at[:, columns].set(compact_out, mode="drop")
    return out.astype(dtype)


# Working set per chunk of A's rows (gathered columns, compact and full output
# rows) that stays in this CPU's L2 + share of L3; small enough chunks make the
# gather and scatter run from cache, large enough ones keep the GEMMs at BLAS
# speed (benchmarks/tw_matmul.py --alternatives).
CHUNK_BYTES = 8 << 20
MIN_BLOCK_M = 128


def auto_block_m(packed: formats.PackedTW, m: int) -> int:
    """Rows of A per chunk: the power of two nearest CHUNK_BYTES / bytes per row,
    at least MIN_BLOCK_M, at most m (static: uses shapes only)."""
    _, n = packed.shape
    per_row = sum(b.rows.size for b in packed.buckets) + packed.compact_width + n
    rows = CHUNK_BYTES / (4 * max(per_row, 1))
    return int(min(max(2 ** round(np.log2(max(rows, 1))), MIN_BLOCK_M), m))


def tw_matmul_xla(
    a: jax.Array, packed: formats.PackedTW, *, block_m: int | None = None, compact: bool = False
):
    """Chunked gather + batched GEMM + in-cache scatter (see module doc);
    block_m=None picks `auto_block_m`."""
    k, n = packed.shape
    m = a.shape[0]
    dtype = formats.result_dtype(a, packed)
    if packed.num_slots == 0:
        return jnp.zeros((m, 0 if compact else n), dtype)
    bm = min(block_m or auto_block_m(packed, m), m)
    chunks = jnp.pad(a, ((0, -m % bm), (0, 0))).reshape(-1, bm, k)
    acc = jnp.promote_types(dtype, jnp.float32)

    def chunk(x):  # [bm, K] -> [bm, N]
        parts = []
        for b in packed.buckets:
            t, r, _ = b.weights.shape
            gathered = jnp.take(x, b.rows.reshape(-1), axis=1).reshape(bm, t, r).transpose(1, 0, 2)
            # Batch-first [T, bm, R] x [T, R, G]: the layout XLA runs at BLAS speed.
            # XLA:CPU has no bf16 x bf16 -> f32 batched dot: accumulate by upcasting.
            product = jnp.matmul(gathered.astype(acc), b.weights.astype(acc))
            parts.append(product.transpose(1, 0, 2).reshape(bm, -1))
        c = jnp.concatenate(parts + [jnp.zeros((bm, 1), acc)], axis=1)
        # Pruned columns read the zero column at the end.
        return (c[:, :-1] if compact else c[:, packed.inverse]).astype(dtype)

    out = lax.map(chunk, chunks)
    return out.reshape(-1, out.shape[-1])[:m]
