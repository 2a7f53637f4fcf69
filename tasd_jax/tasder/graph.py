"""Which GEMM layers take a decomposable input (TASD-A), read from the traced computation.

The TASD paper decomposes a layer's input activations at run time where that
input is sparse because a ReLU produced it (docs/tasd.md, TASD-A): in a
ResNet every convolution after a ReLU, the first one of each bottleneck block
included (its Fig. 8), never the pixel-fed stem; in a transformer the input of
the MLP's second layer, after GELU, judged by pseudo-density. This module
finds those layers from the jaxpr of the model, never from layer names.

`layer_inputs(apply_fn, variables, inputs)` traces `apply_fn(variables,
inputs)` with every GEMM layer's input recorded (`activations.capture_inputs`)
and follows each recorded input backward through the equations that keep
zeros zeros and move or pool values without mixing in new non-zeros:

* shape and layout: reshape, transpose, squeeze, expand_dims, broadcast,
  copy, convert_element_type, slice, dynamic_slice, gather, concatenate
  (every part must qualify) and pad with a zero padding value;
* pooling: reduce_window max / sum (max and average pooling), reduce_max /
  reduce_sum (global pooling), and a division or multiplication by a constant
  (the average's 1/window).

Calls (jit, custom_jvp / custom_vjp, checkpoint) are looked through. What the
walk stops at decides the layer's `source`:

* `relu`: `max(x, 0)` (a residual add followed by ReLU is a ReLU of the sum);
  the layer is eligible and its sparsity is the share of exact zeros;
* `gelu` / `silu`: a product whose other factor is computed from erf / erfc /
  tanh (GELU) or the logistic function (SiLU / Swish) of the same input; the
  layer is eligible and its sparsity is the pseudo-sparsity (the paper's
  measure for activations that are rarely exactly zero);
* `input`: an input of the model itself (pixels, embeddings fed in): not
  eligible, as the paper keeps the stem dense;
* anything else (a normalisation, an add, an attention product): not
  eligible, and the reason names the primitive.
"""

from typing import Any, Callable, NamedTuple

import jax
from jax.extend import core as jex_core

from tasd_jax.tasder import activations

# Equations whose output is zero wherever their (one) data input is zero and
# whose non-zeros come from that input: followed backward.
_LAYOUT = frozenset({
    "reshape", "transpose", "squeeze", "expand_dims", "broadcast_in_dim", "copy", "copy_p",
    "convert_element_type", "slice", "dynamic_slice", "gather", "rev", "reduce_precision",
    "optimization_barrier",
})
_POOLING = frozenset({"reduce_window_max", "reduce_window_sum", "reduce_window",
                      "reduce_max", "reduce_sum", "cumsum"})
_SCALING = frozenset({"div", "mul"})
_SMOOTH = {"erf": "gelu", "erfc": "gelu", "tanh": "gelu", "logistic": "silu"}
# How far back from a product the GELU / SiLU factor is looked for: GELU's
# 0.5 * x * erfc(-x / sqrt(2)) is four equations deep.
_SMOOTH_DEPTH = 6

ELIGIBLE_SOURCES = ("relu", "gelu", "silu")


class LayerInput(NamedTuple):
    """What produces one GEMM layer's input, and whether TASD-A applies to it.

    Attributes:
      source: "relu", "gelu", "silu", "input" or the primitive that produced it.
      eligible: whether the layer's input may be decomposed (source is a ReLU,
        GELU or SiLU).
      through: the value-preserving equations walked through on the way
        (e.g. ("reduce_window_sum", "div", "reshape") for average pooling).
      reason: one sentence for reports.

    Example:
      >>> info = layer_inputs(model.apply, variables, images)["stage1_block0/conv_1"]
      >>> info.source, info.eligible                  # ("relu", True)
      >>> info.through, info.reason
    """

    source: str
    eligible: bool
    through: tuple[str, ...]
    reason: str


class _Eqn(NamedTuple):
    primitive: str
    inputs: tuple  # canonical vars or jex_core.Literal
    params: dict


