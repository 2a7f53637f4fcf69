"""Bad and edge numeric input: every public entry point either raises a
ValueError / TypeError that names the value and the rule it broke, or returns
a result with its pattern's structure and sane metrics. Never a silent wrong
answer, never a hang. One section per class of input, then a hypothesis fuzz."""

import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tasd_jax import kernels, patterns, pruning, tasd, tree_paths
from tasd_jax.cost import edp
from tasd_jax.cost.gemms import GEMM
from tasd_jax.patterns import nm, ranking
from test_patterns import LIBRARY_PATTERNS, PATTERN_STRATEGIES

# One valid value of every library pattern, on the small shapes below.
EXAMPLES = {
    "dense": "dense", "nm": "2:4", "series": "2:4+1:8", "vw": "vw(sparsity=0.5,v=4)",
    "ew": "ew(sparsity=0.5)", "channel": "channel(sparsity=0.5)",
    "bw": "bw(sparsity=0.5,block=4x4)", "tw": "tw(sparsity=0.5,g=4)",
    "tw1": "tw1(sparsity=0.5,g=4)", "tew": "tew(sparsity=0.5,g=4,delta=0.05)",
    "tvw": "tvw(sparsity=0.75,g=4)",
}
THRESHOLD = [
    n for n in LIBRARY_PATTERNS if issubclass(patterns.registered()[n], patterns.ThresholdPattern)
]


