"""Pallas GPU kernel of the tile-wise sparse matmul (TW paper's kernel, docs/tile_wise.md).

One `pallas_call` for all tiles: the grid is (M blocks, tile slots). Program
(i, s) computes the [bm, G] product of slot s for rows i*bm.. of A:

* A is passed K-major (A^T, [K, M]), so gathering the tile's kept K-rows
  inside the main loop reads contiguous runs of M (coalesced on GPU, as the
  TW paper stores A);
* the loop runs over the tile's own kept rows in steps of `block_k`: every
  slot stops at its own row count, so bucket padding costs nothing here;
* bf16/fp16/fp32 inputs, float32 accumulation;
* the epilogue writes the tile's G columns straight into their kept columns
  of C (a scatter store into a zero-initialised output aliased in place);
  a narrow last tile is padded to G columns, which go to one extra dump
  column.

Written for the Triton lowering (gather loads / scatter stores with integer
index vectors). Tested on CPU with `interpret=True`; no GPU was available when
it was written, so its GPU speed is unmeasured (benchmarks/tw_matmul.py --gpu).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl

from tasd_jax.kernels import formats


def _flatten_slots(packed: formats.PackedTW, block_k: int, compact: bool):
    """All slots in one slot-major layout for a single launch.

    Each slot's rows are padded to a multiple of block_k and its columns to
    packed.g (a narrow last tile). Returns rows [sum R], weights [sum R, G],
    static starts and step counts per slot, and each slot's target columns
    [S, G] in the output (its compact positions if `compact`, else its
    N-indices), padding columns pointing at the dump column one past the end.
    """
    g = packed.g
    width = packed.compact_width if compact else packed.shape[1]
    rows, weights, targets, starts, steps = [], [], [], [], []
    offset, position = 0, 0
    for b in packed.buckets:
        t, r, w = b.weights.shape
        r_pad = -(-r // block_k) * block_k
        # Edge padding repeats a kept row: a pruned row is never read (formats.py).
        rows.append(jnp.pad(b.rows, ((0, 0), (0, r_pad - r)), mode="edge").reshape(-1))
        weights.append(jnp.pad(b.weights, ((0, 0), (0, r_pad - r), (0, g - w))).reshape(-1, g))
        cols = position + jnp.arange(t * w, dtype=jnp.int32).reshape(t, w) if compact else b.cols
        targets.append(jnp.pad(cols, ((0, 0), (0, g - w)), constant_values=width))
        starts += [offset + i * r_pad for i in range(t)]
        steps += [r_pad // block_k] * t
        offset += t * r_pad
        position += t * w
    return (
        jnp.concatenate(rows),
        jnp.concatenate(weights),
        jnp.concatenate(targets),
        jnp.asarray(np.asarray(starts, np.int32)),
        jnp.asarray(np.asarray(steps, np.int32)),
    )


def _kernel(
    starts_ref, steps_ref, rows_ref, cols_ref, w_ref, a_t_ref, _, out_ref, *, block_m, block_k
):
    i, s = pl.program_id(0), pl.program_id(1)
    start = starts_ref[s]
    m0 = pl.multiple_of(i * block_m, block_m)

    def body(step, acc):
        r0 = start + step * block_k
        rows = rows_ref[pl.ds(r0, block_k)]
        a_block = a_t_ref[rows, pl.ds(m0, block_m)]  # [bk, bm] gathered K-rows
        w_block = w_ref[pl.ds(r0, block_k), :]  # [bk, G]
        return acc + lax.dot_general(
            a_block, w_block, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32
        )

    acc = lax.fori_loop(0, steps_ref[s], body, jnp.zeros((block_m, w_ref.shape[1]), jnp.float32))
    cols = cols_ref[s, :]
    out_ref[pl.ds(m0, block_m), cols] = acc.astype(out_ref.dtype)


@functools.partial(jax.jit, static_argnames=("block_m", "block_k", "interpret", "compact"))
def tw_matmul_pallas(
    a: jax.Array,
    packed: formats.PackedTW,
    *,
    block_m: int = 64,
    block_k: int = 32,
    interpret: bool = False,
    compact: bool = False,
) -> jax.Array:
    """`a @ W` for a [M, K] and a packed W[K, N], one Pallas launch.

    block_m, block_k: rows of A per program and kept K-rows per loop step
    (powers of two >= 16 for the Triton dot). Returns [M, N], or the compact
    [M, packed.compact_width] product when `compact`.
    """
    m = a.shape[0]
    dtype = formats.result_dtype(a, packed)
    width = packed.compact_width if compact else packed.shape[1]
    if packed.num_slots == 0:
        return jnp.zeros((m, width), dtype)
    bm = min(block_m, max(16, pl.next_power_of_2(m)))
    m_pad = -(-m // bm) * bm
    a_t = jnp.pad(a, ((0, m_pad - m), (0, 0))).T.astype(dtype)  # K-major A
    rows, weights, targets, starts, steps = _flatten_slots(packed, block_k, compact)
    out = pl.pallas_call(
        functools.partial(_kernel, block_m=bm, block_k=block_k),
        out_shape=jax.ShapeDtypeStruct((m_pad, width + 1), dtype),
        grid=(m_pad // bm, packed.num_slots),
        input_output_aliases={6: 0},
        interpret=interpret,
    )(
        starts,
        steps,
        rows,
        targets,
        weights.astype(dtype),
        a_t,
        jnp.zeros((m_pad, width + 1), dtype),
    )
    return out[:m, :width]
