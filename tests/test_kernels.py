"""Tests of tasd_jax.kernels: TW packing and matmul, TASD-series matmul, module structure.

Every backend is checked against a float64 numpy `a @ w` of the dense masked
weight, which is computed independently of the packing.
"""

import ast
import dataclasses
import graphlib
import itertools
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tasd_jax import kernels, patterns, tasd


def tw_sparse(rng, k, n, g, col_keep, row_keep, *, zero_blocks=0):
    """A random tile-wise-sparse W[K, N] built by hand, independent of pack_tw.

    col_keep: fraction of columns kept (the rest fully pruned); row_keep: mean
    fraction of K-rows kept per tile (each tile draws its own, some tiles keep
    one row only); zero_blocks: number of aligned g-column blocks zeroed
    (fully pruned tiles of the fixed tiling).
    """
    w = rng.standard_normal((k, n))
    keep_cols = rng.random(n) < col_keep
    for b in rng.choice(max(n // g, 1), size=min(zero_blocks, max(n // g, 1)), replace=False):
        keep_cols[b * g : (b + 1) * g] = False
    w[:, ~keep_cols] = 0
    cols = np.flatnonzero(keep_cols)
    for t, start in enumerate(range(0, len(cols), g)):
        tile = cols[start : start + g]
        if t % 3 == 2:
            kept = rng.choice(k, size=1)  # a tile with a single kept row
        else:
            kept = np.flatnonzero(rng.random(k) < rng.uniform(0.5, 1.5) * row_keep)
        pruned = np.setdiff1d(np.arange(k), kept)
        w[np.ix_(pruned, tile)] = 0
    return w.astype(np.float32)


def tile_structure(w, g):
    """(kept columns, per-tile kept rows) read off w directly."""
    cols = np.flatnonzero((w != 0).any(0))
    tiles = [cols[i : i + g] for i in range(0, len(cols), g)]
    return cols, [np.flatnonzero((w[:, t] != 0).any(1)) for t in tiles]


def value_error(message: str):
    """`pytest.raises(ValueError)` for an error whose text contains `message` verbatim."""
    return pytest.raises(ValueError, match=re.escape(message))


def traced_message(name: str, why: str) -> str:
    """The pattern of a packing function's refusal of traced input, `why`
    naming what it reads off the values."""
    return re.escape(
        f"{name} is traced: packing {why}, which needs its values; call it outside jit "
        "and pass the packed result in"
    )


CASES = [  # (K, N, g, column keep, row keep, zero blocks): sparsity 0% .. ~95%
    (37, 70, 32, 1.0, 1.0, 0),
    (100, 300, 32, 0.5, 0.5, 2),
    (130, 200, 64, 0.3, 0.25, 1),
    (64, 257, 128, 0.25, 0.2, 1),
    (96, 130, 128, 0.5, 0.5, 0),
]


@pytest.mark.parametrize("k,n,g,col_keep,row_keep,zero_blocks", CASES)
def test_pack_unpack_exact_and_structure(k, n, g, col_keep, row_keep, zero_blocks):
    rng = np.random.default_rng(k * n)
    w = tw_sparse(rng, k, n, g, col_keep, row_keep, zero_blocks=zero_blocks)
    packed = kernels.pack_tw(w, g)
    np.testing.assert_array_equal(np.asarray(kernels.unpack_tw(packed)), w)
    cols, tile_rows = tile_structure(w, g)
    # One slot per tile, each holding its own kept rows and columns.
    slots = [
        (set(np.asarray(b.rows[i])), set(np.asarray(b.cols[i])) - {n})
        for b in packed.buckets
        for i in range(b.rows.shape[0])
    ]
    assert len(slots) == len(tile_rows)
    expected = [set(rows) for rows in tile_rows]
    for rows, slot_cols in slots:
        tile = sorted(slot_cols)
        j = int(np.searchsorted(cols, tile[0])) // g
        assert slot_cols == set(cols[j * g : (j + 1) * g])
        assert expected[j] <= rows | {0}
        assert rows - {0} <= expected[j]
    # The padded work is at least the true work of the tiles.
    true_work = sum(
        len(r) * len(t)
        for r, t in zip(tile_rows, [cols[i : i + g] for i in range(0, len(cols), g)])
    )
    assert packed.compute_fraction * k * n >= true_work


def test_narrow_last_tile_is_a_bucket_of_its_own_width():
    rng = np.random.default_rng(1)
    # 3 tiles of 32 columns keeping 4 rows, then a tile of 4 columns keeping all
    # 40: padding it to 32 columns would more than double the work.
    w = rng.standard_normal((40, 100)).astype(np.float32)
    w[4:, :96] = 0
    packed = kernels.pack_tw(w, 32)
    assert [b.weights.shape for b in packed.buckets] == [(3, 8, 32), (1, 40, 4)]
    np.testing.assert_array_equal(np.asarray(kernels.unpack_tw(packed)), w)
    a = rng.standard_normal((9, 40)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(kernels.tw_matmul(a, packed)), a @ w, rtol=1e-4, atol=1e-4
    )


def test_dense_weight_packs_without_padding():
    w = np.random.default_rng(4).standard_normal((24, 64)).astype(np.float32)
    packed = kernels.pack_tw(w, 32)  # 0% sparsity: dense tiles
    assert [b.weights.shape for b in packed.buckets] == [(2, 24, 32)]
    assert packed.compute_fraction == 1.0


@pytest.mark.parametrize("backend", ["reference", "xla", "pallas"])
def test_nearly_full_last_tile_is_padded_into_the_bucket(backend):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((40, 94)).astype(np.float32)  # 2 tiles of 32 + one of 30
    packed = kernels.pack_tw(w, 32)
    assert [b.weights.shape for b in packed.buckets] == [(3, 40, 32)]
    assert np.asarray(packed.buckets[0].cols)[-1, -2:].tolist() == [94, 94]  # padding
    np.testing.assert_array_equal(np.asarray(kernels.unpack_tw(packed)), w)
    a = rng.standard_normal((9, 40)).astype(np.float32)
    out = kernels.tw_matmul(a, packed, backend=backend, interpret=True)
    np.testing.assert_allclose(np.asarray(out), a @ w, rtol=1e-4, atol=1e-4)


def test_pack_all_zero_weight_gives_zero_product():
    packed = kernels.pack_tw(np.zeros((10, 20), np.float32), 32)
    assert packed.num_slots == 0
    a = np.ones((3, 10), np.float32)
    for backend in ("reference", "xla", "pallas"):
        out = kernels.tw_matmul(a, packed, backend=backend, interpret=True)
        np.testing.assert_array_equal(np.asarray(out), np.zeros((3, 20)))


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("backend", ["reference", "xla"])
@pytest.mark.parametrize("k,n,g,col_keep,row_keep,zero_blocks", CASES)
def test_tw_matmul_matches_dense_masked(k, n, g, col_keep, row_keep, zero_blocks, backend, jit):
    rng = np.random.default_rng(k + n)
    w = tw_sparse(rng, k, n, g, col_keep, row_keep, zero_blocks=zero_blocks)
    a = rng.standard_normal((45, k)).astype(np.float32)
    packed = kernels.pack_tw(w, g)
    fn = lambda a, p: kernels.tw_matmul(a, p, backend=backend, block_m=16)
    out = (jax.jit(fn) if jit else fn)(a, packed)
    expected = a.astype(np.float64) @ w.astype(np.float64)
    assert out.shape == (45, n) and out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-4)
    pruned = ~(w != 0).any(0)
    assert np.all(np.asarray(out)[:, pruned] == 0)


@pytest.mark.parametrize("backend", ["reference", "xla", "pallas"])
def test_tw_matmul_compact_output(backend):
    rng = np.random.default_rng(3)
    w = tw_sparse(rng, 50, 90, 32, 0.5, 0.5)
    a = rng.standard_normal((20, 50)).astype(np.float32)
    packed = kernels.pack_tw(w, 32)
    out = np.asarray(kernels.tw_matmul(a, packed, backend=backend, compact=True, interpret=True))
    cols = np.asarray(kernels.compact_columns(packed))
    kept = np.flatnonzero((w != 0).any(0))
    assert out.shape == (20, packed.compact_width) == (20, cols.size)
    real = cols < 90
    assert sorted(cols[real]) == list(kept)
    np.testing.assert_allclose(out[:, real], (a @ w)[:, cols[real]], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(out[:, ~real], 0)


@pytest.mark.parametrize("k,n,g,col_keep,row_keep,zero_blocks", [CASES[1], CASES[3]])
def test_tw_matmul_pallas_interpret(k, n, g, col_keep, row_keep, zero_blocks):
    rng = np.random.default_rng(k + 2 * n)
    w = tw_sparse(rng, k, n, g, col_keep, row_keep, zero_blocks=zero_blocks)
    a = rng.standard_normal((37, k)).astype(np.float32)  # M not a multiple of block_m
    out = kernels.tw_matmul(a, kernels.pack_tw(w, g), backend="pallas", interpret=True, block_m=16)
    np.testing.assert_allclose(np.asarray(out), a.astype(np.float64) @ w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["reference", "xla", "pallas"])
def test_tw_matmul_never_reads_pruned_rows(backend):
    # Tile 0 (columns 0-3) keeps rows 1-3 and is padded to 8 rows; tile 1
    # (columns 4-7) keeps rows 0-12; column 8 is pruned; row 15 is kept nowhere.
    rng = np.random.default_rng(3)
    w = np.zeros((16, 9), np.float32)
    kept = {(0, 4): np.arange(1, 4), (4, 8): np.arange(0, 13)}
    for (lo, hi), rows in kept.items():
        w[np.ix_(rows, np.arange(lo, hi))] = rng.standard_normal((len(rows), hi - lo))
    a = rng.standard_normal((5, 16)).astype(np.float32)
    a[:, 0] = np.nan  # kept by tile 1 only, pruned in tile 0 (whose padding used to read it)
    a[2, 15] = np.inf  # pruned everywhere
    packed = kernels.pack_tw(w, 4)
    assert any(np.asarray(b.weights).shape[1] > 3 for b in packed.buckets)  # tile 0 is padded
    expected = np.zeros((5, 9))
    for (lo, hi), rows in kept.items():
        expected[:, lo:hi] = a[:, rows].astype(np.float64) @ w[rows, lo:hi]
    out = np.asarray(kernels.tw_matmul(a, packed, backend=backend, interpret=True, block_m=16))
    assert np.isnan(out[:, 4:8]).all()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)  # NaN where expected is
    jitted = jax.jit(lambda a, p: kernels.tw_matmul(a, p, backend=backend, interpret=True))
    np.testing.assert_allclose(np.asarray(jitted(a, packed)), out)


@pytest.mark.parametrize("backend", ["xla", "pallas"])
def test_tw_matmul_bf16_accumulates_in_float32(backend):
    rng = np.random.default_rng(5)
    w = tw_sparse(rng, 256, 64, 32, 0.5, 0.9).astype(jnp.bfloat16)
    a = rng.standard_normal((16, 256)).astype(jnp.bfloat16)
    out = kernels.tw_matmul(a, kernels.pack_tw(w, 32), backend=backend, interpret=True)
    assert out.dtype == jnp.bfloat16
    expected = np.asarray(a, np.float64) @ np.asarray(w, np.float64)
    # bf16 output rounding only (relative 2^-8); a bf16 accumulator over 256
    # terms would be off by far more.
    np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=1e-2, atol=2e-2)


