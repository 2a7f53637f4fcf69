"""TASD-series matmul `a @ (W1 + W2 + ...)` with each term in packed N:M form.

TASD (Jeong et al., arXiv 2403.07953, §3; DESIGN.md §2) runs a weight series
term by term on N:M hardware, since (W1 + W2) applied to a equals a W1 + a W2.
A term Wi of W[K, N] is Ni:Mi along K (as `tasd.decompose(w, series, axis=0)`
returns it); its packed form keeps, for every group of Mi consecutive K-rows
and every column, Ni values and their positions inside the group (the
values + metadata format of NVIDIA's 2:4 sparse tensor cores).

Backends:
* "reference": per term, gather A's elements at the stored positions and
  multiply by the values (memory O(M * K / Mi * N): small shapes only).
* "xla": expand every term from values + positions and run one dense GEMM.
  CPUs have no N:M units, so this is as fast as dense plus the expansion; it is
  the portable path, not a speed-up.
* "pallas": one launch; the terms are expanded block by block inside the GEMM
  main loop (A K-major), so W is read from memory in packed form only; float32
  accumulation. Pallas has no access to the GPU's sparse tensor cores, so the
  saving is memory traffic, not multiply-adds.
"""

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from tasd_jax import patterns
from tasd_jax.kernels import tw


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["values", "positions"],
    meta_fields=["shape", "n", "m"],
)
@dataclasses.dataclass(frozen=True)
class PackedNM:
    """An N:M-sparse W[K, N] (groups along K) as values plus positions.

    Attributes:
      values: [n, ceil(K / m), N] the kept values of each group (0 where a
        group keeps fewer than n non-zeros).
      positions: [n, ceil(K / m), N] int8 (int32 if m > 127) index of each value
        inside its group, distinct within a group.
      shape: (K, N) of W (static).
      n, m: the N:M pattern (static).
    """

    values: jax.Array
    positions: jax.Array
    shape: tuple[int, int]
    n: int
    m: int


