"""Sparsity patterns: parsing, masks (jit and no-jit), structure, global mode."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tasd_jax import patterns

JIT = pytest.mark.parametrize("jit", [False, True], ids=["nojit", "jit"])


def _maybe_jit(fn, jit):
    return jax.jit(fn) if jit else fn


@pytest.mark.parametrize(
    "spec",
    ["dense", "2:4", "1:8", "2:4+1:8", "tw(sparsity=0.75,g=128)", "tw1(sparsity=0.5,g=4)",
     "tew(sparsity=0.7,g=64,delta=0.03)", "tvw(sparsity=0.75,g=32)", "vw(sparsity=0.75,v=16)",
     "bw(sparsity=0.75,block=32x32)", "ew(sparsity=0.9)", "channel(sparsity=0.5)", "1:32"],
)
def test_parse_round_trips(spec):
    pattern = patterns.parse(spec)
    assert patterns.parse(pattern.spec()) == pattern
    assert patterns.parse(pattern) is pattern


def test_parse_values():
    assert patterns.parse("2:4+1:8") == patterns.Series((patterns.NM(2, 4), patterns.NM(1, 8)))
    assert patterns.parse(" 2 : 4 ") == patterns.NM(2, 4)
    assert patterns.parse("TW(g=64, sparsity=0.9)") == patterns.TileWise(sparsity=0.9, g=64)
    assert patterns.parse("bw(block=16x8)").block == (16, 8)
    assert patterns.parse("2:4+1:8").compute_cost == pytest.approx(0.625)


@pytest.mark.parametrize(
    "spec, rule",
    [("3:2", "must be <= M"), ("0:4", "must be >= 1"), ("a:b", "integer N and M"),
     ("2:4+", "empty term"), ("tw(g=0)", "g=0 must be an integer >= 1"),
     ("nosuch", "unknown pattern"), ("tw(h=3)", "unknown parameter"),
     ("ew(sparsity=1.0)", "must be in [0, 1"), ("tw(g=2.5)", "integer"),
     ("tw(g=)", "key=value"), ("tw(g=1,g=2)", "twice"), ("tvw(sparsity=0.3)", "[0.5, 1)"),
     ("tew(sparsity=0.9,delta=0.2)", "sparsity + delta"), ("bw(block=3)", "two integers"),
     ("", "expected"), ("2:4++1:8", "empty term")],
)
def test_bad_specs_raise_naming_spec_and_rule(spec, rule):
    with pytest.raises(ValueError) as err:
        patterns.parse(spec)
    assert repr(spec) in str(err.value) and rule in str(err.value)


def test_non_string_spec_raises():
    with pytest.raises(ValueError, match="must be a string"):
        patterns.parse(24)


@JIT
def test_nm_mask_hand_example(jit):
    x = jnp.array([3.0, 1, 4, 1, 5, 9, 2, 6])
    mask = _maybe_jit(lambda s: patterns.NM(2, 4).mask(s, axis=0), jit)(x)
    np.testing.assert_array_equal(mask, [1, 0, 1, 0, 0, 1, 0, 1])
    ties = _maybe_jit(lambda s: patterns.NM(2, 4).mask(s, axis=0), jit)(jnp.ones(4))
    np.testing.assert_array_equal(ties, [1, 1, 0, 0])  # ties go to the lower index


@JIT
def test_nm_mask_pads_last_group(jit):
    x = jnp.array([[1.0, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]])
    mask = _maybe_jit(lambda s: patterns.NM(3, 4).mask(s, axis=-1), jit)(x)
    # Last group has 2 real elements: both kept, none invented.
    np.testing.assert_array_equal(mask, [[0, 1, 1, 1, 1, 1], [1, 1, 1, 0, 1, 1]])


@JIT
@pytest.mark.parametrize("n, m", [(1, 4), (2, 4), (2, 8), (5, 32), (4, 4)])
def test_nm_mask_counts_along_axis(jit, n, m):
    x = jax.random.normal(jax.random.key(n * m), (3, 2 * m + 1, 5))
    mask = _maybe_jit(lambda s: patterns.NM(n, m).mask(jnp.abs(s), axis=1), jit)(x)
    counts = np.asarray(mask).astype(int)
    full = counts[:, : 2 * m].reshape(3, 2, m, 5).sum(2)
    assert (full == n).all()
    assert (counts[:, 2 * m :] == 1).all()  # a last group of one real element keeps it
    assert bool(patterns.NM(n, m).conforms(mask, axis=1))


def test_nm_conforms_rejects_overfull_group():
    mask = jnp.array([True, True, True, False])
    assert not bool(patterns.NM(2, 4).conforms(mask, axis=0))
    assert bool(patterns.NM(3, 4).conforms(mask, axis=0))


def _random_weights(shape=(96, 80), seed=0):
    return jnp.abs(jax.random.normal(jax.random.key(seed), shape))


THRESHOLD_SPECS = [
    "tw(sparsity=0.75,g=16)", "tw(sparsity=0.5,g=32)", "tw1(sparsity=0.75,g=16)",
    "tew(sparsity=0.75,g=16,delta=0.05)", "tvw(sparsity=0.75,g=16)", "vw(sparsity=0.75,v=16)",
    "bw(sparsity=0.75,block=16x16)", "bw(sparsity=0.6,block=7x9)", "ew(sparsity=0.9)",
    "channel(sparsity=0.5)",
]


@JIT
@pytest.mark.parametrize("spec", THRESHOLD_SPECS)
def test_threshold_patterns_reach_target_and_conform(jit, spec):
    pattern = patterns.parse(spec)
    w = _random_weights()
    mask = _maybe_jit(lambda s: pattern.mask(s), jit)(w)
    assert mask.shape == w.shape and mask.dtype == bool
    sparsity = 1 - float(mask.mean())
    # Off by at most one unit (a tile row-segment, a block, a column) or, for
    # TVW, one 2:4 group rounding per tile column.
    assert abs(sparsity - pattern.sparsity) < 0.03, sparsity
    assert bool(pattern.conforms(mask))


@pytest.mark.parametrize("spec", ["tw(sparsity=0.75,g=16)", "tw1(sparsity=0.75,g=16)",
                                  "bw(sparsity=0.75,block=16x16)", "channel(sparsity=0.5)",
                                  "vw(sparsity=0.75,v=16)", "tvw(sparsity=0.75,g=16)", "2:4"])
def test_structured_patterns_reject_random_masks(spec):
    random_mask = jax.random.uniform(jax.random.key(1), (96, 80)) < 0.5
    assert not bool(patterns.parse(spec).conforms(random_mask))


def test_tw2_hand_example():
    # 4x4, g=2, 75%: per-dimension rate 0.5 prunes the two weakest columns (1, 3);
    # the survivors (0, 2) form one tile; its weakest two row segments (rows 2, 3)
    # go, reaching 12 of 16 pruned.
    w = jnp.array([[9.0, 1, 8, 1], [7, 1, 9, 1], [1, 1, 2, 1], [2, 1, 1, 1]])
    mask = patterns.TileWise(sparsity=0.75, g=2).mask(w)
    expected = np.zeros((4, 4), bool)
    expected[:2, [0, 2]] = True
    np.testing.assert_array_equal(mask, expected)


def test_tw_tiles_are_cut_from_kept_columns():
    w = _random_weights((64, 48))
    pattern = patterns.TileWise(sparsity=0.75, g=8)
    mask = np.asarray(pattern.mask(w))
    kept_columns = np.flatnonzero(mask.any(0))
    for start in range(0, len(kept_columns), 8):
        tile = mask[:, kept_columns[start : start + 8]]
        assert (tile == tile[:, :1]).all()  # one row mask per tile


def test_tw1_with_g1_is_element_wise():
    w = _random_weights((32, 24))
    np.testing.assert_array_equal(
        patterns.TileWise1(sparsity=0.6, g=1).mask(w), patterns.ElementWise(0.6).mask(w)
    )


def test_vw_equals_nm():
    w = _random_weights((64, 40))
    np.testing.assert_array_equal(
        patterns.VectorWise(sparsity=0.75, v=16).mask(w), patterns.NM(4, 16).mask(w)
    )


def test_tew_adds_back_the_best_pruned_weights():
    w = _random_weights((64, 64))
    tew = patterns.TileElementWise(sparsity=0.7, g=16, delta=0.05)
    tw_core = patterns.TileWise(sparsity=0.75, g=16).mask(w)
    mask = np.asarray(tew.mask(w))
    assert (mask >= np.asarray(tw_core)).all()
    extra = mask & ~np.asarray(tw_core)
    assert extra.sum() == round(0.05 * w.size)
    assert np.asarray(w)[extra].min() >= np.asarray(w)[~mask].max()


def test_channel_prunes_whole_output_columns():
    w = _random_weights((4, 4, 8, 16))  # conv kernel: K = 4*4*8, N = 16
    mask = np.asarray(patterns.Channel(sparsity=0.5).mask(w))
    per_column = mask.reshape(-1, 16)
    assert (per_column.all(0) | ~per_column.any(0)).all() and per_column.all(0).sum() == 8


def test_global_threshold_spans_arrays():
    big, small = _random_weights((32, 32), 0) + 10, _random_weights((32, 32), 1)
    masks = patterns.global_masks("ew(sparsity=0.5)", [big, small])
    assert float(masks[1].mean()) == 0.0 and float(masks[0].mean()) == 1.0
    tw_masks = patterns.global_masks("tw(sparsity=0.75,g=8)", [big, small])
    kept = sum(int(m.sum()) for m in tw_masks)
    assert abs(1 - kept / (2 * 32 * 32) - 0.75) < 0.01
    per_layer = [patterns.parse("ew(sparsity=0.5)").mask(w) for w in (big, small)]
    assert all(abs(float(m.mean()) - 0.5) < 1e-6 for m in per_layer)


def test_global_masks_of_fixed_patterns_reject_sparsity():
    with pytest.raises(ValueError, match="no sparsity"):
        patterns.global_masks("2:4", [jnp.ones((8, 4))], sparsity=0.5)


def test_traced_sparsity_does_not_recompile():
    w = _random_weights()
    pattern = patterns.TileWise(g=16)
    masks_at = jax.jit(lambda s: pattern.mask(w, sparsity=s))
    densities = [float(masks_at(s).mean()) for s in (0.25, 0.5, 0.9)]
    assert densities == sorted(densities, reverse=True)
    assert abs(densities[-1] - 0.1) < 0.02
    assert masks_at._cache_size() == 1


def test_gemm_patterns_need_a_contraction_axis():
    with pytest.raises(ValueError, match="output axis"):
        patterns.TileWise().mask(jnp.ones((8, 8)), axis=-1)
    with pytest.raises(ValueError, match="rank >= 2"):
        patterns.Channel().mask(jnp.ones(8))


def test_register_rejects_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        patterns.register("tw")(dataclasses.dataclass(frozen=True)(type("X", (patterns.Pattern,), {})))
