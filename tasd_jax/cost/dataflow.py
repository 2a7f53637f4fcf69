r"""Per-GEMM cycles and energy of the Sparseloop artifact's tensor cores (docs/cost_model.md).

The TASD paper configures its designs "as in the Sparseloop artifacts" (Wu et
al., MICRO 2022; `Accelergy-Project/micro22-sparseloop-artifact`, folder
`workspace/2022.micro.artifact/evaluation_setups/fig15_stc_related_setup`). This
module models the two dataflows of that folder in closed form, each with a small
mapper that searches the loop factors the artifact's mapping constraints allow
and keeps the fastest mapping, then the least energy (Timeloop's mapper metrics
`[delay, energy]`). On every TC, STC and DSTC reference output of that folder
the result is within 0.1% of Sparseloop's cycles and energy
(tests/test_sparseloop_fidelity.py prints the table).

Orientation, as in the artifact: `Z[M, N] = A[M, K] B[N, K]`. On the structured
designs A is the sparse operand (the weights in the artifact; a TASD-A layer
puts its activations there), held one value per PE; B streams past. Storage:
DRAM -> SMEM (262,144 words, keeps A and B) -> four subpartitions, each an RF of
2048 words holding Z -> a 16 x 16 array of PEs. Words are 8 bits.

**Structured** (TC, STC and the TASD tensor cores; `FlexibleGH-Ms` constraints):
loops, outer to inner, DRAM `M_d, N_d` (K = 1), SMEM `M_s <= 8, N_s <= 8`, SMEM
spatial `M_sp <= 4` (subpartitions), RF temporal over all of K, RF spatial
`M = 16` by `K = Ks`, LRF temporal `N_l <= 128` (the 16 x N_l output tile fills
the RF). An `n:m` term of A is skipped spatially, as the artifact's STC does: a
PE row takes `16 // n` groups of `m` positions of K, so `Ks = (16 // n) * m`
(32 for 2:4 and 4:8, 64 for 1:4 and 2:8, 128 for 1:8; the artifact checks 32,
48 and 64) and only the kept values get a MAC; skipping costs nothing. Per term
`i` (dense: `Ks = 16`), with `v_i = n_i ceil(K / m_i)` the values it keeps of a
row of A (the packed layout; K for dense):

* compute cycles `M_d N_d M_s N_s N_l sum_i ceil(K / Ks_i)`;
* MACs `sum_i v_i M N` (energy `mac`); LRF A reads the same, fills `/ N_l`;
* RF Z updates `sum_i M N ceil(K / Ks_i)`, fills `M N`, reads `updates - M N`;
* SMEM A reads = LRF fills; SMEM B reads `passes * N K M / (16 M_sp)` (B is
  multicast to the 16 M_sp PE rows and not reduced by A's skipping; `passes`
  is the number of terms on a design that runs them one after another, 1 on a
  TASD tensor core);
* DRAM A reads `sum_i v_i M r_A` (the terms as stored; `M K r_A` where A is
  stored dense and decomposed as it loads), B reads `N K r_B`, Z writes `M N`,
  with `r_A`, `r_B` the refetches the DRAM loop order causes; SMEM fills = DRAM
  reads (an operand SMEM only streams: fills = DRAM reads = its SMEM reads);
* metadata: one `ceil(log2 m)`-bit index per stored value, charged (energy and
  bandwidth) as the next power of two, as Sparseloop charges 3-bit metadata as
  4 bits; free at DRAM (its table has no metadata action) but it takes DRAM
  bandwidth.

**Unstructured** (DSTC; `DSTC-Os` constraints): loops DRAM `M_d, N_d`, SMEM
`M_s, N_s`, SMEM spatial `M 2 x N 2`, RF over all of K, LRF temporal `M_l, N_l`,
LRF spatial `M 16 x N 16` (an outer product per subpartition). A and B are
bitmask-compressed (1 bit per position of every non-empty 16-position fibre,
plus one bit per LRF tile on K); the LRF (128 words per subpartition) skips
positions of both; Z is read and updated in the RF only for effectual
products. M and N are padded to multiples of 32 (the 2 x 16 spatial fan-out);
the padding counts as zeros of the operand (its density scaled by the share of
real rows), which the compressed operand skips. With `X ~ Binomial(T, d)` the
non-zeros of a T-position LRF tile:
compute cycles `MACs / (1024 U_A U_B)`, `U = E[X / (16 ceil(X / 16)) | X > 0]`
(Sparseloop's position-space utilisation); LRF reads of A `MACs / 64 * d_A *
E[ceil(X_B / 16)] / N_l` (a non-zero is read once per 16-wide block of the
other operand's non-zeros), and of B likewise. As the artifact's sweep script
configures it, B is compressed when either density is below 0.8 and A when its
density is below 1.

**Cycles** = max over levels: compute, SMEM reads / 42 and writes / 42 words
per cycle (two ports), DRAM reads / 32 and writes / 32 (16 on the TC), and on
the DSTC RF reads / 256 and writes / 257; metadata bits count as `bits / 8`
words. **Energy** = sum over levels of accesses x the design's energy per
access (`hardware.EnergyTable`).
"""

