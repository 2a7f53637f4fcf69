"""Models by name: `get_model("resnet50", num_classes=10)`, and their build-and-init.

Adding a model is one line in `MODELS` (or `register(name, constructor)` from
the user's own module, imported before the model is asked for):
a name and a constructor whose keyword arguments are the module's fields. `init_model` builds one and initialises it
on an input shape (abstractly when no seed is given: shapes only, no memory).
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tasd_jax.models import bert, mlp, resnet, vgg, vit

MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp.MLP,
    "lenet5": mlp.LeNet5,
    "resnet20": functools.partial(resnet.CifarResNet, depth=20),
    "resnet56": functools.partial(resnet.CifarResNet, depth=56),
    # ResNet-50's bottleneck blocks at CIFAR size: 3 stages of 3 blocks, 29 layers.
    "resnet29_bottleneck": functools.partial(resnet.CifarResNet, depth=29, block="bottleneck"),
    "vgg16": vgg.VGG16,
    "resnet18": functools.partial(
        resnet.ResNet, stage_sizes=(2, 2, 2, 2), block_cls=resnet.BasicBlock
    ),
    "resnet34": functools.partial(
        resnet.ResNet, stage_sizes=(3, 4, 6, 3), block_cls=resnet.BasicBlock
    ),
    "resnet50": functools.partial(
        resnet.ResNet, stage_sizes=(3, 4, 6, 3), block_cls=resnet.BottleneckBlock
    ),
    "bert": bert.BertEncoder,
    "vit": vit.ViT,
}


def register(name: str, constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Makes `constructor` (a flax module class, or a function returning one) known
    by `name` to `get_model`, `init_model` and the configs; returns it.

    Example:
      >>> class Tiny(nn.Module):
      ...     num_classes: int = 10
      ...     @nn.compact
      ...     def __call__(self, x, train=False):
      ...         return nn.Dense(self.num_classes, name="head")(x.reshape(len(x), -1))
      >>> register("tiny", Tiny)

    Raises:
      ValueError: `name` is not a non-empty string, is registered to another
        constructor, or `constructor` is not callable.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a model name must be a non-empty string, got {name!r}")
    if not callable(constructor):
        raise ValueError(f"the constructor of model {name!r} is not callable: {constructor!r}")
    if name in MODELS and MODELS[name] is not constructor:
        raise ValueError(f"model name {name!r} is already registered to {MODELS[name]}")
    MODELS[name] = constructor
    return constructor


def get_model(name: str, **kwargs) -> nn.Module:
    """Builds the model registered as `name`; kwargs set its fields.

    Args:
      name: a key of MODELS ("mlp", "lenet5", "resnet20", "resnet56", "vgg16",
        "resnet18", "resnet34", "resnet50", "bert", "vit").
      **kwargs: module fields, e.g. num_classes=10, dense=TWDense,
        variant="imagenet" (vgg16), num_layers=2 (bert), patch=4 (vit).

    Returns:
      An unbound flax.linen.Module.

    Raises:
      ValueError: unknown name, or a keyword that is not a field of the model.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments {sorted(kwargs)} for model {name!r}: {e}") from e


# Models whose input is token ids rather than NHWC float images.
TOKEN_MODELS = frozenset({"bert"})


def input_spec(model_name: str, input_shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
    """The abstract input of `model_name`: int32 ids [B, L] or float32 images [B, H, W, C].

    Raises:
      ValueError: `input_shape` is not a non-empty sequence of integers >= 1
        (a 0 or -1 would fail deep inside the model or the cost model),
        naming the shape and the offending size.
    """
    _check_input_shape(model_name, input_shape)
    dtype = jnp.int32 if model_name in TOKEN_MODELS else jnp.float32
    return jax.ShapeDtypeStruct(tuple(int(d) for d in input_shape), dtype)


def _check_input_shape(model_name: str, input_shape: Any) -> None:
    where = f"input_shape={input_shape!r} of model {model_name!r}"
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, (tuple, list)):
        raise ValueError(f"{where} must be a tuple of sizes, e.g. (1, 224, 224, 3) or (1, 128)")
    if not input_shape:
        raise ValueError(f"{where} is empty: a model input has at least a batch axis")
    for axis, size in enumerate(input_shape):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"{where}: size {size!r} on axis {axis} must be an integer >= 1")


def init_model(
    model_name: str, input_shape: tuple[int, ...], *, seed: int | None = 0, **model_kwargs: Any
) -> tuple[nn.Module, Any]:
    """Builds `model_name` and initialises it on an input of `input_shape`.

    Args:
      model_name: a key of MODELS ("resnet50", "bert", ...).
      input_shape: the input batch shape, e.g. (1, 224, 224, 3) or (1, 128).
      seed: PRNG seed for real random-init variables; None gives
        `jax.ShapeDtypeStruct`s only (no memory: GEMM shapes, MAC counts).
      **model_kwargs: fields of the model (as `get_model`).

    Returns:
      (model, variables).

    Raises:
      ValueError: unknown model, a bad field (`get_model`), or a bad
        `input_shape` (`input_spec`), before anything is built.
    """
    model = get_model(model_name, **model_kwargs)
    x = input_spec(model_name, input_shape)

    def init(key):
        return model.init(key, jnp.zeros(x.shape, x.dtype), train=False)

    if seed is None:
        return model, jax.eval_shape(init, jax.random.key(0))
    return model, jax.jit(init)(jax.random.key(seed))
