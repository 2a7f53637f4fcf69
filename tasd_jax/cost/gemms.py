"""The GEMMs of a JAX function, read from its jaxpr (the TASD evaluation workloads).

`gemms_of(fn, *args)` traces `fn(*args)` with `jax.make_jaxpr` and lists every
`dot_general` and `conv_general_dilated`, recursing into sub-jaxprs (pjit,
custom_jvp/vjp, remat, scan, cond, while), as GEMMs `C[m, n] = A[m, k] @ B[k, n]`:

* dot_general: k = product of the contracting dims, m / n = products of the free
  dims of the activation / weight operand, `batch` = product of the batch dims
  (attention's `[B, heads]`).
* conv_general_dilated as its im2col GEMM: m = output batch x output positions,
  k = kernel positions x input channels per group, n = output channels per
  group, `batch` = feature groups x batch groups (a grouped conv is `groups`
  separate GEMMs).
* A GEMM inside a `scan` body counts `length` times (folded into `batch`); inside a
  `cond`, the branch with the most MACs counts; a `while` body counts once (its
  trip count is not known when tracing).

Weights vs activations: an operand is a *weight* when it is computed from the
arguments at `params_argnums` alone (e.g. the `variables` of `model.apply`), not
from the data. B is always the weight when there is one (an `x @ W` written as
`W.T @ x` is turned round); a GEMM with no weight operand (attention's `Q K^T`,
`P V`) has `weight=False` and weight series never apply to it. `weight_path` is
the `/`-joined pytree path of the largest parameter leaf B is computed from
(`params/layer/kernel`), the key to pair a GEMM with its decomposed weights.

Names come from the jaxpr equations' `source_info.name_stack`, which flax fills
with the module path (`ResNet/stage1_block0/conv1`); equations outside any named
scope are named after the primitive. A repeated name gets `#i` appended.
"""

import collections
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
from jax.extend import core as jex_core
import numpy as np

from tasd_jax import tree_paths


class GEMM(NamedTuple):
    """One GEMM `C[m, n] = A[m, k] @ B[k, n]`, `batch` times over.

    Attributes:
      name: the equation's name stack (see module docstring).
      m, k, n: the GEMM's sizes.
      batch: how many independent m x k x n products (attention heads, groups).
      weight: B is a parameter (computed from the parameters alone).
      weight_path: the parameter leaf B comes from, or None.
      op: "dot_general" or "conv".
    """

    name: str
    m: int
    k: int
    n: int
    batch: int = 1
    weight: bool = True
    weight_path: str | None = None
    op: str = "dot_general"

    @property
    def layer(self) -> str | None:
        """The layer whose kernel is B (`tree_paths.layer_name`), or None."""
        return tree_paths.layer_name(self.weight_path)

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.k * self.n


def check_gemms(gemms: Any, what: str = "gemms") -> tuple[GEMM, ...]:
    """The GEMMs as a tuple, checked before any cost is computed.

    Raises:
      TypeError: `gemms` is not a sequence, or an entry is not a `GEMM` (a
        plain tuple's fields would be read by position, unchecked).
      ValueError: a size (m, k, n, batch) that is not an integer >= 0: a
        negative or fractional size gives negative or fractional cycles and
        energy. A size of 0 is an empty GEMM and costs nothing.
    """
    if isinstance(gemms, (str, bytes, GEMM)) or not isinstance(gemms, Sequence):
        raise TypeError(f"{what} must be a sequence of GEMMs, got {type(gemms).__name__}")
    for i, g in enumerate(gemms):
        if not isinstance(g, GEMM):
            raise TypeError(
                f"{what}[{i}] is a {type(g).__name__}, not a GEMM: build it with "
                "GEMM(name, m, k, n, ...) or take it from gemms_of"
            )
        for field in ("m", "k", "n", "batch"):
            size = getattr(g, field)
            if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 0:
                raise ValueError(
                    f"{what}[{i}] ({g.name!r}) has {field}={size!r}: sizes must be integers >= 0"
                )
    return tuple(gemms)