_CALLS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def _inner_jaxpr(eqn) -> Any:
    """The jaxpr a call-like equation runs (jit, custom_jvp_call, checkpoint...), else None.

    Control flow (scan, while, cond) is not looked into: what it produces is
    its own source."""
    if eqn.primitive.name in ("scan", "while", "cond"):
        return None
    for key in _CALLS:
        inner = eqn.params.get(key)
        if inner is not None:
            return getattr(inner, "jaxpr", inner)
    return None


class _Value:
    """One value of the inlined program: a jaxpr shared by several call sites (every
    `relu` call runs one jaxpr) gets fresh values at each site."""

    __slots__ = ()


def _inline(jaxpr, env: dict, producers: dict) -> None:
    """Fills `producers` {value: _Eqn} for `jaxpr` with calls inlined, in program
    order; `env` maps this jaxpr's vars to values (its inputs on entry, every var
    it defines on return)."""

    def resolve(atom):
        return atom if isinstance(atom, jex_core.Literal) else env[atom]

    for eqn in jaxpr.eqns:
        inputs = tuple(resolve(v) for v in eqn.invars)
        inner = _inner_jaxpr(eqn)
        if inner is not None and len(inner.invars) == len(inputs):
            sub_env = dict(zip(inner.invars, inputs))
            sub_env.update({c: _Value() for c in inner.constvars})
            _inline(inner, sub_env, producers)
            for outer, inner_out in zip(eqn.outvars, inner.outvars):
                env[outer] = (inner_out if isinstance(inner_out, jex_core.Literal)
                              else sub_env[inner_out])
            continue
        for out in eqn.outvars:
            env[out] = value = _Value()
            producers[value] = _Eqn(eqn.primitive.name, inputs, dict(eqn.params))


def _is_zero(atom, producers: dict) -> bool:
    """A literal 0, or a broadcast of one."""
    while not isinstance(atom, jex_core.Literal):
        eqn = producers.get(atom)
        if eqn is None or eqn.primitive not in ("broadcast_in_dim", "convert_element_type",
                                                "reshape"):
            return False
        atom = eqn.inputs[0]
    try:
        return float(atom.val) == 0.0
    except (TypeError, ValueError):
        return False


def _varying(producers: dict, roots: set) -> set:
    """Every value computed from `roots` (the model's inputs and parameters); the rest
    are constants. `producers` is in program order."""
    varying = set(roots)
    for var, eqn in producers.items():
        if any(not isinstance(a, jex_core.Literal) and a in varying for a in eqn.inputs):
            varying.add(var)
    return varying


def _smooth_factor(atom, producers: dict, depth: int) -> str | None:
    """'gelu' / 'silu' when erf / tanh / logistic lies within `depth` equations behind atom."""
    if depth < 0 or isinstance(atom, jex_core.Literal):
        return None
    eqn = producers.get(atom)
    if eqn is None:
        return None
    if eqn.primitive in _SMOOTH:
        return _SMOOTH[eqn.primitive]
    for a in eqn.inputs:
        found = _smooth_factor(a, producers, depth - 1)
        if found:
            return found
    return None


class _Graph(NamedTuple):
    producers: dict
    model_inputs: set
    params: set
    varying: set
    memo: dict  # value -> (source, through): each value is walked once


def _source(var, g: _Graph) -> tuple[str, tuple[str, ...]]:
    """(source, equations walked through, nearest first) of one value (module docstring)."""
    if var not in g.memo:
        g.memo[var] = _walk(var, g)
    return g.memo[var]


