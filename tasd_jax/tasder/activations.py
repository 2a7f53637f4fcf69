"""TASD-A: the input activations of a model's GEMM layers, measured and decomposed.

The TASD paper decomposes activations at run time (docs/tasd.md, TASD-A): a
layer's input A is replaced by the sum of the terms of an N:M series along the
contraction axis (the channels of a convolution's NHWC input, the features of
a Dense input), so `A W` runs on structured-sparse hardware. Which series a
layer can take depends on how sparse its inputs are, measured on a
calibration set.

Layers are addressed by their flax module path ("stage1_block0/conv_1",
"layer_2/output"); inputs are captured with `flax.linen.intercept_methods`
around the `__call__` of every `nn.Dense` and `nn.Conv` (and subclasses, e.g.
the tile-wise `TWDense`), so no model needs a hook of its own.
"""

import functools
from typing import Any, Callable, Mapping, NamedTuple

import flax.linen as nn
import jax
import numpy as np

from tasd_jax import patterns

GEMM_LAYERS = (nn.Dense, nn.DenseGeneral, nn.Conv)


def _gemm_path(context: Any) -> str | None:
    """The '/'-joined path of an intercepted GEMM layer's `__call__`, else None."""
    if context.method_name != "__call__" or not isinstance(context.module, GEMM_LAYERS):
        return None
    return "/".join(context.module.path)


def capture_inputs(
    apply_fn: Callable[..., Any], variables: Any, *args: Any, **kwargs: Any
) -> tuple[Any, dict[str, jax.Array]]:
    """Runs `apply_fn(variables, *args, **kwargs)` and records every GEMM layer's input.

    Jit-able (wrap the call in `jax.jit`); a layer called twice keeps its last input.

    Args:
      apply_fn: a flax `model.apply` or a function of that shape.
      variables: the model's variables, passed to `apply_fn` first.
      *args, **kwargs: the rest of `apply_fn`'s arguments (e.g. images [B, H, W, C]).

    Returns:
      (the output, {module path: input activation [..., K]}): K is the layer's
      contraction axis (a convolution's NHWC input [B, H, W, C_in], a Dense
      input [B, ..., features]).

    Example:
      >>> logits, inputs = capture_inputs(model.apply, variables, images)
      >>> inputs["stage1_block0/conv_1"].shape       # (B, H, W, C_in)
    """
    inputs: dict[str, jax.Array] = {}

    def record(next_fun, call_args, call_kwargs, context):
        path = _gemm_path(context)
        if path is not None:
            inputs[path] = call_args[0]
        return next_fun(*call_args, **call_kwargs)

    with nn.intercept_methods(record):
        out = apply_fn(variables, *args, **kwargs)
    return out, inputs


class ActivationStats(NamedTuple):
    """Sparsity of one layer's input over a calibration set (fractions in [0, 1]).

    Attributes:
      mean_sparsity: fraction of exact zeros, averaged over examples.
      p99_sparsity: the 99th percentile over examples of that fraction.
      pseudo_sparsity: 1 - pseudo-density, averaged over examples: the share
        of elements that can go while keeping `keep_fraction` of the sum of
        magnitudes (the paper's measure for GELU/Swish inputs, which are rarely
        exactly zero).
      examples: number of examples measured.

    Example:
      >>> stats = activation_stats(inputs["stage1_block0/conv_1"])
      >>> stats.mean_sparsity, stats.p99_sparsity, stats.pseudo_sparsity, stats.examples
    """

    mean_sparsity: float
    p99_sparsity: float
    pseudo_sparsity: float
    examples: int


def activation_stats(x: Any, keep_fraction: float = 0.99) -> ActivationStats:
    """Statistics of one layer's inputs x [B, ...] (B examples), computed in numpy.

    Args:
      x: one layer's inputs [B, ...] (array-like), e.g. [B, H, W, C_in] or
        [B, tokens, features]; each example's elements are measured together.
      keep_fraction: the share of an example's magnitude sum that defines its
        pseudo-density.

    Returns:
      The `ActivationStats` over the B examples.

    Raises:
      ValueError: x has no example, or keep_fraction is not in (0, 1].

    Example:
      >>> _, inputs = capture_inputs(model.apply, variables, images)
      >>> activation_stats(inputs["stage1_block0/conv_1"]).mean_sparsity   # e.g. 0.52
    """
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction={keep_fraction} must lie in (0, 1]")
    x = np.abs(np.asarray(x, np.float64))
    if x.ndim < 2 or x.shape[0] == 0 or x[0].size == 0:
        raise ValueError(f"activation_stats needs [examples, ...] with examples, got {x.shape}")
    flat = x.reshape(x.shape[0], -1)
    zeros = np.mean(flat == 0, axis=1)
    ordered = -np.sort(-flat, axis=1)
    cumulative = np.cumsum(ordered, axis=1)
    total = cumulative[:, -1:]
    # Elements needed (largest first) to reach keep_fraction of the magnitude sum.
    needed = np.sum(cumulative < keep_fraction * total, axis=1) + 1
    needed = np.where(total[:, 0] > 0, needed, 0)
    return ActivationStats(
        mean_sparsity=float(zeros.mean()),
        p99_sparsity=float(np.percentile(zeros, 99)),
        pseudo_sparsity=float(1.0 - np.mean(needed / flat.shape[1])),
        examples=int(x.shape[0]),
    )


