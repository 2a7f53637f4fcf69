"""Tests of the TW-sparse Dense layer (tasd_jax.kernels.layers)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tasd_jax import kernels, pruning
from tasd_jax.models import get_model


def test_twdense_unpacked_is_nn_dense():
    x = jax.random.normal(jax.random.key(0), (3, 5, 12))
    layer, dense = kernels.TWDense(7), nn.Dense(7)
    params = dense.init(jax.random.key(1), x)
    assert jax.tree_util.tree_structure(
        layer.init(jax.random.key(1), x)
    ) == jax.tree_util.tree_structure(params)
    np.testing.assert_allclose(layer.apply(params, x), dense.apply(params, x), rtol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_bert_with_packed_tw_kernels_matches_masked_dense(jit):
    model = get_model(
        "bert",
        dense=kernels.TWDense,
        hidden=64,
        num_layers=2,
        num_heads=4,
        mlp_dim=128,
        vocab_size=50,
        max_len=16,
        num_classes=3,
    )
    ids = jax.random.randint(jax.random.key(2), (2, 16), 0, 50)
    params, _ = pruning.prune_tree(
        model.init(jax.random.key(0), ids)["params"], [(r"kernel$", "tw(sparsity=0.75,g=32)")]
    )
    variables = kernels.pack_tw_params(params, 32)
    assert "kernel" not in variables["params"]["layer_0"]["intermediate"]
    assert isinstance(variables["tw"]["layer_0"]["intermediate"]["kernel"], kernels.PackedTW)
    apply = jax.jit(model.apply) if jit else model.apply
    expected = model.apply({"params": params}, ids)
    got = apply(variables, ids)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-5)
    # The packed path really runs: corrupting a packed weight changes the output.
    packed = variables["tw"]["layer_0"]["intermediate"]["kernel"]
    bucket = packed.buckets[0]
    broken = packed.__class__(
        (bucket.__class__(bucket.weights + 1.0, bucket.rows, bucket.cols),) + packed.buckets[1:],
        packed.inverse,
        packed.shape,
        packed.g,
    )
    variables["tw"]["layer_0"]["intermediate"]["kernel"] = broken
    assert not np.allclose(np.asarray(apply(variables, ids)), np.asarray(expected), atol=1e-3)


def test_pack_tw_params_bad_include():
    params = {"dense": {"kernel": jnp.ones((4, 4)), "bias": jnp.zeros(4)}}
    with pytest.raises(ValueError, match="matches no 2-D leaf"):
        kernels.pack_tw_params(params, 2, include="nothing")
    with pytest.raises(ValueError, match="not a valid regex"):
        kernels.pack_tw_params(params, 2, include="(")
    layer = kernels.TWDense(5)
    variables = kernels.pack_tw_params(params, 2)
    with pytest.raises(ValueError, match="features=5"):
        layer.apply(
            {"params": {"bias": jnp.zeros(5)}, "tw": variables["tw"]["dense"]}, jnp.ones((1, 4))
        )