def _walk(var, g: _Graph) -> tuple[str, tuple[str, ...]]:
    if var in g.model_inputs:
        return "input", ()
    if var in g.params:
        return "parameter", ()
    eqn = g.producers.get(var)
    if eqn is None:
        return "unknown", ()
    prim, args = eqn.primitive, eqn.inputs
    data = [a for a in args if not isinstance(a, jex_core.Literal)]
    moving = [a for a in data if a in g.varying]

    def through(a):
        kind, path = _source(a, g)
        return kind, (prim,) + path

    if prim == "max" and len(args) == 2 and any(_is_zero(a, g.producers) for a in args):
        return "relu", ()
    if prim == "clamp" and _is_zero(args[0], g.producers):
        return "relu", ()
    if prim == "mul" and len(data) == 2:
        for a, b in ((data[0], data[1]), (data[1], data[0])):
            kind = _smooth_factor(b, g.producers, _SMOOTH_DEPTH)
            if kind and a in g.varying:
                return kind, ()
    if prim in _LAYOUT and data:
        return through(data[0])
    if prim == "pad" and data and _is_zero(args[1], g.producers):
        return through(args[0])
    if prim in _POOLING and data:
        return through(data[0])
    if prim in _SCALING and len(moving) == 1:
        return through(moving[0])
    if prim in ("add", "sub", "mul", "div", "concatenate") and moving:
        sources = {_source(a, g)[0] for a in moving}
        # Values computed from the model's inputs alone (normalised pixels) are input.
        if "input" in sources and sources <= {"input", "parameter"}:
            return "input", (prim,)
        if prim == "concatenate" and len(sources) == 1 and len(moving) == len(data):
            return through(data[0])
    return prim, ()


def _reason(source: str, through: tuple[str, ...]) -> str:
    path = f" (through {', '.join(dict.fromkeys(reversed(through)))})" if through else ""
    if source == "relu":
        return f"input produced by a ReLU{path}: sparsity = share of exact zeros"
    if source in ("gelu", "silu"):
        return (f"input produced by {source.upper()}{path}: sparsity = pseudo-sparsity (share "
                "of elements outside 99% of the magnitude sum), as the paper does for BERT")
    if source == "input":
        return f"input is the model's own input{path}: kept dense, as the paper's stem"
    return (f"input produced by `{source}`{path}, not by a ReLU, GELU or SiLU: kept dense, as "
            "the paper keeps such layers")


def layer_inputs(apply_fn: Callable[..., Any], variables: Any, inputs: Any) -> dict[str, LayerInput]:
    """{GEMM layer path: what produces its input} for `apply_fn(variables, inputs)`.

    Args:
      apply_fn: a flax `model.apply` or a function of that shape.
      variables: the model's variables (only their shapes and dtypes are used).
      inputs: one input pytree (only shapes and dtypes are used), e.g. images
        [B, H, W, C] or token ids [B, tokens]; any B, as nothing is computed.

    Returns:
      {module path ("stage1_block0/conv_0"): LayerInput}, for every `nn.Dense`,
      `nn.DenseGeneral` and `nn.Conv` (and subclasses) the call runs, in the
      order of their paths.

    Example:
      >>> found = layer_inputs(model.apply, variables, images)
      >>> [path for path, info in found.items() if info.eligible]
      >>> found["conv_stem"].source                    # "input": the stem stays dense
    """
    def captured(v, x):
        return activations.capture_inputs(apply_fn, v, x)[1]

    closed, shapes = jax.make_jaxpr(captured, return_shape=True)(variables, inputs)
    jaxpr = closed.jaxpr
    n_params = len(jax.tree_util.tree_leaves(variables))
    env = {v: _Value() for v in (*jaxpr.invars, *jaxpr.constvars)}
    params = {env[v] for v in (*jaxpr.invars[:n_params], *jaxpr.constvars)}
    model_inputs = {env[v] for v in jaxpr.invars[n_params:]}
    producers: dict = {}
    _inline(jaxpr, env, producers)
    graph = _Graph(producers, model_inputs, params, _varying(producers, model_inputs | params), {})
    paths = [key_path[0].key for key_path, _ in jax.tree_util.tree_leaves_with_path(shapes)]
    out = {}
    for path, var in zip(paths, jaxpr.outvars):
        if isinstance(var, jex_core.Literal):  # a layer fed a constant
            out[path] = LayerInput("constant", False, (), _reason("constant", ()))
            continue
        var = env[var]
        source, through = _source(var, graph)
        out[path] = LayerInput(source, source in ELIGIBLE_SOURCES, through,
                               _reason(source, through))
    return dict(sorted(out.items()))