def test_tw_matmul_from_library_tw_pattern_leading_axes():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((192, 320)).astype(np.float32)
    keep = patterns.parse("tw(sparsity=0.75,g=64)").mask(jnp.abs(w), axis=0)
    w = np.where(np.asarray(keep), w, 0).astype(np.float32)
    assert 0.7 < 1 - np.mean(w != 0) < 0.8
    packed = kernels.pack_tw(w, 64)
    kept_cols = int(np.sum((w != 0).any(0)))
    assert packed.num_slots == -(-kept_cols // 64)
    # About half the rows per tile (75% = 50% columns x 50% rows), not dense
    # tiles: no bucket pads its tiles to more than 70% of K.
    assert all(b.weights.shape[1] <= 0.7 * 192 for b in packed.buckets)
    a = rng.standard_normal((2, 9, 192)).astype(np.float32)
    out = jax.jit(kernels.tw_matmul)(a, packed)
    assert out.shape == (2, 9, 320)
    np.testing.assert_allclose(np.asarray(out), a @ w, rtol=1e-4, atol=1e-4)


def test_grad_through_reference_matches_dense_masked():
    rng = np.random.default_rng(11)
    w = tw_sparse(rng, 40, 70, 32, 0.6, 0.5)
    a = rng.standard_normal((13, 40)).astype(np.float32)
    cot = rng.standard_normal((13, 70)).astype(np.float32)
    packed = kernels.pack_tw(w, 32)

    def sparse_loss(a, packed):
        return jnp.sum(kernels.tw_matmul(a, packed, backend="reference") * cot)

    def dense_loss(a, w):
        return jnp.sum((a @ w) * cot)

    def with_weights(weights):
        buckets = tuple(dataclasses.replace(b, weights=x) for b, x in zip(packed.buckets, weights))
        return dataclasses.replace(packed, buckets=buckets)

    weights = tuple(b.weights for b in packed.buckets)
    ga, gw = jax.grad(lambda a, ws: sparse_loss(a, with_weights(ws)), argnums=(0, 1))(a, weights)
    da, dw = jax.grad(dense_loss, argnums=(0, 1))(a, jnp.asarray(w))
    np.testing.assert_allclose(np.asarray(ga), np.asarray(da), rtol=1e-4, atol=1e-4)
    # On the kept entries the weight gradient is dW; padding entries (marked
    # by packing the indicator of w's non-zeros) are not weights.
    valid = kernels.pack_tw((w != 0).astype(np.float32), 32)
    gw = tuple(g * b.weights for g, b in zip(gw, valid.buckets))
    np.testing.assert_allclose(
        np.asarray(kernels.unpack_tw(with_weights(gw))),
        np.where(w != 0, np.asarray(dw), 0),
        rtol=1e-4,
        atol=1e-4,
    )


def test_plan_buckets_is_optimal():
    rng = np.random.default_rng(0)
    pad = lambda c: min(-(-c // 8) * 8, 64)
    for _ in range(20):
        counts = rng.integers(1, 60, size=rng.integers(1, 7))
        plan = kernels.plan_buckets(counts, 3, 8, 64, slack=0.0)
        tiles = sorted(int(t) for tiles, _ in plan for t in tiles)
        assert tiles == list(range(len(counts)))
        for tiles_, r in plan:
            assert all(pad(counts[t]) <= r for t in tiles_)
        got = sum(len(t) * r for t, r in plan)
        # Brute force over every assignment of tiles to at most 3 buckets.
        best = min(
            sum(
                max((pad(c) for c, b in zip(counts, assign) if b == j), default=0)
                * list(assign).count(j)
                for j in range(3)
            )
            for assign in itertools.product(range(3), repeat=len(counts))
        )
        assert got == best
        # With slack: no more buckets, and padding within 20% of the least.
        loose = kernels.plan_buckets(counts, 3, 8, 64, slack=0.2)
        assert len(loose) <= len(plan)
        assert sum(len(t) * r for t, r in loose) <= 1.2 * best


def test_plan_buckets_prefers_one_bucket_for_near_equal_rows():
    # TW-75% 768x768 from the library pattern: rows 400, 384, 384.
    assert [(list(t), r) for t, r in kernels.plan_buckets([384, 400, 384], 4, 8, 768)] == [
        ([1, 0, 2], 400)
    ]
    # Far apart counts still split.
    assert len(kernels.plan_buckets([384, 8, 8, 8], 4, 8, 768)) == 2


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"g": 0}, "g=0 must be an integer >= 1"),
        ({"g": 32, "max_buckets": 0}, "max_buckets=0 must be an integer >= 1"),
        ({"g": True}, "g=True must be an integer >= 1"),
        ({"g": 32, "bucket_slack": -0.5}, "bucket_slack=-0.5 must be >= 0"),
    ],
)
def test_pack_tw_rejects_bad_arguments(kwargs, message):
    with value_error(message):
        kernels.pack_tw(np.ones((4, 4), np.float32), **kwargs)


