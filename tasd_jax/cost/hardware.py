"""Accelerators and energy tables as data (the TASD paper evaluation setup; docs/cost_model.md).

Every accelerator here has the geometry of the Sparseloop artefact the TASD paper
configured its designs from (Wu et al., MICRO 2022; artefact
`Accelergy-Project/micro22-sparseloop-artifact`, folder
`workspace/2022.micro.artifact/evaluation_setups/fig15_stc_related_setup`): LPDDR4
DRAM (32 words per cycle), one 256 KB shared buffer (SMEM, plus 32 KB metadata;
42 words per cycle each way), four subpartitions of 16 x 16 int8 PEs (1024 MACs),
each with a 2048-word register file for the partial sums (`dataflow`). Each of
the artefact's three designs has its own energy table: the TC's, the STC's and
the DSTC's (`ERT_summary.yaml`); the VEGETA and TASD tensor cores build on the
STC's, the TASD units adding a compare-exchange per value and term
(`EnergyTable.compare_pj`). So a comparison between designs isolates the
sparsity support, as the TASD paper's comparisons do.

The designs, by name (`hardware(name)`; `candidate_series(operand)` lists the
series each runs, least compute first):

* The TASD paper's six (`PAPER_DESIGNS`, docs/tasd.md#the-accelerators):
  `tc` (dense tensor core), `dstc` (dual-side unstructured),
  `ttc_stc_m4` (2:4), `ttc_stc_m8` (4:8), `ttc_vegeta_m4` (1:4, 2:4 and
  3:4 as 2:4+1:4) and `ttc_vegeta_m8` (1:8, 2:8, 4:8 and 3:8 = 2:8+1:8,
  5:8 = 4:8+1:8, 6:8 = 4:8+2:8; 7:8 is not run, 8:8 is dense). The four
  TASD tensor cores (TTC) run a series of at most two terms in one pass and
  decompose activations with TASD units; they run exactly the series listed
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

An energy table is chosen by name (`hardware(name, energy=...)`: `"sparseloop"`,
each design's own, by default); each entry is `(read pJ, write pJ, access width in
bits)` with its source beside it, charged per access as the artefact does
(per word = block energy / block size).
"""

import dataclasses
import math
from typing import Mapping

from tasd_jax import patterns
from tasd_jax.cost import dataflow


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


_NO_ACCESS = Access(0.0, 0.0, 8)


@dataclasses.dataclass(frozen=True)
class EnergyTable:
    """Energy per action of every component the cost model charges.

    Attributes:
      name: the name `hardware(..., energy=name)` selects it by.
      source: where the numbers come from.
      dram, smem, rf, lrf: data accesses (`bits` = the access's block).
      smem_metadata, rf_metadata, lrf_metadata: metadata accesses (`bits` = the
        metadata word).
      mac_pj: one executed int8 multiply-accumulate.
      compare_pj: one compare-exchange of a TASD unit (8-bit magnitudes).
    """

    name: str
    source: str
    dram: Access
    smem: Access
    smem_metadata: Access
    rf: Access
    rf_metadata: Access
    lrf: Access
    lrf_metadata: Access
    mac_pj: float
    compare_pj: float

    def per_access(self, dram_write_words_per_cycle: float) -> dataflow.Energies:
        """Per-word / per-bit energies, as `dataflow` charges them."""
        return dataflow.Energies(
            dram=self.dram.read_pj_per_bit * 8,
            smem_read=self.smem.read_pj_per_bit * 8,
            smem_write=self.smem.write_pj_per_bit * 8,
            smem_metadata_read=self.smem_metadata.read_pj_per_bit,
            smem_metadata_write=self.smem_metadata.write_pj_per_bit,
            rf_read=self.rf.read_pj_per_bit * 8,
            rf_write=self.rf.write_pj_per_bit * 8,
            lrf=self.lrf.read_pj_per_bit * 8,
            lrf_metadata=self.lrf_metadata.read_pj_per_bit,
            mac=self.mac_pj,
            dram_write_words_per_cycle=dram_write_words_per_cycle,
        )


