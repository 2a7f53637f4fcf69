"""Tile-wise (TW) sparse matmul: the XLA (CPU default) and reference backends.

Both multiply a [M, K] by a `formats.PackedTW` W[K, N] (see formats.py for the
packed layout) and return [M, N], or the compact product.

XLA backend (the CPU default). Measured on the 2-core CPU (benchmarks/
tw_matmul.py --alternatives, docs/measurements.md): gathering A's kept columns
for all tiles at once costs as much as the sparse GEMMs themselves, because
the gathered copy of A (T x M x R) does not fit in cache; done chunk by chunk
it does. So the product runs over chunks of `block_m` rows of A; per chunk,
each bucket gathers the chunk's kept columns for its tiles and runs one
batch-first GEMM `[T, bm, R] x [T, R, G]` (the layout XLA runs at BLAS speed;
batch-in-the-middle einsums, K-major `[T, G, R] x [T, R, bm]` products and one
GEMM per tile ran slower). A chunk yields its compact product; the full
[M, N] output gathers each chunk's columns (pruned ones read a zero column)
while the chunk is still in cache. Doing that gather once after the loop, in
the hope that XLA fuses it with the consumer (a bias, a residual add), ran
slower on a quiet machine (768x3072 at 75%: 15.5 against 12.1 ms). A consumer
that needs only the kept columns takes the compact product (`compact=True`,
`layers.TWDense` in a folded FFN) and skips the gather altogether.
"""

from typing import Callable

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


# Working set per chunk of A's rows (the chunk, its gathered columns and the
# compact product rows) that stays in this CPU's L2 + share of L3; small enough
# chunks make the gather run from cache, large enough ones keep the GEMMs at
# BLAS speed (benchmarks/tw_matmul.py --alternatives).
CHUNK_BYTES = 8 << 20
MIN_BLOCK_M = 128


def auto_block_m(packed: formats.PackedTW, m: int) -> int:
    """Rows of A per chunk: the power of two nearest CHUNK_BYTES / bytes per row,
    at least MIN_BLOCK_M, at most m (static: uses shapes only)."""
    k, _ = packed.shape
    per_row = k + sum(b.rows.size for b in packed.buckets) + packed.compact_width
    rows = CHUNK_BYTES / (4 * max(per_row, 1))
    return int(min(max(2 ** round(np.log2(max(rows, 1))), MIN_BLOCK_M), m))


def chunked_product(a: jax.Array, packed: formats.PackedTW, block_m: int | None = None,
                    finish: Callable[[jax.Array], jax.Array] | None = None) -> jax.Array:
    """The product of a [M, K] and W chunk by chunk of `block_m` rows (None picks
    `auto_block_m`): each chunk's [bm, compact_width + 1] compact product in the
    accumulation dtype (float32 or wider), its last column zero (the column
    pruned outputs read, `expand`), passed through `finish` while in cache.
    Returns the rows of the finished chunks, [M, ...]."""
    k, _ = packed.shape
    m = a.shape[0]
    acc = jnp.promote_types(formats.result_dtype(a, packed), jnp.float32)
    bm = min(block_m or auto_block_m(packed, m), m)
    chunks = jnp.pad(a, ((0, -m % bm), (0, 0))).reshape(-1, bm, k)

    def chunk(x):  # [bm, K] -> finish([bm, compact_width + 1])
        parts = []
        for b in packed.buckets:
            t, r, _ = b.weights.shape
            gathered = jnp.take(x, b.rows.reshape(-1), axis=1).reshape(bm, t, r).transpose(1, 0, 2)
            # Batch-first [T, bm, R] x [T, R, G]: the layout XLA runs at BLAS speed.
            # XLA:CPU has no bf16 x bf16 -> f32 batched dot: accumulate by upcasting.
            product = jnp.matmul(gathered.astype(acc), b.weights.astype(acc))
            parts.append(product.transpose(1, 0, 2).reshape(bm, -1))
        c = jnp.concatenate(parts + [jnp.zeros((bm, 1), acc)], axis=1)
        return finish(c) if finish else c

    out = lax.map(chunk, chunks)
    return out.reshape(-1, out.shape[-1])[:m]


def compact_with_zero(a: jax.Array, packed: formats.PackedTW, block_m: int | None = None):
    """[M, compact_width + 1]: the compact product of a [M, K] and W, then one
    zero column (`chunked_product` with nothing more done per chunk)."""
    return chunked_product(a, packed, block_m)


def expand(c: jax.Array, packed: formats.PackedTW) -> jax.Array:
    """[M, compact_width + 1] (`compact_with_zero`) -> [M, N]: every column of
    W takes its compact column, pruned ones the trailing zero column."""
    return jnp.take(c, packed.inverse, axis=1, mode="clip")


def tw_matmul_xla(
    a: jax.Array, packed: formats.PackedTW, *, block_m: int | None = None, compact: bool = False
):
    """Chunked gather + batched GEMM into the compact product, and unless
    `compact`, each chunk's columns gathered into [M, N] in cache (module doc)."""
    m = a.shape[0]
    dtype = formats.result_dtype(a, packed)
    if packed.num_slots == 0:
        return jnp.zeros((m, 0 if compact else packed.shape[1]), dtype)
    if compact:
        return compact_with_zero(a, packed, block_m)[:, :-1].astype(dtype)
    return chunked_product(a, packed, block_m, lambda c: expand(c, packed)).astype(dtype)
