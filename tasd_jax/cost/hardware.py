"""Accelerators and energy tables as data (the TASD paper evaluation setup; docs/cost_model.md).

Every accelerator here shares one 45 nm int8 geometry, the STC-like Sparseloop
model (Wu et al., MICRO 2022; artefact `Accelergy-Project/micro22-sparseloop-artifact`,
`workspace/2022.micro.artifact/evaluation_setups/fig15_stc_related_setup/
architecture_templates/HW_systems/designs/int8/STC-RF2x-24-bandwidth.yaml`):
LPDDR4 DRAM 64 bits wide at 32 B/cycle, one 256 KB shared buffer (SMEM, plus 32
KB metadata) at 42 B/cycle, four subpartitions of 256 int8 MACs (1024 in all)
each with a 2 KB register file sized for a 16x128 output tile. They differ only
in the N:M modes they run, the series they run, whether they skip or gate
zeros, and whether a TASD series runs in one pass. So a comparison between them
isolates the sparsity support, as the TASD paper's comparisons do.

The designs, by name (`hardware(name)`; `candidate_series(operand)` lists the
series each runs, least compute first):

* The TASD paper's six (`PAPER_DESIGNS`, docs/tasd.md#the-accelerators):
  `tc` (dense tensor core), `dstc` (dual-side unstructured),
  `ttc_stc_m4` (2:4), `ttc_stc_m8` (4:8), `ttc_vegeta_m4` (1:4, 2:4 and
  3:4 as 2:4+1:4) and `ttc_vegeta_m8` (1:8, 2:8, 4:8 and 3:8 = 2:8+1:8,
  5:8 = 4:8+1:8, 6:8 = 4:8+2:8; 7:8 is not run, 8:8 is dense). The four
  TASD tensor cores (TTC) run a series of at most two terms in one pass and
  decompose activations as they load them; they run exactly the series listed
  (3:8 is spelled 2:8+1:8: there is no 3:8 mode).
* The prior structured-sparse hardware (`PRIOR_DESIGNS`), the baselines
  TASDER is applied to: `stc` (NVIDIA's 2:4), `vegeta` (1:4, 2:4) and
  `vegeta_m8` (1:4, 2:4, 1:8, 2:8, 4:8). They run one N:M pattern at a
  time, so a series runs term after term (any number of terms of their modes)
  and an activation series needs a decomposition pass of its own. Their
  candidates are their modes and the two-term series of the matching TTC
  (`stc` for `ttc_stc_m4`, `vegeta` for `ttc_vegeta_m4`, `vegeta_m8` for
  `ttc_vegeta_m8`).
* `ttc`: an unrestricted TASD tensor core, not one of the paper's six: the
  modes of `vegeta_m8`, any number of terms in one pass. An upper bound on
  what one-pass execution buys.

Alias (`hardware_aliases()`): `dense` is `tc`, under the name `dense` (what a
report or an error names is what the caller asked for). `hardware_names()`
lists designs and aliases; a name is also accepted in the paper's spelling
(`TTC-VEGETA-M8`).

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


def canonical_series(series: "str | patterns.Pattern") -> str:
    """The canonical spec of a TASD series: `dense` for a single n:n term, else its terms.

    `canonical_series("2:4 + 1:4") == "2:4+1:4"`, `canonical_series("8:8") == "dense"`.
    """
    s = patterns.as_series(series)
    if len(s.terms) == 1 and s.terms[0].n == s.terms[0].m:
        return "dense"
    return s.spec()


def _cost_order(spec: str) -> tuple:
    """Sort key: least compute first, then fewer terms, then the spec."""
    s = patterns.as_series(spec)
    return (s.compute_cost, len(s.terms), spec)


@dataclasses.dataclass(frozen=True)
class Hardware:
    """One accelerator: geometry, sparsity support and energy table.

    GEMM convention `C[m, n] = A[m, k] @ B[k, n]`, B the weights, N:M groups along k.

    Attributes:
      name: registry name (or the alias it was asked by).
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
      series: the multi-term series (canonical specs, terms among the modes)
        the design offers as candidates, e.g. ("2:8+1:8", "4:8+1:8", "4:8+2:8").
      listed_series_only: the design runs exactly dense, its modes and `series`
        and nothing else (the TASD tensor cores: a fixed set of series, at most
        two terms); else any sum of its modes runs (term after term, or in one
        pass on the unrestricted `ttc`).
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
    series: tuple = ()
    listed_series_only: bool = False
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
        modes = self.weight_modes | self.activation_modes
        for spec in self.series:
            terms = patterns.as_series(spec).terms
            if canonical_series(spec) != spec or len(terms) < 2:
                raise ValueError(
                    f"hardware {self.name!r}: series entry {spec!r} must be a canonical "
                    "spec of two or more terms"
                )
            if any((t.n, t.m) not in modes for t in terms):
                raise ValueError(
                    f"hardware {self.name!r}: series {spec!r} uses a term that is not one of "
                    f"its modes {sorted(f'{n}:{m}' for n, m in modes)}"
                )

    def _modes(self, operand: str) -> frozenset:
        if operand not in ("weight", "activation"):
            raise ValueError(f"operand {operand!r} must be 'weight' or 'activation'")
        return self.weight_modes if operand == "weight" else self.activation_modes

    def supports(self, n: int, m: int, operand: str) -> bool:
        """Whether the array runs an n:m term on `operand` ("weight" or "activation")."""
        if n == m or self.unstructured:
            return True
        return (n, m) in self._modes(operand)

    def candidate_series(self, operand: str = "weight") -> tuple[str, ...]:
        """The series this design runs on `operand` as a search considers them.

        Canonical specs, least compute first (`sum Ni/Mi`, then fewer terms),
        "dense" last: the operand's single modes and the design's two-term
        `series` whose terms are modes of that operand. Every candidate `runs`;
        on a design with `listed_series_only` (TC and the TASD tensor cores)
        nothing else does. A prior design also runs longer sums of its modes,
        term after term; the DSTC runs any series (a series only lowers the
        density it skips) but its one candidate is the operand as it is.
        """
        modes = self._modes(operand)
        if self.unstructured:
            return ("dense",)
        singles = [f"{n}:{m}" for n, m in modes if n != m]
        multi = [
            s for s in self.series
            if all((t.n, t.m) in modes for t in patterns.as_series(s).terms)
        ]
        return tuple(sorted(singles + multi, key=_cost_order)) + ("dense",)

    def unsupported_terms(
        self, series: "str | patterns.Pattern", operand: str = "weight"
    ) -> list[str]:
        """What of `series` (a spec or pattern) this array cannot run on `operand`.

        The terms that are not modes of the operand (7:8, or 3:8 spelled as one
        term, on `ttc_vegeta_m8`); when every term is a mode but the design runs
        only its listed series and this is not one of them (a third term, or
        1:8+1:8, on `ttc_vegeta_m8`), the whole series, with the candidates it
        does run. Empty when it runs.
        """
        terms = patterns.as_series(series).terms
        bad = [t.spec() for t in terms if not self.supports(t.n, t.m, operand)]
        if bad or not self.listed_series_only:
            return bad
        spec = canonical_series(series)
        candidates = self.candidate_series(operand)
        if spec in candidates:
            return []
        return [f"{spec} (not one of its {operand} series {list(candidates)})"]

    def runs(self, series: "str | patterns.Pattern", operand: str = "weight") -> bool:
        """Whether this array runs `series` on `operand` (see `candidate_series`)."""
        return not self.unsupported_terms(series, operand)