_ERT = (
    "Sparseloop MICRO'22 artefact, fig15_stc_related_setup/architecture_templates/HW_systems/"
    "ert_art/int8/{}/ERT_summary.yaml, as listed in docs/cost_model.md"
)
# A TASD unit's compare-exchange of two 8-bit magnitudes, charged as an int8 add
# (Horowitz, ISSCC 2014, 45 nm: 0.03 pJ); the artefact has no comparator.
_COMPARE_PJ = 0.03

SPARSELOOP_TC = EnergyTable(
    name="sparseloop_tc",
    source=_ERT.format("TC-RF2x-24-bandwidth") + " (its estimators are the 65 nm ones)",
    dram=Access(512.0, 512.0, 64),  # LPDDR4, 8-word block
    smem=Access(536.05005, 599.806, 512),  # 256 KB SMEM, 64-word block
    smem_metadata=_NO_ACCESS,  # the TC stores no metadata
    rf=Access(3.1647, 3.20183, 8),
    rf_metadata=_NO_ACCESS,
    lrf=Access(0.02435, 0.02435, 8),  # the one-word latch per PE
    lrf_metadata=_NO_ACCESS,
    mac_pj=0.44688,
    compare_pj=_COMPARE_PJ,
)

SPARSELOOP_STC = EnergyTable(
    name="sparseloop_stc",
    source=_ERT.format("STC-RF2x-24-bandwidth"),
    dram=Access(512.0, 512.0, 64),  # metadata at DRAM has no entry: free
    smem=Access(285.71464, 316.96744, 512),
    smem_metadata=Access(25.8695, 19.6486, 64),
    rf=Access(1.65889, 1.67589, 8),
    rf_metadata=_NO_ACCESS,  # Z is never compressed
    lrf=Access(0.072, 0.072, 8),
    lrf_metadata=Access(0.072, 0.072, 8),
    mac_pj=0.5608,
    compare_pj=_COMPARE_PJ,
)

SPARSELOOP_DSTC = EnergyTable(
    name="sparseloop_dstc",
    source=_ERT.format("DSTC-RF2x-24-bandwidth"),
    dram=Access(512.0, 512.0, 64),
    smem=Access(285.71464, 316.96744, 512),
    smem_metadata=Access(25.8695, 19.6486, 64),
    rf=Access(1.65889, 1.67589, 8),
    rf_metadata=Access(0.95642, 0.95642, 16),
    lrf=Access(0.49218, 0.49218, 16),  # 128 words per subpartition, 2-word block
    lrf_metadata=Access(0.18108, 0.18108, 4),
    mac_pj=0.5608,
    compare_pj=_COMPARE_PJ,
)


def _log_interpolate(size: float, lo: tuple[float, float], hi: tuple[float, float]) -> float:
    """Energy at `size` on the straight line through (size, energy) points in log-log."""
    t = math.log(size / lo[0]) / math.log(hi[0] / lo[0])
    return lo[1] * (hi[1] / lo[1]) ** t


# Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm: 64-bit SRAM reads of
# 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ; DRAM 1.3-2.6 nJ per 64 bits; int8
# multiply 0.2 pJ, int8 add 0.03 pJ. Horowitz gives no buffer of 256 KB, so the
# SMEM read is interpolated in log-log between the 32 KB and 1 MB points; no
# register file, so the 8 KB SRAM (the smallest he lists) stands in for it and
# for the latches.
_HOROWITZ_SMEM_PJ = _log_interpolate(256 * 1024, (32 * 1024, 20.0), (1024 * 1024, 100.0))
_HOROWITZ_MAC_PJ = 0.2 + 0.03