def total_macs(gemms: Sequence[GEMM]) -> int:
    """Sum of multiply-accumulates over `gemms`."""
    return sum(g.macs for g in gemms)


def gemms_of(
    fn: Callable[..., Any], *args: Any, params_argnums: Sequence[int] = (0,)
) -> list[GEMM]:
    """Lists the GEMMs in `fn(*args)`, in program order.

    Args:
      fn: a function of `args` (e.g. a flax `model.apply`).
      *args: its arguments; only shapes matter (`jax.ShapeDtypeStruct` works).
      params_argnums: the positions of `args` holding parameters; an operand
        computed from these alone is a weight.

    Returns:
      `GEMM`s with unique names.
    """
    bad = [i for i in params_argnums if not 0 <= i < len(args)]
    if bad:
        raise ValueError(f"params_argnums {bad} are not positions of the {len(args)} arguments")
    closed = jax.make_jaxpr(fn)(*args)
    leaf_paths, leaf_sizes, is_param = [], [], []
    for i, arg in enumerate(args):
        prefix = "" if len(params_argnums) == 1 else f"arg{i}/"
        for key_path, leaf in jax.tree_util.tree_leaves_with_path(arg):
            leaf_paths.append(prefix + tree_paths.path_str(key_path))
            leaf_sizes.append(math.prod(np.shape(leaf)))
            is_param.append(i in params_argnums)
    if len(leaf_paths) != len(closed.jaxpr.invars):
        raise ValueError(
            f"gemms_of: {len(closed.jaxpr.invars)} jaxpr inputs but {len(leaf_paths)} "
            "argument leaves; pass arrays or pytrees of arrays"
        )
    # Dependencies are tracked as sets of parameter-leaf indices, or _DATA.
    deps = {}
    for index, (var, param) in enumerate(zip(closed.jaxpr.invars, is_param)):
        deps[var] = frozenset({index}) if param else _DATA
    raw = []
    _walk(closed.jaxpr, deps, "", 1, raw)
    named = []
    for name, m, k, n, batch, weight_deps, op in raw:
        weight = weight_deps is not None
        path = None
        if weight and weight_deps:
            path = leaf_paths[max(weight_deps, key=lambda i: (leaf_sizes[i], -i))]
        named.append(GEMM(name, m, k, n, batch, weight, path, op))
    return _unique_names(named)


def model_gemms(model: Any, variables: Any, input_shape: tuple[int, ...], input_dtype: Any) -> list[GEMM]:
    """The GEMMs of one inference forward pass of a flax model (`model.apply(..., train=False)`).

    Args:
      model: a flax module taking one input batch and `train`.
      variables: its variables (arrays or `jax.ShapeDtypeStruct`s).
      input_shape, input_dtype: the input batch, e.g. (1, 224, 224, 3) float32.
    """
    x = jax.ShapeDtypeStruct(tuple(input_shape), input_dtype)
    return gemms_of(lambda v, inputs: model.apply(v, inputs, train=False), variables, x)


def _unique_names(gemms: list[GEMM]) -> list[GEMM]:
    counts = collections.Counter(g.name for g in gemms)
    seen = collections.Counter()
    out = []
    for g in gemms:
        if counts[g.name] > 1:
            out.append(g._replace(name=f"{g.name}#{seen[g.name]}"))
            seen[g.name] += 1
        else:
            out.append(g)
    return out


_DATA = frozenset({-1})  # depends on a non-parameter argument


def _merge(in_deps: list) -> frozenset:
    """What an equation's outputs depend on: the union of its inputs' dependencies."""
    if any(d is _DATA for d in in_deps):
        return _DATA  # the parameter leaves behind an activation never matter
    return frozenset().union(*in_deps)


def _deps_of(atom, deps) -> frozenset:
    # Literals (constants) depend on nothing.
    return deps.get(atom, frozenset()) if isinstance(atom, jex_core.Var) else frozenset()


