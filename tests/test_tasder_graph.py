"""TASD-A layers found from the traced computation: after every ReLU (through pooling,
reshapes, padding and residual adds), after GELU / SiLU, never the input-fed stem."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from tasd_jax import models, tasder


def _inputs(name, shape, **kwargs):
    # The graph needs only shapes and dtypes: abstract variables and input, nothing
    # initialised (initialising ResNet-50 alone took most of this file's time).
    model, variables = models.init_model(name, shape, seed=None, **kwargs)
    x = jax.ShapeDtypeStruct(shape, jnp.int32 if name == "bert" else jnp.float32)
    return tasder.layer_inputs(functools.partial(model.apply, train=False), variables, x)


def test_resnet20_every_block_conv_is_eligible_the_stem_is_not():
    found = _inputs("resnet20", (1, 28, 28, 1))
    assert found["conv_stem"].source == "input" and not found["conv_stem"].eligible
    convs = [p for p in found if "/conv_" in p]
    assert len(convs) == 18 and all(found[p].eligible for p in convs)
    # The first conv of a block reads the previous block's ReLU(residual add).
    assert found["stage1_block0/conv_0"].source == "relu"
    # The head reads the global average of a ReLU output.
    assert found["head"].eligible and found["head"].through == ("div", "reduce_sum")


def test_resnet50_bottleneck_all_three_convs_and_the_projection():
    found = _inputs("resnet50", (1, 32, 32, 3))
    block = [p for p in found if p.startswith("stage0_block0/")]
    assert sorted(block) == ["stage0_block0/conv_0", "stage0_block0/conv_1",
                             "stage0_block0/conv_2", "stage0_block0/shortcut_conv"]
    assert all(found[p].eligible for p in block)
    # Through the stem's max pool.
    assert "reduce_window_max" in found["stage0_block0/conv_0"].through
    assert sum(info.eligible for info in found.values()) == 53  # all but the stem


def test_lenet_through_pooling_and_reshape():
    found = _inputs("lenet5", (1, 28, 28, 1))
    assert not found["conv_0"].eligible
    assert found["dense_0"].source == "relu"
    assert set(found["dense_0"].through) == {"reshape", "reduce_window_max"}


@pytest.mark.parametrize("name, shape, kwargs", [
    ("vit", (1, 28, 28, 1), {"patch": 7, "hidden": 32, "num_layers": 2, "num_heads": 2,
                             "mlp_dim": 64}),
    ("bert", (1, 16), {"vocab_size": 100, "hidden": 32, "num_layers": 2, "num_heads": 2,
                       "mlp_dim": 64, "max_len": 16}),
])
def test_transformers_only_the_mlp_output_after_gelu(name, shape, kwargs):
    found = _inputs(name, shape, **kwargs)
    eligible = sorted(p for p, info in found.items() if info.eligible)
    assert eligible == ["layer_0/output", "layer_1/output"]
    assert found["layer_0/output"].source == "gelu"
    assert "pseudo-sparsity" in found["layer_0/output"].reason
    assert "not by a ReLU, GELU or SiLU" in found["layer_0/attention/query"].reason


class Mixed(nn.Module):
    """SiLU, a tanh-GELU, a layer norm, a zero-padded and a concatenated input."""

    @nn.compact
    def __call__(self, x):
        a = nn.silu(nn.Dense(8, name="a")(x))
        b = nn.Dense(8, name="b")(a)
        c = nn.gelu(b, approximate=True)
        d = nn.Dense(8, name="d")(jnp.pad(c, ((0, 0), (0, 8))))
        e = nn.Dense(8, name="e")(nn.LayerNorm()(d))
        f = nn.Dense(8, name="f")(jnp.concatenate([nn.relu(e), nn.relu(d)], -1))
        g = nn.Dense(8, name="g")(jnp.concatenate([nn.relu(e), d], -1))
        return nn.Dense(2, name="h")(nn.relu(f) * 2.0 + g)


def test_silu_gelu_padding_norms_and_concatenation():
    model = Mixed()
    x = jnp.ones((2, 4))
    found = tasder.layer_inputs(model.apply, model.init(jax.random.key(0), x), x)
    assert {p: info.source for p, info in found.items()} == {
        "a": "input", "b": "silu", "d": "gelu", "e": "add", "f": "relu", "g": "concatenate",
        "h": "add"}
    assert found["d"].through == ("pad",)
    assert [p for p, info in found.items() if info.eligible] == ["b", "d", "f"]
