"""A tile-wise-sparse Dense layer: pruned models run inference through `tw_matmul`.

Tile-wise sparsity (Guo et al., SC20; docs/tile_wise.md) pays off at inference,
once the weights are pruned. `TWDense` is a drop-in `nn.Dense` (same `kernel`
and `bias` parameters, so it trains, prunes and checkpoints like one) for the
models' `dense` hook, `get_model("bert", dense=TWDense)`. `pack_tw_params`
moves every pruned kernel into a `"tw"` variable collection in packed form;
a `TWDense` that finds its packed kernel there multiplies with `tw_matmul`.

Packing reads the zeros of the values, so it runs once, outside jit; the
packed arrays are ordinary inputs of the jitted apply (static shapes).

Folding a pair of layers (`pack_tw_params(..., fold=...)`). When a layer's
output goes through an elementwise activation straight into another Dense
(BERT's FFN: intermediate -> GELU -> output), the first layer's pruned
columns need not be written at all: each is its bias b_j for every token, so
it feeds the second layer the constant act(b_j). The fold therefore
* has the producer return only its compact product (kept columns in packing
  order, `tw_matmul(..., compact=True)`) plus the bias of those columns, so
  the activation runs on the kept columns only;
* repacks the consumer's kernel with its rows permuted into the producer's
  compact order (zero rows for the producer's padding columns), so its gather
  reads the compact activations directly;
* adds act(b_j) @ W2[j, :] of every pruned producer column j to the
  consumer's bias, which keeps the result exact.
Between the two the activations are [..., compact_width] instead of
[..., features]; the model code in between must be elementwise.
"""

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from tasd_jax.kernels import formats, matmul

TW_COLLECTION = "tw"

# The FFN of `models.bert.EncoderLayer`: intermediate -> exact GELU -> output.
BERT_FFN_FOLD = (("intermediate", "output", functools.partial(jax.nn.gelu, approximate=False)),)


class TWDense(nn.Module):
    """`nn.Dense` whose kernel, when packed into the "tw" collection, runs TW-sparse.

    The "tw" collection of a layer holds "kernel" (a `PackedTW`) and, for a
    folded pair (module doc), either "compact_bias" (the producer: it returns
    the compact product + this bias, [..., kernel.compact_width]) or "bias"
    (the consumer: its bias with the producer's pruned columns folded in,
    used instead of the "params" bias).

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
            run = functools.partial(
                matmul.tw_matmul, x, packed, backend=self.backend, block_m=self.block_m
            )
            if self.has_variable(TW_COLLECTION, "compact_bias"):
                return run(compact=True) + self.get_variable(TW_COLLECTION, "compact_bias")
            y = run()
            if self.has_variable(TW_COLLECTION, "bias"):
                return y + self.get_variable(TW_COLLECTION, "bias")
        else:
            kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
            y = jnp.dot(x, kernel)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,))
        return y


Fold = tuple[str, str, Callable[[jax.Array], jax.Array]]


def pack_tw_params(
    params: Any,
    g: int,
    *,
    include: str = r"(^|/)kernel$",
    fold: Sequence[Fold] = (),
    **pack_kwargs,
) -> dict:
    """Moves the 2-D kernels of `params` into packed form, for `TWDense`.

    Not jit-able (see `pack_tw`). Leaves whose '/'-joined path matches
    `include` (re.search) and that are 2-D are packed; all other leaves stay.

    Args:
      params: the "params" collection of a model built with `TWDense` layers.
      g: tile width G.
      include: regex selecting the kernels to pack.
      fold: (producer, consumer, activation) triples naming sibling modules
        whose output and input are joined by `activation` (elementwise),
        e.g. `BERT_FFN_FOLD`; every packed producer kernel ".../producer/kernel"
        is folded with ".../consumer/kernel" (module doc).
      **pack_kwargs: passed on to `pack_tw` (max_buckets, row_multiple).

    Returns:
      Variables {"params": rest, "tw": packed kernels and folded biases} for
      `model.apply`.
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
    for producer, consumer, activation in fold:
        for path in [p for p in packed if p.endswith(f"{producer}/kernel")]:
            parent = path[: -len(f"{producer}/kernel")]
            _fold_pair(
                flat, rest, packed, parent + producer, parent + consumer, activation, g, pack_kwargs
            )
    return {
        "params": traverse_util.unflatten_dict(rest, sep="/"),
        TW_COLLECTION: traverse_util.unflatten_dict(packed, sep="/"),
    }


def _fold_pair(
    flat: dict,
    rest: dict,
    packed: dict,
    producer: str,
    consumer: str,
    activation: Callable[[jax.Array], jax.Array],
    g: int,
    pack_kwargs: dict,
) -> None:
    """Folds the packed pair producer -> activation -> consumer (module doc) in
    place: `packed` gains producer/compact_bias and consumer/bias (from the
    original leaves `flat`) and the consumer kernel repacked on the producer's
    compact rows; the two "params" biases leave `rest`."""
    if f"{consumer}/kernel" not in packed:
        raise ValueError(
            f"fold: {producer!r} is packed but its consumer {consumer!r} has no packed kernel"
        )
    first = packed[f"{producer}/kernel"]
    w2 = flat[f"{consumer}/kernel"]
    if first.shape[1] != w2.shape[0]:
        raise ValueError(
            f"fold: {producer!r} has {first.shape[1]} outputs but {consumer!r} takes {w2.shape[0]}"
        )
    n1 = first.shape[1]
    b1 = rest.pop(f"{producer}/bias", jnp.zeros((n1,), w2.dtype))
    # Padding columns of the compact product (index N) get bias 0 and zero rows.
    cols = formats.compact_columns(first)
    packed[f"{producer}/compact_bias"] = jnp.append(b1, 0)[cols]
    pruned = jnp.ones((n1,), bool).at[cols].set(False, mode="drop")
    constant = jnp.where(pruned, activation(b1), 0).astype(w2.dtype)
    b2 = rest.get(f"{consumer}/bias")
    shift = constant @ w2
    if b2 is None:
        if bool(jnp.any(shift != 0)):
            raise ValueError(
                f"fold: {producer!r}'s pruned columns feed {consumer!r} a constant, "
                "but the consumer has no bias to fold it into"
            )
    else:
        packed[f"{consumer}/bias"] = b2 + shift
        del rest[f"{consumer}/bias"]
    rows = jnp.append(w2, jnp.zeros((1, w2.shape[1]), w2.dtype), axis=0)[cols]
    packed[f"{consumer}/kernel"] = formats.pack_tw(rows, g, **pack_kwargs)
