"""Workloads of the TASD evaluation: a model's variables and its GEMMs.

ResNet-50 at 224x224 and BERT-base at sequence 128 / 384 come from
`tasd_jax.models`; shapes are what matter, random init is fine until trained
models exist. Reference MAC counts (one image / one sequence):

* ResNet-50 (torchvision v1.5): 4.09 G MACs in 54 GEMMs (53 convolutions and
  the classifier), the "~4.1 GFLOPs" (multiply-adds) of He et al. 2016 and
  torchvision's model card.
* BERT-base encoder, L tokens: per layer the q, k, v and output projections
  4 * L * 768 * 768, the feed-forward 2 * L * 768 * 3072, attention scores and
  context 2 * 12 heads * L * L * 64; plus pooler 768 * 768 and classifier. L = 128:
  11.17 G MACs; L = 384: 35.33 G MACs; in 98 GEMMs (12 x 8 + 2).
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from tasd_jax import models
from tasd_jax.cost.gemms import GEMM, gemms_of

# Models whose input is token ids rather than NHWC float images.
_TOKEN_MODELS = frozenset({"bert"})


class Workload(NamedTuple):
    """A model at one input shape: its variables (arrays or ShapeDtypeStructs) and GEMMs."""

    name: str
    model: nn.Module
    variables: Any
    gemms: list[GEMM]


def input_spec(model_name: str, input_shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
    """The abstract input of `model_name`: int32 ids [B, L] or float32 images [B, H, W, C]."""
    dtype = jnp.int32 if model_name in _TOKEN_MODELS else jnp.float32
    return jax.ShapeDtypeStruct(tuple(input_shape), dtype)


def init_variables(
    model_name: str, input_shape: tuple[int, ...], *, seed: int | None = 0, **model_kwargs: Any
) -> tuple[nn.Module, Any]:
    """Builds `model_name` and initialises it (abstractly when `seed` is None).

    Args:
      model_name: a `tasd_jax.models` name ("resnet50", "bert", ...).
      input_shape: the input batch shape, e.g. (1, 224, 224, 3) or (1, 128).
      seed: PRNG seed for real random-init variables; None gives shapes only
        (no memory, for GEMM shapes and MAC counts).
      **model_kwargs: fields of the model.

    Returns:
      (model, variables).
    """
    model = models.get_model(model_name, **model_kwargs)
    x = input_spec(model_name, input_shape)

    def init(key):
        return model.init(key, jnp.zeros(x.shape, x.dtype), train=False)

    if seed is None:
        return model, jax.eval_shape(init, jax.random.key(0))
    return model, jax.jit(init)(jax.random.key(seed))


def workload(
    model_name: str, input_shape: tuple[int, ...], *, seed: int | None = 0, **model_kwargs: Any
) -> Workload:
    """`init_variables`, then the GEMMs of one forward pass (arguments as there)."""
    model, variables = init_variables(model_name, input_shape, seed=seed, **model_kwargs)
    x = input_spec(model_name, input_shape)
    gemms = gemms_of(lambda v, inputs: model.apply(v, inputs, train=False), variables, x)
    shape = "x".join(str(d) for d in input_shape)
    return Workload(f"{model_name}_{shape}", model, variables, gemms)