def _weights(shape=(32, 16), seed=0):
    return np.abs(np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def test_examples_cover_every_library_pattern():
    assert set(EXAMPLES) == set(LIBRARY_PATTERNS)


# --- 1. non-finite input to the decomposition --------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_decompose_and_metrics_reject_non_finite_input(bad):
    x = _weights((8, 4))
    x[1, 2] = x[5, 0] = bad
    with pytest.raises(ValueError, match=r"x has 2 non-finite value\(s\)"):
        tasd.decompose(x, "2:4")
    with pytest.raises(ValueError, match=r"x has 2 non-finite"):
        tasd.series_metrics(x, (np.where(np.isfinite(x), x, 0),), "dense")
    with pytest.raises(ValueError, match=r"terms\[0\] has 2 non-finite"):
        tasd.series_metrics(np.where(np.isfinite(x), x, 0), (x,), "dense")


def test_decompose_tree_names_the_leaf_with_non_finite_values():
    params = {"layer": {"kernel": _weights((8, 4)), "bias": np.ones(4, np.float32)}}
    params["layer"]["kernel"][0, :3] = np.nan
    with pytest.raises(ValueError, match=r"leaf 'layer/kernel' has 3 non-finite"):
        tasd.decompose_tree(params, [("kernel", "2:4")])
    params["layer"]["kernel"][0, :3] = 1.0
    params["layer"]["bias"][1] = np.inf  # unmatched leaves are reported too
    with pytest.raises(ValueError, match=r"leaf 'layer/bias' has 1 non-finite"):
        tasd.decompose_tree(params, [("kernel", "2:4")])


def test_traced_decompose_never_keeps_nan():
    # Inside a caller's jit the values cannot be checked: NaN ranks lowest.
    x = jnp.array([[np.nan, 1.0, 2.0, 3.0, np.inf, 1.0, 0.5, 0.25]])
    first, second = jax.jit(lambda v: tasd.decompose(v, "1:4+1:4", axis=-1))(x)
    np.testing.assert_array_equal(first, [[0, 0, 0, 3.0, np.inf, 0, 0, 0]])
    np.testing.assert_array_equal(second, [[0, 0, 2.0, 0, 0, 1.0, 0, 0]])


# --- 2. non-finite mask scores: one rule for every pattern --------------------


@pytest.mark.parametrize("name", LIBRARY_PATTERNS)
def test_concrete_non_finite_scores_raise_for_every_pattern(name):
    pattern = patterns.parse(EXAMPLES[name])
    scores = _weights()
    scores[3, 4], scores[7, 1], scores[9, 9] = np.nan, np.inf, -np.inf
    with pytest.raises(ValueError, match=r"scores has 3 non-finite value\(s\)"):
        pattern.mask(scores)
    with pytest.raises(ValueError, match=r"scores\[1\] has 3 non-finite value\(s\)"):
        patterns.global_masks(pattern, [_weights(), scores])
    with pytest.raises(ValueError, match=r"scores has 8 non-finite"):  # one per row, bf16
        pattern.mask(np.array([[np.nan] + [1.0] * 7] * 8, jnp.bfloat16))


@pytest.mark.parametrize("name", LIBRARY_PATTERNS)
def test_traced_non_finite_scores_keep_the_structure(name):
    """Under jit: NaN ranks lowest (pruned first, never kept by N:M), +inf
    highest; the mask conforms and a threshold pattern still hits its target."""
    pattern = patterns.parse(EXAMPLES[name])
    scores = _weights()
    scores[3, 4] = scores[0:4, 0] = np.nan
    scores[7, 1] = np.inf
    mask = np.asarray(jax.jit(lambda s: pattern.mask(s))(scores))
    assert bool(pattern.conforms(jnp.asarray(mask)))
    if name == "vw":  # a vector of NaN still keeps its count: its structure is fixed
        assert not mask[3, 4] and mask[0:4, 0].sum() == 2
    elif name != "dense":
        assert not mask[3, 4] and not mask[0:4, 0].any()  # NaN is the lowest score
    if name not in ("dense", "tvw"):  # TVW's 2:4 may drop the inf's row-mate instead
        assert mask[7, 1]  # +inf the highest
    if name in ("ew", "tw", "tw1", "tew", "bw", "channel"):
        assert abs((1 - mask.mean()) - pattern.sparsity) <= 16 / mask.size


@pytest.mark.parametrize("name", THRESHOLD)
def test_a_nan_layer_never_empties_a_healthy_one(name):
    # With one global threshold, the NaN layer goes first (it used to be kept
    # whole by TW, or to push the healthy layer empty).
    pattern = patterns.parse(EXAMPLES[name])
    nan_layer, healthy = np.full((32, 16), np.nan, np.float32), _weights()
    masks = jax.jit(lambda a, b: patterns.global_masks(pattern, [a, b]))(nan_layer, healthy)
    assert all(bool(pattern.conforms(m)) for m in masks)
    kept_nan, kept_healthy = (float(np.mean(m)) for m in masks)
    assert kept_healthy >= 1 - pattern.sparsity - 1e-6
    assert kept_nan <= kept_healthy


def test_vw_with_a_nan_keeps_its_count_per_vector():
    scores = _weights((16, 4))
    scores[2, 1] = np.nan
    mask = np.asarray(jax.jit(lambda s: patterns.parse("vw(sparsity=0.75,v=8)").mask(s))(scores))
    np.testing.assert_array_equal(mask.reshape(2, 8, 4).sum(1), 2)
    assert not mask[2, 1]


# --- 3. integer magnitudes ----------------------------------------------------


def test_int8_minus_128_is_the_largest_magnitude():
    x = np.array([-128, 5, 1, 0], np.int8)
    np.testing.assert_array_equal(tasd.decompose(x, "1:4")[0], [-128, 0, 0, 0])
    np.testing.assert_array_equal(tasd.decompose_reference(x, "1:4")[0], [-128, 0, 0, 0])


@pytest.mark.parametrize("spec", ["1:4", "1:16", "1:4+1:4", "1:32+1:32"])
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32])
def test_most_negative_integer_ranks_largest(spec, dtype):
    info = np.iinfo(dtype)
    x = np.zeros((32, 1), dtype)
    x[:4, 0] = [info.min, 5, info.max, 0]
    terms = tasd.decompose(x, spec)
    assert np.asarray(terms[0])[0, 0] == info.min
    for got, want in zip(terms, tasd.decompose_reference(x, spec)):
        np.testing.assert_array_equal(got, want)
    assert tasd.decompose_reference(x, spec)[0][0, 0] == info.min


