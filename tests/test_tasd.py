"""TASD decomposition: exact examples, properties (hypothesis), pytrees."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tasd_jax import patterns, pruning, tasd


@st.composite
def sparse_arrays(draw, max_rank=3):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=max_rank, min_side=1, max_side=11))
    # No subnormals: XLA on CPU compares them as 0 (`tasd.decompose` documents
    # it), numpy and these properties do not.
    values = draw(hnp.arrays(np.float32, shape, elements=st.sampled_from([0.0, -2.0, -1.0, 0.5, 1.0, 3.0])
                             | st.floats(-4, 4, width=32, allow_subnormal=False)))
    # None: the kernel's contraction axis (the GEMM K of a kernel of rank >= 3).
    axis = draw(st.none() | st.integers(-len(shape), len(shape) - 1))
    return values, axis


series_specs = st.lists(
    st.tuples(st.integers(1, 8), st.integers(1, 8)).filter(lambda t: t[0] <= t[1]), min_size=1, max_size=3
).map(lambda terms: "+".join(f"{n}:{m}" for n, m in terms))


def test_hand_example(jit):
    x = jnp.array([[0.5, -3.0, 2.0, 1.0, 0.0, 4.0, -4.0, 1.0]])
    first, second = jit(lambda v: tasd.decompose(v, "1:4+1:4", axis=-1))(x)
    np.testing.assert_array_equal(first, [[0, -3.0, 0, 0, 0, 4.0, 0, 0]])  # tie 4/-4: lower index
    np.testing.assert_array_equal(second, [[0, 0, 2.0, 0, 0, 0, -4.0, 0]])
    (only,) = jit(lambda v: tasd.decompose(v, "2:8", axis=-1))(x)
    np.testing.assert_array_equal(only, [[0, 0, 0, 0, 0, 4.0, -4.0, 0]])


def test_padding_keeps_shape_and_structure(jit):
    x = jnp.arange(1.0, 8.0).reshape(7, 1)  # axis length 7 along K, M = 4
    (term,) = jit(lambda v: tasd.decompose(v, "2:4"))(x)  # default axis: K
    np.testing.assert_array_equal(term[:, 0], [0, 0, 3, 4, 0, 6, 7])
    assert term.shape == x.shape


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_dtypes(jit, dtype):
    x = jax.random.normal(jax.random.key(0), (16, 24)).astype(dtype)
    terms = jit(lambda v: tasd.decompose(v, "2:4+1:8", -2))(x)
    assert all(t.dtype == dtype and t.shape == x.shape for t in terms)
    expected = tasd.decompose_reference(np.asarray(x, np.float32), "2:4+1:8", -2)
    for term, ref in zip(terms, expected):
        np.testing.assert_array_equal(np.asarray(term, np.float32), ref)


@given(sparse_arrays(), series_specs)
def test_matches_numpy_reference(data, spec):
    x, axis = data
    for term, ref in zip(tasd.decompose(x, spec, axis), tasd.decompose_reference(x, spec, axis)):
        np.testing.assert_array_equal(np.asarray(term), ref)


@given(sparse_arrays(), series_specs)
def test_terms_are_structured_disjoint_and_exact_where_kept(data, spec):
    x, axis = data
    series = patterns.as_series(spec)
    terms = [np.asarray(t) for t in tasd.decompose(x, series, axis)]
    for term, nm in zip(terms, series.terms):
        assert bool(nm.conforms(jnp.asarray(term != 0), axis))
    supports = np.stack([t != 0 for t in terms])
    assert (supports.sum(0) <= 1).all()
    approx = sum(terms)
    kept = approx != 0
    np.testing.assert_array_equal(approx[kept], x[kept])
    # Greedy: where a group drops a non-zero, its term kept N elements, none smaller.
    dropped = (x != 0) & ~kept
    for term, nm in zip(terms, series.terms):
        magnitude = _groups(np.abs(term), nm.m, axis)
        drops = _groups(np.where(dropped, np.abs(x), 0), nm.m, axis)
        counts = (magnitude != 0).sum(-1)
        smallest = np.where(magnitude != 0, magnitude, np.inf).min(-1)
        worse = drops.max(-1) > 0
        assert (counts[worse] == nm.n).all() and (smallest[worse] >= drops.max(-1)[worse]).all()


def _groups(x, m, axis):
    """[rows, G, m]: groups of m consecutive elements along `axis` (None: the
    kernel's contraction axis, the GEMM K of a kernel of rank >= 3),
    zero-padded; rows are the other axes."""
    if axis is None:
        x, axis = (x.reshape(-1, x.shape[-1]) if x.ndim >= 3 else x), 0
    rows = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
    rows = np.pad(rows, ((0, 0), (0, -rows.shape[1] % m)))
    return rows.reshape(rows.shape[0], -1, m)


@given(sparse_arrays(), series_specs, st.integers(1, 4), st.sampled_from([4, 8]))
def test_more_terms_never_increase_error(data, spec, n, m):
    x, axis = data
    terms = tasd.decompose(x, f"{spec}+{min(n, m)}:{m}", axis)
    # Greedy: the first terms are the shorter series' decomposition.
    shorter = len(patterns.as_series(spec).terms)
    base_error = tasd.series_metrics(x, terms[:shorter]).rel_error
    assert tasd.series_metrics(x, terms).rel_error <= base_error + 1e-6


@given(sparse_arrays(), st.integers(1, 8))
def test_m_of_m_is_exact(data, m):
    x, axis = data
    (term,) = tasd.decompose(x, f"{m}:{m}", axis)
    np.testing.assert_array_equal(np.asarray(term), x)


@given(sparse_arrays(), st.sampled_from([4, 8, 16]))
def test_one_of_m_twice_equals_two_of_m(data, m):
    x, axis = data
    twice = tasd.reconstruct(tasd.decompose(x, f"1:{m}+1:{m}", axis))
    (once,) = tasd.decompose(x, f"2:{m}", axis)
    np.testing.assert_array_equal(np.asarray(twice), np.asarray(once))


# Series that exercise each way a group is ranked and its owners packed: a
# run of one M ranked once (capped where it asks for more than M), one owner
# word of 8, 16 or 32 bits, two words (ten positions of 4 bits), and top_k.
PATH_SPECS = ["2:4+1:8", "2:8+1:8", "4:8+2:8+1:8", "2:4+2:4+1:4", "1:4+1:3+1:2",
              "1:5" + "+1:2" * 7, "1:8+1:8+1:8", "3:16+1:32"]


def _ties_and_zeros(shape, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, shape).astype(dtype)  # many ties and zeros
    x[::2] *= -0.0 if np.issubdtype(dtype, np.floating) else 1  # -0.0 where 0
    return x


@pytest.mark.parametrize("spec", PATH_SPECS)
def test_owners_fused_and_reference_paths_agree_bitwise(spec):
    x = _ties_and_zeros((30, 22))
    for axis in (-1, -2):
        separate = tasd.decompose(x, spec, axis)  # owners, then terms: two executables
        fused = jax.jit(lambda v: tasd.decompose(v, spec, axis))(x)  # one, in a caller's jit
        for a, b, ref in zip(separate, fused, tasd.decompose_reference(x, spec, axis)):
            np.testing.assert_array_equal(np.asarray(a).view(np.uint32), np.asarray(b).view(np.uint32))
            np.testing.assert_array_equal(a, ref)


def test_owners_hand_example():
    x = jnp.array([[0.5, -3.0, 2.0, 1.0, 0.0, 4.0, -4.0, 1.0]])
    terms = patterns.as_series("1:4+1:4").terms
    # Per group of 4, 2 bits per position: term 1 owns position 1, term 2
    # position 2: (1 << 2) | (2 << 4) = 36, in one uint8 word.
    (word,) = patterns.owners.series_owners(x, terms, 1)
    assert word.dtype == jnp.uint8
    np.testing.assert_array_equal(word, [[36, 36]])


@pytest.mark.parametrize("spec", ["2:8+1:8", "2:4+1:8", "1:4+1:4+1:8", "1:16+1:8"])
@pytest.mark.parametrize("shape, axis", [((9, 48), -1), ((9, 45), -1), ((2, 3, 13, 5), None)])
def test_series_sum_is_the_sum_of_the_terms(jit, spec, shape, axis):
    # 45 and 13 leave a partial last group (padding); axis None of a rank-4
    # array groups along the GEMM K of a kernel view.
    x = _ties_and_zeros(shape, seed=1).reshape(-1, shape[-1])
    x[0, :5] = np.nan  # traced only: NaN is never kept, by either
    x[1, 3] = np.inf
    x = x.reshape(shape)
    for data in (np.nan_to_num(x, nan=0.0, posinf=5.0), x):
        got = jit(lambda v: patterns.series_ops.series_sum(v, patterns.as_series(spec).terms, axis))(data)
        want = jax.jit(lambda v: tasd.reconstruct(tasd.decompose(v, spec, axis=axis)))(data)
        np.testing.assert_array_equal(np.asarray(got).view(np.uint32), np.asarray(want).view(np.uint32))


@pytest.mark.parametrize("spec", PATH_SPECS)
def test_nan_and_inf_rank_as_the_numpy_reference_ranks_them(spec):
    # One NaN in a group ranks below every number and is never kept; inf ranks
    # first. The unrolled compares keep NaN as it is (`_compare_keys`).
    # Traced only: called eagerly, decompose refuses non-finite values.
    x = _ties_and_zeros((12, 40), seed=3)
    x[::3, ::9], x[1::4, 5::11] = np.nan, np.inf
    x[2::4, 2::13] = -np.inf
    for axis in (-1, -2):
        want = tasd.decompose_reference(x, spec, axis)
        got = jax.jit(lambda v: tasd.decompose(v, spec, axis))(x)
        for term, ref in zip(got, want):
            np.testing.assert_array_equal(np.asarray(term), ref)  # -0.0 kept equals 0


def test_top_k_path_ranks_subnormals_and_zeros_as_the_compares_do(monkeypatch):
    # Compares see subnormals as 0 on CPU; top_k must too, so the two paths agree.
    x = np.zeros((4, 16), np.float32)
    x[:, 1::3], x[:, 2::5], x[:, ::4] = 1e-42, -0.0, -2e-41
    x[1:, 7] = 1.0
    spec = patterns.as_series("2:16").terms
    top_k = jax.jit(lambda v: patterns.owners.series_terms(v, spec, 1))(x)
    monkeypatch.setattr(patterns.ranking, "COMPARE_MAX_M", 16)
    monkeypatch.setattr(patterns.series_ops, "MAX_SHARED_COMPARES", 16 * 15)
    compares = jax.jit(lambda v: patterns.owners.series_terms(v, spec, 1))(x)
    np.testing.assert_array_equal(np.asarray(top_k[0]).view(np.uint32),
                                  np.asarray(compares[0]).view(np.uint32))


def _random_sparse(sparsity, seed=0, shape=(512, 512)):
    key_values, key_mask = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(key_values, shape)
    return jnp.where(jax.random.uniform(key_mask, shape) < sparsity, 0.0, x)


@pytest.mark.parametrize(
    "sparsity, spec, kept, cost",
    # Facts from the TASD paper on random matrices (docs/tasd.md); 2:4 at 50%
    # is exact from binomial group occupancy: 1 - E[max(0, X - 2)] / 2, X ~ B(4, 1/2).
    [(0.5, "2:4", 0.8125, 0.5), (0.5, "2:4+1:8", 0.94, 0.625),
     (0.75, "2:8+1:8", 0.93, 0.375), (0.95, "2:8+1:8", 0.999, 0.375)],
)
def test_published_retention_on_random_matrices(sparsity, spec, kept, cost):
    x = _random_sparse(sparsity)
    metrics = tasd.series_metrics(x, tasd.decompose(x, spec, -1), spec, axis=-1)
    assert metrics.kept_nonzero == pytest.approx(kept, abs=0.01)
    assert metrics.compute_cost == cost
    assert metrics.kept_l2 >= metrics.kept_nonzero  # the largest values go first


def test_metrics_hand_example():
    x = jnp.array([3.0, 0.0, -4.0, 0.0])
    terms = (jnp.array([0.0, 0.0, -4.0, 0.0]),)
    m = tasd.series_metrics(x, terms, "1:4")
    assert m.kept_nonzero == 0.5 and m.kept_l1 == pytest.approx(4 / 7)
    assert m.kept_l2 == pytest.approx(16 / 25) and m.rel_error == pytest.approx(3 / 5)
    assert m.compute_cost == 0.25


def test_bad_input():
    with pytest.raises(ValueError, match="not a TASD series"):
        tasd.decompose(jnp.ones((4, 4)), "tw(sparsity=0.5)")
    with pytest.raises(ValueError, match="out of range"):
        tasd.decompose(jnp.ones((4, 4)), "2:4", axis=2)
    with pytest.raises(ValueError, match="'3:2'"):
        tasd.decompose(jnp.ones((4, 4)), "3:2")
    with pytest.raises(ValueError, match="scalar"):
        tasd.decompose(jnp.float32(1.0), "2:4")


def _params():
    keys = jax.random.split(jax.random.key(0), 3)
    return {"params": {
        "Conv_0": {"kernel": jax.random.normal(keys[0], (3, 3, 8, 16)), "bias": jnp.ones(16)},
        "Dense_0": {"kernel": jax.random.normal(keys[1], (36, 10)), "bias": jnp.ones(10)},
        "head": {"kernel": jax.random.normal(keys[2], (10, 4))},
    }}


def test_decompose_tree_rules_axes_and_report():
    params = _params()
    result = tasd.decompose_tree(params, [
        (r"Conv_0/kernel", "2:4+1:8"),
        (r"Dense_0/kernel", "1:4", -1),
        (r"kernel$", "2:8"),
    ])
    by_path = {r.path: r for r in result.report}
    conv = by_path["params/Conv_0/kernel"]
    assert conv.series == "2:4+1:8" and conv.axis == -2 and conv.matched
    assert by_path["params/Dense_0/kernel"].axis == -1
    assert by_path["params/head/kernel"].series == "2:8"  # first match wins
    bias = by_path["params/Conv_0/bias"]
    assert not bias.matched and bias.series == "dense" and bias.metrics.rel_error == 0.0
    expected = tasd.decompose(params["params"]["Conv_0"]["kernel"], "2:4+1:8")  # its GEMM K
    for got, want in zip(result.terms["params/Conv_0/kernel"], expected):
        np.testing.assert_array_equal(got, want)
    approx = tasd.reconstruct_tree(result, params)
    assert jax.tree.structure(approx) == jax.tree.structure(params)
    np.testing.assert_array_equal(approx["params"]["Conv_0"]["bias"], params["params"]["Conv_0"]["bias"])
    # 10 rows along K in 2:8 groups: 2 of the first 8, both of the last 2.
    assert float(jnp.mean(approx["params"]["head"]["kernel"] != 0)) == pytest.approx(0.4)


def test_decompose_tree_rule_matching_nothing_raises():
    with pytest.raises(ValueError, match="match no parameter"):
        tasd.decompose_tree(_params(), [("Dense_9/kernel", "2:4")])
    with pytest.raises(ValueError, match="not a valid regex"):
        tasd.decompose_tree(_params(), [("(", "2:4")])


def test_decompose_tree_refuses_a_bias_as_pruning_does():
    params = {"dense": {"kernel": np.ones((8, 4), np.float32), "bias": np.ones(4, np.float32)}}
    message = r"rule 'dense' selects 'dense/bias' of shape \(4,\); only weights of rank >= 2"
    with pytest.raises(ValueError, match=message + r".* can be decomposed"):
        tasd.decompose_tree(params, [("dense", "2:4")])
    with pytest.raises(ValueError, match=message + r".* can be pruned"):
        pruning.Pruner(rules=[("dense", "2:4")], schedule=pruning.one_shot(0.5)).targets(params)
    out = tasd.decompose_tree(params, [("kernel", "2:4"), ("bias", "dense")])
    assert [r.matched for r in out.report] == [True, True]


def test_an_explicit_axis_groups_along_that_axis_only():
    # [3, 10, 7] with axis=1: groups of 4 along the 10, within each leading
    # slice; read as a kernel's GEMM view [30, 7] they would cross slices.
    x = np.asarray(jax.random.normal(jax.random.key(3), (3, 10, 7)), np.float32)
    terms = tasd.decompose(x, "2:4+1:4", axis=1)
    for i in range(3):
        per_slice = tasd.decompose(x[i], "2:4+1:4", axis=0)
        for got, want in zip(terms, per_slice):
            np.testing.assert_array_equal(np.asarray(got)[i], np.asarray(want))
    mask = patterns.parse("2:4").mask(jnp.abs(x), axis=1)
    np.testing.assert_array_equal(
        mask, np.stack([patterns.parse("2:4").mask(jnp.abs(x[i]), axis=0) for i in range(3)]))
    assert bool(patterns.parse("2:4").conforms(mask, axis=1))


def test_axis_none_reads_a_convolution_kernel_as_its_gemm_weight():
    w = np.asarray(jax.random.normal(jax.random.key(4), (3, 3, 6, 5)), np.float32)
    terms = tasd.decompose(w, "1:4+1:8")  # axis None: K = 3*3*6 of the GEMM view
    flat = tasd.decompose(w.reshape(54, 5), "1:4+1:8", axis=0)
    for got, want in zip(terms, flat):
        np.testing.assert_array_equal(np.asarray(got).reshape(54, 5), np.asarray(want))
    explicit = tasd.decompose(w, "1:4+1:8", axis=2)  # cin alone, per (kh, kw)
    assert not all(np.array_equal(a, b) for a, b in zip(terms, explicit))