def _join(scope: str, eqn) -> str:
    inner = str(eqn.source_info.name_stack)
    return "/".join(s for s in (scope, inner) if s)


def _walk(jaxpr, deps: dict, scope: str, repeat: int, out: list) -> None:
    """Appends (name, m, k, n, batch, weight_deps or None, op) for each GEMM in `jaxpr`."""
    for eqn in jaxpr.eqns:
        in_deps = [_deps_of(v, deps) for v in eqn.invars]
        name = _join(scope, eqn)
        prim = eqn.primitive.name
        if prim == "dot_general":
            out.append(_dot_general(eqn, in_deps, name or prim, repeat))
        elif prim == "conv_general_dilated":
            out.append(_conv(eqn, in_deps, name or prim, repeat))
        else:
            _walk_sub(eqn, in_deps, name, repeat, out)
        union = _merge(in_deps)
        for v in eqn.outvars:
            deps[v] = union


def _walk_sub(eqn, in_deps: list, scope: str, repeat: int, out: list) -> None:
    """Recurses into the sub-jaxprs of a higher-order primitive."""
    prim, params = eqn.primitive.name, eqn.params
    if prim == "cond":
        # Operands after the branch index; count the branch with the most MACs.
        best = []
        for branch in params["branches"]:
            found = []
            _walk(branch.jaxpr, dict(zip(branch.jaxpr.invars, in_deps[1:])), scope, repeat, found)
            if sum(math.prod(g[1:5]) for g in found) >= sum(math.prod(g[1:5]) for g in best):
                best = found
        out.extend(best)
        return
    if prim == "while":
        body = params["body_jaxpr"]
        skip = params["cond_nconsts"]
        _walk(body.jaxpr, dict(zip(body.jaxpr.invars, in_deps[skip:])), scope, repeat, out)
        return
    if prim == "scan":
        repeat *= params["length"]
    for value in params.values():
        sub = getattr(value, "jaxpr", value)  # ClosedJaxpr -> Jaxpr
        if isinstance(sub, jex_core.Jaxpr):
            if len(sub.invars) == len(in_deps):
                sub_deps = dict(zip(sub.invars, in_deps))
            else:  # unknown calling convention: every input may feed every operand
                union = _merge(in_deps)
                sub_deps = {v: union for v in sub.invars}
            _walk(sub, sub_deps, scope, repeat, out)


def _weight_deps(d: frozenset) -> frozenset | None:
    """The parameter leaves an operand comes from, or None if it depends on data."""
    return None if d is _DATA else d


def _dot_general(eqn, in_deps: list, name: str, repeat: int) -> tuple:
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
    lhs_w, rhs_w = (_weight_deps(d) for d in in_deps[:2])
    batch = math.prod(lhs[d] for d in lb)
    k = math.prod(lhs[d] for d in lc)
    lhs_free = math.prod(s for d, s in enumerate(lhs) if d not in lc and d not in lb)
    rhs_free = math.prod(s for d, s in enumerate(rhs) if d not in rc and d not in rb)
    if lhs_w is not None and rhs_w is None:  # W @ x: the weight is B of (x^T W^T)
        return (name, rhs_free, k, lhs_free, batch * repeat, lhs_w, "dot_general")
    return (name, lhs_free, k, rhs_free, batch * repeat, rhs_w, "dot_general")


def _conv(eqn, in_deps: list, name: str, repeat: int) -> tuple:
    dn = eqn.params["dimension_numbers"]
    rhs = eqn.invars[1].aval.shape
    out = eqn.outvars[0].aval.shape
    groups = eqn.params["feature_group_count"] * eqn.params["batch_group_count"]
    m = out[dn.out_spec[0]] * math.prod(out[d] for d in dn.out_spec[2:])
    k = rhs[dn.rhs_spec[1]] * math.prod(rhs[d] for d in dn.rhs_spec[2:])
    n = rhs[dn.rhs_spec[0]] // groups
    return (name, m, k, n, groups * repeat, _weight_deps(in_deps[1]), "conv")
