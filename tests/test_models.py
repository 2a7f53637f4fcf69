"""Tests for tasd_jax.models: shapes, exact parameter counts, the dense hook."""

import functools
import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from jax.extend import core as jex_core

from tasd_jax import models

TINY_BERT = dict(
    vocab_size=50, hidden=16, num_layers=2, num_heads=4, mlp_dim=32, max_len=12, num_classes=3
)


def _images(shape, seed=0):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _param_count(params) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(params))


def _abstract_params(model, *inputs):
    """Parameter shapes without allocating them."""
    return jax.eval_shape(model.init, jax.random.key(0), *inputs)["params"]


def _image_spec(size, channels=3):
    return jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32)


def _init(model, *inputs):
    """Real parameters; init is jitted because only apply is under test."""
    return jax.jit(model.init)(jax.random.key(0), *inputs)


@functools.lru_cache(maxsize=None)
def _cached_init(name, kwargs_items, shape):
    """Variables shared by the jit and no-jit cases of one model."""
    return _init(models.get_model(name, **dict(kwargs_items)), _images(shape))


@pytest.fixture(scope="module")
def tiny_bert():
    """A 2-layer BERT and its parameters, shared: init compiles for seconds."""
    model = models.get_model("bert", **TINY_BERT)
    return model, _init(model, jnp.zeros((1, TINY_BERT["max_len"]), jnp.int32))


@pytest.fixture(scope="module")
def resnet8():
    """The smallest CIFAR ResNet (one block per stage) and its variables."""
    model = models.get_model("resnet20", depth=8, num_classes=4)
    return model, _init(model, _images((1, 8, 8, 3)))


def _apply(model, variables, x, jit, **kwargs):
    fn = functools.partial(model.apply, **kwargs)
    return (jax.jit(fn) if jit else fn)(variables, x)


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize(
    "name, kwargs, shape, classes",
    [
        ("mlp", {}, (2, 8, 8, 1), 10),
        ("mlp", {"hidden": (7,), "num_classes": 4}, (2, 5), 4),
        ("lenet5", {}, (2, 8, 8, 1), 10),
        ("lenet5", {}, (2, 28, 28, 1), 10),
        # CIFAR ResNet code at its smallest depth (one block per stage) keeps
        # compile time low; depth 20/56 are checked abstractly below.
        ("resnet20", {"depth": 8}, (2, 8, 8, 3), 10),
        ("resnet20", {"depth": 8, "shortcut": "B", "num_classes": 7}, (2, 8, 8, 3), 7),
    ],
)
def test_image_model_logits_shape(name, kwargs, shape, classes, jit):
    model = models.get_model(name, **kwargs)
    x = _images(shape)
    variables = _cached_init(name, tuple(kwargs.items()), shape)
    logits = _apply(model, variables, x, jit, train=False)
    assert logits.shape == (shape[0], classes)
    assert logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_imagenet_resnet_layout_logits_shape():
    # The ImageNet layout (stem, max pool, v1.5 bottlenecks with projections)
    # with one block per stage; jitted only, as op-by-op dispatch of its convs
    # costs ~20 s; the bottleneck block runs un-jitted in its own test below.
    model = models.get_model("resnet50", stage_sizes=(1, 1, 1, 1), num_classes=5)
    x = _images((2, 16, 16, 3))
    logits = _apply(model, _init(model, x), x, jit=True, train=False)
    assert logits.shape == (2, 5)
    assert bool(jnp.all(jnp.isfinite(logits)))


@pytest.mark.parametrize("jit", [False, True])
def test_batchnorm_train_updates_batch_stats_and_eval_uses_them(jit, resnet8):
    model, variables = resnet8
    x = _images((4, 8, 8, 3)) * 3.0 + 1.0
    logits, updates = _apply(model, variables, x, jit, train=True, mutable=["batch_stats"])
    assert logits.shape == (4, 4)
    old = variables["batch_stats"]["bn_stem"]
    new = updates["batch_stats"]["bn_stem"]
    # Running mean moves 10% of the way from 0 to the batch mean (momentum 0.9).
    stem = nn.Conv(16, (3, 3), padding=((1, 1), (1, 1)), use_bias=False)
    conv_out = stem.apply({"params": variables["params"]["conv_stem"]}, x)
    np.testing.assert_allclose(
        new["mean"], 0.9 * old["mean"] + 0.1 * conv_out.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5
    )
    # Eval mode normalises with the running statistics: new ones change it.
    a = _apply(model, variables, x, jit, train=False)
    b = _apply(model, {**variables, "batch_stats": updates["batch_stats"]}, x, jit, train=False)
    assert not np.allclose(a, b)


