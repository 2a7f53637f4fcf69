r"""Latency, energy and EDP of structured-sparse GEMMs (TASD paper evaluation; docs/cost_model.md).

An analytic model, vectorised over GEMMs (numpy arrays of length G, never a
Python loop over tiles), simple enough to recompute one GEMM by hand. GEMM
`C[m, n] = A[m, k] @ B[k, n]`, A the activations, B the weights, operands int8,
everything below per batch element and then multiplied by `batch`.

**Series and slots.** A series `N1:M1 + N2:M2 + ...` on an operand along k
occupies `kslots = sum_i Ni * ceil(k / Mi)` MAC slots per output (dense:
`kslots = k`), so a series costs the sum over its terms. Each term must be one
of the hardware's modes for that operand (`Hardware.supports`), else
`ValueError`. On a single-sparse-operand design only one operand may carry a
series. The DSTC-like design skips zeros of both operands instead:
`kslots = k * dw * da` (operand densities; independence assumed).

**Compute.** The array computes a `tile_m x tile_n` output block, `tile_k` slots
deep, per cycle (16 x 16 x 4 = 1024 MACs), padding m and n to the block:
`compute = batch * ceil(m/tile_m) * ceil(n/tile_n) * ceil(kslots/tile_k)` cycles.

**Passes.** Off the TASD tensor core a series runs term after term: for each
output tile the terms take turns on the same accumulators (`C += A @ B_i`), so
the dense operand is streamed into the array once per term, while the sparse
operand's terms are streamed once in all; DRAM traffic is that of one pass (the
SMEM tile holds what every term needs). The TASD tensor core (`one_pass`)
consumes all terms in one sweep over k, streaming the dense operand once. An
activation series must be produced at run time: the TASD tensor core
decomposes A as it loads it from DRAM; other designs first run a decomposition
pass that reads A from DRAM and writes its compressed terms back (charged at
DRAM only).

**Operand sizes (bits).** Dense: `rows * k * 8` (`value_bits`). An N:M term: values
`rows * N * ceil(k/M) * 8` plus metadata `rows * N * ceil(k/M) * ceil(log2 M)`
(one index per kept value; 2 bits for 2:4 as on NVIDIA's STC). Unstructured
(DSTC): values `rows * k * d * 8` plus a 1-bit-per-element bitmap. `rows` is m for
A and n for B.

**Reuse and traffic.** Output-stationary at both on-chip levels:
* DRAM -> SMEM, operands as stored (compressed if sparse; A dense where the
  TASD tensor core decomposes it on load): if the smaller fits in half the
  SMEM it is held and both are read once; else C is tiled into `smem_tile_m x smem_tile_n` blocks
  (128 x 256: their 32-bit partial sums fill half the 256 KB SMEM) and
  `A * ceil(n/smem_tile_n) + B * ceil(m/smem_tile_m)` bits are read.
* SMEM -> RF: the RFs hold the partial sums of a `rf_tile_m x rf_tile_n` (64 x
  128) output tile while k streams: SMEM reads `A * ceil(n/rf_tile_n) + B *
  ceil(m/rf_tile_m)`; every bit read lands in an RF (one RF write).
* RF -> array: each value is broadcast along one side of the 16 x 16 block: RF
  reads `A * ceil(n/tile_n) + B * ceil(m/tile_m)`.
* SMEM also takes every DRAM fill and every C from the array (writes) and sends
  C to DRAM (reads); C is written once, as int8. Metadata bits go to the
  metadata SRAMs' energies.
In the last two, A and B are the operands' streamed bits: the compressed terms,
read once, for a sparse operand; its dense size once per pass for the dense one.

**Latency** per GEMM is the bottleneck: `max(compute, DRAM bits / (8 *
dram_bytes_per_cycle), max(SMEM read bits, SMEM write bits) / (8 *
smem_bytes_per_cycle))` (DRAM reads and writes share one channel; SMEM has a
read and a write port; RF bandwidth is assumed to keep up). GEMMs run one after
another: model cycles are the sum.

**Energy** = sum over levels of bits read (written) x read (write) energy per
bit, plus MACs: the `batch * m * n * kslots` slots executed are charged `mac_pj`
when effectual and `mac_gated_pj` when an operand is zero on designs that gate
(`gates_zeros`), all at `mac_pj` on the dense core; effectual MACs are
`batch * m * n * k * dw * da`, with each operand's density capped at its
series' coverage `sum Ni/Mi`. The DSTC skips every ineffectual MAC and merges
each product into a partial sum held in the per-PE latch RF (a `value_bits`-wide
LRF read and write per effectual MAC).

**EDP** = cycles x pJ, per GEMM; the model's EDP is total cycles x total pJ.
"""

