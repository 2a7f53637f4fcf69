"""Accelerators and energy tables as data (the TASD paper evaluation setup; docs/cost_model.md).

Every accelerator here shares one 45 nm int8 geometry, the STC-like Sparseloop
model (Wu et al., MICRO 2022; artefact `Accelergy-Project/micro22-sparseloop-artifact`,
`workspace/2022.micro.artifact/evaluation_setups/fig15_stc_related_setup/
architecture_templates/HW_systems/designs/int8/STC-RF2x-24-bandwidth.yaml`):
LPDDR4 DRAM 64 bits wide at 32 B/cycle, one 256 KB shared buffer (SMEM, plus 32
KB metadata) at 42 B/cycle, four subpartitions of 256 int8 MACs (1024 in all)
each with a 2 KB register file sized for a 16x128 output tile. They differ only
in the N:M modes they run, whether they skip or gate zeros, and whether a TASD
series runs in one pass. So a comparison between them isolates the sparsity
support, as the TASD paper's comparisons do.

An energy table is chosen by name (`hardware(name, energy=...)`); each entry is
`(read pJ, write pJ, access width in bits)` with its source beside it. Traffic is
counted in bits and charged at (energy per access) / (access width): a partial
access is not rounded up.
"""

import dataclasses
import math
from typing import Mapping

from tasd_jax import patterns


@dataclasses.dataclass(frozen=True)
class Access:
    """Energy of one access to a storage level: `bits` wide, in pJ."""

    read_pj: float
    write_pj: float
    bits: int

    @property
    def read_pj_per_bit(self) -> float:
        return self.read_pj / self.bits

    @property
    def write_pj_per_bit(self) -> float:
        return self.write_pj / self.bits


@dataclasses.dataclass(frozen=True)
class EnergyTable:
    """Energy per action of every component the cost model charges.

    Attributes:
      name: the name `hardware(..., energy=name)` selects it by.
      source: where the numbers come from.
      dram, smem, smem_metadata, rf, rf_metadata, lrf: storage accesses.
      mac_pj: one effectual int8 multiply-accumulate.
      mac_gated_pj: one MAC slot whose operand is zero, clock-gated.
    """

    name: str
    source: str
    dram: Access
    smem: Access
    smem_metadata: Access
    rf: Access
    rf_metadata: Access
    lrf: Access
    mac_pj: float
    mac_gated_pj: float


_SPARSELOOP_ERT = (
    "Sparseloop MICRO'22 artefact, 45 nm int8 DSTC/STC energy reference table "
    "(fig15_stc_related_setup/.../ert_art/int8/DSTC-RF2x-24-bandwidth/ERT_summary.yaml), "
    "as listed in docs/cost_model.md"
)

SPARSELOOP45 = EnergyTable(
    name="sparseloop45",
    source=_SPARSELOOP_ERT,
    dram=Access(512.0, 512.0, 64),  # LPDDR4, 64-bit access: ERT system.DRAM read/write
    smem=Access(285.71464, 316.96744, 512),  # 256 KB SMEM, 512-bit line: ERT SMEM read/write
    smem_metadata=Access(25.8695, 19.6486, 64),  # 32 KB metadata SRAM, 64-bit word: ERT SMEM
    rf=Access(1.65889, 1.67589, 8),  # 2 KB subpartition RF, 8-bit word: ERT RF read/write
    rf_metadata=Access(0.95642, 0.95642, 8),  # ERT RF metadata_read/write (width assumed 8 bits)
    lrf=Access(0.49218, 0.49218, 8),  # per-PE latch RF: ERT LRF read/write
    mac_pj=0.5608,  # ERT MAC mac_random
    mac_gated_pj=0.01798,  # ERT MAC mac_gated (= mac_skipped)
)


def _log_interpolate(size: float, lo: tuple[float, float], hi: tuple[float, float]) -> float:
    """Energy at `size` on the straight line through (size, energy) points in log-log."""
    t = math.log(size / lo[0]) / math.log(hi[0] / lo[0])
    return lo[1] * (hi[1] / lo[1]) ** t


# Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm: 64-bit SRAM reads of
# 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ; DRAM 1.3-2.6 nJ per 64 bits; int8
# multiply 0.2 pJ, int8 add 0.03 pJ. Horowitz gives no buffer of 256 KB, so the
# SMEM read is interpolated in log-log between the 32 KB and 1 MB points; no
# register file, so the 8 KB SRAM (the smallest he lists) stands in for it; no
# gated MAC, so Sparseloop's gated/ungated ratio (0.01798 / 0.5608) scales his MAC.
_HOROWITZ_SMEM_PJ = _log_interpolate(256 * 1024, (32 * 1024, 20.0), (1024 * 1024, 100.0))
_HOROWITZ_MAC_PJ = 0.2 + 0.03

