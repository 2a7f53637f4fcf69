"""TASD-A building blocks: capturing GEMM inputs, their statistics, decomposing them in the forward."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tasd_jax import models, tasd, tasder


class _TwoLayer(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        del train
        h = nn.relu(nn.Dense(16, name="first")(x))
        return nn.Dense(3, name="second")(h)


def _two_layer():
    model = _TwoLayer()
    x = jax.random.normal(jax.random.key(0), (5, 8))
    return model, model.init(jax.random.key(1), x), x


def test_capture_inputs_records_every_gemm_layer_input(jit):
    model, variables, x = _two_layer()
    out, inputs = jit(lambda v, x: tasder.capture_inputs(model.apply, v, x))(variables, x)
    np.testing.assert_allclose(out, model.apply(variables, x), rtol=1e-6)
    assert sorted(inputs) == ["first", "second"]
    np.testing.assert_array_equal(inputs["first"], x)
    hidden = nn.relu(x @ variables["params"]["first"]["kernel"] + variables["params"]["first"]["bias"])
    np.testing.assert_allclose(inputs["second"], hidden, rtol=1e-5, atol=1e-6)


def test_capture_inputs_finds_convolutions_by_path():
    model, variables = models.init_model("resnet20", (2, 16, 16, 1), seed=0)
    _, inputs = tasder.capture_inputs(model.apply, variables, jnp.ones((2, 16, 16, 1)), train=False)
    assert "stage1_block2/conv_1" in inputs and "head" in inputs
    assert inputs["stage1_block2/conv_1"].shape == (2, 8, 8, 32)  # NHWC: K along the channels


def test_activation_stats_by_hand():
    x = np.array([[0.0, 0.0, 1.0, 3.0], [0.0, 2.0, 2.0, 4.0]])
    s = tasder.activation_stats(x, keep_fraction=0.75)
    assert s.mean_sparsity == pytest.approx((0.5 + 0.25) / 2)
    assert s.p99_sparsity == pytest.approx(0.25 + 0.99 * 0.25)
    # Example 1 keeps 3 of 4 magnitude with its largest element (3/4): 1 of 4 needed.
    # Example 2: 4 of 8 is reached only with 4+2 (6/8 >= 0.75): 2 of 4 needed.
    assert s.pseudo_sparsity == pytest.approx(1 - (1 / 4 + 2 / 4) / 2)
    assert s.examples == 2
    with pytest.raises(ValueError, match=re.escape("keep_fraction=0.0 must lie in (0, 1]")):
        tasder.activation_stats(x, keep_fraction=0.0)
    with pytest.raises(ValueError, match=re.escape(
            "activation_stats needs [examples, ...] with examples, got (0, 4)")):
        tasder.activation_stats(np.zeros((0, 4)))


def test_keep_top_per_group_equals_the_same_m_series(jit):
    x = jax.random.normal(jax.random.key(2), (6, 40))
    for spec in ("1:8", "2:8+1:8", "4:8+2:8", "2:4+1:4", "dense"):
        m, k = tasder.same_m_keep_count(spec)
        got = jit(tasder.keep_top_per_group, static_argnums=1)(x, m, jnp.asarray(k))
        want = tasd.reconstruct(tasd.decompose(x, spec, axis=-1))
        np.testing.assert_array_equal(got, want)
    assert tasder.same_m_keep_count("2:4+1:8") is None


def test_with_activation_series_decomposes_only_the_chosen_layer(jit):
    model, variables, x = _two_layer()
    apply = tasder.with_activation_series(model.apply, series={"second": "1:4"})
    got = jit(apply)(variables, x)
    _, inputs = tasder.capture_inputs(model.apply, variables, x)
    hidden = tasd.reconstruct(tasd.decompose(inputs["second"], "1:4", axis=-1))
    p = variables["params"]["second"]
    np.testing.assert_allclose(got, hidden @ p["kernel"] + p["bias"], rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(got - model.apply(variables, x)))) > 0

    # A traced keep count: one compiled function for every K of the same M.
    traces = []

    @jax.jit
    def counted(v, x, k):
        traces.append(None)  # runs only when jax traces (compiles) the function
        return tasder.with_activation_series(model.apply, keep={"second": (4, k)})(v, x)

    np.testing.assert_allclose(counted(variables, x, jnp.asarray(1)), got, rtol=1e-6)
    np.testing.assert_allclose(counted(variables, x, jnp.asarray(4)), model.apply(variables, x),
                               rtol=1e-6)
    assert len(traces) == 1
    with pytest.raises(ValueError, match="both a series and a keep count"):
        tasder.with_activation_series(model.apply, series={"second": "1:4"},
                                      keep={"second": (4, 1)})


@pytest.mark.parametrize("spec", ["2:8+1:8", "2:4+1:8"])
def test_with_activation_series_uses_the_sum_of_the_terms(spec):
    model, variables, x = _two_layer()
    got = jax.jit(tasder.with_activation_series(model.apply, series={"second": spec}))(variables, x)
    _, inputs = tasder.capture_inputs(model.apply, variables, x)
    hidden = tasd.reconstruct(tasd.decompose(inputs["second"], spec, axis=-1))
    assert 0 < int(jnp.sum(hidden != inputs["second"]))  # the series dropped something
    p = variables["params"]["second"]
    np.testing.assert_allclose(got, hidden @ p["kernel"] + p["bias"], rtol=1e-5, atol=1e-6)