import collections
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from tasd_jax import patterns
from tasd_jax.cost.gemms import GEMM, check_gemms
from tasd_jax.cost.hardware import Hardware, hardware



class Estimate(NamedTuple):
    """Per-GEMM costs (numpy arrays of length G, in the order of `gemms`) and totals.

    Units: cycles; pJ; EDP in pJ x cycles. `traffic_bits` maps "dram", "smem_read",
    "smem_write", "rf_read", "rf_write" (values and metadata together) to bits;
    `energy_by_part` maps "dram", "smem", "rf", "mac" to pJ.
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
    traffic_bits: dict[str, np.ndarray]
    macs: np.ndarray
    effectual_macs: np.ndarray

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
        """Model EDP: total cycles x total energy, pJ x cycles."""
        return self.total_cycles * self.total_energy_pj


def estimate(
    gemms: Sequence[GEMM],
    hw: "Hardware | str",
    *,
    weight_series: Any = None,
    activation_series: Any = None,
    density: Any = None,
    activation_density: Any = None,
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
      density: fraction of non-zeros in each weight operand as executed (pass
        the measured density of the decomposed weights): a float, a mapping
        GEMM name -> float (missing 1.0) or G floats; default 1.
      activation_density: the same for the A operands.

    Returns:
      An `Estimate`.

    Raises:
      TypeError: an entry of `gemms` that is not a `GEMM` (`check_gemms`).
      ValueError: a GEMM size that is not an integer >= 0, a series the
        hardware cannot run (naming both), a sparse series on both operands of
        a single-sparse-operand design, a density outside [0, 1], a mapping
        naming unknown GEMMs, or a mapping over GEMMs that share a name.
    """
    hw = hardware(hw) if isinstance(hw, str) else hw
    gemms = check_gemms(gemms)
    if not gemms:
        raise ValueError("estimate needs at least one GEMM (got an empty list)")
    m, k, n, batch = (
        np.array([getattr(g, f) for g in gemms], np.float64) for f in ("m", "k", "n", "batch")
    )
    w_specs = _per_gemm(weight_series, gemms, "weight_series", "dense")
    for i, (g, spec) in enumerate(zip(gemms, w_specs)):
        if not g.weight and spec != "dense":
            if isinstance(weight_series, Mapping):
                raise ValueError(
                    f"weight_series {spec!r} given for GEMM {g.name!r}, which has no weight operand"
                )
            w_specs[i] = "dense"
    a_specs = _per_gemm(activation_series, gemms, "activation_series", "dense")
    dw = _densities(density, gemms, "density")
    da = _densities(activation_density, gemms, "activation_density")

    w_terms = _terms(w_specs, gemms, hw, "weight")
    a_terms = _terms(a_specs, gemms, hw, "activation")
    w_sparse = w_terms.coverage < 1.0
    a_sparse = a_terms.coverage < 1.0
    both = w_sparse & a_sparse
    if hw.sparse_operands < 2 and both.any():
        g = int(np.argmax(both))
        raise ValueError(
            f"hardware {hw.name!r} runs a series on one operand only; GEMM {gemms[g].name!r} has "
            f"weight series {w_specs[g]!r} and activation series {a_specs[g]!r}"
        )
    bits = hw.value_bits
    dw_eff = np.minimum(dw, w_terms.coverage)
    da_eff = np.minimum(da, a_terms.coverage)

    dense_a, dense_b = m * k * bits, n * k * bits
    if hw.unstructured:
        kslots = k * dw_eff * da_eff
        a_vals, a_meta = dense_a * da_eff, m * k  # bitmap: 1 bit per element
        b_vals, b_meta = dense_b * dw_eff, n * k
        # Operands arrive compressed from DRAM; no pass re-reads anything.
        a_dram, b_dram = a_vals + a_meta, b_vals + b_meta
        a_stream, b_stream = (a_vals, a_meta), (b_vals, b_meta)
        decompose_read = decompose_write = np.zeros_like(k)
    else:
        kslots = np.where(w_sparse, w_terms.slots(k), np.where(a_sparse, a_terms.slots(k), k))
        n_terms = np.where(w_sparse, w_terms.count, np.where(a_sparse, a_terms.count, 1))
        passes = np.ones_like(k) if hw.one_pass else n_terms.astype(np.float64)
        a_vals, a_meta = m * a_terms.slots(k) * bits, m * a_terms.meta_bits(k)
        b_vals, b_meta = n * w_terms.slots(k) * bits, n * w_terms.meta_bits(k)
        # Into the array, the dense operand is streamed once per pass; the sparse
        # one's terms once in all.
        a_stream = (np.where(a_sparse, a_vals, passes * dense_a), a_meta)
        b_stream = (np.where(w_sparse, b_vals, passes * dense_b), b_meta)
        # Activation terms: the TASD tensor core decomposes A as it loads it from
        # DRAM; elsewhere a decomposition pass reads A and writes its terms first.
        decomposes_on_load = a_sparse & hw.one_pass
        a_dram = np.where(decomposes_on_load, dense_a, a_vals + a_meta)
        b_dram = b_vals + b_meta
        separate = a_sparse & ~hw.one_pass
        decompose_read = np.where(separate, dense_a, 0.0)
        decompose_write = np.where(separate, a_vals + a_meta, 0.0)

    compute = batch * _ceil(m / hw.tile_m) * _ceil(n / hw.tile_n) * _ceil(kslots / hw.tile_k)

    # DRAM -> SMEM: hold the smaller operand if it fits in half the SMEM, else tile C.
    tiled = a_dram * _ceil(n / hw.smem_tile_n) + b_dram * _ceil(m / hw.smem_tile_m)
    fits = np.minimum(a_dram, b_dram) <= hw.smem_bytes * 8 / 2
    operand_read = batch * np.where(fits, a_dram + b_dram, tiled)
    c_write = batch * m * n * bits
    dram_read = operand_read + batch * decompose_read
    dram_write = c_write + batch * decompose_write
    meta_share = (a_meta + b_meta) / np.maximum(a_dram + b_dram, 1.0)

    # SMEM -> RF -> array: output-stationary tiles, each value broadcast along a side.
    def reuse(a_bits, b_bits, tm, tn):
        return batch * (a_bits * _ceil(n / tn) + b_bits * _ceil(m / tm))

    rf_write_vals = reuse(a_stream[0], b_stream[0], hw.rf_tile_m, hw.rf_tile_n)
    rf_write_meta = reuse(a_stream[1], b_stream[1], hw.rf_tile_m, hw.rf_tile_n)
    smem_read_vals = rf_write_vals + c_write  # operands out to the RFs, C out to DRAM
    smem_read_meta = rf_write_meta
    smem_write_vals = operand_read * (1 - meta_share) + c_write  # DRAM fills, C from the array
    smem_write_meta = operand_read * meta_share
    rf_read_vals = reuse(a_stream[0], b_stream[0], hw.tile_m, hw.tile_n)
    rf_read_meta = reuse(a_stream[1], b_stream[1], hw.tile_m, hw.tile_n)

    dram_cycles = (dram_read + dram_write) / (8 * hw.dram_bytes_per_cycle)
    smem_cycles = np.maximum(smem_read_vals + smem_read_meta, smem_write_vals + smem_write_meta) / (
        8 * hw.smem_bytes_per_cycle
    )
    cycles = np.maximum(compute, np.maximum(dram_cycles, smem_cycles))

    e = hw.energy
    slots = batch * m * n * kslots
    effectual = batch * m * n * k * dw_eff * da_eff
    if hw.unstructured:
        lrf = (e.lrf.read_pj_per_bit + e.lrf.write_pj_per_bit) * bits
        mac = effectual * (e.mac_pj + lrf)
    elif hw.gates_zeros:
        mac = effectual * e.mac_pj + (slots - effectual) * e.mac_gated_pj
    else:
        mac = slots * e.mac_pj
    energy_by_part = {
        "dram": dram_read * e.dram.read_pj_per_bit + dram_write * e.dram.write_pj_per_bit,
        "smem": smem_read_vals * e.smem.read_pj_per_bit
        + smem_write_vals * e.smem.write_pj_per_bit
        + smem_read_meta * e.smem_metadata.read_pj_per_bit
        + smem_write_meta * e.smem_metadata.write_pj_per_bit,
        "rf": rf_read_vals * e.rf.read_pj_per_bit
        + rf_write_vals * e.rf.write_pj_per_bit
        + rf_read_meta * e.rf_metadata.read_pj_per_bit
        + rf_write_meta * e.rf_metadata.write_pj_per_bit,
        "mac": mac,
    }
    return Estimate(
        hardware=hw.name,
        gemms=gemms,
        weight_series=tuple(w_specs),
        activation_series=tuple(a_specs),
        cycles=cycles,
        compute_cycles=compute,
        dram_cycles=dram_cycles,
        smem_cycles=smem_cycles,
        energy_pj=sum(energy_by_part.values()),
        energy_by_part=energy_by_part,
        traffic_bits={
            "dram": dram_read + dram_write,
            "smem_read": smem_read_vals + smem_read_meta,
            "smem_write": smem_write_vals + smem_write_meta,
            "rf_read": rf_read_vals + rf_read_meta,
            "rf_write": rf_write_vals + rf_write_meta,
        },
        macs=batch * m * n * k,
        effectual_macs=effectual,
    )


