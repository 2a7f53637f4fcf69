r"""Latency, energy and EDP of structured-sparse GEMMs (TASD paper evaluation; docs/cost_model.md).

GEMM `C[m, n] = A[m, k] @ B[k, n]`, A the activations, B the weights, operands
int8. Each GEMM is costed by `dataflow`, the closed-form model of the Sparseloop
artefact's designs (within 0.1% of Sparseloop on its TC, STC and DSTC reference
outputs), with the design's own energy table; a GEMM's `batch` multiplies its
cycles and energy. The GEMMs run one after another.

**Which operand is sparse.** On a structured design (TC, STC, VEGETA, the TASD
tensor cores) one operand may carry a series: the weights (TASD-W) or the
activations (TASD-A). That operand takes the stationary, compressed role of the
artefact's A (`Z[M, N] = A[M, K] B[N, K]`): `M = n, N = m` for weights, `M = m, N =
n` for activations; with no series the weights take it. A series' terms must be
modes of the design for that operand (`Hardware.supports`), else `ValueError`.
The terms run in one pass on a TASD tensor core (`one_pass`), else term after
term, the dense operand streamed once per term. The DSTC (`unstructured`) skips
the zeros of both operands: a series only lowers the density it sees (capped at
its coverage `sum Ni/Mi`); densities are the measured shares of non-zeros.

**TASD-A.** Where the TASD units sit is `activation_placement`:
* `"output"` (the TASD paper's, the default): the units sit at the PE array's
  output, so the producing layer writes its output as the terms; the activation
  terms are stored compressed, and DRAM and SMEM move the terms and their
  metadata.
* `"load"`: the units decompose A between DRAM and SMEM; DRAM moves A dense.
Either way each activation value passes through `terms` top-N selections of
its group of M: `log2(M) (log2(M) + 1) / 4` compare-exchanges per value and term
(a bitonic network over M values), charged at `EnergyTable.compare_pj` as part
"tasd" of the GEMM whose input it is, taking no cycles (pipelined with the
array). A design without TASD units first runs a decomposition pass: A read
dense from DRAM, its terms and metadata written back (DRAM energy and
bandwidth), the same compare-exchanges.

**EDP.** Per GEMM, cycles x pJ. A model's EDP is reported two ways (section 3
of docs/cost_model.md): `total_edp`, total cycles x total energy (the EDP of
the whole inference, the headline), and `layer_edp_sum`, the sum of per-GEMM EDPs.
"""

import collections
import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from tasd_jax import patterns
from tasd_jax.cost import dataflow
from tasd_jax.cost.gemms import GEMM, check_gemms
from tasd_jax.cost.hardware import Hardware, hardware

PLACEMENTS = ("output", "load")
PARTS = ("dram", "smem", "rf", "lrf", "mac", "tasd")


class Estimate(NamedTuple):
    """Per-GEMM costs (numpy arrays of length G, in the order of `gemms`) and totals.

    Units: cycles; pJ; EDP in pJ x cycles. `energy_by_part` maps "dram", "smem",
    "rf", "lrf", "mac", "tasd" (TASD units) to pJ; `traffic_words` maps
    "dram_read", "dram_write", "smem_read", "smem_write" to 8-bit words (metadata
    included); `macs` are the GEMMs' own MACs, `executed_macs` those the design
    runs (k padded to the terms' groups; skipped ones not).
    """

    hardware: str
    gemms: tuple[GEMM, ...]
    weight_series: tuple[str, ...]
    activation_series: tuple[str, ...]
    cycles: np.ndarray
    compute_cycles: np.ndarray
    dram_cycles: np.ndarray
    smem_cycles: np.ndarray
    energy_pj: np.ndarray
    energy_by_part: dict[str, np.ndarray]
    traffic_words: dict[str, np.ndarray]
    macs: np.ndarray
    executed_macs: np.ndarray

    @property
    def edp(self) -> np.ndarray:
        """Per-GEMM EDP, pJ x cycles."""
        return self.cycles * self.energy_pj

    @property
    def total_cycles(self) -> float:
        return float(self.cycles.sum())

    @property
    def total_energy_pj(self) -> float:
        return float(self.energy_pj.sum())

    @property
    def total_edp(self) -> float:
        """Model EDP: total cycles x total energy, pJ x cycles (the headline)."""
        return self.total_cycles * self.total_energy_pj

    @property
    def layer_edp_sum(self) -> float:
        """The other aggregation: the sum of per-GEMM EDPs, pJ x cycles."""
        return float(self.edp.sum())