def test_reconstruct_keeps_subnormal_terms():
    # XLA on CPU flushes a subnormal sum to zero: 4.9e-43 + 0 would be 0.
    x = np.array([4.9e-43, 0, 1e-40, 2.0, -3e-41, 0, 0, -1.0], np.float32)
    terms = [np.where(np.arange(8) % 3 == i, x, np.float32(0)) for i in range(3)]
    for fn in (tasd.reconstruct, jax.jit(tasd.reconstruct)):
        total = np.asarray(fn([jnp.asarray(t) for t in terms]))
        np.testing.assert_array_equal(total.view(np.int32), x.view(np.int32))
    y = np.array([1.5, -2.0, 0.0], np.float32)
    np.testing.assert_array_equal(tasd.reconstruct([y, y]), 2 * y)  # overlaps still add


def test_integers_beyond_the_jax_dtype_are_rejected():
    with pytest.raises(ValueError, match=r"beyond int32"):
        tasd.decompose(np.array([2**40, 1, 2, 3]), "1:4", axis=0)
    with pytest.raises(ValueError, match=r"beyond float32"):
        tasd.decompose(np.array([1e300, 1, 2, 3]), "1:4", axis=0)


# --- 4. vector-wise rounding --------------------------------------------------


def test_vw_that_keeps_nothing_is_rejected_and_rounding_is_documented():
    with pytest.raises(ValueError, match=r"keeps round\(\(1 - 0.97\) \* 16\) = 0"):
        patterns.parse("vw(sparsity=0.97,v=16)")
    with pytest.raises(ValueError, match="= 0 elements per vector"):
        patterns.parse("vw(sparsity=0.5,v=16)").mask(_weights(), sparsity=0.99)
    # v=3 at 0.75 keeps round(0.75) = 1 of 3: 66.7% as documented.
    mask = np.asarray(patterns.parse("vw(sparsity=0.75,v=3)").mask(_weights((30, 4))))
    assert mask.mean() == pytest.approx(1 / 3)
    assert "round((1 - sparsity) * v)" in patterns.VectorWise.__doc__


# --- 5. TVW masks conform to TVW ---------------------------------------------


@pytest.mark.parametrize("g", [3, 16])
@pytest.mark.parametrize("shape", [(37, 24), (3, 3, 5, 16)])
@pytest.mark.parametrize("kind", ["equal", "zero", "random"])
def test_tvw_masks_conform(g, shape, kind):
    scores = {"equal": np.ones(shape, np.float32), "zero": np.zeros(shape, np.float32),
              "random": _weights(shape, g)}[kind]
    pattern = patterns.TileVectorWise(sparsity=0.5 if kind == "random" else 0.75, g=g)
    assert bool(pattern.conforms(pattern.mask(scores)))
    if kind == "random":  # one threshold across two layers
        masks = patterns.global_masks(pattern, [scores, _weights((16, 8), 1)])
        assert all(bool(pattern.conforms(m)) for m in masks)


# --- 6. mismatched arguments --------------------------------------------------


def test_malformed_rules_series_name_and_term_generators_get_clear_errors():
    w = {"k": jnp.ones((4, 4))}
    for rules in ([("k", "2:4", -2, 5)], ["k"], "k"):
        with pytest.raises(ValueError, match=r"must be .*\(path_regex, spec\)"):
            tasd.decompose_tree(w, rules)
        with pytest.raises(ValueError, match=r"must be .*\(path_regex, spec\)"):
            pruning.prune_tree(w, rules)
    with pytest.raises(ValueError, match=r"pattern 'series' needs parameter\(s\) \['terms'\].*'N:M\+N:M'"):
        patterns.parse("series")
    with pytest.raises(ValueError, match="terms must be a sequence of arrays.*got generator"):
        tasd.reconstruct(t for t in [jnp.ones(4)])