HOROWITZ45 = EnergyTable(
    name="horowitz45",
    source="Horowitz, ISSCC 2014, 45 nm (gaps filled as commented in tasd_jax/cost/hardware.py)",
    dram=Access(1300.0, 1300.0, 64),  # DRAM 1.3 nJ / 64 bits: the low end of 1.3-2.6 nJ
    smem=Access(_HOROWITZ_SMEM_PJ, _HOROWITZ_SMEM_PJ, 64),  # ~52.5 pJ, interpolated 256 KB
    smem_metadata=Access(_HOROWITZ_SMEM_PJ, _HOROWITZ_SMEM_PJ, 64),  # same SRAM per bit
    rf=Access(10.0, 10.0, 64),  # 8 KB SRAM 64-bit read
    rf_metadata=Access(10.0, 10.0, 64),  # 8 KB SRAM 64-bit read
    lrf=Access(10.0, 10.0, 64),  # 8 KB SRAM 64-bit read (upper bound for a latch)
    mac_pj=_HOROWITZ_MAC_PJ,  # int8 mult 0.2 + int8 add 0.03
    mac_gated_pj=_HOROWITZ_MAC_PJ * 0.01798 / 0.5608,  # Sparseloop's gated ratio
)

ENERGY_TABLES: Mapping[str, EnergyTable] = {t.name: t for t in (SPARSELOOP45, HOROWITZ45)}


@dataclasses.dataclass(frozen=True)
class Hardware:
    """One accelerator: geometry, sparsity support and energy table.

    GEMM convention `C[m, n] = A[m, k] @ B[k, n]`, B the weights, N:M groups along k.

    Attributes:
      name: registry name.
      description: what it models, with its source.
      macs: MAC units (the array computes a `tile_m x tile_n` output block,
        `tile_k` deep, per cycle: tile_m * tile_n * tile_k == macs).
      dtype, value_bits: operand type and width (operands and outputs).
      tile_m, tile_k, tile_n: the array's per-cycle block.
      rf_tile_m, rf_tile_n: the output tile whose partial sums stay in the
        register files while all of k streams past (the on-chip reuse tile).
      smem_tile_m, smem_tile_n: the output tile whose partial sums stay in SMEM
        while k streams from DRAM (used when neither operand fits in half SMEM).
      smem_bytes: shared buffer capacity (data).
      dram_bytes_per_cycle, smem_bytes_per_cycle: bandwidths.
      weight_modes, activation_modes: the (n, m) N:M modes the array runs on the
        weight operand B / the activation operand A, along k. (n, n) i.e. dense
        is always supported and need not be listed.
      sparse_operands: how many operands may be sparse in one GEMM (1: the
        other is read densely and multiplexed, as NVIDIA's STC does).
      one_pass: a series runs in one sweep over k and activations are decomposed
        as they load (the TASD tensor core); else the terms take turns per
        output tile, and activation terms need a decomposition pass.
      unstructured: skips every zero of both operands (DSTC-like) with bitmap
        metadata; any series is accepted and only lowers the density.
      gates_zeros: MAC slots fed a zero are clock-gated (else charged in full).
      energy: the energy table.
    """

    name: str
    description: str
    macs: int = 1024  # Sparseloop STC: 4 subpartitions x 256 PEs
    dtype: str = "int8"  # Sparseloop STC: datawidth 8
    value_bits: int = 8
    tile_m: int = 16
    tile_k: int = 4
    tile_n: int = 16
    rf_tile_m: int = 64  # 4 subpartitions x 16 rows ("a dense Z with M=16 and N=128")
    rf_tile_n: int = 128
    smem_tile_m: int = 128  # 128 x 256 int32 partial sums = 128 KB, half the SMEM
    smem_tile_n: int = 256
    smem_bytes: int = 256 * 1024  # Sparseloop STC SMEM: 4096 x 512 bits
    dram_bytes_per_cycle: float = 32.0  # Sparseloop STC DRAM read_bandwidth 32 x 8-bit
    smem_bytes_per_cycle: float = 42.0  # Sparseloop STC SMEM read_bandwidth 42 x 8-bit
    weight_modes: frozenset = frozenset()
    activation_modes: frozenset = frozenset()
    sparse_operands: int = 1
    one_pass: bool = False
    unstructured: bool = False
    gates_zeros: bool = False
    energy: EnergyTable = SPARSELOOP45

    def __post_init__(self):
        if self.tile_m * self.tile_k * self.tile_n != self.macs:
            raise ValueError(
                f"hardware {self.name!r}: tile {self.tile_m}x{self.tile_k}x{self.tile_n} "
                f"must hold exactly macs={self.macs} MACs"
            )

    def supports(self, n: int, m: int, operand: str) -> bool:
        """Whether the array runs an n:m term on `operand` ("weight" or "activation")."""
        if n == m or self.unstructured:
            return True
        if operand not in ("weight", "activation"):
            raise ValueError(f"operand {operand!r} must be 'weight' or 'activation'")
        modes = self.weight_modes if operand == "weight" else self.activation_modes
        return (n, m) in modes

    def unsupported_terms(
        self, series: "str | patterns.Pattern", operand: str = "weight"
    ) -> list[str]:
        """The terms of `series` (a spec or pattern) this array cannot run on `operand`."""
        terms = patterns.as_series(series).terms
        return [t.spec() for t in terms if not self.supports(t.n, t.m, operand)]

    def runs(self, series: "str | patterns.Pattern", operand: str = "weight") -> bool:
        """Whether every term of `series` is a mode of this array for `operand`."""
        return not self.unsupported_terms(series, operand)