def estimate(
    gemms: Sequence[GEMM],
    hw: "Hardware | str",
    *,
    weight_series: Any = None,
    activation_series: Any = None,
    density: Any = None,
    activation_density: Any = None,
    activation_placement: str = "output",
    mapping_objective: str = "edp",
) -> Estimate:
    """Latency, energy and EDP of `gemms` on `hw` (see the module docstring).

    Args:
      gemms: the GEMMs (`gemms_of`), G of them.
      hw: a `Hardware` or its name.
      weight_series: series on B along k for GEMMs with a weight operand: None or
        "dense", a spec / pattern for all of them, a mapping GEMM name -> spec
        (missing names dense) or a sequence of G specs. GEMMs without a weight
        operand (attention) stay dense.
      activation_series: series on A along k, the same forms, for every GEMM.
      density: fraction of non-zeros in each weight operand as executed (the
        measured density of the decomposed weights): a float, a mapping GEMM
        name -> float (missing 1.0) or G floats; default 1. Only the DSTC skips
        zeros beyond a series' structure.
      activation_density: the same for the A operands.
      activation_placement: "output" (the TASD paper's) or "load"; see the
        module docstring.
      mapping_objective: how each GEMM's mapping is chosen: "edp" (least cycles x
        energy) or "delay" (fewest cycles, then least energy, as the Sparseloop
        artefact's mapper ranks them).

    Returns:
      An `Estimate`.

    Raises:
      TypeError: an entry of `gemms` that is not a `GEMM` (`check_gemms`), or `hw`
        neither a `Hardware` nor a name.
      ValueError: a GEMM size that is not an integer >= 0, a series the
        hardware cannot run (naming both), a sparse series on both operands of
        a single-sparse-operand design, a density outside [0, 1], a mapping
        naming unknown GEMMs, a mapping over GEMMs that share a name, or an
        unknown placement.
    """
    hw = _checked_hardware(hw)
    gemms = check_gemms(gemms)
    if not gemms:
        raise ValueError("estimate needs at least one GEMM (got an empty list)")
    if activation_placement not in PLACEMENTS:
        raise ValueError(
            f"activation_placement={activation_placement!r} must be one of {PLACEMENTS}")
    if mapping_objective not in dataflow.OBJECTIVES:
        raise ValueError(
            f"mapping_objective={mapping_objective!r} must be one of {dataflow.OBJECTIVES}")
    w_specs, series = _weight_specs(weight_series, gemms)
    a_specs, a_series = _series_per_gemm(activation_series, gemms, "activation_series")
    series.update(a_series)
    dw = _densities(density, gemms, "density")
    da = _densities(activation_density, gemms, "activation_density")
    w_terms = _terms(w_specs, series, gemms, hw, "weight")
    a_terms = _terms(a_specs, series, gemms, hw, "activation")
    _check_sparse_operands(hw, gemms, w_specs, a_specs, w_terms, a_terms)

    table = hw.energy.per_access(hw.dram_write_words_per_cycle)
    rows = [_gemm_costs(g, hw, table, wt, at, dwi, dai, activation_placement, mapping_objective)
            for g, wt, at, dwi, dai in zip(gemms, w_terms, a_terms, dw, da)]
    return _assembled(hw, gemms, w_specs, a_specs, rows)


def _checked_hardware(hw: Any) -> Hardware:
    if not isinstance(hw, (str, Hardware)):
        raise TypeError(f"hw must be a Hardware or a design name, got {hw!r:.60}")
    return hardware(hw) if isinstance(hw, str) else hw


def _weight_specs(weight_series: Any, gemms: tuple[GEMM, ...]) -> tuple[list[str], dict]:
    """`_series_per_gemm` of the weights; GEMMs without a weight operand stay dense
    (naming one is an error only in a mapping, which names GEMMs on purpose)."""
    w_specs, series = _series_per_gemm(weight_series, gemms, "weight_series")
    for i, (g, spec) in enumerate(zip(gemms, w_specs)):
        if not g.weight and spec != "dense":
            if isinstance(weight_series, Mapping):
                raise ValueError(
                    f"weight_series {spec!r} given for GEMM {g.name!r}, which has no weight operand"
                )
            w_specs[i] = "dense"
    series.setdefault("dense", patterns.Dense())
    return w_specs, series