def test_series_metrics_and_reconstruct_reject_mismatched_terms():
    x = _weights((8, 4))
    terms = tasd.decompose(x, "2:4+1:8")
    with pytest.raises(ValueError, match=r"terms\[0\] has shape \(8, 1\), x has \(8, 4\)"):
        tasd.series_metrics(x, (x[:, :1],))
    with pytest.raises(ValueError, match=r"2 terms given for series '2:4'"):
        tasd.series_metrics(x, terms, "2:4")
    with pytest.raises(ValueError, match="not a decomposition of x"):
        tasd.series_metrics(x, (x, x))  # overlapping supports
    two_four = tasd.decompose(x, "2:4")
    with pytest.raises(ValueError, match=r"terms\[0\] keeps more than 1:8 allows along axis 0"):
        tasd.series_metrics(x, two_four, "1:8")  # would report 1:8's compute cost
    with pytest.raises(ValueError, match="keeps more than 2:4 allows along axis 1"):
        tasd.series_metrics(x, two_four, "2:4", axis=1)  # grouped along the other axis
    with pytest.raises(ValueError, match="share one shape"):
        tasd.reconstruct((x, x[:1]))
    metrics = tasd.series_metrics(x, terms, "2:4+1:8")
    assert 0 <= metrics.kept_l1 <= 1 and metrics.compute_cost == 0.625


def test_two_paths_flattening_to_one_key_raise_naming_both():
    tree = {"a/b": np.ones((8, 4)), "a": {"b": np.zeros((8, 4))}}
    with pytest.raises(ValueError, match=r"'a/b'.*\['a'\]\['b'\].*\['a/b'\]"):
        tree_paths.flatten(tree)
    with pytest.raises(ValueError, match="two leaves flatten"):
        tasd.decompose_tree(tree, [("b", "2:4")])


@pytest.mark.parametrize("leaf, kind", [(0.5, "float"), (3, "int"), ("w", "str")])
def test_a_leaf_that_is_not_an_array_is_named_with_its_type(leaf, kind):
    tree = {"params": {"dense": {"kernel": np.ones((8, 4)), "scale": leaf}}}
    message = re.escape(
        f"leaf 'params/dense/scale' is a {kind} ({leaf!r}), not an array: "
        "parameter trees hold arrays only (wrap it as np.asarray(value))"
    )
    with pytest.raises(TypeError, match=message):
        tree_paths.flatten(tree)
    with pytest.raises(TypeError, match=message):  # before any pruning work
        pruning.prune_tree(tree, [("kernel", "2:4")])
    # numpy scalars have a shape and a dtype: they are arrays.
    assert tree_paths.flatten({"s": np.float32(0.5)})["s"] == np.float32(0.5)


@pytest.mark.parametrize("field, value", [("m", -4), ("k", 2.5), ("n", -1), ("batch", 0.5)])
def test_cost_model_rejects_negative_or_fractional_sizes(field, value):
    gemm = GEMM("layer", 16, 32, 8)._replace(**{field: value})
    with pytest.raises(ValueError, match=rf"'layer'\) has {field}={value}"):
        edp.estimate([gemm], "stc", weight_series="2:4")


def test_cost_model_rejects_a_mapping_over_duplicate_names_and_plain_tuples():
    gemms = [GEMM("fc", 16, 32, 8), GEMM("fc", 8, 8, 8)]
    with pytest.raises(ValueError, match=r"share names \['fc'\]"):
        edp.estimate(gemms, "stc", weight_series={"fc": "2:4"})
    assert edp.estimate(gemms, "stc", weight_series="2:4").total_edp > 0  # no mapping: fine
    with pytest.raises(TypeError, match=r"gemms\[0\] is a tuple, not a GEMM"):
        edp.estimate([("fc", 16, 32, 8)], "stc")
    empty = edp.estimate([GEMM("none", 0, 32, 8)], "stc")  # an empty GEMM: no compute
    assert empty.compute_cycles[0] == 0 and np.isfinite(empty.total_edp)


@pytest.mark.parametrize("name", THRESHOLD)
@pytest.mark.parametrize("override", [-0.1, 1.0, 1.5, float("nan")])
def test_sparsity_override_is_range_checked(name, override):
    with pytest.raises(ValueError, match=r"sparsity"):
        patterns.parse(EXAMPLES[name]).mask(_weights(), sparsity=override)


