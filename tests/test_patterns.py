"""Sparsity patterns: parsing, masks (jit and no-jit), structure, global mode,
and properties of every registered pattern (hypothesis)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasd_jax import patterns


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


def test_nan_lowest_is_rank_keys_without_the_negative_zero_rule():
    scores = jnp.array([np.nan, -0.0, 0.0, -np.inf, np.inf, 1.5], jnp.float32)
    lowest = patterns.ranking.nan_lowest(scores)
    np.testing.assert_array_equal(lowest, [-np.inf, 0.0, 0.0, -np.inf, np.inf, 1.5])
    assert np.signbit(lowest[1]) and not np.signbit(patterns.ranking.rank_keys(scores)[1])
    np.testing.assert_array_equal(lowest, patterns.ranking.rank_keys(scores))  # -0.0 == 0.0


def test_nm_mask_hand_example(jit):
    x = jnp.array([3.0, 1, 4, 1, 5, 9, 2, 6])
    mask = jit(lambda s: patterns.NM(2, 4).mask(s, axis=0))(x)
    np.testing.assert_array_equal(mask, [1, 0, 1, 0, 0, 1, 0, 1])
    ties = jit(lambda s: patterns.NM(2, 4).mask(s, axis=0))(jnp.ones(4))
    np.testing.assert_array_equal(ties, [1, 1, 0, 0])  # ties go to the lower index


def test_nm_mask_pads_last_group(jit):
    x = jnp.array([[1.0, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]])
    mask = jit(lambda s: patterns.NM(3, 4).mask(s, axis=-1))(x)
    # Last group has 2 real elements: both kept, none invented.
    np.testing.assert_array_equal(mask, [[0, 1, 1, 1, 1, 1], [1, 1, 1, 0, 1, 1]])


@pytest.mark.parametrize("n, m", [(1, 4), (2, 4), (2, 8), (5, 32), (4, 4)])
def test_nm_mask_counts_along_a_leading_axis(jit, n, m):
    # Axis 0 of a rank-3 array is not a kernel's contraction axis: grouped as is.
    x = jax.random.normal(jax.random.key(n * m), (2 * m + 1, 3, 5))
    mask = jit(lambda s: patterns.NM(n, m).mask(jnp.abs(s), axis=0))(x)
    counts = np.asarray(mask).astype(int)
    full = counts[: 2 * m].reshape(2, m, 3, 5).sum(1)
    assert (full == n).all()
    assert (counts[2 * m :] == 1).all()  # a last group of one real element keeps it
    assert bool(patterns.NM(n, m).conforms(mask, axis=0))


def test_nm_conforms_rejects_overfull_group():
    mask = jnp.array([True, True, True, False])
    assert not bool(patterns.NM(2, 4).conforms(mask, axis=0))
    assert bool(patterns.NM(3, 4).conforms(mask, axis=0))


def _random_weights(shape=(96, 80), seed=0):
    return jnp.abs(jax.random.normal(jax.random.key(seed), shape))


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
    traces = []

    @jax.jit
    def masks_at(sparsity):
        traces.append(None)  # runs only when jax traces (compiles) the function
        return pattern.mask(w, sparsity=sparsity)

    densities = [float(masks_at(s).mean()) for s in (0.25, 0.5, 0.9)]
    assert densities == sorted(densities, reverse=True)
    assert abs(densities[-1] - 0.1) < 0.02
    assert len(traces) == 1


@pytest.mark.parametrize("spec", ["ew(sparsity=0.5)", "2:4", "tw(sparsity=0.5,g=4)"])
def test_every_pattern_refuses_an_axis_out_of_range(spec):
    with pytest.raises(ValueError, match="axis=99 is out of range for an array of rank 2"):
        patterns.parse(spec).mask(jnp.ones((8, 8)), axis=99)


def test_gemm_patterns_need_a_contraction_axis():
    with pytest.raises(ValueError, match="output axis"):
        patterns.TileWise().mask(jnp.ones((8, 8)), axis=-1)
    with pytest.raises(ValueError, match="rank >= 2"):
        patterns.Channel().mask(jnp.ones(8))


def test_register_rejects_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        patterns.register("tw")(dataclasses.dataclass(frozen=True)(type("X", (patterns.Pattern,), {})))


def test_series_conformance_is_exact_on_small_masks():
    # Brute force over every split of the kept elements among the terms.
    rng = np.random.default_rng(0)
    for spec in ["1:8+1:4", "1:3+1:4", "2:5+1:3", "1:2+1:3+1:4"]:
        series = patterns.parse(spec)
        fits = jax.jit(lambda x: series.conforms(x, axis=0))
        for _ in range(40):
            mask = rng.random(12) < rng.uniform(0.2, 0.8)
            assert bool(fits(jnp.asarray(mask))) == _splits_exist(mask, series.terms), (spec, mask)


def _splits_exist(mask, terms):
    kept = np.flatnonzero(mask)
    for choice in np.ndindex(*(len(terms),) * len(kept)):
        choice = np.array(choice, int)
        if all(np.bincount(kept[choice == i] // t.m, minlength=1).max() <= t.n
               for i, t in enumerate(terms)):
            return True
    return False


@pytest.mark.parametrize("spec", ["tw(sparsity=0.75,g=128)", "tew(sparsity=0.72,g=128,delta=0.03)",
                                  "tvw(sparsity=0.75,g=128)"])
def test_tw_global_threshold_is_neutral_to_k(spec):
    # Column scores must not depend on K: with one threshold across BERT's
    # three layer shapes of i.i.d. weights, each layer lands near the target.
    shapes = [(768, 768), (768, 3072), (3072, 768)]
    scores = [_random_weights(shape, seed) for seed, shape in enumerate(shapes)]
    masks = patterns.global_masks(spec, scores)
    sparsities = [1 - float(m.mean()) for m in masks]
    assert all(0.65 <= s <= 0.85 for s in sparsities), sparsities


# --- properties of every registered pattern ---------------------------------

# Shapes of scores: a GEMM weight and a conv kernel [kh, kw, cin, cout], both
# with a ragged last group (K = 37, 45). Few, since each compiles anew.
SHAPES = [(37, 24), (3, 3, 5, 16)]
_SPARSITY = st.floats(0.0, 0.95)
# Parameters from a few values each, so that examples share compilations.
_NM = st.sampled_from([(1, 1), (2, 4), (3, 4), (1, 8), (2, 3), (5, 16)]).map(
    lambda nm: patterns.NM(*nm)
)
_SERIES = st.sampled_from(["2:4+1:8", "1:8+1:4", "1:3+1:4", "1:2+2:4+1:3"]).map(
    patterns.parse
)

# Per registered name: a strategy for a valid pattern value.
PATTERN_STRATEGIES = {
    "dense": st.just(patterns.Dense()),
    "nm": _NM,
    "series": _SERIES,
    # Only (sparsity, v) that keep one element per vector are patterns.
    "vw": st.tuples(_SPARSITY, st.sampled_from([1, 4, 16]))
    .filter(lambda sv: np.round((1 - np.float32(sv[0])) * np.float32(sv[1])) >= 1)
    .map(lambda sv: patterns.VectorWise(*sv)),
    "ew": st.builds(patterns.ElementWise, _SPARSITY),
    "channel": st.builds(patterns.Channel, _SPARSITY),
    "bw": st.builds(patterns.BlockWise, _SPARSITY, st.sampled_from([(4, 4), (7, 9)])),
    "tw": st.builds(patterns.TileWise, _SPARSITY, st.sampled_from([4, 16])),
    "tw1": st.builds(patterns.TileWise1, _SPARSITY, st.sampled_from([1, 16])),
    "tew": st.builds(patterns.TileElementWise, st.floats(0.0, 0.9), st.sampled_from([4, 16]),
                     st.sampled_from([0.0, 0.05])),
    "tvw": st.builds(patterns.TileVectorWise, st.floats(0.5, 0.95), st.sampled_from([4, 16])),
}
LIBRARY_PATTERNS = sorted(
    name for name, cls in patterns.registered().items() if cls.__module__.startswith("tasd_jax.")
)


def _unit(pattern, shapes) -> float:
    """Most weights a threshold pattern may miss its target by: one of its
    units, the largest over the arrays."""
    views = [(int(np.prod(s[:-1])), s[-1]) for s in shapes]  # GEMM views [K, N]
    if pattern.name == "ew":
        return 1
    if pattern.name == "channel":
        return max(k for k, _ in views)
    if pattern.name == "bw":
        return pattern.block[0] * pattern.block[1]
    segment = max(min(pattern.g, n) for _, n in views)  # a tile's K-row segment
    if pattern.name == "tvw":
        # Half a segment of its TW stage, then 2:4 rounds up by <= 1 per column.
        return segment / 2 + sum(n for _, n in views)
    return segment


def _groups(mask, m):
    """[G, N]: sums over groups of m consecutive rows of a [K, N] array (padded)."""
    mask = np.asarray(mask, int)
    padded = np.pad(mask, ((0, -mask.shape[0] % m), (0, 0)))
    return padded.reshape(-1, m, mask.shape[1]).sum(1)


def _check_counts(pattern, scores, mask, axis):
    """N:M-like patterns: exact counts in every group of the grouping axis, on
    the GEMM view for a kernel's contraction axis."""
    matrix = lambda a: np.asarray(a).reshape(-1, scores.shape[-1])  # noqa: E731
    view = matrix if axis is None else (lambda a: matrix(a).T)
    available = np.ones(view(scores).shape, bool)
    if isinstance(pattern, patterns.Dense):
        assert np.asarray(mask).all()
    elif isinstance(pattern, patterns.VectorWise):
        keep = np.round((np.float32(1) - np.float32(pattern.sparsity)) * np.float32(pattern.v))
        expected = np.minimum(keep, _groups(available, pattern.v))
        np.testing.assert_array_equal(_groups(view(mask), pattern.v), expected)
    else:
        terms = patterns.as_series(pattern)
        term_masks = terms.term_masks(jnp.asarray(scores), axis)
        np.testing.assert_array_equal(np.any(term_masks, axis=0), mask)
        for term, term_mask in zip(terms.terms, term_masks):
            # Each term keeps N of what earlier terms left in its group, or all of it.
            expected = np.minimum(term.n, _groups(available, term.m))
            np.testing.assert_array_equal(_groups(view(term_mask), term.m), expected)
            available &= ~view(term_mask)