HOROWITZ45 = EnergyTable(
    name="horowitz45",
    source="Horowitz, ISSCC 2014, 45 nm (gaps filled as commented in tasd_jax/cost/hardware.py)",
    dram=Access(1300.0, 1300.0, 64),  # DRAM 1.3 nJ / 64 bits: the low end of 1.3-2.6 nJ
    smem=Access(_HOROWITZ_SMEM_PJ, _HOROWITZ_SMEM_PJ, 64),  # ~52.5 pJ, interpolated 256 KB
    smem_metadata=Access(_HOROWITZ_SMEM_PJ, _HOROWITZ_SMEM_PJ, 64),  # same SRAM per bit
    rf=Access(10.0, 10.0, 64),  # 8 KB SRAM 64-bit read
    rf_metadata=Access(10.0, 10.0, 64),
    lrf=Access(10.0, 10.0, 64),  # upper bound for a latch
    lrf_metadata=Access(10.0, 10.0, 64),
    mac_pj=_HOROWITZ_MAC_PJ,  # int8 mult 0.2 + int8 add 0.03
    compare_pj=_COMPARE_PJ,
)

ENERGY_TABLES: Mapping[str, EnergyTable] = {
    t.name: t for t in (SPARSELOOP_TC, SPARSELOOP_STC, SPARSELOOP_DSTC, HOROWITZ45)
}
OWN_TABLE = "sparseloop"  # `hardware(name, energy=OWN_TABLE)`: each design's artefact table


def _cost_order(spec: str) -> tuple:
    """Sort key: least compute first, then fewer terms, then the spec."""
    s = patterns.as_series(spec)
    return (s.compute_cost, len(s.terms), spec)