def test_tew_override_checks_sparsity_plus_delta():
    with pytest.raises(ValueError, match=r"sparsity \+ delta"):
        patterns.parse("tew(sparsity=0.5,g=4,delta=0.1)").mask(_weights(), sparsity=0.95)


def test_schedule_ending_at_zero_with_a_sparse_pattern_raises():
    with pytest.raises(ValueError, match=r"ends at sparsity 0.0.*'tw\(sparsity=0.75,g=128\)'"):
        pruning.Pruner(rules=[("kernel", "tw(sparsity=0.75)")], schedule=pruning.one_shot(0.0))
    # N:M has no sparsity to scale: a schedule at 0 is its normal one.
    pruning.Pruner(rules=[("kernel", "2:4")], schedule=pruning.one_shot(0.0))
    with pytest.raises(ValueError, match="must be integers"):
        pruning.one_shot(0.5, step=2.5)


def test_prune_tree_names_a_parameter_with_nan():
    params = {"dense": {"kernel": _weights()}}
    params["dense"]["kernel"][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"parameter 'dense/kernel' has 1 non-finite"):
        pruning.prune_tree(params, [("kernel", "ew(sparsity=0.5)")])


# --- 7. empty arrays and wrong types ------------------------------------------


@pytest.mark.parametrize("name", LIBRARY_PATTERNS)
def test_empty_kernels_get_empty_masks(name):
    pattern = patterns.parse(EXAMPLES[name])
    for shape in [(0, 8), (8, 0), (0, 0)]:
        mask = pattern.mask(np.ones(shape, np.float32))
        assert mask.shape == shape and mask.dtype == bool
    assert patterns.global_masks(pattern, []) == []
    full = _weights()
    both = patterns.global_masks(pattern, [np.ones((0, 8), np.float32), full])
    assert both[0].shape == (0, 8)
    np.testing.assert_array_equal(both[1], patterns.global_masks(pattern, [full])[0])


def test_empty_decompositions_and_products():
    for shape in [(0, 8), (8, 0), (0,)]:
        terms = tasd.decompose(np.ones(shape, np.float32), "2:4+1:8")
        assert [t.shape for t in terms] == [shape, shape]
    report = tasd.decompose_tree({"w": np.ones((8, 0), np.float32)}, [("w", "2:4")]).report
    assert report[0].metrics.density == 0.0
    packed = kernels.pack_tw(np.ones((8, 8), np.float32), 4)
    assert kernels.tw_matmul(np.ones((0, 8), np.float32), packed).shape == (0, 8)  # empty batch
    no_k = kernels.tw_matmul(np.ones((3, 0), np.float32), kernels.pack_tw(np.ones((0, 8)), 4))
    np.testing.assert_array_equal(no_k, np.zeros((3, 8)))
    out = kernels.series_matmul(np.ones((0, 8), np.float32), [np.zeros((8, 4), np.float32)],
                                series="2:4")
    assert out.shape == (0, 4)