def test_bad_inputs_raise():
    with value_error("w must be a [K, N] matrix, got shape (2, 3, 4)"):
        kernels.pack_tw(np.ones((2, 3, 4), np.float32), 2)
    with pytest.raises(ValueError, match=traced_message("w", "reads the tiles off the zeros of w")):
        jax.jit(lambda w: kernels.pack_tw(w, 2))(jnp.ones((4, 4)))
    packed = kernels.pack_tw(np.ones((4, 6), np.float32), 2)
    with value_error("a has shape (3, 5); its last axis must be K=4 (W is (4, 6))"):
        kernels.tw_matmul(np.ones((3, 5), np.float32), packed)
    with value_error("backend='cuda' is not one of ('auto', 'xla', 'pallas', 'reference')"):
        kernels.tw_matmul(np.ones((3, 4), np.float32), packed, backend="cuda")


# --- TASD series -----------------------------------------------------------


SERIES_CASES = [
    ("2:4", 64, 40),
    ("2:4+1:8", 70, 45),
    ("1:4+1:4", 33, 17),
    ("2:8+1:8", 100, 64),
    ("dense", 9, 5),
]


@pytest.mark.parametrize("spec,k,n", SERIES_CASES)
def test_pack_series_roundtrip(spec, k, n):
    rng = np.random.default_rng(k)
    w = rng.standard_normal((k, n)).astype(np.float32)
    terms = tasd.decompose(w, spec, axis=0)
    packed = kernels.pack_series(terms, spec)
    series = patterns.as_series(spec)
    for term, p, nm in zip(terms, packed.terms, series.terms):
        assert p.values.shape == (nm.n, -(-k // nm.m), n)
        np.testing.assert_array_equal(np.asarray(kernels.unpack_nm(p)), np.asarray(term))
        pos = np.sort(np.asarray(p.positions), axis=0)
        assert pos.min() >= 0 and pos.max() < nm.m
        assert np.all(np.diff(pos, axis=0) > 0)  # distinct slots in every group
    np.testing.assert_array_equal(np.asarray(kernels.unpack_series(packed)), np.asarray(sum(terms)))


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("backend", ["reference", "xla"])
@pytest.mark.parametrize("spec,k,n", SERIES_CASES)
def test_series_matmul_matches_dense_sum(spec, k, n, backend, jit):
    rng = np.random.default_rng(k * 3 + n)
    w = rng.standard_normal((k, n)).astype(np.float32)
    w[rng.random((k, n)) < 0.6] = 0  # a sparse W: groups with fewer than N non-zeros
    terms = tasd.decompose(w, spec, axis=0)
    packed = kernels.pack_series(terms, spec)
    a = rng.standard_normal((21, k)).astype(np.float32)
    fn = lambda a, p: kernels.series_matmul(a, p, backend=backend)
    out = (jax.jit(fn) if jit else fn)(a, packed)
    expected = a.astype(np.float64) @ sum(np.asarray(t, np.float64) for t in terms)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spec,k,n", [SERIES_CASES[1], SERIES_CASES[2]])
def test_series_matmul_pallas_interpret(spec, k, n):
    rng = np.random.default_rng(n)
    w = rng.standard_normal((k, n)).astype(np.float32)
    terms = tasd.decompose(w, spec, axis=0)
    a = rng.standard_normal((19, k)).astype(np.float32)
    out = kernels.series_matmul(a, terms, series=spec, backend="pallas", interpret=True)
    expected = a.astype(np.float64) @ sum(np.asarray(t, np.float64) for t in terms)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["xla", "pallas"])
def test_series_matmul_bf16_accumulates_in_float32(backend):
    rng = np.random.default_rng(9)
    w = rng.standard_normal((256, 32)).astype(jnp.bfloat16)
    a = rng.standard_normal((8, 256)).astype(jnp.bfloat16)
    terms = tasd.decompose(jnp.asarray(w), "2:4+1:8", axis=0)
    out = kernels.series_matmul(a, terms, series="2:4+1:8", backend=backend, interpret=True)
    assert out.dtype == jnp.bfloat16
    expected = np.asarray(a, np.float64) @ sum(np.asarray(t, np.float64) for t in terms)
    np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=1e-2, atol=2e-2)


