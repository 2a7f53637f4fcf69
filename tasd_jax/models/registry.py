"""Models by name: `get_model("resnet50", num_classes=10)` (issue 5 §2).

Adding a model is one line in `MODELS`: a name and a constructor whose keyword
arguments are the module's fields.
"""

import functools
from typing import Callable, Mapping

import flax.linen as nn

from tasd_jax.models import bert, mlp, resnet, vgg

MODELS: Mapping[str, Callable[..., nn.Module]] = {
    "mlp": mlp.MLP,
    "lenet5": mlp.LeNet5,
    "resnet20": functools.partial(resnet.CifarResNet, depth=20),
    "resnet56": functools.partial(resnet.CifarResNet, depth=56),
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
}


def get_model(name: str, **kwargs) -> nn.Module:
    """Builds the model registered as `name`; kwargs set its fields.

    Args:
      name: a key of MODELS ("mlp", "lenet5", "resnet20", "resnet56", "vgg16",
        "resnet18", "resnet34", "resnet50", "bert").
      **kwargs: module fields, e.g. num_classes=10, dense=TWDense,
        variant="imagenet" (vgg16), num_layers=2 (bert).

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
