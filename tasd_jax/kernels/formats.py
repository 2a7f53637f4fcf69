"""Packed sparse weight formats: tile-wise (TW) and N:M; data and packing only.

Tile-wise (`PackedTW`). Tile-wise sparsity (Guo et al., SC20;
docs/tile_wise.md): the weight W[K, N] keeps some N-columns; the kept
columns, in order, are cut into tiles of `g`; each tile keeps its own set of
K-rows. `a @ W` is then one small dense GEMM per tile,
`a[:, rows_t] @ W[rows_t, cols_t]`, whose results land in the tile's output
columns. Tiles are grouped into a few *buckets*; inside a bucket every tile is
padded to the same number of kept rows (padding rows repeat one of the tile's
kept rows and hold zero weights, so no tile reads a row it pruned), so a
bucket is one batched GEMM with static shapes. The bucket
plan minimises the padded work (docs/measurements.md: one batched GEMM per
bucket runs at dense BLAS speed, per-tile GEMMs do not).

N:M (`PackedNM`, `PackedSeries`). TASD (Jeong et al., arXiv 2403.07953, §3;
docs/tasd.md) runs a weight series term by term on N:M hardware, since
(W1 + W2) applied to a equals a W1 + a W2. A term Wi of W[K, N] is Ni:Mi along
K (as `tasd.decompose(w, series, axis=0)` returns it); its packed form keeps,
for every group of Mi consecutive K-rows and every column, Ni values and their
positions inside the group (the values + metadata format of NVIDIA's 2:4
sparse tensor cores).

The products with these formats are `matmul.tw_matmul` and
`matmul.series_matmul`.
"""

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tasd_jax import patterns

# --- Tile-wise -------------------------------------------------------------


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["weights", "rows", "cols"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class TWBucket:
    """Tiles padded to one kept-row count R.

    Attributes:
      weights: [T, R, G] each tile's kept rows of its kept columns.
      rows: [T, R] int32 K-index of each kept row (padding: the tile's last
        kept row again, zero weights).
      cols: [T, G] int32 N-index of each tile column (padding: N, zero weights).
    """

    weights: jax.Array
    rows: jax.Array
    cols: jax.Array


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["buckets", "inverse"],
    meta_fields=["shape", "g"],
)
@dataclasses.dataclass(frozen=True)
class PackedTW:
    """A tile-wise-sparse weight W[K, N] packed per tile (see module doc).

    Attributes:
      buckets: the tiles, grouped by padded kept-row count. A narrow last tile
        (fewer than g kept columns left) is padded to g columns, or is a
        bucket of its own width when that saves work (see `pack_tw`).
        Concatenating the buckets' columns gives the compact output's order.
      inverse: [N] int32: for every column of W, its position in the compact
        output, or `compact_width` (one past the end) if pruned.
      shape: (K, N) of W (static).
      g: tile width G (static).

    Gradients flow to `weights` (reference backend), padding entries
    included: mask them with the weights of `pack_tw(w != 0, g)`, which has
    the same layout, before using them as weight updates.
    """

    buckets: tuple[TWBucket, ...]
    inverse: jax.Array
    shape: tuple[int, int]
    g: int

    @property
    def num_slots(self) -> int:
        """Number of tiles."""
        return sum(b.rows.shape[0] for b in self.buckets)

    @property
    def compact_width(self) -> int:
        """Columns of the compact product: the kept columns of W + padding."""
        return sum(b.cols.size for b in self.buckets)

    @property
    def dtype(self):
        return self.buckets[0].weights.dtype if self.buckets else jnp.float32

    @property
    def compute_fraction(self) -> float:
        """Multiply-adds of the padded tile GEMMs over those of the dense W."""
        k, n = self.shape
        work = sum(b.weights.size for b in self.buckets)
        return work / max(k * n, 1)


def _concrete(x, name: str, why: str) -> np.ndarray:
    """`x` as a numpy array; ValueError if it is traced (packing needs the
    values: `why` says what for)."""
    if isinstance(x, jax.core.Tracer):
        raise ValueError(
            f"{name} is traced: packing {why}, which needs its values; call it outside "
            "jit and pass the packed result in"
        )
    return np.asarray(x)