import functools
import math
from typing import NamedTuple

import numpy as np

SUBPARTITIONS = 4
PE_ROWS = 16  # per subpartition: M on the structured array, M and N on the DSTC's
PE_COLUMNS = 16
SMEM_WORDS = 4096 * 512 // 8
SMEM_METADATA_BITS = 8192 * 64
RF_WORDS = 2048
LRF_WORDS_DSTC = 64 * 16 // 8
LRF_METADATA_BITS_DSTC = 32 * 4
MAX_SMEM_FACTOR = 8  # FlexibleGH-Ms: SMEM temporal M <= 8, N <= 8
MAX_LRF_N = 128  # the sweep script's RF2x setting
SMEM_WORDS_PER_CYCLE = 42.0
DRAM_READ_WORDS_PER_CYCLE = 32.0
DSTC_RF_READ_WORDS_PER_CYCLE = 256.0
DSTC_RF_WRITE_WORDS_PER_CYCLE = 257.0
DSTC_DENSE_ABOVE = 0.8  # the sweep script compresses B only when a density is below this
# How the mapper ranks mappings: "edp" (least cycles x energy; the default, as the
# designs are compared by EDP) or "delay" (fewest cycles, then least energy: Timeloop's
# mapper metrics in the artefact).
OBJECTIVES = ("edp", "delay")


class LevelCosts(NamedTuple):
    """One GEMM's costs on one design (scalars).

    cycles is the max of the level cycles; energy_pj maps "dram", "smem", "rf",
    "lrf", "mac" to pJ; words maps "dram_read", "dram_write", "smem_read",
    "smem_write" to 8-bit words moved (metadata bits / 8 included); macs are
    the MACs executed on the GEMM's own rows and columns (k padded to the
    terms' groups; skipped ones not counted), mapping the loop factors chosen.
    """

    cycles: float
    compute_cycles: float
    smem_cycles: float
    dram_cycles: float
    energy_pj: dict
    words: dict
    macs: float
    mapping: tuple


class Energies(NamedTuple):
    """Per-access energies a dataflow charges (pJ per word, per metadata bit), and the
    DRAM write bandwidth (words per cycle), which differs between the artefact's designs."""

    dram: float
    smem_read: float
    smem_write: float
    smem_metadata_read: float
    smem_metadata_write: float
    rf_read: float
    rf_write: float
    lrf: float
    lrf_metadata: float
    mac: float
    dram_write_words_per_cycle: float