def _check_sparse_operands(hw: Hardware, gemms: tuple[GEMM, ...], w_specs: list[str],
                           a_specs: list[str], w_terms: list[tuple], a_terms: list[tuple]) -> None:
    """Raises ValueError for a GEMM with a sparse series on both operands of a
    design that runs a series on one operand only."""
    if hw.sparse_operands >= 2:
        return
    for g, w, a, wt, at in zip(gemms, w_specs, a_specs, w_terms, a_terms):
        if _sparse(wt) and _sparse(at):
            raise ValueError(
                f"hardware {hw.name!r} runs a series on one operand only; GEMM {g.name!r} "
                f"has weight series {w!r} and activation series {a!r}")


def _assembled(hw: Hardware, gemms: tuple[GEMM, ...], w_specs: list[str], a_specs: list[str],
               rows: list[tuple[dataflow.LevelCosts, dict]]) -> Estimate:
    """The `Estimate` of per-GEMM `_gemm_costs` rows."""
    column = lambda f: np.array([f(r) for r in rows], np.float64)  # noqa: E731
    energy_by_part = {part: column(lambda r, p=part: r[0].energy_pj.get(p, 0.0) + r[1].get(p, 0.0))
                      for part in PARTS}
    return Estimate(
        hardware=hw.name,
        gemms=gemms,
        weight_series=tuple(w_specs),
        activation_series=tuple(a_specs),
        cycles=column(lambda r: r[0].cycles),
        compute_cycles=column(lambda r: r[0].compute_cycles),
        dram_cycles=column(lambda r: r[0].dram_cycles),
        smem_cycles=column(lambda r: r[0].smem_cycles),
        energy_pj=sum(energy_by_part.values()),
        energy_by_part=energy_by_part,
        traffic_words={key: column(lambda r, key=key: r[0].words[key])
                       for key in ("dram_read", "dram_write", "smem_read", "smem_write")},
        macs=np.array([float(g.macs) for g in gemms]),
        executed_macs=column(lambda r: r[0].macs),
    )


def _sparse(terms: tuple) -> bool:
    return any(n < m for n, m in terms)


def _coverage(terms: tuple) -> float:
    return min(1.0, sum(n / m for n, m in terms))


def _gemm_costs(g: GEMM, hw: Hardware, table: dataflow.Energies, w_terms: tuple, a_terms: tuple,
                dw: float, da: float, placement: str,
                objective: str) -> tuple[dataflow.LevelCosts, dict]:
    """One GEMM's costs, `batch` times over, and the extra parts (TASD units, decomposition pass)."""
    extra = {}
    if hw.unstructured:
        costs = dataflow.unstructured(
            g.n, g.k, g.m, round(min(dw, _coverage(w_terms)), 4),
            round(min(da, _coverage(a_terms)), 4), table, objective)
    else:
        sparse_a = _sparse(a_terms)
        terms = a_terms if sparse_a else w_terms
        passes = 1 if hw.one_pass else max(1, sum(n < m for n, m in terms))
        if sparse_a:
            stored_dense = hw.tasd_units and placement == "load"
            costs = dataflow.structured(g.m, g.k, g.n, terms, passes, stored_dense, table,
                                        objective)
            values = float(g.m) * g.k
            compares = values * sum(math.log2(m) * (math.log2(m) + 1) / 4 for n, m in terms if n < m)
            extra["tasd"] = compares * hw.energy.compare_pj
            if not hw.tasd_units:  # a decomposition pass through DRAM first
                stored = sum(values * (n / m) * (1 + dataflow.term_geometry(n, m)[1] / 8)
                             for n, m in terms if n < m)
                words = values + stored
                extra["dram"] = words * hw.energy.dram.read_pj_per_bit * 8
                costs = costs._replace(
                    cycles=costs.cycles + words / dataflow.DRAM_READ_WORDS_PER_CYCLE,
                    dram_cycles=costs.dram_cycles + words / dataflow.DRAM_READ_WORDS_PER_CYCLE)
        else:
            costs = dataflow.structured(g.n, g.k, g.m, terms, passes, False, table, objective)
    if g.batch != 1:
        b = float(g.batch)
        costs = costs._replace(
            cycles=costs.cycles * b, compute_cycles=costs.compute_cycles * b,
            smem_cycles=costs.smem_cycles * b, dram_cycles=costs.dram_cycles * b,
            energy_pj={k: v * b for k, v in costs.energy_pj.items()},
            words={k: v * b for k, v in costs.words.items()}, macs=costs.macs * b)
        extra = {k: v * b for k, v in extra.items()}
    return costs, extra