def _padded_rows(count, row_multiple: int, k: int):
    return np.minimum(-(-np.asarray(count) // row_multiple) * row_multiple, k)


def plan_buckets(
    counts: Sequence[int], max_buckets: int, row_multiple: int, k: int, slack: float = 0.5
) -> list[tuple[np.ndarray, int]]:
    """Groups tiles into buckets of padded row counts.

    Every bucket is one gather and one batched GEMM, and on the CPU each costs
    more than a lot of padding: on 3072x768 TW-90% weights one bucket padded
    to [2 tiles, 1480 rows] ran 1.8x faster than the least-padding plan
    [1, 1480] + [1, 520] (benchmarks/tw_matmul.py). So the plan uses the
    fewest buckets whose padded rows are within `slack` of the least possible
    with `max_buckets`.

    Args:
      counts: kept-row count of every tile.
      max_buckets: most buckets (batched GEMMs) to use.
      row_multiple: padded row counts are rounded up to a multiple of this
        (capped at `k`).
      k: K, the largest possible row count.
      slack: padding allowed over the least-padding plan, as a fraction.

    Returns:
      (tile indices, padded row count) per bucket, largest rows first (dynamic
      programme over the tiles sorted by count: an optimal bucket is always a
      contiguous run of them).
    """
    counts = np.asarray(counts, np.int64)
    order = np.argsort(-counts, kind="stable")
    sorted_counts = counts[order]
    num = len(counts)
    if num == 0:
        return []
    padded = _padded_rows(sorted_counts, row_multiple, k)
    buckets = min(max_buckets, num)
    inf = np.iinfo(np.int64).max // 4
    # cost[b, j]: least padded rows covering the first j tiles with b buckets.
    cost = np.full((buckets + 1, num + 1), inf, np.int64)
    cut = np.zeros((buckets + 1, num + 1), np.int64)
    cost[0, 0] = 0
    for b in range(1, buckets + 1):
        for j in range(1, num + 1):
            starts = np.arange(j)
            # A run i..j-1 is padded to its first (largest) count.
            total = cost[b - 1, starts] + (j - starts) * padded[starts]
            best = int(np.argmin(total))
            cost[b, j], cut[b, j] = total[best], best
    least = cost[1:, num].min()
    b = 1 + int(np.argmax(cost[1:, num] <= (1 + slack) * least))
    plan, j = [], num
    while j > 0:
        i = int(cut[b, j])
        plan.append((order[i:j], int(padded[i])))
        j, b = i, b - 1
    return plan[::-1]


def pack_tw(
    w: jax.Array, g: int, *, max_buckets: int = 4, row_multiple: int = 8, bucket_slack: float = 0.5
) -> PackedTW:
    """Packs a tile-wise-sparse W[K, N] into per-tile dense blocks.

    The tile structure is read off the zeros of `w`: kept columns are those
    with any non-zero; consecutive kept columns form tiles of `g` (the last one
    may be narrower); a tile's kept rows are the rows with any non-zero inside
    the tile. Any W is packed exactly (a dense W is one tile per g columns with
    all rows kept); the speed-up comes from TW-pruned weights.

    Not jit-able: the packed shapes depend on the values. Pack once, outside
    jit, and pass the result to jitted code.

    Args:
      w: [K, N] weight, zeros where pruned.
      g: tile width G (TW paper: 128).
      max_buckets: most row-count buckets (batched GEMMs) of full tiles; see
        `plan_buckets`. A narrow last tile adds one bucket.
      row_multiple: bucket row counts are padded to a multiple of this.
      bucket_slack: padding allowed to save buckets; see `plan_buckets`.

    Returns:
      The `PackedTW`; `unpack_tw` gives `w` back exactly.
    """
    for name, value in (("g", g), ("max_buckets", max_buckets), ("row_multiple", row_multiple)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} must be an integer >= 1")
    if not bucket_slack >= 0:
        raise ValueError(f"bucket_slack={bucket_slack!r} must be >= 0")
    w = _concrete(w, "w", "reads the tiles off the zeros of w")
    if w.ndim != 2:
        raise ValueError(f"w must be a [K, N] matrix, got shape {w.shape}")
    k, n = w.shape
    nonzero = w != 0
    cols = np.flatnonzero(nonzero.any(axis=0))
    tiles = [cols[i : i + g] for i in range(0, len(cols), g)]
    tile_rows = [np.flatnonzero(nonzero[:, c].any(axis=1)) for c in tiles]
    counts = [len(r) for r in tile_rows]
    plan = plan_buckets(counts, max_buckets, row_multiple, k, bucket_slack)
    full = len(tiles) - (len(tiles) > 0 and len(tiles[-1]) < g)
    if full < len(tiles):
        # A narrow last tile is padded to g columns and joins the others, unless
        # a bucket of its own width saves more than `bucket_slack` of the work.
        split = plan_buckets(counts[:full], max_buckets, row_multiple, k, bucket_slack)
        last_rows = int(_padded_rows(counts[-1], row_multiple, k))
        split_work = g * sum(len(t) * r for t, r in split) + last_rows * len(tiles[-1])
        if split_work < (1 - bucket_slack) * g * sum(len(t) * r for t, r in plan):
            plan = split + [(np.array([full]), last_rows)]
    buckets, inverse, offset = [], np.full(n, -1, np.int64), 0
    for members, r in plan:
        width = max(len(tiles[t]) for t in members)
        rows = np.zeros((len(members), r), np.int64)
        cols = np.full((len(members), width), n, np.int64)  # padding columns: N
        weights = np.zeros((len(members), r, width), w.dtype)
        for i, t in enumerate(members):
            kept, tile = tile_rows[t], tiles[t]
            rows[i, : len(kept)] = kept
            # Padding repeats a kept row: reading a pruned one would let its
            # NaN or inf into the tile's output (0 * NaN is NaN).
            rows[i, len(kept) :] = kept[-1]
            cols[i, : len(tile)] = tile
            weights[i, : len(kept), : len(tile)] = w[np.ix_(kept, tile)]
            inverse[tile] = offset + i * width + np.arange(len(tile))
        offset += len(members) * width
        buckets.append(
            TWBucket(
                jnp.asarray(weights), jnp.asarray(rows, jnp.int32), jnp.asarray(cols, jnp.int32)
            )
        )
    inverse[inverse < 0] = offset  # pruned columns: one past the compact output
    return PackedTW(tuple(buckets), jnp.asarray(inverse, jnp.int32), (k, n), int(g))


def unpack_tw(packed: PackedTW) -> jax.Array:
    """The dense W[K, N] of a `PackedTW` (jit-able); exact inverse of `pack_tw`."""
    k, n = packed.shape
    w = jnp.zeros((k, n), packed.dtype)
    for b in packed.buckets:
        t, r, g = b.weights.shape
        rows = jnp.broadcast_to(b.rows[:, :, None], (t, r, g))
        cols = jnp.broadcast_to(b.cols[:, None, :], (t, r, g))
        # Padding rows add zeros to a kept row; padding columns (N) are dropped.
        w = w.at[rows, cols].add(b.weights, mode="drop")
    return w


def compact_columns(packed: PackedTW) -> jax.Array:
    """[compact_width] int32 N-index of each column of the compact product
    (N for the padding columns of a narrow last tile)."""
    if not packed.buckets:
        return jnp.zeros((0,), jnp.int32)
    return jnp.concatenate([b.cols.reshape(-1) for b in packed.buckets])


def result_dtype(a: jax.Array, packed: PackedTW):
    """dtype of `a @ W` for a packed W: the two dtypes promoted."""
    return jnp.result_type(a.dtype, packed.dtype)


# --- N:M and TASD series ---------------------------------------------------


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["values", "positions"],
    meta_fields=["shape", "n", "m"],
)
@dataclasses.dataclass(frozen=True)
class PackedNM:
    """An N:M-sparse W[K, N] (groups along K) as values plus positions.

    Attributes:
      values: [n, ceil(K / m), N] the kept values of each group (0 where a
        group keeps fewer than n non-zeros).
      positions: [n, ceil(K / m), N] int8 (int32 if m > 127) index of each value
        inside its group, distinct within a group.
      shape: (K, N) of W (static).
      n, m: the N:M pattern (static).
    """

    values: jax.Array
    positions: jax.Array
    shape: tuple[int, int]
    n: int
    m: int


@functools.partial(jax.tree_util.register_dataclass, data_fields=["terms"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class PackedSeries:
    """The packed terms of a TASD weight series, all of the same shape [K, N]."""

    terms: tuple[PackedNM, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return self.terms[0].shape


def group_rows(x: jax.Array, m: int) -> jax.Array:
    """[K, N] -> [ceil(K / m), m, N], zero-padded along K."""
    k = x.shape[0]
    return jnp.pad(x, ((0, -k % m), (0, 0))).reshape(-1, m, x.shape[1])


def pack_nm(term: jax.Array, nm: "str | patterns.NM") -> PackedNM:
    """Packs an N:M-sparse term W[K, N] (groups along K, axis 0).

    Not jit-able: a group holding more than N non-zeros cannot be packed
    without losing values, so the term is checked first, which needs its
    values. Pack once, outside jit, and pass the result to jitted code.

    Args:
      term: [K, N] array, at most n non-zeros in every m consecutive K-rows.
      nm: "2:4" or a `patterns.NM`.
    """
    nm = patterns.parse(nm)
    if not isinstance(nm, patterns.NM):
        raise ValueError(f"pattern {nm.spec()!r} is not a single N:M pattern")
    rule = f"{nm.spec()} (at most {nm.n} non-zeros in every {nm.m} consecutive K-rows)"
    host = _concrete(term, "term", f"checks that the term is {rule}")
    if host.ndim != 2:
        raise ValueError(f"term must be a [K, N] matrix, got shape {host.shape}")
    # numpy, not jnp: under jit even a concrete term's jnp results are traced.
    padded = np.pad(host != 0, ((0, -host.shape[0] % nm.m), (0, 0)))
    counts = padded.reshape(-1, nm.m, host.shape[1]).sum(axis=1)  # [G, N]
    if counts.size and counts.max() > nm.n:
        group, column = np.unravel_index(np.argmax(counts), counts.shape)
        first = group * nm.m
        last = min(first + nm.m, host.shape[0]) - 1
        raise ValueError(
            f"term has {counts.max()} non-zeros in K-rows {first}..{last} of column {column}: "
            f"not {rule}"
        )
    term = jnp.asarray(term)
    nonzero = term != 0
    grouped = group_rows(term, nm.m)
    # Non-zeros first, then lower positions: the kept slots are distinct.
    ranks = patterns.group_ranks(group_rows(nonzero, nm.m).astype(jnp.float32), nm.m, axis=1)
    slots = ranks[None] == jnp.arange(nm.n)[:, None, None, None]  # [n, G, m, N]
    index_dtype = jnp.int8 if nm.m <= 127 else jnp.int32
    positions = jnp.argmax(slots, axis=2).astype(index_dtype)
    values = jnp.sum(jnp.where(slots, grouped[None], 0), axis=2).astype(term.dtype)
    return PackedNM(values, positions, tuple(term.shape), nm.n, nm.m)


def pack_series(terms: Sequence[jax.Array], series: "str | patterns.Pattern") -> PackedSeries:
    """Packs the terms of a TASD series (`tasd.decompose(w, series, axis=0)`).

    Not jit-able, like `pack_nm`: every term is checked against its N:M
    pattern first. Pack outside jit and pass the `PackedSeries` in.

    Args:
      terms: one [K, N] array per term of `series`.
      series: "2:4+1:8", an N:M spec, or a `patterns.Series`.
    """
    series = patterns.as_series(series)
    if len(terms) != len(series.terms):
        raise ValueError(
            f"{len(terms)} terms given for series {series.spec()!r} of {len(series.terms)} terms"
        )
    shapes = {tuple(jnp.shape(t)) for t in terms}
    if len(shapes) != 1:
        raise ValueError(f"terms of a series must share one shape, got {sorted(shapes)}")
    packed = []
    for i, (term, nm) in enumerate(zip(terms, series.terms)):
        try:
            packed.append(pack_nm(term, nm))
        except ValueError as e:
            raise ValueError(f"term {i} of series {series.spec()!r}: {e}") from e
    return PackedSeries(tuple(packed))


def _expand(values: jax.Array, positions: jax.Array, m: int) -> jax.Array:
    """[n, G, N] values + positions -> [G, m, N] dense groups."""
    slots = positions[..., None, :].astype(jnp.int32) == jnp.arange(m)[:, None]  # [n, G, m, N]
    return jnp.sum(jnp.where(slots, values[:, :, None, :], 0), axis=0)


def unpack_nm(packed: PackedNM) -> jax.Array:
    """The dense [K, N] term of a `PackedNM` (jit-able, exact)."""
    k, n = packed.shape
    return _expand(packed.values, packed.positions, packed.m).reshape(-1, n)[:k]


def unpack_series(packed: PackedSeries) -> jax.Array:
    """Sum of the packed terms as a dense [K, N] array."""
    return functools.reduce(jnp.add, (unpack_nm(t) for t in packed.terms))
