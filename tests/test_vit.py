"""Tests for tasd_jax.models.vit: shapes, a numpy reference, exact parameter
counts, parameter paths, the dense hook, dropout, bad input and the GEMMs the
cost model reads."""

import functools
import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import errors as flax_errors
from flax import traverse_util

from tasd_jax import cost, models

MNIST = (1, 28, 28, 1)
TINY = dict(num_classes=3, patch=4, hidden=8, num_layers=2, num_heads=2, mlp_dim=16)


def _images(shape, seed=0):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _spec(shape):
    return jax.ShapeDtypeStruct(shape, jnp.float32)


@functools.lru_cache(maxsize=None)
def _variables(kwargs_items, shape):
    """Real variables (jitted init) shared between tests."""
    model = models.get_model("vit", **dict(kwargs_items))
    return jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), _images(shape))


def _flat(params):
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(params).items()}


def _vit_params(hidden, mlp_dim, layers, patch, channels, num_patches, classes):
    """Hand count: patch embedding, class token, positions, layers, final LN, head."""
    embed = patch * patch * channels * hidden + hidden
    tokens = hidden + (num_patches + 1) * hidden  # cls_token + pos_embedding
    attention = 4 * (hidden * hidden + hidden)  # query, key, value, out
    mlp = (hidden * mlp_dim + mlp_dim) + (mlp_dim * hidden + hidden)  # intermediate, output
    layer = attention + mlp + 2 * 2 * hidden  # two LayerNorms (scale, bias)
    return embed + tokens + layers * layer + 2 * hidden + hidden * classes + classes


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("patch", [7, 4])
def test_logits_shape_and_jit_matches_eager(patch):
    model = models.get_model("vit", patch=patch)
    x = _images((3, 28, 28, 1), seed=1)
    variables = _variables((("patch", patch),), MNIST)
    fn = functools.partial(model.apply, train=False)
    eager = fn(variables, x)
    jitted = jax.jit(fn)(variables, x)
    assert eager.shape == jitted.shape == (3, 10)
    assert eager.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(eager)))
    np.testing.assert_allclose(eager, jitted, rtol=1e-5, atol=1e-5)
    # Rows are independent: a batch of one gives the same logits.
    np.testing.assert_allclose(fn(variables, x[1:2]), eager[1:2], rtol=1e-5, atol=1e-5)


def test_registered_and_exported():
    assert models.MODELS["vit"] is models.ViT
    assert "ViT" in models.__all__ and "vit" not in models.TOKEN_MODELS
    model, variables = models.init_model("vit", (2, 28, 28, 1), seed=None, patch=4)
    assert isinstance(model, models.ViT) and model.patch == 4
    assert variables["params"]["pos_embedding"].shape == (1, 49 + 1, 64)
    assert models.input_spec("vit", (2, 28, 28, 1)).dtype == jnp.float32