def _terms(specs: Sequence[str], parsed: Mapping[str, "patterns.Pattern"], gemms: tuple[GEMM, ...],
           hw: Hardware, operand: str) -> list[tuple]:
    """Each GEMM's series as (n, m) terms, after checking the design runs it on
    `operand`; `parsed` maps each distinct spec to its pattern."""
    series = {spec: patterns.as_series(parsed[spec]) for spec in sorted(set(specs))}
    for spec, s in series.items():
        bad = hw.unsupported_terms(s, operand)
        if bad:
            modes = sorted(f"{a}:{b}" for a, b in getattr(hw, f"{operand}_modes")) or ["dense only"]
            users = [g.name for g, sp in zip(gemms, specs) if sp == spec]
            more = f" and {len(users) - 3} more" if len(users) > 3 else ""
            raise ValueError(
                f"hardware {hw.name!r} cannot run {operand} series {spec!r} (terms {bad}; "
                f"GEMMs {users[:3]}{more}): its {operand} modes are {modes}"
            )
    as_terms = {spec: tuple((t.n, t.m) for t in s.terms) for spec, s in series.items()}
    return [as_terms[spec] for spec in specs]


def _series_per_gemm(value: Any, gemms: tuple[GEMM, ...], what: str) -> tuple[list[str], dict]:
    """One spec per GEMM (`_per_gemm`, None as "dense") and {spec: its pattern},
    each distinct value parsed once: a search estimates thousands of choices
    over a model's GEMMs, most of them sharing a few specs."""
    parsed: dict[Any, "patterns.Pattern"] = {}
    specs = []
    for v in _per_gemm(value, gemms, what, "dense"):
        v = "dense" if v is None else v
        try:
            pattern = parsed.get(v)
        except TypeError:  # unhashable: parse it to get its error
            pattern = None
        if pattern is None:
            pattern = parsed[v] = patterns.parse(v)
        specs.append(pattern.spec())
    return specs, {pattern.spec(): pattern for pattern in parsed.values()}


def _per_gemm(value: Any, gemms: tuple[GEMM, ...], what: str, default: Any) -> list:
    """One entry per GEMM from a scalar, a name mapping or a sequence."""
    names = [g.name for g in gemms]
    if value is None:
        out = [default] * len(gemms)
    elif isinstance(value, Mapping):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(
                f"{what} names GEMMs {unknown[:5]} that are not among the {len(names)} given"
            )
        # A name shared by several GEMMs would give them all one entry unasked.
        shared = sorted(name for name, count in collections.Counter(names).items() if count > 1)
        if shared:
            raise ValueError(
                f"{what} is a mapping by GEMM name, but the GEMMs share names {shared[:5]}: "
                "give them unique names (gemms_of does) or pass a sequence"
            )
        out = [value.get(name, default) for name in names]
    elif isinstance(value, (str, patterns.Pattern)) or np.ndim(value) == 0:
        out = [value] * len(gemms)
    else:
        out = list(value)
        if len(out) != len(gemms):
            raise ValueError(f"{what} has {len(out)} entries for {len(gemms)} GEMMs")
    return out


def _densities(value: Any, gemms: tuple[GEMM, ...], what: str) -> np.ndarray:
    d = np.array(_per_gemm(value, gemms, what, 1.0), np.float64)
    # 0 is allowed: a fully pruned layer (e.g. block-wise pruning at a high rate) costs no MAC.
    bad = d[(d < 0) | (d > 1) | ~np.isfinite(d)]
    if bad.size:
        raise ValueError(f"{what} must lie in [0, 1]; got {bad[:5].tolist()}")
    return d


__all__ = ["Estimate", "estimate"]
