"""A tile-wise-sparse Dense layer: pruned models run inference through `tw_matmul`.

Tile-wise sparsity (Guo et al., SC20; docs/tile_wise.md) pays off at inference,
once the weights are pruned. `TWDense` is a drop-in `nn.Dense` (same `kernel`
and `bias` parameters, so it trains, prunes and checkpoints like one) for the
models' `dense` hook, `get_model("bert", dense=TWDense)`. `pack_tw_params`
moves every pruned kernel into a `"tw"` variable collection in packed form;
a `TWDense` that finds its packed kernel there multiplies with `tw_matmul`.

Packing reads the zeros of the values, so it runs once, outside jit; the
packed arrays are ordinary inputs of the jitted apply (static shapes).
"""

import re
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from tasd_jax.kernels import formats, matmul

TW_COLLECTION = "tw"


class TWDense(nn.Module):
    """`nn.Dense` whose kernel, when packed into the "tw" collection, runs TW-sparse.

    Attributes:
      features: output features N.
      use_bias: add a bias.
      kernel_init, bias_init: initialisers (as nn.Dense).
      backend: `tw_matmul` backend ("auto": xla on CPU, pallas on GPU).
      block_m: `tw_matmul` rows of A per chunk / program (None: its default).
    """

    features: int
    use_bias: bool = True
    kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
    bias_init: Callable[..., Any] = nn.initializers.zeros_init()
    backend: str = "auto"
    block_m: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """[..., K] -> [..., features]."""
        if self.has_variable(TW_COLLECTION, "kernel"):
            packed = self.get_variable(TW_COLLECTION, "kernel")
            if packed.shape[1] != self.features:
                raise ValueError(
                    f"packed kernel has {packed.shape[1]} outputs, layer has features={self.features}"
                )
            y = matmul.tw_matmul(x, packed, backend=self.backend, block_m=self.block_m)
        else:
            kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
            y = jnp.dot(x, kernel)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,))
        return y


def pack_tw_params(params: Any, g: int, *, include: str = r"(^|/)kernel$", **pack_kwargs) -> dict:
    """Moves the 2-D kernels of `params` into packed form, for `TWDense`.

    Not jit-able (see `pack_tw`). Leaves whose '/'-joined path matches
    `include` (re.search) and that are 2-D are packed; all other leaves stay.

    Args:
      params: the "params" collection of a model built with `TWDense` layers.
      g: tile width G.
      include: regex selecting the kernels to pack.
      **pack_kwargs: passed on to `pack_tw` (max_buckets, row_multiple).

    Returns:
      Variables {"params": rest, "tw": packed kernels} for `model.apply`.
    """
    try:
        pattern = re.compile(include)
    except re.error as err:
        raise ValueError(f"include={include!r} is not a valid regex: {err}") from err
    flat = traverse_util.flatten_dict(params, sep="/")
    rest, packed = {}, {}
    for path, leaf in flat.items():
        if pattern.search(path) and jnp.ndim(leaf) == 2:
            packed[path] = formats.pack_tw(leaf, g, **pack_kwargs)
        else:
            rest[path] = leaf
    if not packed:
        raise ValueError(f"include={include!r} matches no 2-D leaf of params")
    return {
        "params": traverse_util.unflatten_dict(rest, sep="/"),
        TW_COLLECTION: traverse_util.unflatten_dict(packed, sep="/"),
    }
