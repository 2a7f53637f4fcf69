"""From a per-layer choice of series to the cost model's per-GEMM operands.

A choice names series by layer (`GEMM.layer`, the module path); the cost model
takes one weight series, activation series and density per GEMM. This module
is the one mapping between the two, used by TASDER's `Problem` and the TASD
reproduction:

* `gemm_operands`: per GEMM, its `Operands` under a choice;
* `estimate_operands`: `estimate` of those operands.

Densities only change the cost on a design that skips zeros as they are (the
DSTC, `Hardware.unstructured`); elsewhere the series' structure sets it. An
activation density therefore applies where the layer's input carries a series,
or on such a design.
"""

from typing import Callable, Mapping, NamedTuple, Sequence

from tasd_jax.cost.edp import Estimate, estimate
from tasd_jax.cost.gemms import GEMM
from tasd_jax.cost.hardware import Hardware

# (GEMM, its weight series) -> the share of non-zeros of the weight as executed.
WeightDensity = Callable[[GEMM, str], float]


class Operands(NamedTuple):
    """One GEMM's operands for `estimate`: canonical specs and densities in [0, 1]."""

    weight_series: str
    activation_series: str
    weight_density: float
    activation_density: float


def gemm_operands(
    gemms: Sequence[GEMM],
    hw: Hardware,
    weights: Mapping[str, str],
    activations: Mapping[str, str],
    weight_density: WeightDensity,
    activation_density: Mapping[str, float],
    *,
    key: Callable[[GEMM], "str | None"] = lambda g: g.layer,
) -> list[Operands]:
    """Per GEMM, the operands of the choice (`weights`, `activations`: {key: spec}).

    Args:
      gemms: the model's GEMMs.
      hw: the design (its `unstructured` flag decides where densities apply).
      weights, activations: series by GEMM key; absent keys are "dense". A GEMM
        without a weight operand (attention) keeps a dense weight.
      weight_density: the executed density of a GEMM's weight under its series.
      activation_density: {key: input density}; absent keys are 1.
      key: a GEMM's key in the three mappings; its layer by default.

    Returns:
      One `Operands` per GEMM, in order.
    """
    out = []
    for g in gemms:
        k = key(g)
        w = weights.get(k, "dense") if g.weight else "dense"
        a = activations.get(k, "dense")
        exploited = a != "dense" or hw.unstructured
        out.append(Operands(w, a, weight_density(g, w),
                            activation_density.get(k, 1.0) if exploited else 1.0))
    return out


def estimate_operands(gemms: Sequence[GEMM], hw: "Hardware | str",
                      operands: Sequence[Operands]) -> Estimate:
    """`estimate` of `gemms` on `hw` with one `Operands` per GEMM."""
    if len(operands) != len(gemms):
        raise ValueError(f"{len(operands)} operands given for {len(gemms)} GEMMs")
    w, a, dw, da = (list(column) for column in zip(*operands)) if operands else ([],) * 4
    return estimate(gemms, hw, weight_series=w, activation_series=a, density=dw,
                    activation_density=da)