NM_RULE = "2:4 (at most 2 non-zeros in every 4 consecutive K-rows)"


def test_pack_nm_and_pack_series_refuse_traced_terms():
    # Under jit the N:M check cannot run; a dense term packed as 2:4 would lose
    # half its values, so packing refuses traced terms like pack_tw does.
    w = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    message = traced_message("term", f"checks that the term is {NM_RULE}")
    with pytest.raises(ValueError, match=message):
        jax.jit(lambda t: kernels.pack_nm(t, "2:4"))(w)
    with pytest.raises(ValueError, match=re.escape("term 0 of series '2:4': ") + message):
        jax.jit(lambda t: kernels.pack_series([t], "2:4"))(w)
    with pytest.raises(ValueError, match=re.escape("term 1 of series '2:4+2:4': ") + message):
        jax.jit(lambda t: kernels.pack_series([np.zeros_like(w), t], "2:4+2:4"))(w)
    with pytest.raises(ValueError, match=re.escape("term 0 of series '2:4': ") + message):
        jax.jit(lambda a, t: kernels.series_matmul(a, [t], series="2:4"))(w.T, w)
    # Packed outside jit, the series runs inside it.
    terms = tasd.decompose(w, "2:4", axis=0)
    packed = kernels.pack_series(terms, "2:4")
    got = jax.jit(lambda p: kernels.unpack_series(p))(packed)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(terms[0]))