def test_wrong_argument_types_raise_naming_the_argument():
    w = _weights((8, 8))
    with pytest.raises(TypeError, match=r"axis=1.5 must be an integer"):
        tasd.decompose(w, "2:4", axis=1.5)
    with pytest.raises(TypeError, match=r"axis=1.5 must be an integer"):
        patterns.parse("tw(sparsity=0.5,g=4)").mask(w, axis=1.5)
    with pytest.raises(TypeError, match=r"packed must be a PackedTW"):
        kernels.tw_matmul(np.ones((2, 8), np.float32), w)
    with pytest.raises(TypeError, match=r"x has dtype <U1"):
        tasd.decompose(np.array([["a", "b"], ["c", "d"]]), "2:4")
    with pytest.raises(TypeError, match=r"scores has dtype <U1"):
        patterns.parse("2:4").mask(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(TypeError, match=r"x has dtype complex"):
        tasd.decompose(np.ones((4, 4), complex), "2:4")
    with pytest.raises(TypeError, match=r"scores must be a list of arrays"):
        patterns.parse("ew(sparsity=0.5)").masks(w)
    with pytest.raises(TypeError, match=r"a has dtype <U1"):
        kernels.tw_matmul(np.array([["a"] * 8]), kernels.pack_tw(w, 4))


# --- 8. no hang: large M, many terms, capped specs ---------------------------


@pytest.mark.timeout(60)  # 89 s + 41 s to compile before top_k ranked large groups
def test_large_m_and_many_terms_compile_in_seconds():
    x = np.random.default_rng(0).standard_normal((256, 64)).astype(np.float32)
    start = time.perf_counter()
    for spec in ["1:64+1:64", "1:32+1:32+1:32", "1:8+1:8+1:8+1:8+1:8+1:8+1:8+1:8"]:
        jax.block_until_ready(tasd.decompose(x, spec))
    assert time.perf_counter() - start < 30


@pytest.mark.parametrize("spec", ["1:16", "3:16+1:32", "1:64+2:64", "5:256", "1:9+2:12+1:40"])
def test_large_m_matches_the_reference_with_ties(spec):
    rng = np.random.default_rng(1)
    x = rng.integers(-3, 4, (300, 7)).astype(np.float32)  # many ties, many zeros
    for axis in (-2, -1):
        want = tasd.decompose_reference(x, spec, axis)
        for got, ref in zip(tasd.decompose(x, spec, axis), want):
            np.testing.assert_array_equal(got, ref)
    series = patterns.as_series(spec)
    masks = series.term_masks(np.abs(x))
    assert bool(series.conforms(jnp.any(jnp.stack(masks), axis=0)))


def test_large_m_ranks_equal_compare_ranks():
    scores = np.round(_weights((96, 5)), 1)  # ties
    for m in (12, 20):
        fast = patterns.group_ranks(scores, m, axis=0)
        kept_limit = ranking.COMPARE_MAX_M
        try:
            ranking.COMPARE_MAX_M = 10**6  # the unrolled compares, as the reference
            slow = jax.jit(ranking._group_ranks, static_argnums=(1, 2))(jnp.asarray(scores), m, 0)
        finally:
            ranking.COMPARE_MAX_M = kept_limit
        np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize(
    "spec, rule",
    [("1:257", "M=257 must be <= 256"), ("+".join(["1:4"] * 9), "9 terms is more than 8"),
     ("+".join(["1:4"] * 2001), "2001 terms"), ("1:99999999999999999999", "must be <= 256"),
     ("vw(v=300)", "v=300 must be <= 256"), ("tw(g=99999999999)", "must be <= 2147483647")],
)
def test_specs_beyond_the_caps_are_rejected_quickly(spec, rule):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=re.escape(rule)):
        patterns.parse(spec)
    assert time.perf_counter() - start < 1


def test_caps_are_stated_with_their_reason():
    assert "MAX_M (256)" in patterns.NM.__doc__ and "MAX_TERMS (8)" in patterns.Series.__doc__
    with pytest.raises(ValueError, match="no hardware runs more"):
        patterns.parse("+".join(["1:2"] * 9))
    with pytest.raises(ValueError, match="no N:M hardware groups more"):
        patterns.parse("1:300")


# --- 9. fuzz -----------------------------------------------------------------

def _join_terms(terms):
    return "+".join(f"{n}:{m}" for n, m in terms)


# Random text, N:M combos with huge numbers, many terms, and parameters with
# out-of-range, non-finite, huge or malformed values.
_SPEC_TEXT = st.one_of(
    st.text(max_size=30),
    st.lists(st.tuples(st.integers(0, 10**12), st.integers(0, 10**12)), min_size=1, max_size=12)
    .map(_join_terms),
    st.lists(st.tuples(st.integers(1, 8), st.sampled_from([4, 8, 16, 64, 300])), min_size=1,
             max_size=10).map(_join_terms),
    st.builds(
        lambda name, key, value: f"{name}({key}={value})",
        st.sampled_from(sorted(LIBRARY_PATTERNS)),
        st.sampled_from(["sparsity", "g", "v", "block", "delta", "x"]),
        st.sampled_from(["0.5", "-1", "1e400", "nan", "inf", "0", "99999999999", "3x4", "w", ""]),
    ),
)


