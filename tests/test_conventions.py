"""Conventions shared by patterns, decomposition, packing and the cost model:
one default contraction axis, convolution kernels grouped on their GEMM view
[K = kh*kw*cin, N = cout] (docs/conventions.md)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tasd_jax import patterns, tasd

STEM = (7, 7, 3, 64)  # ResNet-50 stem: K = 147, not a multiple of 4 or 8


def _kernel(shape, seed=0):
    return jax.random.normal(jax.random.key(seed), shape)


def _most_per_group(x, m):
    """Most non-zeros in any m consecutive K-rows of the GEMM view of `x`."""
    matrix = np.asarray(x).reshape(-1, np.shape(x)[-1]) != 0
    padded = np.pad(matrix, ((0, -matrix.shape[0] % m), (0, 0)))
    return padded.reshape(-1, m, matrix.shape[1]).sum(1).max()


def test_default_axis_is_the_contraction_axis():
    w = _kernel((24, 16))
    for got, want in zip(tasd.decompose(w, "2:4+1:8"), tasd.decompose(w, "2:4+1:8", axis=-2)):
        np.testing.assert_array_equal(got, want)
    # The pattern's default axis is the same one.
    (term,) = tasd.decompose(w, "2:4")
    np.testing.assert_array_equal(term != 0, patterns.parse("2:4").mask(jnp.abs(w)))
    # Rank 1 has one axis.
    v = _kernel((10,))
    np.testing.assert_array_equal(tasd.decompose(v, "1:4")[0], tasd.decompose(v, "1:4", -1)[0])
    for got, want in zip(tasd.decompose_reference(np.asarray(w), "2:4+1:8"),
                         tasd.decompose(w, "2:4+1:8")):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("how", ["decompose", "mask"])
def test_stem_kernel_is_two_four_along_gemm_k(how):
    w = _kernel(STEM)
    if how == "decompose":
        (kept,) = tasd.decompose(w, "2:4")
    else:
        kept = patterns.parse("2:4").mask(jnp.abs(w))
    assert kept.shape == STEM
    assert _most_per_group(kept, 4) == 2
    # 36 full groups keep 2 each, the last group of 3 real rows keeps 2: grouping
    # along cin = 3 alone would keep 2 of every 3.
    per_column = (np.asarray(kept).reshape(-1, 64) != 0).sum(0)
    np.testing.assert_array_equal(per_column, 36 * 2 + 2)


def test_stem_series_terms_are_nm_along_gemm_k():
    w = _kernel(STEM)
    series = patterns.as_series("2:4+1:8")
    terms = tasd.decompose(w, series)
    for term, nm in zip(terms, series.terms):
        assert _most_per_group(term, nm.m) == nm.n
    masks = series.term_masks(jnp.abs(w))
    for term, mask in zip(terms, masks):
        np.testing.assert_array_equal(np.asarray(term) != 0, mask)
    assert bool(series.conforms(jnp.any(jnp.stack(masks), axis=0)))
    for term, ref in zip(terms, tasd.decompose_reference(np.asarray(w), series)):
        np.testing.assert_array_equal(term, ref)


def test_conv_kernel_decomposes_as_its_gemm_matrix():
    w = _kernel((3, 3, 8, 16))
    as_gemm = tasd.decompose(w.reshape(72, 16), "2:4+1:8")
    for got, want in zip(tasd.decompose(w, "2:4+1:8"), as_gemm):
        np.testing.assert_array_equal(got, want.reshape(w.shape))
    np.testing.assert_array_equal(
        patterns.parse("vw(sparsity=0.75,v=16)").mask(jnp.abs(w)),
        patterns.NM(4, 16).mask(jnp.abs(w).reshape(72, 16)).reshape(w.shape),
    )


def test_decompose_tree_groups_conv_leaves_like_decompose():
    stem = _kernel(STEM, 1)
    params = {"conv": {"kernel": stem}, "as_matrix": stem.reshape(-1, 64), "bias": jnp.ones(64)}
    result = tasd.decompose_tree(params, [("kernel|as_matrix", "2:4+1:8")])
    expected = tasd.decompose(stem, "2:4+1:8")
    for got, flat, want in zip(result.terms["conv/kernel"], result.terms["as_matrix"], expected):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(flat, want.reshape(-1, 64))
    by_path = {r.path: r for r in result.report}
    assert by_path["conv/kernel"].axis == -2 and not by_path["bias"].matched


def test_explicit_last_axis_groups_activations_as_before():
    x = _kernel((2, 5, 6, 12))  # NHWC activations: groups along channels
    (term,) = tasd.decompose(x, "2:4", axis=-1)
    groups = (np.asarray(term) != 0).reshape(-1, 3, 4).sum(-1)
    np.testing.assert_array_equal(groups, 2)


@pytest.mark.parametrize("shape", [STEM, (3, 3, 64, 64)])
@pytest.mark.parametrize("spec", ["2:4", "2:8+1:8"])
def test_cost_model_slots_equal_packed_layout(shape, spec):
    # The cost model stores and multiplies sum_i Ni * ceil(K / Mi) values per output
    # column; the packed terms must hold exactly that many.
    from tasd_jax import cost, kernels
    from tasd_jax.cost import dataflow

    w = _kernel(shape)
    k, n = math.prod(shape[:-1]), shape[-1]
    series = patterns.as_series(spec)
    terms = tasd.decompose(w, series)
    packed = kernels.pack_series([t.reshape(k, n) for t in terms], series)
    layout = [p.values.shape[0] * p.values.shape[1] for p in packed.terms]
    for p, nm in zip(packed.terms, series.terms):
        assert p.values.shape == (nm.n, -(-k // nm.m), n)
    assert [dataflow.stored_values(k, t.n, t.m) for t in series.terms] == layout
    one_row = cost.estimate([cost.GEMM("g", 1, k, n)], "ttc", weight_series=spec)
    assert one_row.executed_macs[0] == sum(layout) * n