def test_series_bad_inputs_raise():
    w = np.ones((8, 4), np.float32)
    two_in_a_group = np.eye(8, 4, dtype=np.float32) + np.eye(8, 4, -1, dtype=np.float32)
    with value_error(
        "term 0 of series '1:4': term has 2 non-zeros in K-rows 0..3 of column 0: "
        "not 1:4 (at most 1 non-zeros in every 4 consecutive K-rows)"
    ):
        kernels.pack_series([two_in_a_group], "1:4")
    late = np.zeros((8, 4), np.float32)
    late[4:, 2] = 1
    with value_error(
        f"term 1 of series '2:4+2:4': term has 4 non-zeros in K-rows 4..7 of column 2: "
        f"not {NM_RULE}"
    ):
        kernels.pack_series([np.zeros_like(late), late], "2:4+2:4")
    with value_error("1 terms given for series '2:4+1:8' of 2 terms"):
        kernels.pack_series([w], "2:4+1:8")
    with value_error("dense terms need series= (e.g. '2:4+1:8') naming their N:M patterns"):
        kernels.series_matmul(np.ones((2, 8), np.float32), [w])
    with value_error("pattern '2:4+1:8' is not a single N:M pattern"):
        kernels.pack_nm(w, "2:4+1:8")
    packed = kernels.pack_series(tasd.decompose(w, "2:4", axis=0), "2:4")
    with value_error("a has shape (2, 7); its last axis must be K=8 (terms are (8, 4))"):
        kernels.series_matmul(np.ones((2, 7), np.float32), packed)