def test_non_square_multichannel_images():
    model = models.get_model("vit", patch=4, num_classes=5)
    x = _spec((2, 8, 12, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    params = variables["params"]
    assert params["patch_embed"]["kernel"].shape == (4 * 4 * 3, 64)
    assert params["pos_embedding"].shape == (1, 2 * 3 + 1, 64)
    logits = jax.eval_shape(functools.partial(model.apply, train=False), variables, x)
    assert logits.shape == (2, 5)


# ---------------------------------------------------------------- numerics


def _layer_norm(x, p, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _dense(x, p):
    return x @ p["kernel"] + p["bias"]


def _numpy_vit(params, images, patch, heads):
    """Reference forward pass in float64 numpy, straight from the layout."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x = np.asarray(images, np.float64)
    b, h, w, c = x.shape
    patches = [
        x[:, i : i + patch, j : j + patch, :].reshape(b, -1)  # (row, col, channel)
        for i in range(0, h, patch)
        for j in range(0, w, patch)
    ]
    t = _dense(np.stack(patches, 1), p["patch_embed"])
    t = np.concatenate([np.broadcast_to(p["cls_token"], (b, 1, t.shape[-1])), t], 1)
    t = t + p["pos_embedding"]
    d = t.shape[-1] // heads
    layer = 0
    while f"layer_{layer}" in p:
        lp = p[f"layer_{layer}"]
        y = _layer_norm(t, lp["attention_ln"])
        q, k, v = (_dense(y, lp["attention"][n]) for n in ("query", "key", "value"))
        ctx = np.zeros_like(y)
        for head in range(heads):
            cols = slice(head * d, (head + 1) * d)
            s = q[..., cols] @ k[..., cols].transpose(0, 2, 1) / np.sqrt(d)
            e = np.exp(s - s.max(-1, keepdims=True))
            ctx[..., cols] = (e / e.sum(-1, keepdims=True)) @ v[..., cols]
        t = t + _dense(ctx, lp["attention"]["out"])
        y = _dense(_layer_norm(t, lp["mlp_ln"]), lp["intermediate"])
        y = 0.5 * y * (1 + np.vectorize(math.erf)(y / np.sqrt(2)))  # exact GELU
        t = t + _dense(y, lp["output"])
        layer += 1
    return _dense(_layer_norm(t, p["encoder_ln"])[:, 0], p["head"])


def test_matches_numpy_reference():
    model = models.get_model("vit", **TINY)
    x = _images((2, 8, 12, 2), seed=3)
    variables = _variables(tuple(TINY.items()), (1, 8, 12, 2))
    # Non-zero class token and LN parameters, so every term of the layout counts.
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    variables = jax.tree.unflatten(
        tree, [a + 0.1 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)]
    )
    logits = model.apply(variables, x, train=False)
    expected = _numpy_vit(variables["params"], x, TINY["patch"], TINY["num_heads"])
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


def test_patch_embed_is_the_strided_convolution():
    # Patches flatten in im2col order: patch_embed's kernel reshaped to
    # [patch, patch, C, hidden] is the kernel of a stride-`patch` conv.
    model = models.get_model("vit", **TINY)
    x = _images((2, 8, 12, 2), seed=4)
    variables = _variables(tuple(TINY.items()), (1, 8, 12, 2))
    _, state = model.apply(variables, x, train=False, capture_intermediates=True)
    embedded = state["intermediates"]["patch_embed"]["__call__"][0]
    p = variables["params"]["patch_embed"]
    conv = nn.Conv(8, (4, 4), strides=(4, 4), padding="VALID")
    kernel = p["kernel"].reshape(4, 4, 2, 8)
    expected = conv.apply({"params": {"kernel": kernel, "bias": p["bias"]}}, x)
    np.testing.assert_allclose(embedded, expected.reshape(2, 6, 8), rtol=1e-5, atol=1e-5)


def test_gelu_is_sown_and_is_the_output_dense_input():
    model = models.get_model("vit", **TINY)
    x = _images((2, 8, 12, 2), seed=5)
    variables = _variables(tuple(TINY.items()), (1, 8, 12, 2))
    logits, state = model.apply(
        variables, x, train=False, capture_intermediates=True, mutable=["intermediates"]
    )
    np.testing.assert_allclose(logits, model.apply(variables, x, train=False), rtol=1e-6)
    inter = state["intermediates"]
    for i in range(TINY["num_layers"]):
        layer, params = inter[f"layer_{i}"], variables["params"][f"layer_{i}"]
        (gelu,) = layer["gelu"]
        assert gelu.shape == (2, 2 * 3 + 1, TINY["mlp_dim"])
        pre = layer["intermediate"]["__call__"][0]
        np.testing.assert_allclose(gelu, jax.nn.gelu(pre, approximate=False), rtol=1e-6)
        out = layer["output"]["__call__"][0]
        np.testing.assert_allclose(
            out, gelu @ params["output"]["kernel"] + params["output"]["bias"], rtol=1e-5, atol=1e-6
        )
    # Unless "intermediates" is mutable nothing is sown (as in the training step).
    _, plain = model.apply(variables, x, train=False, mutable=["batch_stats"])
    assert plain == {}


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    "kwargs, shape, classes",
    [
        ({}, MNIST, 10),  # default: 16 patches of 7x7
        ({"patch": 4}, MNIST, 10),  # 49 patches of 4x4
        ({**TINY}, (1, 8, 12, 2), 3),
    ],
)
def test_exact_parameter_count(kwargs, shape, classes):
    model = models.get_model("vit", **kwargs)
    params = jax.eval_shape(model.init, jax.random.key(0), _spec(shape))["params"]
    _, h, w, c = shape
    patch = model.patch
    num_patches = (h // patch) * (w // patch)
    expected = _vit_params(
        model.hidden, model.mlp_dim, model.num_layers, patch, c, num_patches, classes
    )
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == expected
    if not kwargs:
        assert expected == 139_018


def test_parameter_paths_and_2d_kernels():
    model = models.get_model("vit")
    params = jax.eval_shape(model.init, jax.random.key(0), _spec(MNIST))["params"]
    flat = _flat(params)
    kernels = {k: v.shape for k, v in flat.items() if k.endswith("/kernel")}
    expected = {"patch_embed/kernel": (49, 64), "head/kernel": (64, 10)}
    for i in range(4):
        for name in ("query", "key", "value", "out"):
            expected[f"layer_{i}/attention/{name}/kernel"] = (64, 64)
        expected[f"layer_{i}/intermediate/kernel"] = (64, 128)
        expected[f"layer_{i}/output/kernel"] = (128, 64)
    assert kernels == expected
    # Every linear layer has a bias of its output width.
    for path, shape in kernels.items():
        assert flat[path[: -len("kernel")] + "bias"].shape == (shape[1],)
    # Everything else: the class token, the position table, LayerNorm vectors.
    others = {k for k in flat if not re.search(r"/(kernel|bias)$", k) or "_ln/" in k}
    assert {k for k in others if not re.fullmatch(r"(layer_\d/)?\w+_ln/(scale|bias)", k)} == {
        "cls_token",
        "pos_embedding",
    }
    assert flat["pos_embedding"].shape == (1, 17, 64)
    # Path regexes address the layer groups a pruning rule would name.
    ffn = [k for k in kernels if re.fullmatch(r"layer_\d+/(intermediate|output)/kernel", k)]
    attn = [k for k in kernels if re.fullmatch(r"layer_\d+/attention/\w+/kernel", k)]
    assert len(ffn) == 8 and len(attn) == 16


# ---------------------------------------------------------------- dense hook


def test_dense_hook_builds_every_linear_layer():
    calls = []

    class CountingDense(nn.Dense):
        def __call__(self, x):
            calls.append("/".join(self.path))
            return super().__call__(x)

    plain = models.get_model("vit", **TINY)
    hooked = models.get_model("vit", dense=CountingDense, **TINY)
    x = _images((2, 8, 12, 2), seed=6)
    variables = _variables(tuple(TINY.items()), (1, 8, 12, 2))
    np.testing.assert_allclose(
        hooked.apply(variables, x, train=False), plain.apply(variables, x, train=False), rtol=1e-6
    )
    # 6 per layer (query, key, value, out, intermediate, output) + patch_embed + head.
    assert len(calls) == 6 * TINY["num_layers"] + 2
    layers = {k[: -len("/kernel")] for k in _flat(variables["params"]) if k.endswith("/kernel")}
    assert set(calls) == layers


def test_dense_hook_owns_every_matrix():
    class HookedDense(nn.Module):
        features: int

        @nn.compact
        def __call__(self, x):
            kernel = self.param(
                "hooked_kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features)
            )
            return x @ kernel

    model = models.get_model("vit", dense=HookedDense)
    variables = jax.eval_shape(model.init, jax.random.key(0), _spec(MNIST))
    flat = _flat(variables["params"])
    assert sum(k.endswith("/hooked_kernel") for k in flat) == 6 * 4 + 2
    for path, leaf in flat.items():
        assert path.endswith("/hooked_kernel") or leaf.ndim == 1 or path in (
            "cls_token",
            "pos_embedding",
        ), path


# ---------------------------------------------------------------- dropout


@pytest.mark.parametrize("jit", [False, True])
def test_dropout_only_in_training_with_an_rng(jit):
    kwargs = {**TINY, "dropout_rate": 0.2}
    model = models.get_model("vit", **kwargs)
    x = _images((2, 8, 12, 2), seed=8)
    variables = _variables(tuple(kwargs.items()), (1, 8, 12, 2))

    def run(train, key=None):
        rngs = {} if key is None else {"dropout": key}
        return model.apply(variables, x, train=train, rngs=rngs)

    run = jax.jit(run, static_argnums=0) if jit else run
    evaluation = run(False)
    # An rng without train=True changes nothing.
    np.testing.assert_array_equal(run(False, jax.random.key(1)), evaluation)
    a, b = run(True, jax.random.key(1)), run(True, jax.random.key(2))
    assert not np.allclose(a, b) and not np.allclose(a, evaluation)
    np.testing.assert_array_equal(run(True, jax.random.key(1)), a)
    # Training needs the "dropout" rng.
    with pytest.raises(flax_errors.InvalidRngError, match='Dropout_0 needs PRNG for "dropout"'):
        run(True)
    # With rate 0 training is the evaluation function.
    still = models.get_model("vit", **TINY)
    np.testing.assert_allclose(
        still.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)}),
        evaluation,
        rtol=1e-5,
        atol=1e-6,
    )


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, shape, dtype, match",
    [
        ({}, (1, 30, 28, 1), jnp.float32, "divisible by patch=7.*30x28"),
        ({"patch": 4}, (1, 28, 26, 1), jnp.float32, "divisible by patch=4.*28x26"),
        ({}, (1, 4, 4, 1), jnp.float32, "at least 7x7.*4x4"),
        ({}, (1, 28, 28), jnp.float32, "NHWC.*\\(1, 28, 28\\)"),
        ({}, (1, 28, 28, 1), jnp.int32, "floating.*int32"),
        ({"num_heads": 5}, MNIST, jnp.float32, "hidden=64.*num_heads=5"),
        ({"patch": 0}, MNIST, jnp.float32, "patch must be >= 1, got 0"),
    ],
)
def test_bad_input_raises(kwargs, shape, dtype, match):
    model = models.get_model("vit", **kwargs)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, dtype))


def test_bad_field_is_value_error():
    with pytest.raises(ValueError, match="patch_size.*'vit'"):
        models.get_model("vit", patch_size=4)


# ---------------------------------------------------------------- cost model


@pytest.mark.parametrize("patch", [7, 4])
def test_model_gemms(patch):
    model = models.get_model("vit", patch=patch)
    variables = jax.eval_shape(model.init, jax.random.key(0), _spec(MNIST))
    gemms = cost.model_gemms(model, variables, MNIST, "float32")
    layers, heads, hidden, mlp_dim = 4, 4, 64, 128
    tokens = (28 // patch) ** 2 + 1
    # Per layer 4 projections + 2 MLP + 2 attention (scores, context); patch embed, head.
    assert len(gemms) == 8 * layers + 2
    weights = [g for g in gemms if g.weight]
    scores = [g for g in gemms if not g.weight]
    assert len(weights) == 6 * layers + 2 and len(scores) == 2 * layers
    by_path = {g.weight_path: g for g in weights}
    assert len(by_path) == len(weights)
    assert by_path["params/patch_embed/kernel"][1:5] == (tokens - 1, patch * patch, hidden, 1)
    assert by_path["params/head/kernel"][1:5] == (1, hidden, 10, 1)
    for i in range(layers):
        for name in ("query", "key", "value", "out"):
            g = by_path[f"params/layer_{i}/attention/{name}/kernel"]
            assert (g.m, g.k, g.n, g.batch) == (tokens, hidden, hidden, 1)
            assert g.name == f"ViT/layer_{i}/attention/{name}"
        g = by_path[f"params/layer_{i}/intermediate/kernel"]
        assert (g.m, g.k, g.n) == (tokens, hidden, mlp_dim)
        g = by_path[f"params/layer_{i}/output/kernel"]
        assert (g.m, g.k, g.n) == (tokens, mlp_dim, hidden)
        assert g.name == f"ViT/layer_{i}/output"
    head_dim = hidden // heads
    for g in scores:
        # One [tokens x head_dim] x [head_dim x tokens] (or its P V partner) per head.
        assert g.batch == heads
        assert sorted((g.m, g.k, g.n)) == sorted((tokens, tokens, head_dim))
        assert "/attention/" in g.name
    expected_macs = (
        (tokens - 1) * patch * patch * hidden
        + layers
        * tokens
        * (4 * hidden * hidden + 2 * hidden * mlp_dim + 2 * heads * tokens * head_dim)
        + hidden * 10
    )
    assert cost.total_macs(gemms) == expected_macs
    # The estimate runs on them, attention GEMMs staying dense.
    est = cost.estimate(gemms, "stc", weight_series="2:4")
    assert est.total_cycles > 0
    assert all(s == "dense" for s, g in zip(est.weight_series, gemms) if not g.weight)