def _ceil(x: np.ndarray) -> np.ndarray:
    return np.ceil(x - 1e-9)


class _Terms(NamedTuple):
    """The N:M terms of one operand's series per GEMM, padded with n=0 to [G, T]."""

    n: np.ndarray  # [G, T]
    m: np.ndarray  # [G, T]

    @property
    def count(self) -> np.ndarray:
        return (self.n > 0).sum(axis=1)

    @property
    def coverage(self) -> np.ndarray:
        """sum_i Ni / Mi, 1 for dense."""
        return (self.n / self.m).sum(axis=1)

    def term_slots(self, k: np.ndarray) -> np.ndarray:
        """[G, T]: kept values per row of k for each term."""
        return self.n * _ceil(k[:, None] / self.m)

    def slots(self, k: np.ndarray) -> np.ndarray:
        return self.term_slots(k).sum(axis=1)

    def meta_bits(self, k: np.ndarray) -> np.ndarray:
        """Metadata per row: a ceil(log2 M)-bit index per kept value (none if dense)."""
        index_bits = np.where(self.n < self.m, np.ceil(np.log2(self.m)), 0.0)
        return (self.term_slots(k) * index_bits).sum(axis=1)


def _terms(specs: Sequence[str], gemms: tuple[GEMM, ...], hw: Hardware, operand: str) -> _Terms:
    series = {spec: patterns.as_series(spec) for spec in set(specs)}
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
    width = max(len(s.terms) for s in series.values())
    n = np.zeros((len(specs), width))
    mm = np.ones((len(specs), width))
    for row, spec in enumerate(specs):
        for col, term in enumerate(series[spec].terms):
            n[row, col], mm[row, col] = term.n, term.m
    return _Terms(n, mm)


def _per_gemm(value: Any, gemms: tuple[GEMM, ...], what: str, default: Any) -> list:
    """One entry per GEMM from a scalar, a name mapping or a sequence; specs as strings."""
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
    if default == "dense":
        return [patterns.parse(v).spec() if v is not None else "dense" for v in out]
    return out


def _densities(value: Any, gemms: tuple[GEMM, ...], what: str) -> np.ndarray:
    d = np.array(_per_gemm(value, gemms, what, 1.0), np.float64)
    # 0 is allowed: a fully pruned layer (e.g. block-wise pruning at a high rate) costs no MAC.
    bad = d[(d < 0) | (d > 1) | ~np.isfinite(d)]
    if bad.size:
        raise ValueError(f"{what} must lie in [0, 1]; got {bad[:5].tolist()}")
    return d


__all__ = ["Estimate", "estimate"]