@dataclasses.dataclass(frozen=True)
class Hardware:
    """One accelerator: sparsity support, energy table and how it runs a series.

    GEMM convention `C[m, n] = A[m, k] @ B[k, n]`, B the weights, N:M groups along k.
    The geometry (DRAM, 256 KB SMEM, four subpartitions of 16 x 16 int8 PEs) is the
    Sparseloop artefact's, in `dataflow`.

    Attributes:
      name: registry name (or the alias it was asked by).
      description: what it models, with its source.
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
        other is read densely, as NVIDIA's STC does).
      one_pass: a series runs in one sweep over k (the TASD tensor core); else
        the terms take turns per output tile, streaming the dense operand once
        per term.
      tasd_units: the design decomposes activations in hardware (the TASD
        tensor core's TASD units); elsewhere an activation series needs a
        decomposition pass through DRAM.
      unstructured: skips every zero of both operands (the DSTC) with bitmap
        metadata; any series is accepted and only lowers the density.
      dram_write_words_per_cycle: DRAM write bandwidth (the artefact's TC: 16).
      energy: the energy table.
    """

    name: str
    description: str
    weight_modes: frozenset = frozenset()
    activation_modes: frozenset = frozenset()
    series: tuple = ()
    listed_series_only: bool = False
    sparse_operands: int = 1
    one_pass: bool = False
    tasd_units: bool = False
    unstructured: bool = False
    dram_write_words_per_cycle: float = 32.0
    energy: EnergyTable = SPARSELOOP_STC

    def __post_init__(self):
        modes = self.weight_modes | self.activation_modes
        for spec in self.series:
            series = patterns.as_series(spec)
            terms = series.terms
            if series.canonical != spec or len(terms) < 2:
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
        series = patterns.as_series(series)
        bad = [t.spec() for t in series.terms if not self.supports(t.n, t.m, operand)]
        if bad or not self.listed_series_only:
            return bad
        spec = series.canonical
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
    "in one pass over k, activations decomposed by TASD units at the PE array's output"
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
            "TC: dense int8 tensor core (Sparseloop TC-RF2x-24-bandwidth, its own energy table)",
            listed_series_only=True,
            dram_write_words_per_cycle=16.0,
            energy=SPARSELOOP_TC,
        ),
        _design(
            "dstc",
            "DSTC: dual-side unstructured sparse tensor core, bitmap operands, outer-product "
            "merge of partial sums (Wang et al., ISCA 2021; Sparseloop DSTC-RF2x-24-bandwidth)",
            sparse_operands=2,
            unstructured=True,
            energy=SPARSELOOP_DSTC,
        ),
        _design(
            "ttc_stc_m4",
            f"TTC-STC-M4: 2:4 only; {_TTC}",
            frozenset({(2, 4)}),
            listed_series_only=True,
            one_pass=True,
            tasd_units=True,
        ),
        _design(
            "ttc_stc_m8",
            f"TTC-STC-M8: 4:8 only; {_TTC}",
            frozenset({(4, 8)}),
            listed_series_only=True,
            one_pass=True,
            tasd_units=True,
        ),
        _design(
            "ttc_vegeta_m4",
            f"TTC-VEGETA-M4: 1:4, 2:4 and 3:4 as 2:4+1:4; {_TTC}",
            _M4,
            series=_M4_SERIES,
            listed_series_only=True,
            one_pass=True,
            tasd_units=True,
        ),
        _design(
            "ttc_vegeta_m8",
            f"TTC-VEGETA-M8: 1:8, 2:8, 4:8 and 3:8, 5:8, 6:8 as 2:8+1:8, 4:8+1:8, 4:8+2:8 "
            f"(no 7:8); {_TTC} (16 TASD units, under 2% of PE area)",
            _M8,
            series=_M8_SERIES,
            listed_series_only=True,
            one_pass=True,
            tasd_units=True,
        ),
        _design(
            "stc",
            "STC: NVIDIA sparse tensor core, 2:4 on one operand along k, the other multiplexed "
            f"(NVIDIA A100 whitepaper 2020; Sparseloop STC-RF2x-24-bandwidth); {_PRIOR}",
            frozenset({(2, 4)}),
        ),
        _design(
            "vegeta",
            "VEGETA-like N:4 engine: 1:4, 2:4, 4:4 on one operand (Jeong et al., HPCA 2023); "
            f"{_PRIOR}",
            _M4,
            series=_M4_SERIES,
        ),
        _design(
            "vegeta_m8",
            "VEGETA-like engine with N:4 and N:8 modes: 1:4, 2:4, 1:8, 2:8, 4:8 (the prior "
            f"design TTC-VEGETA-M8 is compared with); {_PRIOR}",
            _M4 | _M8,
            series=_M4_SERIES + _M8_SERIES,
        ),
        _design(
            "ttc",
            "unrestricted TASD tensor core (not one of the TASD paper's six): the modes of "
            "vegeta_m8, a series of any length in one pass over k, activations decomposed "
            "as they load",
            _M4 | _M8,
            series=_M4_SERIES + _M8_SERIES,
            one_pass=True,
            tasd_units=True,
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


def hardware(name: str, energy: str = OWN_TABLE) -> Hardware:
    """The accelerator registered as `name` (a design or an alias).

    `energy` is `"sparseloop"` (each design its own table from the Sparseloop
    artefact: the TC's, the DSTC's, and the STC's for the STC, VEGETA and TASD
    tensor cores) or a name in `ENERGY_TABLES` to charge one table everywhere.
    An alias gives its design under the alias's name: `hardware("dense")` is `tc`
    named "dense".

    Raises:
      ValueError: unknown accelerator or energy table; the message lists the known ones.
    """
    design = _HARDWARE[design_name(name)]
    if energy != OWN_TABLE and energy not in ENERGY_TABLES:
        raise ValueError(
            f"unknown energy table {energy!r}; known: {[OWN_TABLE] + sorted(ENERGY_TABLES)}")
    key = _key(name)
    fields = {} if energy == OWN_TABLE else {"energy": ENERGY_TABLES[energy]}
    if key != design.name:
        fields.update(name=key, description=f"alias of {design.name!r}: {design.description}")
    return dataclasses.replace(design, **fields)
