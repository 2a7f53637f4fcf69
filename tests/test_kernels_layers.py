"""Tests of the TW-sparse Dense layer (tasd_jax.kernels.layers)."""

import re

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
    model = tiny_bert()
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
    with pytest.raises(ValueError, match="include='nothing' matches no 2-D leaf of params"):
        kernels.pack_tw_params(params, 2, include="nothing")
    with pytest.raises(
        ValueError, match=re.escape("include='(' is not a valid regex: missing )")
    ):
        kernels.pack_tw_params(params, 2, include="(")
    layer = kernels.TWDense(5)
    variables = kernels.pack_tw_params(params, 2)
    with pytest.raises(ValueError, match="packed kernel has 4 outputs, layer has features=5"):
        layer.apply(
            {"params": {"bias": jnp.zeros(5)}, "tw": variables["tw"]["dense"]}, jnp.ones((1, 4))
        )


def tiny_bert(dense=kernels.TWDense):
    return get_model(
        "bert",
        dense=dense,
        hidden=64,
        num_layers=2,
        num_heads=4,
        mlp_dim=128,
        vocab_size=50,
        max_len=16,
        num_classes=3,
    )


def pruned_params_with_biases(model, ids, sparsity=0.75):
    """TW-pruned params whose biases are random (init makes them zero, which
    would hide a wrong bias fold)."""
    params, _ = pruning.prune_tree(
        model.init(jax.random.key(0), ids)["params"],
        [(r"kernel$", f"tw(sparsity={sparsity},g=32)")],
    )
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    return jax.tree_util.tree_unflatten(
        treedef,
        [
            jax.random.normal(jax.random.key(i), x.shape) if path[-1].key == "bias" else x
            for i, (path, x) in enumerate(leaves)
        ],
    )


def test_bert_ffn_fold_matches_masked_dense():
    model = tiny_bert()
    ids = jax.random.randint(jax.random.key(2), (2, 16), 0, 50)
    params = pruned_params_with_biases(model, ids)
    variables = kernels.pack_tw_params(params, 32, fold=kernels.BERT_FFN_FOLD)
    ffn = variables["tw"]["layer_0"]
    first = ffn["intermediate"]["kernel"]
    cols = np.asarray(kernels.compact_columns(first))
    # Some FFN columns are pruned, so the fold has constants to move.
    assert cols[cols < 128].size < 128
    assert first.compact_width == cols.size
    assert ffn["intermediate"]["compact_bias"].shape == (first.compact_width,)
    # The consumer takes the compact activations: its K is the compact width.
    assert ffn["output"]["kernel"].shape == (first.compact_width, 64)
    # Both biases moved to "tw" with the kernels: nothing of the FFN is left in params.
    assert not {"intermediate", "output"} & set(variables["params"]["layer_0"])
    expected = model.apply({"params": params}, ids)
    got = jax.jit(model.apply)(variables, ids)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-4)
    # The folded constants matter: the consumer's original bias gives other logits.
    variables["tw"]["layer_0"]["output"]["bias"] = params["layer_0"]["output"]["bias"]
    assert not np.allclose(np.asarray(model.apply(variables, ids)), np.asarray(expected), atol=1e-3)


def test_fold_producer_returns_compact_product():
    x = jax.random.normal(jax.random.key(0), (5, 16))
    w1 = np.array(jax.random.normal(jax.random.key(1), (16, 24)))
    w1[:, [1, 4, 9]] = 0  # pruned columns
    params = {
        "a": {"kernel": w1, "bias": np.arange(24, dtype=np.float32) / 10},
        "b": {
            "kernel": np.asarray(jax.random.normal(jax.random.key(2), (24, 8))),
            "bias": np.ones(8, np.float32),
        },
    }
    variables = kernels.pack_tw_params(params, 8, fold=(("a", "b", jnp.tanh),))
    packed = variables["tw"]["a"]["kernel"]
    y = kernels.TWDense(24).apply({"params": {}, "tw": variables["tw"]["a"]}, x)
    cols = np.asarray(kernels.compact_columns(packed))
    assert y.shape == (5, packed.compact_width)
    full = np.asarray(x) @ w1 + params["a"]["bias"]
    real = cols < 24
    np.testing.assert_allclose(np.asarray(y)[:, real], full[:, cols[real]], rtol=1e-5, atol=1e-5)
    z = kernels.TWDense(8).apply({"params": {}, "tw": variables["tw"]["b"]}, jnp.tanh(y))
    want = np.tanh(full) @ params["b"]["kernel"] + 1
    np.testing.assert_allclose(np.asarray(z), want, rtol=1e-4, atol=1e-4)


def test_fold_bad_pairs():
    params = {
        "a": {
            "kernel": np.eye(4, dtype=np.float32)[:, [0, 1, 2]] * [1, 0, 1],
            "bias": np.ones(3, np.float32),
        },
        "b": {"kernel": np.ones((3, 2), np.float32)},
    }
    with pytest.raises(ValueError, match=re.escape(
        "fold: 'a''s pruned columns feed 'b' a constant, but the consumer has no bias to fold"
    )):
        kernels.pack_tw_params(params, 2, fold=(("a", "b", jnp.tanh),))
    with pytest.raises(
        ValueError, match="fold: 'a' is packed but its consumer 'b' has no packed kernel"
    ):
        kernels.pack_tw_params(params, 2, include="a/kernel", fold=(("a", "b", jnp.tanh),))
    params["b"]["kernel"] = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match="fold: 'a' has 3 outputs but 'b' takes 4"):
        kernels.pack_tw_params(params, 2, fold=(("a", "b", jnp.tanh),))
