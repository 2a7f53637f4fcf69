"""Parameter pytrees addressed by '/'-joined key paths, and path-regex rules.

Rules pick leaves of a parameter pytree by `re.search` on the '/'-joined key
path (e.g. "params/Dense_0/kernel"); the first rule that matches a leaf wins.
Used by the decomposition of pytrees (`tasd.decompose_tree`) and by pruning.
"""

import re
from typing import Any, Mapping, NamedTuple, Sequence

import jax


def path_str(key_path: tuple) -> str:
    """'/'-joins a jax key path: (DictKey('params'), DictKey('w')) -> 'params/w'."""
    parts = []
    for key in key_path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def flatten(tree: Any) -> dict[str, Any]:
    """Returns {'/'-joined path: leaf} in the tree's leaf order.

    Every leaf must be an array (anything with a shape and a dtype: jax and
    numpy arrays, numpy scalars, tracers): the callers read the leaves' shapes.

    Raises:
      TypeError: a leaf is not an array (a Python float, int, str, ...),
        naming its path and type.
      ValueError: two leaves join to the same path (`{"a/b": x, "a": {"b": y}}`),
        naming both: one would silently replace the other.
    """
    flat, key_paths = {}, {}
    for key_path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        path = path_str(key_path)
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            raise TypeError(
                f"leaf {path!r} is a {type(leaf).__name__} ({leaf!r:.40}), not an array: "
                "parameter trees hold arrays only (wrap it as np.asarray(value))"
            )
        if path in flat:
            raise ValueError(
                f"two leaves flatten to the path {path!r}: "
                f"{jax.tree_util.keystr(key_paths[path])} and {jax.tree_util.keystr(key_path)}; "
                "rename one (paths are '/'-joined keys)"
            )
        flat[path], key_paths[path] = leaf, key_path
    return flat


def unflatten(flat: Mapping[str, Any], like: Any) -> Any:
    """Inverse of `flatten`: a tree shaped like `like` with leaves from `flat`."""
    paths = [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(like)]
    missing = [p for p in paths if p not in flat]
    if missing:
        raise ValueError(f"unflatten: no leaf given for paths {missing[:5]}")
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), [flat[p] for p in paths])


class Rule(NamedTuple):
    """Leaves whose path matches `pattern` (re.search) get `value` (a spec,
    a pattern, ...); `axis` overrides the leaf's default contraction axis."""

    pattern: str
    value: Any
    axis: int | None = None


def as_rules(rules: Sequence[Rule | tuple]) -> tuple[Rule, ...]:
    """Accepts Rule values or (pattern, value[, axis]) tuples; checks the regexes."""
    if isinstance(rules, (str, bytes)) or not isinstance(rules, Sequence):
        raise ValueError(f"rules {rules!r:.80} must be a list of (path_regex, spec) or "
                         "(path_regex, spec, axis) tuples")
    out = []
    for rule in rules:
        if (isinstance(rule, (str, bytes)) or not isinstance(rule, (tuple, list))
                or not 2 <= len(rule) <= 3):
            raise ValueError(
                f"rule {rule!r:.80} must be (path_regex, spec) or (path_regex, spec, axis)")
        rule = Rule(*rule)
        try:
            re.compile(rule.pattern)
        except re.error as err:
            raise ValueError(f"rule path regex {rule.pattern!r} is not a valid regex: {err}") from err
        out.append(rule)
    return tuple(out)


def match_rules(
    paths: Sequence[str], rules: Sequence[Rule | tuple], *, require_all: bool = True
) -> dict[str, Rule | None]:
    """Maps each path to the first rule whose regex it matches (None: no rule).

    Raises ValueError if `require_all` and some rule matches no path, since a
    rule that selects nothing is almost always a typo in a path regex.
    """
    rules = as_rules(rules)
    chosen = {}
    used = [False] * len(rules)
    for path in paths:
        chosen[path] = None
        for i, rule in enumerate(rules):
            if re.search(rule.pattern, path):
                chosen[path], used[i] = rule, True
                break
    unused = [rules[i].pattern for i, u in enumerate(used) if not u]
    if require_all and unused:
        raise ValueError(
            f"rule path regex(es) {unused} match no parameter; paths are e.g. {list(paths)[:6]}"
        )
    return chosen


def default_axis(ndim: int) -> int:
    """Contraction axis of a flax kernel: -2 for rank >= 2 ([..., in, out]), else -1.

    The one default of `tasd.decompose`, the patterns and pruning. On a kernel
    of rank >= 3 (a convolution [kh, kw, cin, cout]) it stands for the whole
    K = kh*kw*cin of the GEMM view (docs/conventions.md).
    """
    return -2 if ndim >= 2 else -1


def check_kernel(rule: Rule, path: str, shape: tuple, action: str) -> None:
    """Refuses a rule that selects a leaf of rank < 2 (a bias, a norm's scale: a rule
    picking one is almost always a loose regex); `action` is "pruned" or "decomposed".

    Raises:
      ValueError: naming the rule, the leaf and its shape.
    """
    if len(shape) < 2:
        raise ValueError(
            f"rule {rule.pattern!r} selects {path!r} of shape {tuple(shape)}; only weights of "
            f"rank >= 2 (kernels) can be {action}: tighten the regex")


# --- layers: the one mapping kernel path <-> layer name <-> GEMM -------------
#
# A GEMM layer is a flax module with a "kernel" parameter of rank >= 2; its
# name is the module path ("stage1_block0/conv_1"), the key of per-layer
# choices, activation statistics and captured inputs. Its kernel's path is
# "<layer>/kernel" in the params tree and "params/<layer>/kernel" in the
# variables tree (a GEMM's `weight_path`).

KERNEL = "kernel"
PARAMS = "params"


def layer_name(path: str | None) -> str | None:
    """The layer whose kernel is at `path` ("params/a/b/kernel" or "a/b/kernel"
    -> "a/b"); None for no path or a leaf that is not a kernel (a bias, an
    embedding table)."""
    if not path:
        return None
    parent, _, leaf = path.rpartition("/")
    if leaf != KERNEL or not parent:
        return None
    return parent.removeprefix(f"{PARAMS}/") if parent != PARAMS else None


def kernel_path(layer: str) -> str:
    """The path of `layer`'s kernel in the params tree ("a/b" -> "a/b/kernel")."""
    return f"{layer}/{KERNEL}"


def gemm_layers(flat_params: Mapping[str, Any]) -> dict[str, str]:
    """{layer name: kernel path} of every kernel of rank >= 2 in a flattened
    params tree (`flatten(variables["params"])`), in the tree's order."""
    out = {}
    for path, leaf in flat_params.items():
        layer = layer_name(path)
        if layer is not None and len(getattr(leaf, "shape", ())) >= 2:
            out[layer] = path
    return out
