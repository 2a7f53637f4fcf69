"""Every accelerator x every weight series on one workload, plus a per-layer choice.

    runs = sweep_workload(wl, measured, hardware=["tc", "stc"], series=["dense", "2:4"],
                          energy="paper", activation_density=1.0, min_kept_l1=0.9)

For each accelerator, `sweep_workload` estimates every series it runs on every
GEMM, then a per-layer "tasd" choice: the series with the lowest layer EDP
among those keeping at least `min_kept_l1` of the layer's L1 magnitude (dense
when none does), a weight-fidelity stand-in for TASDER's accuracy budget.
"""

from typing import NamedTuple, Sequence

import numpy as np

from tasd_jax.cost.edp import Estimate, estimate
from tasd_jax.cost.gemms import GEMM
from tasd_jax.cost.hardware import hardware as hardware_of
from tasd_jax.cost.workloads import LayerWeights, Workload


class Run(NamedTuple):
    """One accelerator running one weight series (or the per-layer "tasd" choice)."""

    hardware: str
    series: str
    estimate: Estimate
    density: np.ndarray  # [G] executed weight density (1 for GEMMs without weights)
    kept_l1: np.ndarray  # [G] share of the pruned weight's L1 kept
    choice: dict[str, str]  # weight path -> series


def _stat(table: dict, specs: list[str], gemms: list[GEMM]) -> np.ndarray:
    """[G] a measured statistic of each GEMM's weight under its series (1 without weights)."""
    return np.array(
        [table[(s, g.weight_path)] if g.weight_path else 1.0 for s, g in zip(specs, gemms)]
    )


def sweep_workload(wl: Workload, weights: LayerWeights, *, hardware: Sequence[str],
                   series: Sequence[str], energy: str, activation_density: float,
                   min_kept_l1: float) -> list[Run]:
    """Every (hardware, series) pair the hardware runs, then that hardware's "tasd" choice.

    Args:
      wl: the workload.
      weights: its measured weight statistics (`tasd_jax.cost.workloads.measure_weights`),
        measured for every spec of `series`.
      hardware: accelerator names (`tasd_jax.cost.hardware_names()`).
      series: canonical spec strings (`patterns.parse(s).spec()`); must include "dense",
        the fallback of the per-layer choice.
      energy: the energy table (`tasd_jax.cost.ENERGY_TABLES`).
      activation_density: the density of every GEMM's activation operand.
      min_kept_l1: the share of a layer's L1 a series must keep to be chosen for it.

    Returns:
      Per accelerator in `hardware` order: one Run per series it runs, then its "tasd" Run.
    """
    if "dense" not in series:
        raise ValueError(
            f"series={list(series)} must include 'dense': it is the per-layer choice "
            "where no other series keeps min_kept_l1 of the layer")
    runs = []
    for hw_name in hardware:
        hw = hardware_of(hw_name, energy=energy)

        def run(name: str, specs: list[str]) -> Run:
            density = _stat(weights.density, specs, wl.gemms)
            est = estimate(wl.gemms, hw, weight_series=specs, density=density,
                           activation_density=activation_density)
            choice = {g.weight_path: s for g, s in zip(wl.gemms, specs) if g.weight_path}
            return Run(hw_name, name, est, density, _stat(weights.kept_l1, specs, wl.gemms), choice)

        own = [run(spec, [spec] * len(wl.gemms)) for spec in series if hw.runs(spec)]
        # TASDER stand-in: per layer, the lowest EDP among the series keeping enough.
        edps = np.stack([r.estimate.edp for r in own])  # [S, G]
        ok = np.stack([(r.kept_l1 >= min_kept_l1) | (r.series == "dense") for r in own])
        best = np.argmin(np.where(ok, edps, np.inf), axis=0)
        runs += own + [run("tasd", [own[b].series for b in best])]
    return runs