_M4 = frozenset({(1, 4), (2, 4)})
_M8 = frozenset({(1, 8), (2, 8), (4, 8)})
_M4_SERIES = ("2:4+1:4",)  # 3:4
_M8_SERIES = ("2:8+1:8", "4:8+1:8", "4:8+2:8")  # 3:8, 5:8, 6:8

# The TASD paper's six designs, in its order, and the prior structured-sparse baselines.
PAPER_DESIGNS = ("tc", "dstc", "ttc_stc_m4", "ttc_stc_m8", "ttc_vegeta_m4", "ttc_vegeta_m8")
PRIOR_DESIGNS = ("stc", "vegeta", "vegeta_m8")

_TTC = (
    "TASD tensor core (TASD paper, Jeong et al., MLSys 2025): at most two terms of a series "
    "in one pass over k, activations decomposed by TASD units as they load"
)
_PRIOR = (
    "one N:M pattern per pass: a series runs term after term, activations decomposed in a "
    "pass of their own"
)


def _design(name: str, description: str, modes: frozenset = frozenset(), **fields) -> Hardware:
    return Hardware(
        name=name, description=description, weight_modes=modes, activation_modes=modes, **fields
    )


_HARDWARE = {
    hw.name: hw
    for hw in (
        _design(
            "tc",
            "TC: dense int8 tensor core, Sparseloop STC geometry (TC-RF2x-24-bandwidth)",
            listed_series_only=True,
        ),
        _design(
            "dstc",
            "DSTC: dual-side unstructured sparse tensor core, bitmap operands, outer-product "
            "merge of partial sums (Wang et al., ISCA 2021; Sparseloop DSTC-RF2x-24-bandwidth)",
            sparse_operands=2,
            unstructured=True,
            gates_zeros=True,
        ),
        _design(
            "ttc_stc_m4",
            f"TTC-STC-M4: 2:4 only; {_TTC}",
            frozenset({(2, 4)}),
            listed_series_only=True,
            one_pass=True,
            gates_zeros=True,
        ),
        _design(
            "ttc_stc_m8",
            f"TTC-STC-M8: 4:8 only; {_TTC}",
            frozenset({(4, 8)}),
            listed_series_only=True,
            one_pass=True,
            gates_zeros=True,
        ),
        _design(
            "ttc_vegeta_m4",
            f"TTC-VEGETA-M4: 1:4, 2:4 and 3:4 as 2:4+1:4; {_TTC}",
            _M4,
            series=_M4_SERIES,
            listed_series_only=True,
            one_pass=True,
            gates_zeros=True,
        ),
        _design(
            "ttc_vegeta_m8",
            f"TTC-VEGETA-M8: 1:8, 2:8, 4:8 and 3:8, 5:8, 6:8 as 2:8+1:8, 4:8+1:8, 4:8+2:8 "
            f"(no 7:8); {_TTC} (16 TASD units, under 2% of PE area)",
            _M8,
            series=_M8_SERIES,
            listed_series_only=True,
            one_pass=True,
            gates_zeros=True,
        ),
        _design(
            "stc",
            "STC: NVIDIA sparse tensor core, 2:4 on one operand along k, the other multiplexed "
            f"(NVIDIA A100 whitepaper 2020; Sparseloop STC-RF2x-24-bandwidth); {_PRIOR}",
            frozenset({(2, 4)}),
            gates_zeros=True,
        ),
        _design(
            "vegeta",
            "VEGETA-like N:4 engine: 1:4, 2:4, 4:4 on one operand (Jeong et al., HPCA 2023); "
            f"{_PRIOR}",
            _M4,
            series=_M4_SERIES,
            gates_zeros=True,
        ),
        _design(
            "vegeta_m8",
            "VEGETA-like engine with N:4 and N:8 modes: 1:4, 2:4, 1:8, 2:8, 4:8 (the prior "
            f"design TTC-VEGETA-M8 is compared with); {_PRIOR}",
            _M4 | _M8,
            series=_M4_SERIES + _M8_SERIES,
            gates_zeros=True,
        ),
        _design(
            "ttc",
            "unrestricted TASD tensor core (not one of the TASD paper's six): the modes of "
            "vegeta_m8, a series of any length in one pass over k, activations decomposed "
            "as they load",
            _M4 | _M8,
            series=_M4_SERIES + _M8_SERIES,
            one_pass=True,
            gates_zeros=True,
        ),
    )
}

