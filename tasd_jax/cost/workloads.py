"""A model's GEMMs at one input shape, and what its weights keep under each series.

    wl = workload("resnet50", model, variables, (1, 224, 224, 3))
    measured = measure_weights(variables, wl.gemms, ["dense", "2:4", "2:8+1:8"])
    measured.density[("2:4", "params/conv_init/kernel")]

`measure_weights` decomposes each GEMM weight leaf into each series (N:M groups
along the kernel's contraction axis, `tasd_jax.tasd`) and records the executed
density and the share of the weight kept, the statistics an estimate
(`tasd_jax.cost.estimate`) and a per-layer series choice need.
"""

from typing import Any, Iterable, NamedTuple

import jax.numpy as jnp

from tasd_jax import models, tasd, tree_paths
from tasd_jax.cost.gemms import GEMM, model_gemms


class Workload(NamedTuple):
    """A model at one input shape: its name ("<model>_<shape>") and GEMMs."""

    name: str
    gemms: list[GEMM]


def workload(model_name: str, model: Any, variables: Any, input_shape: tuple[int, ...]) -> Workload:
    """The GEMMs of `model` (a `tasd_jax.models` model) on one input batch of `input_shape`;
    `variables` may be arrays or `jax.ShapeDtypeStruct`s."""
    dtype = models.input_spec(model_name, input_shape).dtype
    gemms = model_gemms(model, variables, input_shape, dtype)
    return Workload(f"{model_name}_{'x'.join(map(str, input_shape))}", gemms)


class LayerWeights(NamedTuple):
    """Measured statistics of each weight leaf under each series.

    Keys `(spec, path)`: `density` is the non-zero fraction of the decomposed
    (reconstructed) weight; `kept_l1` / `kept_nonzero` compare it with the pruned
    weight. Keys `path`: `abs_sum` and `nonzero` of the pruned weight.
    """

    density: dict[tuple[str, str], float]
    kept_l1: dict[tuple[str, str], float]
    kept_nonzero: dict[tuple[str, str], float]
    abs_sum: dict[str, float]
    nonzero: dict[str, float]


def measure_weights(variables: Any, gemms: Iterable[GEMM], series: Iterable[str]) -> LayerWeights:
    """Decomposes each GEMM weight leaf into each series and measures it.

    Args:
      variables: the model variables (arrays), already pruned as they are to be run.
      gemms: GEMMs whose `weight_path` names leaves of `variables`.
      series: spec strings; N:M groups along each kernel's contraction axis.
    """
    flat = tree_paths.flatten(variables)
    paths = sorted({g.weight_path for g in gemms if g.weight_path is not None})
    pruned = {p: jnp.asarray(flat[p]) for p in paths}
    out = LayerWeights({}, {}, {}, {}, {})
    for path, w in pruned.items():
        out.abs_sum[path] = float(jnp.sum(jnp.abs(w)))
        out.nonzero[path] = float(jnp.count_nonzero(w))
    for spec in series:
        for leaf in tasd.decompose_tree(pruned, [(".", spec)]).report:
            out.density[(spec, leaf.path)] = leaf.metrics.density
            out.kept_l1[(spec, leaf.path)] = leaf.metrics.kept_l1
            out.kept_nonzero[(spec, leaf.path)] = leaf.metrics.kept_nonzero
    return out