def same_m_keep_count(series: "str | patterns.Pattern") -> tuple[int, int] | None:
    """(M, K) when every term of `series` has the same M: then the series keeps
    exactly the K = N1 + N2 + ... largest of every group of M (1:M + 1:M = 2:M);
    None for mixed M. "dense" is one 1:1 term: (1, 1), keep everything.

    Example:
      >>> same_m_keep_count("2:8+1:8")     # (8, 3)
      >>> same_m_keep_count("2:4+1:8")     # None
    """
    terms = patterns.as_series(series).terms
    ms = {t.m for t in terms}
    if len(ms) != 1:
        return None
    (m,) = ms
    return m, min(m, sum(t.n for t in terms))


# Jitted: called eagerly per layer and candidate (the searches' kept-magnitude
# tables), where each of its dozens of primitives would otherwise compile alone.
@functools.partial(jax.jit, static_argnums=1)
def keep_top_per_group(x: jax.Array, m: int, keep: jax.Array) -> jax.Array:
    """x with only the `keep` largest magnitudes of every M consecutive elements along
    the last axis (ties to the lower index; `patterns.series_ops.top_per_group`). `keep` may
    be traced (0..m), so one compiled function serves every same-M series:
    `keep = m` is dense.

    Args:
      x: array [..., K]; groups of `m` run along the last axis K.
      m: the group size M (static).
      keep: how many to keep per group, an int or a traced int scalar in 0..m.

    Returns:
      An array of x's shape [..., K] and dtype, 0 where an element is not kept.

    Example:
      >>> m, k = same_m_keep_count("2:8+1:8")                  # (8, 3)
      >>> keep_top_per_group(x, m, jnp.asarray(k))             # x [B, ..., K]
    """
    return patterns.series_ops.top_per_group(x, m, keep, x.ndim - 1)


def with_activation_series(
    apply_fn: Callable[..., Any],
    series: Mapping[str, "str | patterns.Pattern"] | None = None,
    keep: Mapping[str, tuple[int, jax.Array]] | None = None,
) -> Callable[..., Any]:
    """`apply_fn` with chosen layers' input activations decomposed (TASD-A).

    Args:
      apply_fn: a flax `model.apply`.
      series: {module path: series}: that layer's input is replaced by the sum
        of its series' terms along the last axis (static: a new series compiles
        anew), computed in one pass without writing the terms
        (`patterns.series_ops.series_sum`, bit-exact to `tasd.reconstruct` of
        `tasd.decompose`).
      keep: {module path: (M, K)} with K possibly traced: keep the K largest of
        every M along the last axis (`keep_top_per_group`): every same-M series
        of one design shares one compilation.

    Returns:
      A function with `apply_fn`'s signature; jit-able. A decomposed input keeps
      its shape ([..., contraction axis], as `capture_inputs` records it), and the
      outputs are `apply_fn`'s.

    Raises:
      ValueError: a layer is given both a series and a keep count.

    Example:
      >>> apply = jax.jit(with_activation_series(model.apply, {"stage1_block0/conv_1": "2:8"}))
      >>> logits = apply(variables, images)                     # [B, classes]
    """
    series = {p: patterns.as_series(s) for p, s in (series or {}).items()}
    keep = dict(keep or {})
    both = sorted(set(series) & set(keep))
    if both:
        raise ValueError(f"layers {both} are given both a series and a keep count")

    def decompose_input(next_fun, call_args, call_kwargs, context):
        path = _gemm_path(context)
        if path in series:
            x = patterns.series_ops.series_sum(call_args[0], series[path].terms, axis=-1)
            call_args = (x, *call_args[1:])
        elif path in keep:
            m, k = keep[path]
            call_args = (keep_top_per_group(call_args[0], m, k), *call_args[1:])
        return next_fun(*call_args, **call_kwargs)

    def apply(*args, **kwargs):
        with nn.intercept_methods(decompose_input):
            return apply_fn(*args, **kwargs)

    return apply