_ALIASES = {"dense": "tc"}


def hardware_aliases() -> dict[str, str]:
    """Alias -> the design it names (`dense` -> `tc`)."""
    return dict(_ALIASES)


def hardware_names(aliases: bool = True) -> list[str]:
    """The names `hardware` knows, sorted: every design, and the aliases unless `aliases=False`."""
    return sorted(set(_HARDWARE) | (set(_ALIASES) if aliases else set()))


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def design_name(name: str) -> str:
    """The design a name or alias names: `design_name("dense") == "tc"`.

    Raises:
      ValueError: an unknown name; the message lists the known ones.
    """
    key = _key(name)
    key = _ALIASES.get(key, key)
    if key not in _HARDWARE:
        raise ValueError(
            f"unknown hardware {name!r}; known: {hardware_names()} "
            f"(aliases {_ALIASES}; the TASD paper's designs {list(PAPER_DESIGNS)})"
        )
    return key


def hardware(name: str, energy: str = "sparseloop45") -> Hardware:
    """The accelerator registered as `name` (a design or an alias), with the energy table `energy`.

    An alias gives its design under the alias's name: `hardware("dense")` is
    `tc` named "dense".

    Raises:
      ValueError: unknown accelerator or energy table; the message lists the known ones.
    """
    design = _HARDWARE[design_name(name)]
    if energy not in ENERGY_TABLES:
        raise ValueError(f"unknown energy table {energy!r}; known: {sorted(ENERGY_TABLES)}")
    key = _key(name)
    fields = {"energy": ENERGY_TABLES[energy]}
    if key != design.name:
        fields.update(name=key, description=f"alias of {design.name!r}: {design.description}")
    return dataclasses.replace(design, **fields)
