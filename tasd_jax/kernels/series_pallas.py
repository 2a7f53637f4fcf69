"""TASD-series matmul `a @ (W1 + W2 + ...)`: the Pallas backend (GPU default).

One launch; the terms are expanded block by block inside the GEMM main loop
(A K-major), so W is read from memory in packed form only (`formats.PackedSeries`);
float32 accumulation. Pallas has no access to the GPU's sparse tensor cores, so
the saving is memory traffic, not multiply-adds.
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from tasd_jax.kernels import formats


def _series_kernel(*refs, terms, block_m, block_n, block_k):
    a_t_ref, out_ref = refs[0], refs[-1]
    term_refs = refs[1:-1]
    i, j = pl.program_id(0), pl.program_id(1)
    m0 = pl.multiple_of(i * block_m, block_m)
    n0 = pl.multiple_of(j * block_n, block_n)

    def body(step, acc):
        k0 = step * block_k
        a_block = a_t_ref[pl.ds(k0, block_k), pl.ds(m0, block_m)]  # [bk, bm]
        row = k0 + lax.broadcasted_iota(jnp.int32, (block_k,), 0)
        w_block = jnp.zeros((block_k, block_n), jnp.float32)
        for (n, m), values_ref, positions_ref in zip(terms, term_refs[::2], term_refs[1::2]):
            group, position = row // m, (row % m)[:, None]
            for slot in range(n):
                values = values_ref[slot, group, pl.ds(n0, block_n)]  # [bk, bn]
                positions = positions_ref[slot, group, pl.ds(n0, block_n)].astype(jnp.int32)
                w_block += jnp.where(positions == position, values.astype(jnp.float32), 0.0)
        return acc + lax.dot_general(
            a_block,
            w_block.astype(a_block.dtype),
            (((0,), (0,)), ((), ())),
            preferred_element_type=jnp.float32,
        )

    steps = a_t_ref.shape[0] // block_k
    acc = lax.fori_loop(0, steps, body, jnp.zeros((block_m, block_n), jnp.float32))
    out_ref[pl.ds(m0, block_m), pl.ds(n0, block_n)] = acc.astype(out_ref.dtype)


@functools.partial(jax.jit, static_argnames=("block_m", "block_n", "block_k", "interpret"))
def series_matmul_pallas(
    a: jax.Array,
    packed: formats.PackedSeries,
    *,
    block_m: int = 64,
    block_n: int = 64,
    block_k: int = 32,
    interpret: bool = False,
) -> jax.Array:
    """`a @ sum(terms)` in one Pallas launch (see module doc); a: [M, K]."""
    k, n = packed.shape
    m = a.shape[0]
    dtype = jnp.result_type(a.dtype, *(t.values.dtype for t in packed.terms))
    step = math.lcm(*(t.m for t in packed.terms))
    bk = -(-block_k // step) * step  # every term's groups align with the K blocks
    k_pad = -(-k // bk) * bk
    bm = min(block_m, max(16, pl.next_power_of_2(m)))
    bn = min(block_n, max(16, pl.next_power_of_2(n)))
    m_pad, n_pad = -(-m // bm) * bm, -(-n // bn) * bn
    a_t = jnp.pad(a, ((0, m_pad - m), (0, k_pad - k))).T.astype(dtype)
    term_arrays = []
    for t in packed.terms:
        pad = ((0, 0), (0, k_pad // t.m - t.values.shape[1]), (0, n_pad - n))
        term_arrays += [jnp.pad(t.values, pad), jnp.pad(t.positions, pad)]
    out = pl.pallas_call(
        functools.partial(
            _series_kernel,
            terms=tuple((t.n, t.m) for t in packed.terms),
            block_m=bm,
            block_n=bn,
            block_k=bk,
        ),
        out_shape=jax.ShapeDtypeStruct((m_pad, n_pad), dtype),
        grid=(m_pad // bm, n_pad // bn),
        interpret=interpret,
    )(a_t, *term_arrays)
    return out[:m, :n]