@pytest.mark.parametrize(
    "name, kwargs, size, classes",
    [
        ("resnet20", {}, 32, 10),
        ("resnet56", {}, 32, 10),
        ("vgg16", {}, 32, 10),
        ("vgg16", {"variant": "imagenet", "num_classes": 1000}, 224, 1000),
        ("resnet50", {}, 224, 1000),
    ],
)
def test_big_model_shapes_abstractly(name, kwargs, size, classes):
    model = models.get_model(name, **kwargs)
    x = _image_spec(size)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    logits = jax.eval_shape(functools.partial(model.apply, train=False), variables, x)
    assert logits.shape == (1, classes)


@pytest.mark.slow
def test_vgg16_cifar_runs():
    model = models.get_model("vgg16")
    x = _images((2, 32, 32, 3))
    variables = _init(model, x)
    logits, _ = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))(
        variables, x
    )
    assert logits.shape == (2, 10)
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_vgg16_imagenet_classifier_shapes():
    # 32x32 input keeps the 4096-wide classifier small: 512 -> 4096 -> 4096.
    model = models.get_model("vgg16", variant="imagenet", num_classes=3)
    x = _images((2, 32, 32, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert variables["params"]["fc_0"]["kernel"].shape == (512, 4096)
    assert variables["params"]["fc_1"]["kernel"].shape == (4096, 4096)
    assert variables["params"]["head"]["kernel"].shape == (4096, 3)


def test_lenet5_flattened_sizes():
    model = models.get_model("lenet5")
    # 8x8 -> pool -> 4x4 -> pool -> 2x2 with 16 channels; 28x28 -> 7x7.
    for size, flat in ((8, 2 * 2 * 16), (28, 7 * 7 * 16)):
        params = _abstract_params(model, _image_spec(size, 1))
        assert params["dense_0"]["kernel"].shape == (flat, 120)
        assert params["dense_1"]["kernel"].shape == (120, 84)
        assert params["head"]["kernel"].shape == (84, 10)
        assert params["conv_0"]["kernel"].shape == (5, 5, 1, 6)
        assert params["conv_1"]["kernel"].shape == (5, 5, 6, 16)


@pytest.mark.parametrize("jit", [False, True])
def test_bert_logits_and_dropout(jit, tiny_bert):
    model, variables = tiny_bert
    ids = jax.random.randint(jax.random.key(1), (2, 12), 0, 50, jnp.int32)
    logits = _apply(model, variables, ids, jit, train=False)
    assert logits.shape == (2, 3)
    again = _apply(model, variables, ids, jit, train=False)
    np.testing.assert_array_equal(logits, again)

    def train_logits(variables, ids, key):
        return model.apply(variables, ids, train=True, rngs={"dropout": key})

    train_logits = jax.jit(train_logits) if jit else train_logits
    drop = [train_logits(variables, ids, jax.random.key(s)) for s in (1, 2)]
    assert not np.allclose(drop[0], drop[1])
    assert not np.allclose(drop[0], logits)


@pytest.mark.parametrize("jit", [False, True])
def test_bert_padding_is_ignored_under_the_mask(jit, tiny_bert):
    model, variables = tiny_bert
    ids = jnp.array([[2, 7, 9, 4, 0, 0, 0, 0]], jnp.int32)
    mask = jnp.array([[1, 1, 1, 1, 0, 0, 0, 0]], jnp.int32)
    other_padding = ids.at[0, 4:].set(jnp.array([11, 12, 13, 14]))
    types = jnp.array([[0, 0, 1, 1, 1, 1, 1, 1]], jnp.int32)
    fn = functools.partial(model.apply, train=False)
    fn = jax.jit(fn) if jit else fn
    a = fn(variables, ids, types, mask)
    b = fn(variables, other_padding, types, mask)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    c = fn(variables, other_padding, types)  # no mask: padding is attended to
    assert not np.allclose(a, c)
    d = fn(variables, ids, None, mask)  # token types matter
    assert not np.allclose(a, d)


def test_self_attention_matches_numpy():
    hidden, heads, batch, length = 8, 2, 2, 5
    attn = models.SelfAttention(heads, 0.0, nn.Dense)
    x = _images((batch, length, hidden))
    mask = jnp.array([[True] * 5, [True, True, True, False, False]])
    variables = attn.init(jax.random.key(0), x, mask, False)
    out = attn.apply(variables, x, mask, False)

    p = jax.tree.map(np.asarray, variables["params"])
    xn = np.asarray(x, np.float64)
    proj = {k: xn @ p[k]["kernel"] + p[k]["bias"] for k in ("query", "key", "value")}
    expected = np.zeros((batch, length, hidden))
    d = hidden // heads
    for b in range(batch):
        keys = np.asarray(mask[b])
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            s = proj["query"][b, :, cols] @ proj["key"][b, keys, cols].T / np.sqrt(d)
            w = np.exp(s - s.max(axis=1, keepdims=True))
            w /= w.sum(axis=1, keepdims=True)
            expected[b, :, cols] = w @ proj["value"][b, keys, cols]
    expected = expected @ p["out"]["kernel"] + p["out"]["bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- shortcuts


def test_option_a_shortcut_is_subsampled_zero_padded_identity():
    block = models.BasicBlock(32, strides=2, shortcut="A")
    x = _images((2, 8, 8, 16))
    variables = _init(block, x)
    assert "shortcut_conv" not in variables["params"]
    # The residual branch ends in a BN with scale 0 and bias 0 at init, so the
    # block is relu(shortcut(x)).
    out = np.asarray(block.apply(variables, x, train=False))
    sub = np.asarray(x)[:, ::2, ::2, :]
    expected = np.concatenate(
        [np.zeros((2, 4, 4, 8)), np.maximum(sub, 0), np.zeros((2, 4, 4, 8))], -1
    )
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_bottleneck_projection_shortcut_and_v15_stride():
    block = models.BottleneckBlock(4, strides=2)
    x = _images((1, 8, 8, 8))
    variables = _init(block, x)
    params = variables["params"]
    assert params["conv_0"]["kernel"].shape == (1, 1, 8, 4)
    assert params["conv_1"]["kernel"].shape == (3, 3, 4, 4)
    assert params["conv_2"]["kernel"].shape == (1, 1, 4, 16)
    assert params["shortcut_conv"]["kernel"].shape == (1, 1, 8, 16)
    # v1.5: the 1x1 conv_0 keeps 8x8, the 3x3 conv_1 halves it.
    _, inter = block.apply(variables, x, train=False, capture_intermediates=True)
    inter = inter["intermediates"]
    assert inter["conv_0"]["__call__"][0].shape == (1, 8, 8, 4)
    assert inter["conv_1"]["__call__"][0].shape == (1, 4, 4, 4)
    # Branch is zero at init: out = relu(BN_eval(1x1 stride-2 projection of x)).
    out = np.asarray(block.apply(variables, x, train=False))
    proj = np.asarray(x)[:, ::2, ::2, :] @ np.asarray(params["shortcut_conv"]["kernel"][0, 0])
    np.testing.assert_allclose(out, np.maximum(proj / np.sqrt(1 + 1e-5), 0), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- counts


def _cifar_resnet_params(depth, classes=10):
    """Hand count: 3x3 convs (no bias) + BN scale/bias + linear head."""
    n = (depth - 2) // 6
    conv_bn = lambda cin, cout: 9 * cin * cout + 2 * cout
    total = conv_bn(3, 16)
    for cin, cout in ((16, 16), (16, 32), (32, 64)):
        total += conv_bn(cin, cout) + conv_bn(cout, cout)  # first block
        total += (n - 1) * 2 * conv_bn(cout, cout)
    return total + 64 * classes + classes


@pytest.mark.parametrize(
    "name, kwargs, size, expected",
    [
        # He et al. 2016 table 6 (0.27M / 0.85M), option-A shortcuts.
        ("resnet20", {}, 32, 269_722),
        ("resnet56", {}, 32, 853_018),
        # torchvision resnet18/34/50 and vgg16_bn parameter counts.
        ("resnet18", {}, 224, 11_689_512),
        ("resnet34", {}, 224, 21_797_672),
        ("resnet50", {}, 224, 25_557_032),
        ("vgg16", {"variant": "imagenet", "num_classes": 1000}, 224, 138_365_992),
        # 13 convs with bias + BN (14,723,136) + 512x10 head.
        ("vgg16", {}, 32, 14_728_266),
    ],
)
def test_exact_parameter_counts(name, kwargs, size, expected):
    params = _abstract_params(models.get_model(name, **kwargs), _image_spec(size))
    assert _param_count(params) == expected
    if name.startswith("resnet") and size == 32:
        assert _cifar_resnet_params(int(name[6:])) == expected


def test_bert_base_parameter_count():
    ids = jax.ShapeDtypeStruct((1, 128), jnp.int32)
    params = _abstract_params(models.get_model("bert"), ids)
    flat = traverse_util.flatten_dict(params)
    assert params["layer_0"]["attention"]["query"]["kernel"].shape == (768, 768)
    assert params["layer_11"]["intermediate"]["kernel"].shape == (768, 3072)
    assert params["layer_11"]["output"]["kernel"].shape == (3072, 768)
    classifier = sum(v.size for k, v in flat.items() if k[0] == "classifier")
    assert classifier == 768 * 2 + 2
    # Hand count: embeddings (30522 + 512 + 2 rows, LN) + 12 layers (4 attention
    # projections, LN, FFN in and out, LN) + pooler.
    embeddings = (30522 + 512 + 2) * 768 + 2 * 768
    layer = 4 * (768 * 768 + 768) + (768 * 3072 + 3072) + (3072 * 768 + 768) + 4 * 768
    pooler = 768 * 768 + 768
    assert embeddings + 12 * layer + pooler == 109_482_240
    assert _param_count(params) - classifier == 109_482_240


def _macs(jaxpr) -> int:
    """Multiply-accumulates of every conv and dot_general in a jaxpr."""
    total = 0
    for eqn in jaxpr.eqns:
        out = eqn.outvars[0].aval.shape
        if eqn.primitive.name == "conv_general_dilated":
            # Output elements x kernel window x input channels (NHWC/HWIO layout).
            total += math.prod(out) * math.prod(eqn.invars[1].aval.shape[:-1])
        elif eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += math.prod(out) * math.prod(lhs[d] for d in contract)
        for param in eqn.params.values():
            if isinstance(param, jex_core.ClosedJaxpr):
                total += _macs(param.jaxpr)
            elif isinstance(param, jex_core.Jaxpr):
                total += _macs(param)
    return total


def test_resnet50_macs_match_published():
    model = models.get_model("resnet50")
    x = _image_spec(224)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    jaxpr = jax.make_jaxpr(functools.partial(model.apply, train=False))(variables, x)
    # The commonly quoted 4.09 G multiply-accumulates per 224x224 image.
    assert _macs(jaxpr.jaxpr) == 4_089_184_256


# ---------------------------------------------------------------- dense hook


class HookedDense(nn.Module):
    """A linear layer with its own parameter name, to see where the hook is used."""

    features: int

    @nn.compact
    def __call__(self, x):
        kernel = self.param(
            "hooked_kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features)
        )
        return x @ kernel


@pytest.mark.parametrize(
    "name, kwargs, inputs, linear_layers",
    [
        ("mlp", {}, _image_spec(8, 1), 3),
        ("lenet5", {}, _image_spec(8, 1), 3),
        ("resnet20", {}, _image_spec(8), 1),
        ("resnet50", {"stage_sizes": (1, 1, 1, 1)}, _image_spec(32), 1),
        ("vgg16", {}, _image_spec(32), 1),
        ("vgg16", {"variant": "imagenet"}, _image_spec(32), 3),
        # 6 per layer (q, k, v, out, intermediate, output) + pooler + classifier.
        ("bert", TINY_BERT, jax.ShapeDtypeStruct((1, 12), jnp.int32), 2 * 6 + 2),
    ],
)
def test_dense_hook_builds_every_linear_layer(name, kwargs, inputs, linear_layers):
    model = models.get_model(name, dense=HookedDense, **kwargs)
    variables = jax.eval_shape(model.init, jax.random.key(0), inputs)
    flat = traverse_util.flatten_dict(variables["params"])
    hooked = [k for k in flat if k[-1] == "hooked_kernel"]
    assert len(hooked) == linear_layers
    # Every other weight is a conv kernel, an embedding table, or a vector.
    for path, leaf in flat.items():
        if path[-1] != "hooked_kernel":
            assert (
                leaf.ndim == 1
                or path[-1] == "embedding"
                or (path[-1] == "kernel" and leaf.ndim == 4)
            ), path
    logits = jax.eval_shape(functools.partial(model.apply, train=False), variables, inputs)
    assert logits.shape[0] == 1


def test_dense_hook_output_equals_default_with_same_weights(tiny_bert):
    # A Dense subclass with the same parameters must give the same logits.
    calls = []

    class CountingDense(nn.Dense):
        def __call__(self, x):
            calls.append(self.name)
            return super().__call__(x)

    ids = jax.random.randint(jax.random.key(1), (2, 6), 0, 50, jnp.int32)
    plain, variables = tiny_bert
    hooked = models.get_model("bert", dense=CountingDense, **TINY_BERT)
    np.testing.assert_allclose(hooked.apply(variables, ids), plain.apply(variables, ids), rtol=1e-6)
    assert sorted(set(calls)) == sorted(
        ["query", "key", "value", "out", "intermediate", "output", "pooler", "classifier"]
    )
    assert len(calls) == 2 * 6 + 2


# ---------------------------------------------------------------- bad input


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet51'.*bert.*resnet50"):
        models.get_model("resnet51")


def test_bad_field_is_value_error():
    with pytest.raises(ValueError, match="num_clases.*'mlp'"):
        models.get_model("mlp", num_clases=3)


@pytest.mark.parametrize(
    "name, kwargs, inputs, match",
    [
        ("resnet20", {"depth": 21}, _image_spec(8), "6n \\+ 2.*21"),
        ("resnet29_bottleneck", {"depth": 20 + 6}, _image_spec(8),
         "9n \\+ 2 with n >= 1 for bottleneck blocks \\(11, 20, 29, ...\\), got 26"),
        ("resnet20", {"width": 0}, _image_spec(8), "width=0 must be an integer >= 1"),
        ("resnet20", {"block": "wide"}, _image_spec(8), "block='wide' must be one of"),
        ("resnet20", {"shortcut": "C"}, _image_spec(8), "'C'"),
        ("lenet5", {}, _image_spec(2, 1), "at least 4x4.*2x2"),
        ("vgg16", {}, _image_spec(16), "at least 32x32.*16x16"),
        ("vgg16", {"variant": "cifar10"}, _image_spec(32), "variant.*'cifar10'"),
        ("resnet50", {}, jax.ShapeDtypeStruct((1, 32, 32), jnp.float32), "NHWC.*\\(1, 32, 32\\)"),
        ("resnet20", {}, jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.int32), "floating.*int32"),
        ("mlp", {}, jax.ShapeDtypeStruct((5,), jnp.float32), "\\(5,\\)"),
        (
            "bert",
            TINY_BERT,
            jax.ShapeDtypeStruct((1, 13), jnp.int32),
            "length 13 exceeds max_len=12",
        ),
        (
            "bert",
            TINY_BERT,
            jax.ShapeDtypeStruct((1, 4), jnp.float32),
            "integer token ids.*float32",
        ),
        (
            "bert",
            {**TINY_BERT, "num_heads": 5},
            jax.ShapeDtypeStruct((1, 4), jnp.int32),
            "hidden=16.*num_heads=5",
        ),
    ],
)
def test_bad_input_raises(name, kwargs, inputs, match):
    model = models.get_model(name, **kwargs)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.init, jax.random.key(0), inputs)


@pytest.mark.parametrize(
    "name, shape, message",
    [
        ("resnet20", (1, 0, 32, 3), "input_shape=(1, 0, 32, 3) of model 'resnet20': "
         "size 0 on axis 1 must be an integer >= 1"),
        ("bert", (1, -1), "input_shape=(1, -1) of model 'bert': "
         "size -1 on axis 1 must be an integer >= 1"),
        ("mlp", (2.0, 784), "input_shape=(2.0, 784) of model 'mlp': "
         "size 2.0 on axis 0 must be an integer >= 1"),
        ("mlp", (True, 784), "input_shape=(True, 784) of model 'mlp': "
         "size True on axis 0 must be an integer >= 1"),
        ("mlp", (), "input_shape=() of model 'mlp' is empty: a model input has at least a "
         "batch axis"),
        ("mlp", 784, "input_shape=784 of model 'mlp' must be a tuple of sizes"),
    ],
)
def test_bad_input_shape_is_named_before_any_work(name, shape, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        models.input_spec(name, shape)
    with pytest.raises(ValueError, match=re.escape(message)):
        models.init_model(name, shape, seed=None)


def test_input_shape_accepts_lists_and_numpy_integers():
    spec = models.input_spec("bert", [np.int64(2), 8])
    assert spec.shape == (2, 8) and spec.dtype == jnp.int32


def test_bert_mask_shape_mismatch():
    model = models.get_model("bert", **TINY_BERT)
    ids = jnp.zeros((2, 4), jnp.int32)
    with pytest.raises(ValueError, match="attention_mask.*\\(2, 4\\).*\\(2, 3\\)"):
        model.init(jax.random.key(0), ids, None, jnp.ones((2, 3)))


def test_bottleneck_cifar_resnet_has_resnet50_blocks_and_width_scales_every_conv():
    spec = _image_spec(28, 1)
    shapes = {w: {"/".join(k): v.shape for k, v in traverse_util.flatten_dict(
        jax.eval_shape(models.get_model("resnet29_bottleneck", width=w).init,
                       jax.random.key(0), spec)["params"]).items()} for w in (1, 2)}
    one, two = shapes[1], shapes[2]
    # 3 stages x 3 blocks of 1x1 -> 3x3 -> 1x1, a projection where a stage starts.
    assert sum(k.endswith("conv_2/kernel") for k in one) == 9
    assert {k.split("/")[0] for k in one if "shortcut_conv" in k} == {
        "stage0_block0", "stage1_block0", "stage2_block0"}
    assert one["stage2_block2/conv_1/kernel"] == (3, 3, 64, 64)
    assert one["stage2_block2/conv_2/kernel"] == (1, 1, 64, 256)
    assert one["head/kernel"] == (256, 10)
    assert one.keys() == two.keys()
    for path, shape in one.items():  # every channel count doubles, the pixels' 1 does not
        if path.endswith("/kernel") and len(shape) == 4:
            cin = shape[2] if path == "conv_stem/kernel" else 2 * shape[2]
            assert two[path] == (*shape[:2], cin, 2 * shape[3]), path
    for w in (1, 2):  # counted by hand: convs without bias, BN scale + bias
        assert _param_count(jax.eval_shape(
            models.get_model("resnet29_bottleneck", width=w).init, jax.random.key(0),
            spec)["params"]) == _bottleneck_params(w)
    model = models.get_model("resnet29_bottleneck", width=2)
    logits = model.apply(_init(model, jnp.ones((1, 28, 28, 1))), jnp.ones((2, 28, 28, 1)))
    assert logits.shape == (2, 10)


def _bottleneck_params(width: int, in_channels: int = 1, classes: int = 10) -> int:
    """resnet29_bottleneck's parameters from its definition: a 3x3 stem, three
    stages of three 1x1 -> 3x3 -> 1x1 blocks (projection where the shape changes)."""
    def conv_bn(k, cin, cout):
        return k * k * cin * cout + 2 * cout
    total, cin = conv_bn(3, in_channels, 16 * width), 16 * width
    for features in (16 * width, 32 * width, 64 * width):
        for block in range(3):
            total += (conv_bn(1, cin, features) + conv_bn(3, features, features)
                      + conv_bn(1, features, 4 * features))
            if block == 0:  # stride 2 or 4x the channels: a projection
                total += conv_bn(1, cin, 4 * features)
            cin = 4 * features
    return total + cin * classes + classes