_M4 = frozenset({(1, 4), (2, 4)})
_M8 = frozenset({(1, 8), (2, 8), (4, 8)})

_HARDWARE = {
    "dense": Hardware(
        name="dense",
        description="dense int8 tensor core, Sparseloop STC geometry (TC-RF2x-24-bandwidth)",
    ),
    "stc": Hardware(
        name="stc",
        description=(
            "NVIDIA sparse tensor core: 2:4 on one operand along k, the other multiplexed "
            "(NVIDIA A100 whitepaper 2020; Sparseloop STC-RF2x-24-bandwidth)"
        ),
        weight_modes=frozenset({(2, 4)}),
        activation_modes=frozenset({(2, 4)}),
        gates_zeros=True,
    ),
    "vegeta": Hardware(
        name="vegeta",
        description=(
            "VEGETA-like N:4 engine: 1:4, 2:4, 4:4 on one operand (Jeong et al., HPCA 2023)"
        ),
        weight_modes=_M4,
        activation_modes=_M4,
        gates_zeros=True,
    ),
    "vegeta_m8": Hardware(
        name="vegeta_m8",
        description=(
            "VEGETA-like engine with M=8 modes too: 1:4, 2:4, 1:8, 2:8, 4:8 "
            "(the M=8 variant the TASD paper evaluates)"
        ),
        weight_modes=_M4 | _M8,
        activation_modes=_M4 | _M8,
        gates_zeros=True,
    ),
    "dstc": Hardware(
        name="dstc",
        description=(
            "dual-side unstructured sparse tensor core, bitmap operands, outer-product "
            "merge of partial sums (Wang et al., ISCA 2021; Sparseloop DSTC-RF2x-24-bandwidth)"
        ),
        sparse_operands=2,
        unstructured=True,
        gates_zeros=True,
    ),
    "ttc": Hardware(
        name="ttc",
        description=(
            "TASD tensor core: a VEGETA M=4/M=8 array that runs every term of a series "
            "in one pass over k (TASD paper: about 2% extra area)"
        ),
        weight_modes=_M4 | _M8,
        activation_modes=_M4 | _M8,
        one_pass=True,
        gates_zeros=True,
    ),
}


def hardware_names() -> list[str]:
    """The names `hardware` knows."""
    return sorted(_HARDWARE)


def hardware(name: str, energy: str = "sparseloop45") -> Hardware:
    """The accelerator registered as `name`, with the energy table `energy`.

    Raises:
      ValueError: unknown accelerator or energy table; the message lists the known ones.
    """
    if name not in _HARDWARE:
        raise ValueError(f"unknown hardware {name!r}; known: {hardware_names()}")
    if energy not in ENERGY_TABLES:
        raise ValueError(f"unknown energy table {energy!r}; known: {sorted(ENERGY_TABLES)}")
    return dataclasses.replace(_HARDWARE[name], energy=ENERGY_TABLES[energy])