@given(_SPEC_TEXT)
def test_fuzz_parse_raises_value_error_or_returns_a_pattern(spec):
    start = time.perf_counter()
    try:
        pattern = patterns.parse(spec)
    except ValueError as err:
        assert str(err)
        return
    finally:
        assert time.perf_counter() - start < 1
    assert isinstance(pattern, patterns.Pattern)
    assert patterns.parse(pattern.spec()) == pattern
    if isinstance(pattern, (patterns.NM, patterns.Series)):
        terms = patterns.as_series(pattern).terms
        assert len(terms) <= nm.MAX_TERMS and all(t.m <= nm.MAX_M for t in terms)


_SPECIAL = st.sampled_from([0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e-40, 3e38])


@st.composite
def _score_arrays(draw):
    """Small arrays of awkward contents: NaN / inf, empty axes, extreme
    integers, bfloat16, many ties."""
    shape = draw(st.sampled_from([(8, 4), (5, 3), (0, 4), (4, 0), (3, 2, 4)]))
    kind = draw(st.sampled_from(["float32", "bfloat16", "int8", "int32", "special"]))
    if kind in ("int8", "int32"):
        info = np.iinfo(kind)
        elements = st.sampled_from([int(info.min), int(info.max), 0, -1, 1, 7])
        return draw(hnp.arrays(np.dtype(kind), shape, elements=elements))
    values = draw(hnp.arrays(np.float32, shape, elements=_SPECIAL | st.floats(-4, 4, width=32)))
    return values.astype(jnp.bfloat16) if kind == "bfloat16" else values


def _check_terms(x, series, terms):
    x64 = np.asarray(x, np.float64)
    total = np.zeros_like(x64)
    for term, t in zip(terms, series.terms):
        assert term.shape == x.shape and term.dtype == x.dtype
        assert bool(t.conforms(jnp.asarray(np.asarray(term) != 0)))
        total += np.asarray(term, np.float64)
    kept = total != 0
    np.testing.assert_array_equal(total[kept], x64[kept])  # each term keeps x's own values


@given(_score_arrays(), st.sampled_from(["2:4", "1:4+1:8", "1:16", "2:4+1:64"]))
def test_fuzz_decompose_and_metrics(x, spec):
    try:
        terms = tasd.decompose(x, spec)
    except ValueError as err:
        assert "non-finite" in str(err) and not np.isfinite(np.asarray(x, np.float32)).all()
        return
    series = patterns.as_series(spec)
    _check_terms(x, series, terms)
    m = tasd.series_metrics(x, terms, spec)
    for value in (m.kept_nonzero, m.kept_l1, m.kept_l2, m.rel_error):
        assert 0.0 <= value <= 1.0 + 1e-9
    assert 0.0 <= m.density <= 1.0 and m.compute_cost == series.compute_cost


@given(_score_arrays(), st.sampled_from(LIBRARY_PATTERNS), st.data())
def test_fuzz_masks(scores, name, data):
    pattern = data.draw(PATTERN_STRATEGIES[name], label="pattern")
    gemm_only = name in ("tw", "tw1", "tew", "tvw", "bw", "channel")
    if gemm_only and scores.ndim < 2:
        return
    try:
        mask = pattern.mask(scores)
    except ValueError as err:
        assert "non-finite" in str(err) and not np.isfinite(np.asarray(scores, np.float32)).all()
        with pytest.raises(ValueError, match="non-finite"):
            patterns.global_masks(pattern, [scores])
        return
    assert mask.shape == scores.shape and mask.dtype == bool
    assert bool(pattern.conforms(mask))
    np.testing.assert_array_equal(patterns.global_masks(pattern, [scores])[0], mask)
