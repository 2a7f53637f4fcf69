"""Hardware cost model: GEMMs of a model, accelerators, latency / energy / EDP.

    from tasd_jax import cost
    gemms = cost.gemms_of(model.apply, variables, images)
    est = cost.estimate(gemms, cost.hardware("stc"), weight_series="2:4")
    est.total_cycles, est.total_energy_pj, est.total_edp

Implements the evaluation model of the TASD paper (its EDP results): structured-sparse GEMMs
on the NVIDIA sparse tensor core, VEGETA-like N:M engines, a DSTC-like dual-side
unstructured design and the TASD tensor core. `edp` documents every assumption.
"""

from tasd_jax.cost.edp import Estimate, estimate
from tasd_jax.cost.gemms import GEMM, gemms_of, model_gemms, total_macs
from tasd_jax.cost.hardware import (
    ENERGY_TABLES,
    Access,
    EnergyTable,
    Hardware,
    hardware,
    hardware_names,
)

__all__ = [
    "Access",
    "ENERGY_TABLES",
    "EnergyTable",
    "Estimate",
    "GEMM",
    "Hardware",
    "estimate",
    "gemms_of",
    "hardware",
    "hardware_names",
    "model_gemms",
    "total_macs",
]
