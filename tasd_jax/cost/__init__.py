"""Hardware cost model: GEMMs of a model, accelerators, latency / energy / EDP.

    from tasd_jax import cost
    gemms = cost.gemms_of(model.apply, variables, images)
    est = cost.estimate(gemms, cost.hardware("stc"), weight_series="2:4")
    est.total_cycles, est.total_energy_pj, est.total_edp

Implements the evaluation model of the TASD paper (its EDP results) on the paper's six
designs, by its names: `tc` (dense), `dstc` (dual-side unstructured), `ttc_stc_m4`,
`ttc_stc_m8`, `ttc_vegeta_m4` and `ttc_vegeta_m8` (TASD tensor cores), plus the prior
structured-sparse hardware `stc`, `vegeta` and `vegeta_m8` (a series term after term)
and the unrestricted `ttc`; `dense` is an alias of `tc`. A design lists the series it
runs: `hardware(name).candidate_series("weight")`. The module `hardware` describes the
designs and their energy tables; `dataflow` costs one GEMM as the Sparseloop artefact's
designs do (within 0.1% of Sparseloop's own outputs); `edp` documents how a model's GEMMs,
series, TASD-A placement and aggregation come together.
"""

from tasd_jax.cost import choice
from tasd_jax.cost.edp import Estimate, estimate
from tasd_jax.cost.gemms import GEMM, gemms_of, model_gemms, total_macs
from tasd_jax.cost.hardware import (
    ENERGY_TABLES,
    PAPER_DESIGNS,
    PRIOR_DESIGNS,
    Access,
    EnergyTable,
    Hardware,
    design_name,
    hardware,
    hardware_aliases,
    hardware_names,
)

__all__ = [
    "Access",
    "ENERGY_TABLES",
    "EnergyTable",
    "Estimate",
    "GEMM",
    "Hardware",
    "PAPER_DESIGNS",
    "PRIOR_DESIGNS",
    "design_name",
    "estimate",
    "gemms_of",
    "hardware",
    "hardware_aliases",
    "hardware_names",
    "model_gemms",
    "total_macs",
]