@functools.partial(jax.tree_util.register_dataclass, data_fields=["terms"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class PackedSeries:
    """The packed terms of a TASD weight series, all of the same shape [K, N]."""

    terms: tuple[PackedNM, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return self.terms[0].shape


def _grouped(x: jax.Array, m: int) -> jax.Array:
    """[K, N] -> [ceil(K / m), m, N], zero-padded along K."""
    k = x.shape[0]
    return jnp.pad(x, ((0, -k % m), (0, 0))).reshape(-1, m, x.shape[1])


def pack_nm(term: jax.Array, nm: "str | patterns.NM") -> PackedNM:
    """Packs an N:M-sparse term W[K, N] (groups along K, axis 0).

    Jit-able. Outside jit the term is checked: a group holding more than N
    non-zeros raises ValueError (under jit such a term would lose values).

    Args:
      term: [K, N] array, at most n non-zeros in every m consecutive K-rows.
      nm: "2:4" or a `patterns.NM`.
    """
    nm = patterns.parse(nm)
    if not isinstance(nm, patterns.NM):
        raise ValueError(f"pattern {nm.spec()!r} is not a single N:M pattern")
    term = jnp.asarray(term)
    if term.ndim != 2:
        raise ValueError(f"term must be a [K, N] matrix, got shape {term.shape}")
    nonzero = term != 0
    if not isinstance(term, jax.core.Tracer) and not bool(nm.conforms(nonzero, axis=0)):
        most = int(jnp.max(patterns.nm.group_counts(nonzero, nm.m, axis=0)))
        raise ValueError(
            f"term has {most} non-zeros in a group of {nm.m} along K: more than {nm.spec()} allows"
        )
    grouped = _grouped(term, nm.m)
    # Non-zeros first, then lower positions: the kept slots are distinct.
    ranks = patterns.group_ranks(_grouped(nonzero, nm.m).astype(jnp.float32), nm.m, axis=1)
    slots = ranks[None] == jnp.arange(nm.n)[:, None, None, None]  # [n, G, m, N]
    index_dtype = jnp.int8 if nm.m <= 127 else jnp.int32
    positions = jnp.argmax(slots, axis=2).astype(index_dtype)
    values = jnp.sum(jnp.where(slots, grouped[None], 0), axis=2).astype(term.dtype)
    return PackedNM(values, positions, tuple(term.shape), nm.n, nm.m)


def pack_series(terms: Sequence[jax.Array], series: "str | patterns.Pattern") -> PackedSeries:
    """Packs the terms of a TASD series (`tasd.decompose(w, series, axis=0)`).

    Args:
      terms: one [K, N] array per term of `series`.
      series: "2:4+1:8", an N:M spec, or a `patterns.Series`.
    """
    series = patterns.as_series(series)
    if len(terms) != len(series.terms):
        raise ValueError(
            f"{len(terms)} terms given for series {series.spec()!r} of {len(series.terms)} terms"
        )
    shapes = {tuple(jnp.shape(t)) for t in terms}
    if len(shapes) != 1:
        raise ValueError(f"terms of a series must share one shape, got {sorted(shapes)}")
    packed = []
    for i, (term, nm) in enumerate(zip(terms, series.terms)):
        try:
            packed.append(pack_nm(term, nm))
        except ValueError as e:
            raise ValueError(f"term {i} of series {series.spec()!r}: {e}") from e
    return PackedSeries(tuple(packed))


def _expand(values: jax.Array, positions: jax.Array, m: int) -> jax.Array:
    """[n, G, N] values + positions -> [G, m, N] dense groups."""
    slots = positions[..., None, :].astype(jnp.int32) == jnp.arange(m)[:, None]  # [n, G, m, N]
    return jnp.sum(jnp.where(slots, values[:, :, None, :], 0), axis=0)


def unpack_nm(packed: PackedNM) -> jax.Array:
    """The dense [K, N] term of a `PackedNM` (jit-able, exact)."""
    k, n = packed.shape
    return _expand(packed.values, packed.positions, packed.m).reshape(-1, n)[:k]


def unpack_series(packed: PackedSeries) -> jax.Array:
    """Sum of the packed terms as a dense [K, N] array."""
    return functools.reduce(jnp.add, (unpack_nm(t) for t in packed.terms))


def _reference(a: jax.Array, packed: PackedSeries, dtype) -> jax.Array:
    out = jnp.zeros((a.shape[0], packed.shape[1]), jnp.float32)
    for term in packed.terms:
        a_groups = _grouped(a.T, term.m)  # [G, m, M]
        group = jnp.arange(a_groups.shape[0])[:, None]
        for values, positions in zip(term.values, term.positions):
            picked = a_groups[group, positions.astype(jnp.int32)]  # [G, N, M]
            out += jnp.einsum("gnm,gn->mn", picked, values, preferred_element_type=jnp.float32)
    return out.astype(dtype)


def _xla(a: jax.Array, packed: PackedSeries, dtype) -> jax.Array:
    w = unpack_series(packed).astype(dtype)
    return jnp.dot(a.astype(dtype), w, preferred_element_type=jnp.float32).astype(dtype)


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
    packed: PackedSeries,
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


def series_matmul(
    a: jax.Array,
    terms: "PackedSeries | Sequence[jax.Array]",
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
    backend = tw.check_backend(backend)
    if isinstance(terms, PackedSeries):
        if series is not None:
            raise ValueError(f"series={series!r} given with already packed terms")
        packed = terms
    else:
        if series is None:
            raise ValueError("dense terms need series= (e.g. '2:4+1:8') naming their N:M patterns")
        packed = pack_series(terms, series)
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
        out = _reference(a2, packed, dtype)
    elif backend == "xla":
        out = _xla(a2, packed, dtype)
    else:
        out = series_matmul_pallas(a2, packed, interpret=interpret)
    return out.reshape(*lead, out.shape[-1])