def _divisors(x: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(x) + 1) if x % d == 0]
    return sorted(set(small + [x // d for d in small]))


def _ceil_to(x: int, q: int) -> int:
    return -(-x // q) * q


def stored_values(k: int, n: int, m: int) -> int:
    """Values an n:m term keeps of a row of k (the packed layout: n per group of m)."""
    return k if n >= m else n * -(-k // m)


def term_geometry(n: int, m: int) -> tuple[int, int]:
    """(spatial K factor Ks, metadata bits charged per stored value) of an n:m term."""
    if n >= m:
        return PE_COLUMNS, 0
    if n > PE_COLUMNS:
        raise ValueError(f"term {n}:{m}: at most {PE_COLUMNS} kept values fit a PE row")
    bits = max(1, math.ceil(math.log2(m)))
    return (PE_COLUMNS // n) * m, 1 << math.ceil(math.log2(bits))


# An empty GEMM (a size of 0) costs nothing on either dataflow.
_EMPTY = LevelCosts(0.0, 0.0, 0.0, 0.0, dict.fromkeys(("dram", "smem", "rf", "lrf", "mac"), 0.0),
                    dict.fromkeys(("dram_read", "dram_write", "smem_read", "smem_write"), 0.0),
                    0.0, ())


class _MappingCosts(NamedTuple):
    """Costs on the structured dataflow, one entry per candidate mapping: cycles per
    level, energy_pj and words as in `LevelCosts`."""

    cycles: np.ndarray
    compute_cycles: np.ndarray
    smem_cycles: np.ndarray
    dram_cycles: np.ndarray
    energy_pj: dict
    words: dict


@functools.lru_cache(maxsize=65536)
def structured(m: int, k: int, n: int, terms: tuple, passes: int, a_stored_dense: bool,
               table: Energies, objective: str = "edp") -> LevelCosts:
    """Costs of `Z[m, n] = A[m, k] B[n, k]` with A as the `terms` ((n, m) pairs; `((1, 1),)`
    for dense) on the structured dataflow, best mapping (see the module docstring).

    passes: how many times B is streamed per output tile (the terms' count on a design
      that runs them one after another, else 1).
    a_stored_dense: A sits in DRAM dense and is decomposed between DRAM and SMEM.
    objective: which mapping wins (`OBJECTIVES`).
    """
    if m == 0 or k == 0 or n == 0:
        return _EMPTY
    geometry = [term_geometry(tn, tm) for tn, tm in terms]
    stored = [stored_values(k, tn, tm) for tn, tm in terms]  # per row of A, as packed
    values_per_mk = sum(stored) / k
    meta_per_mk = sum(v * b for v, (_, b) in zip(stored, geometry)) / k  # bits per M*K
    # The array walks K in steps of Ks positions per term, the last step padded; each
    # step ends in one update of every output's partial sum in the RF.
    k_steps = sum(-(-k // ks) for ks, _ in geometry)

    c = _structured_mappings(m, n)
    c = c[:, _structured_fits_smem(c, k, values_per_mk, meta_per_mk)]
    costs = _structured_costs(c, k, k_steps, values_per_mk, meta_per_mk, passes,
                              a_stored_dense, table)
    mp, n_pad, stream_a, stream_b = c[0], c[1], c[9], c[10]
    cycles = costs.cycles
    total = sum(costs.energy_pj.values())
    # Exact ties: no streaming, then least padding.
    first = cycles * total if objective == "edp" else cycles
    best = int(np.lexsort((mp * n_pad, stream_a + stream_b, np.round(total, 3), cycles, first))[0])
    pick = lambda x: float(np.asarray(x)[best])  # noqa: E731
    return LevelCosts(
        cycles=pick(cycles), compute_cycles=pick(costs.compute_cycles),
        smem_cycles=pick(costs.smem_cycles), dram_cycles=pick(costs.dram_cycles),
        energy_pj={key: pick(v) for key, v in costs.energy_pj.items()},
        words={key: pick(v) for key, v in costs.words.items()},
        macs=values_per_mk * m * k * n,  # the GEMM's own rows: padding is not work
        mapping=tuple(int(v[best]) for v in c),
    )


def _structured_mappings(m: int, n: int) -> np.ndarray:
    """Every mapping the structured dataflow's constraints allow for an m x n output,
    one column each: rows mp, n_pad, m_d, n_d, m_s, n_s, m_sp, n_l, n_inner (1: N is
    the inner DRAM loop), stream_a, stream_b (1: the operand streams through SMEM)."""
    rows = []
    for m_sp in range(1, SUBPARTITIONS + 1):
        mp = _ceil_to(m, PE_ROWS * m_sp)
        m_rest = mp // (PE_ROWS * m_sp)
        for n_pad in sorted({n} | {_ceil_to(n, q) for q in (8, 16, 32, 64, 128)}):
            for m_s in (d for d in _divisors(m_rest) if d <= MAX_SMEM_FACTOR):
                m_d = m_rest // m_s
                for n_l in (d for d in _divisors(n_pad) if d <= MAX_LRF_N):
                    for n_s in (d for d in _divisors(n_pad // n_l) if d <= MAX_SMEM_FACTOR):
                        n_d = n_pad // n_l // n_s
                        for n_inner in ((1, 0) if m_d > 1 and n_d > 1 else (1,)):
                            for stream_a, stream_b in ((0, 0), (1, 0), (0, 1), (1, 1)):
                                rows.append((mp, n_pad, m_d, n_d, m_s, n_s, m_sp, n_l, n_inner,
                                             stream_a, stream_b))
    return np.array(rows, np.float64).T


def _structured_fits_smem(c: np.ndarray, k: int, values_per_mk: float,
                          meta_per_mk: float) -> np.ndarray:
    """Which mappings of `c` (`_structured_mappings`) keep their tiles, and A's metadata,
    within SMEM; when none does, those that stream both operands."""
    mp, n_pad, m_d, n_d, m_s, n_s, m_sp, n_l, n_inner, stream_a, stream_b = c
    tile_a = PE_ROWS * m_sp * m_s * k * values_per_mk
    tile_b = n_l * n_s * k
    occupied = np.where(stream_a == 1, 0, tile_a) + np.where(stream_b == 1, 0, tile_b)
    fits = (occupied <= SMEM_WORDS) & (
        (stream_a == 1) | (PE_ROWS * m_sp * m_s * k * meta_per_mk <= SMEM_METADATA_BITS))
    if not fits.any():
        fits = stream_a + stream_b == 2  # nothing kept: always possible
    return fits


def _structured_costs(c: np.ndarray, k: int, k_steps: int, values_per_mk: float,
                      meta_per_mk: float, passes: int, a_stored_dense: bool,
                      table: Energies) -> _MappingCosts:
    """The accesses, cycles and energy of every mapping of `c` (`_structured_mappings`)
    on a K of `k` walked in `k_steps` steps, A holding `values_per_mk` values and
    `meta_per_mk` metadata bits per position (the module docstring's counts)."""
    mp, n_pad, m_d, n_d, m_s, n_s, m_sp, n_l, n_inner, stream_a, stream_b = c
    macs = mp * k * n_pad
    executed = values_per_mk * macs
    compute = m_d * n_d * m_s * n_s * n_l * k_steps
    lrf_reads = executed
    lrf_fills = executed / n_l
    rf_updates = mp * n_pad * k_steps
    rf_fills = mp * n_pad
    rf_reads = rf_updates - rf_fills
    smem_a_reads = lrf_fills
    smem_a_meta_reads = lrf_fills * meta_per_mk / values_per_mk
    smem_b_reads = passes * n_pad * k * mp / (PE_ROWS * m_sp)
    r_a = np.where(n_inner == 1, 1.0, np.where(m_d > 1, n_d, 1.0))
    r_b = np.where(n_inner == 1, np.where(n_d > 1, m_d, 1.0), 1.0)
    stored_a = 1.0 if a_stored_dense else values_per_mk
    stored_meta = 0.0 if a_stored_dense else meta_per_mk
    dram_a = np.where(stream_a == 1, smem_a_reads / values_per_mk * stored_a, mp * k * stored_a * r_a)
    dram_a_meta = dram_a / stored_a * stored_meta
    smem_a_fills = dram_a / stored_a * values_per_mk
    smem_a_meta_fills = smem_a_fills * meta_per_mk / values_per_mk
    dram_b = np.where(stream_b == 1, smem_b_reads, n_pad * k * r_b)
    smem_b_fills = dram_b
    dram_z = mp * n_pad

    smem_read = smem_a_reads + smem_a_meta_reads / 8 + smem_b_reads
    smem_write = smem_a_fills + smem_a_meta_fills / 8 + smem_b_fills
    dram_read = dram_a + dram_a_meta / 8 + dram_b
    smem_cycles = np.maximum(np.ceil(smem_read / SMEM_WORDS_PER_CYCLE - 1e-9),
                             np.ceil(smem_write / SMEM_WORDS_PER_CYCLE - 1e-9))
    dram_cycles = np.maximum(np.ceil(dram_read / DRAM_READ_WORDS_PER_CYCLE - 1e-9),
                             np.ceil(dram_z / table.dram_write_words_per_cycle - 1e-9))
    cycles = np.maximum(compute, np.maximum(smem_cycles, dram_cycles))
    t = table
    energy = {
        "dram": (dram_a + dram_b + dram_z) * t.dram,
        "smem": (smem_a_reads + smem_b_reads) * t.smem_read
        + (smem_a_fills + smem_b_fills) * t.smem_write
        + smem_a_meta_reads * t.smem_metadata_read + smem_a_meta_fills * t.smem_metadata_write,
        "rf": rf_reads * t.rf_read + (rf_fills + rf_updates) * t.rf_write,
        "lrf": (lrf_reads + lrf_fills) * (t.lrf + meta_per_mk / values_per_mk * t.lrf_metadata),
        "mac": executed * t.mac,
    }
    return _MappingCosts(
        cycles=cycles, compute_cycles=compute, smem_cycles=smem_cycles, dram_cycles=dram_cycles,
        energy_pj=energy,
        words={"dram_read": dram_read, "dram_write": dram_z,
               "smem_read": smem_read, "smem_write": smem_write},
    )


def _binomial_pmf(trials: int, p: float) -> np.ndarray:
    x = np.arange(trials + 1)
    if p <= 0.0:
        return (x == 0).astype(np.float64)
    if p >= 1.0:
        return (x == trials).astype(np.float64)
    log_choose = np.array([math.lgamma(trials + 1) - math.lgamma(i + 1) - math.lgamma(trials - i + 1)
                           for i in x])
    return np.exp(log_choose + x * math.log(p) + (trials - x) * math.log1p(-p))


@functools.lru_cache(maxsize=4096)
def _blocks(trials: int, p: float) -> float:
    """E[ceil(X / 16)], X ~ Binomial(trials, p): 16-wide blocks holding a tile's non-zeros."""
    return float((_binomial_pmf(trials, p) * np.ceil(np.arange(trials + 1) / PE_COLUMNS)).sum())


@functools.lru_cache(maxsize=4096)
def _utilisation(trials: int, p: float) -> float:
    """E[X / (16 ceil(X / 16)) | X > 0]: the busy share of a 16-wide array walking a tile."""
    if p >= 1.0:
        return 1.0
    pmf = _binomial_pmf(trials, p)[1:]
    x = np.arange(1, trials + 1)
    return float((pmf * x / (PE_COLUMNS * np.ceil(x / PE_COLUMNS))).sum() / max(pmf.sum(), 1e-300))


def _non_empty(p: float) -> float:
    return 1.0 - (1.0 - p) ** PE_COLUMNS


@functools.lru_cache(maxsize=65536)
def unstructured(m: int, k: int, n: int, density_a: float, density_b: float,
                 table: Energies, objective: str = "edp") -> LevelCosts:
    """Costs of `Z[m, n] = A[m, k] B[n, k]` on the DSTC dataflow, A and B with the given
    shares of non-zeros, best mapping (see the module docstring)."""
    if m == 0 or k == 0 or n == 0:
        return _EMPTY
    mp, np_ = _ceil_to(m, 2 * PE_ROWS), _ceil_to(n, 2 * PE_COLUMNS)
    # Padding rows are zeros, which a compressed operand does not store or multiply.
    density_a, density_b = density_a * m / mp, density_b * n / np_
    compress_b = density_b < DSTC_DENSE_ABOVE or density_a < DSTC_DENSE_ABOVE
    compress_a = density_a < 1.0
    da = density_a if compress_a else 1.0
    db = density_b if compress_b else 1.0
    macs = float(mp) * np_ * k
    best = None
    for m_l in _divisors(mp // 32):
        for n_l in _divisors(np_ // 32):
            tile_a, tile_b = PE_ROWS * m_l, PE_COLUMNS * n_l
            if (tile_a + tile_b > LRF_WORDS_DSTC or tile_a * tile_b > RF_WORDS
                    or tile_a * compress_a + tile_b * compress_b > LRF_METADATA_BITS_DSTC):
                continue
            util = (_utilisation(tile_a, da) if compress_a else 1.0) * (
                _utilisation(tile_b, db) if compress_b else 1.0)
            blocks_a = _blocks(tile_a, da) if compress_a else m_l
            blocks_b = _blocks(tile_b, db) if compress_b else n_l
            for m_s in _divisors(mp // 32 // m_l):
                m_d = mp // 32 // m_l // m_s
                for n_s in _divisors(np_ // 32 // n_l):
                    n_d = np_ // 32 // n_l // n_s
                    for inner in (("M", "N") if m_d > 1 and n_d > 1 else ("N",)):
                        for stream in ("", "A", "B", "AB"):
                            if not _dstc_fits_smem(mp, k, np_, da, db, compress_a, compress_b,
                                                   m_d, n_d, "A" in stream, "B" in stream):
                                continue
                            costs = _dstc_mapping(mp, k, np_, da, db, compress_a, compress_b,
                                                  m_d, n_d, m_s, n_s, m_l, n_l, inner, stream,
                                                  util, blocks_a, blocks_b, table)
                            energy = sum(costs.energy_pj.values())
                            key = ((costs.cycles * energy,) if objective == "edp" else ()) + (
                                round(costs.cycles), energy)
                            if best is None or key < best[0]:
                                best = (key, costs)
    if best is None:
        raise ValueError(f"no DSTC mapping fits GEMM m={m} k={k} n={n}")
    return best[1]._replace(macs=float(mp) * np_ * k * da * db)


def _dstc_mapping(m, k, n, da, db, compress_a, compress_b, m_d, n_d, m_s, n_s, m_l, n_l, inner,
                  stream, util, blocks_a, blocks_b, t) -> LevelCosts:
    """The costs of one DSTC mapping (loop factors, inner DRAM loop, streamed operands)
    of the padded `Z[m, n] = A[m, k] B[n, k]`, one that fits SMEM (`_dstc_fits_smem`)."""
    stream_a, stream_b = "A" in stream, "B" in stream
    tile_a, tile_b = PE_ROWS * m_l, PE_COLUMNS * n_l
    macs = float(m) * n * k
    executed = macs * da * db
    pa, pb = (_non_empty(da) if compress_a else 0.0), (_non_empty(db) if compress_b else 0.0)
    # LRF, all four subpartitions together.
    lrf_a_dense_reads, lrf_b_dense_reads = macs / PE_COLUMNS, macs / PE_ROWS
    lrf_a_reads = lrf_a_dense_reads * da * blocks_b / n_l
    lrf_b_reads = lrf_b_dense_reads * db * blocks_a / m_l
    lrf_a_dense_fills = m * k * n_s * n_d * 2.0
    lrf_b_dense_fills = n * k * m_s * m_d * 2.0
    lrf_meta = (lrf_a_dense_reads + lrf_a_dense_fills) * pa + (lrf_b_dense_reads + lrf_b_dense_fills) * pb
    lrf_energy = ((lrf_a_reads + lrf_b_reads + lrf_a_dense_fills * da + lrf_b_dense_fills * db) * t.lrf
                  + lrf_meta * t.lrf_metadata)
    # RF: Z read and updated only for effectual products.
    rf_updates = executed
    rf_reads = m * n * (k - 1) * da * db
    rf_fills = float(m) * n
    rf_energy = rf_reads * t.rf_read + (rf_fills + rf_updates) * t.rf_write
    # SMEM and DRAM.
    smem_a_dense_reads, smem_b_dense_reads = float(m) * k * n_s * n_d, float(n) * k * m_s * m_d
    refetch_a = n_d if m_d > 1 and inner == "M" else 1
    refetch_b = m_d if n_d > 1 and inner == "N" else 1
    smem_a_dense_fills = smem_a_dense_reads if stream_a else float(m) * k * refetch_a
    smem_b_dense_fills = smem_b_dense_reads if stream_b else float(n) * k * refetch_b
    smem_meta_reads = (_bitmask_bits(smem_a_dense_reads, pa, tile_a, compress_a)
                       + _bitmask_bits(smem_b_dense_reads, pb, tile_b, compress_b))
    smem_meta_fills = (_bitmask_bits(smem_a_dense_fills, pa, tile_a, compress_a)
                       + _bitmask_bits(smem_b_dense_fills, pb, tile_b, compress_b))
    smem_reads = smem_a_dense_reads * da + smem_b_dense_reads * db
    smem_fills = smem_a_dense_fills * da + smem_b_dense_fills * db
    smem_energy = (smem_reads * t.smem_read + smem_fills * t.smem_write
                   + smem_meta_reads * t.smem_metadata_read + smem_meta_fills * t.smem_metadata_write)
    dram_z = float(m) * n
    dram_energy = (smem_fills + dram_z) * t.dram
    compute = executed / (SUBPARTITIONS * PE_ROWS * PE_COLUMNS * util) if executed else 0.0
    smem_read_words = smem_reads + smem_meta_reads / 8
    smem_write_words = smem_fills + smem_meta_fills / 8
    dram_read_words = smem_fills + smem_meta_fills / 8
    smem_cycles = max(smem_read_words, smem_write_words) / SMEM_WORDS_PER_CYCLE
    dram_cycles = max(dram_read_words / DRAM_READ_WORDS_PER_CYCLE, dram_z / t.dram_write_words_per_cycle)
    rf_cycles = max(rf_reads / DSTC_RF_READ_WORDS_PER_CYCLE,  # per subpartition's RF
                    (rf_fills + rf_updates) / DSTC_RF_WRITE_WORDS_PER_CYCLE) / SUBPARTITIONS
    return LevelCosts(
        cycles=max(compute, smem_cycles, dram_cycles, rf_cycles), compute_cycles=compute,
        smem_cycles=smem_cycles, dram_cycles=dram_cycles,
        energy_pj={"dram": dram_energy, "smem": smem_energy, "rf": rf_energy, "lrf": lrf_energy,
                   "mac": executed * t.mac},
        words={"dram_read": dram_read_words, "dram_write": dram_z, "smem_read": smem_read_words,
               "smem_write": smem_write_words},
        macs=executed,
        mapping=(m_d, n_d, m_s, n_s, m_l, n_l, inner, stream),
    )


def _bitmask_bits(dense_count: float, p_fibre: float, tile: int, on: bool) -> float:
    """Bitmask bits moved with `dense_count` positions of an operand: one per position of
    each non-empty fibre (a share `p_fibre`) and one per LRF tile of `tile` positions."""
    return dense_count * p_fibre + dense_count / tile if on else 0.0


def _dstc_fits_smem(m: int, k: int, n: int, da: float, db: float, compress_a: bool,
                    compress_b: bool, m_d: int, n_d: int, stream_a: bool, stream_b: bool) -> bool:
    """Whether the SMEM tiles of the operands SMEM keeps, and their bitmasks, fit SMEM."""
    smem_tile_a, smem_tile_b = (m // m_d) * k, (n // n_d) * k
    occupied_a = 0 if stream_a else (min(smem_tile_a, da * m * k) if compress_a else smem_tile_a)
    occupied_b = 0 if stream_b else (min(smem_tile_b, db * n * k) if compress_b else smem_tile_b)
    smem_bitmask = (smem_tile_a if compress_a and not stream_a else 0) + (
        smem_tile_b if compress_b and not stream_b else 0)
    return not (occupied_a + occupied_b > SMEM_WORDS or smem_bitmask > SMEM_METADATA_BITS)