# --- Module structure ------------------------------------------------------


KERNELS_DIR = pathlib.Path(kernels.__file__).parent
PACKAGE = "tasd_jax.kernels"

PALLAS_ONLY_WHEN_USED = """
import sys

import numpy as np

from tasd_jax import kernels, tasd

PALLAS = ("jax.experimental.pallas", "tasd_jax.kernels.tw_pallas", "tasd_jax.kernels.series_pallas")
loaded = lambda: {name for name in PALLAS if name in sys.modules}

w = np.zeros((8, 6), np.float32)
w[:4, :3] = np.arange(1, 13).reshape(4, 3)
a = np.arange(16, dtype=np.float32).reshape(2, 8)
packed = kernels.pack_tw(w, 2)
terms = tasd.decompose(w, "2:4", axis=0)
series_w = sum(np.asarray(t) for t in terms)
for backend in ("xla", "reference", "auto"):
    np.testing.assert_allclose(kernels.tw_matmul(a, packed, backend=backend), a @ w)
    got = kernels.series_matmul(a, terms, series="2:4", backend=backend)
    np.testing.assert_allclose(got, a @ series_w)
assert not loaded(), loaded()
got = kernels.series_matmul(a, terms, series="2:4", backend="pallas", interpret=True)
np.testing.assert_allclose(got, a @ series_w)
assert loaded() == {"jax.experimental.pallas", "tasd_jax.kernels.series_pallas"}, loaded()
np.testing.assert_allclose(kernels.tw_matmul(a, packed, backend="pallas", interpret=True), a @ w)
assert loaded() == set(PALLAS), loaded()
"""


