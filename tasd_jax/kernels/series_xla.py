"""TASD-series matmul `a @ (W1 + W2 + ...)`: the XLA (CPU default) and reference backends.

Both multiply a [M, K] by a `formats.PackedSeries` W[K, N] (each term in
packed N:M form, see formats.py) and return [M, N] in the given dtype, with
float32 accumulation.

* "reference": per term, gather A's elements at the stored positions and
  multiply by the values (memory O(M * K / Mi * N): small shapes only).
* "xla": expand every term from values + positions and run one dense GEMM.
  CPUs have no N:M units, so this is as fast as dense plus the expansion; it is
  the portable path, not a speed-up.
"""

import jax
import jax.numpy as jnp

from tasd_jax.kernels import formats


def series_matmul_reference(a: jax.Array, packed: formats.PackedSeries, dtype) -> jax.Array:
    """Per term and slot, gathers A's elements at the stored positions (see module doc)."""
    out = jnp.zeros((a.shape[0], packed.shape[1]), jnp.float32)
    for term in packed.terms:
        a_groups = formats.group_rows(a.T, term.m)  # [G, m, M]
        group = jnp.arange(a_groups.shape[0])[:, None]
        for values, positions in zip(term.values, term.positions):
            picked = a_groups[group, positions.astype(jnp.int32)]  # [G, N, M]
            out += jnp.einsum("gnm,gn->mn", picked, values, preferred_element_type=jnp.float32)
    return out.astype(dtype)


def series_matmul_xla(a: jax.Array, packed: formats.PackedSeries, dtype) -> jax.Array:
    """Expands the terms into one dense W and runs one GEMM (see module doc)."""
    w = formats.unpack_series(packed).astype(dtype)
    return jnp.dot(a.astype(dtype), w, preferred_element_type=jnp.float32).astype(dtype)