def _scores(shape, seed, ties):
    scores = np.abs(np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)
    return np.round(scores, 1) if ties else scores  # ties: many equal scores


@functools.partial(jax.jit, static_argnames=("pattern", "axis"))
def _jit_mask(scores, sparsity, *, pattern, axis):
    return pattern.mask(scores, axis, **({} if sparsity is None else {"sparsity": sparsity}))


def _mask_jitted(pattern, scores, axis):
    """The mask under jit; a threshold pattern's sparsity is traced, so one
    compilation serves every sparsity (and traced equals concrete)."""
    if isinstance(pattern, patterns.ThresholdPattern):
        try:
            canonical = dataclasses.replace(pattern, sparsity=type(pattern)().sparsity)
        except ValueError:  # the default does not suit every v: vw(v=1) keeps none at 0.75
            canonical = dataclasses.replace(pattern, sparsity=0.0)
        return _jit_mask(scores, jnp.float32(pattern.sparsity), pattern=canonical, axis=axis)
    return _jit_mask(scores, None, pattern=pattern, axis=axis)


def test_every_library_pattern_has_a_property_strategy():
    assert set(LIBRARY_PATTERNS) == set(PATTERN_STRATEGIES)


@pytest.mark.parametrize("name", LIBRARY_PATTERNS)
@given(data=st.data())
def test_every_pattern_conforms_hits_its_target_and_jits(name, data):
    pattern = data.draw(PATTERN_STRATEGIES[name], label="pattern")
    shape = data.draw(st.sampled_from(SHAPES), label="shape")
    scores = _scores(shape, data.draw(st.integers(0, 2**16)), data.draw(st.booleans()))
    threshold = isinstance(pattern, patterns.ThresholdPattern) and name != "vw"
    # Groups along the contraction axis (None: a conv kernel's GEMM K); N:M also
    # along the last (activations).
    axis = data.draw(st.sampled_from([None, -1]), label="axis") if name == "nm" else None
    mask = pattern.mask(jnp.asarray(scores), axis)
    assert mask.shape == shape and mask.dtype == bool
    assert bool(pattern.conforms(mask, axis))
    np.testing.assert_array_equal(_mask_jitted(pattern, jnp.asarray(scores), axis), mask)
    np.testing.assert_array_equal(patterns.global_masks(pattern, [scores], axis)[0], mask)
    if threshold:
        pruned = int(np.sum(~np.asarray(mask)))
        assert abs(pruned - pattern.sparsity * scores.size) <= _unit(pattern, [shape]) + 1e-3
    else:
        _check_counts(pattern, scores, mask, axis)


THRESHOLD_PATTERNS = [
    n for n in LIBRARY_PATTERNS if issubclass(patterns.registered()[n], patterns.ThresholdPattern)
]


@pytest.mark.parametrize("name", THRESHOLD_PATTERNS)
@given(data=st.data())
def test_global_threshold_hits_the_combined_target(name, data):
    pattern = data.draw(PATTERN_STRATEGIES[name], label="pattern")
    shapes = data.draw(st.sampled_from([SHAPES, SHAPES[::-1] + SHAPES[:1]]), label="shapes")
    seed = data.draw(st.integers(0, 2**16))
    scores = [_scores(shape, seed + i, False) for i, shape in enumerate(shapes)]
    masks = patterns.global_masks(pattern, scores)
    assert all(bool(pattern.conforms(m)) for m in masks)
    if name == "vw":  # fixed per vector: global is per array
        for m, s in zip(masks, scores):
            np.testing.assert_array_equal(m, pattern.mask(s))
        return
    pruned = sum(int(np.sum(~np.asarray(m))) for m in masks)
    target = pattern.sparsity * sum(s.size for s in scores)
    assert abs(pruned - target) <= _unit(pattern, shapes) + 1e-3