def test_pallas_is_imported_only_when_a_pallas_backend_runs():
    # A fresh interpreter: this test process has long imported Pallas.
    result = subprocess.run(
        [sys.executable, "-c", PALLAS_ONLY_WHEN_USED],
        capture_output=True,
        text=True,
        cwd=KERNELS_DIR.parents[1],
        timeout=600,
    )
    assert result.returncode == 0, result.stderr


def imported_modules(path: pathlib.Path) -> set[str]:
    """What a file imports, anywhere in it (inside functions too), by full
    name: `import P` gives P, `from P import x` gives P.x (a module or not)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against tasd_jax.kernels
                base = ".".join(PACKAGE.split(".")[: 3 - node.level])
                module = ".".join(filter(None, [base, node.module]))
            else:
                module = node.module
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def kernels_import_graph() -> dict[str, set[str]]:
    """{module: modules of tasd_jax.kernels it imports}; "__init__" is the
    package itself (importing a name from it runs all of it)."""
    modules = {path.stem for path in KERNELS_DIR.glob("*.py")}
    graph = {}
    for module in modules:
        targets = set()
        for name in imported_modules(KERNELS_DIR / f"{module}.py"):
            if name == PACKAGE:
                targets.add("__init__")
            elif name.startswith(PACKAGE + "."):
                sub = name[len(PACKAGE) + 1 :].split(".")[0]
                # `from tasd_jax.kernels import pack_tw` imports the package.
                targets.add(sub if sub in modules else "__init__")
        graph[module] = targets
    return graph


def test_kernels_import_graph_has_no_cycle():
    graph = kernels_import_graph()
    # The walker sees imports inside functions: matmul imports Pallas lazily.
    assert {"tw_pallas", "series_pallas"} <= graph["matmul"]
    assert "__init__" not in set().union(*graph.values())
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming a cycle
    # Only the Pallas backends import Pallas, and only matmul imports them.
    pallas = {
        module
        for module in graph
        if any(
            name.startswith("jax.experimental.pallas")
            for name in imported_modules(KERNELS_DIR / f"{module}.py")
        )
    }
    assert pallas == {"tw_pallas", "series_pallas"}
    assert {m for m, targets in graph.items() if targets & pallas} == {"matmul"}
