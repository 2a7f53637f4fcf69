"""Tile-wise (TW) sparse matmul: packing and the XLA / reference backends.

Implements the kernel side of tile-wise sparsity (Guo et al., SC20; DESIGN.md
§2): the weight W[K, N] keeps some N-columns; the kept columns, in order, are
cut into tiles of `g`; each tile keeps its own set of K-rows. `a @ W` is then
one small dense GEMM per tile, `a[:, rows_t] @ W[rows_t, cols_t]`, whose
results land in the tile's output columns.

Packed layout (`PackedTW`). Tiles are grouped into a few *buckets*; inside a
bucket every tile is padded to the same number of kept rows (padding rows
point at row 0 and hold zero weights), so a bucket is one batched GEMM with
static shapes. The bucket plan minimises the padded work (DESIGN.md §3: one
batched GEMM per bucket runs at dense BLAS speed, per-tile GEMMs do not).

XLA backend (the CPU default). Measured on the 2-core CPU (benchmarks/
tw_matmul.py --alternatives, DESIGN.md §3): gathering A's kept columns for all
tiles at once and scattering the compact product back cost as much as the
sparse GEMMs themselves, because the gathered copies of A (T x M x R) and the
output do not fit in cache; done chunk by chunk they do. So the product runs
over chunks of `block_m` rows of A; per chunk, each bucket gathers the chunk's
kept columns for its tiles, runs one batch-first GEMM `[T, bm, R] x [T, R, G]`
(the layout XLA runs at BLAS speed; batch-in-the-middle einsums and K-major
`[T, G, R] x [T, R, bm]` products ran slower), and the compact result is
scattered into the chunk's output columns while it is still in cache.
"""

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

BACKENDS = ("auto", "xla", "pallas", "reference")


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
      rows: [T, R] int32 K-index of each kept row (padding: 0, zero weights).
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


def _concrete(x, name: str) -> np.ndarray:
    if isinstance(x, jax.core.Tracer):
        raise ValueError(
            f"{name} is traced: packing infers its structure from the zeros of the "
            "values, so call it outside jit and pass the packed result in"
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
    w = _concrete(w, "w")
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
        # Padding rows add zeros to row 0; padding columns (N) are dropped.
        w = w.at[rows, cols].add(b.weights, mode="drop")
    return w


def _check_operand(a: jax.Array, packed: PackedTW) -> None:
    k, _ = packed.shape
    if a.ndim < 1 or a.shape[-1] != k:
        raise ValueError(
            f"a has shape {a.shape}; its last axis must be K={k} (W is {packed.shape})"
        )


def _out_dtype(a: jax.Array, packed: PackedTW):
    return jnp.result_type(a.dtype, packed.dtype)


def tw_matmul_reference(a: jax.Array, packed: PackedTW, *, compact: bool = False):
    """Pure-JAX per-tile product: take A's kept columns, one einsum per bucket,
    scatter into the output columns. Differentiable; the test oracle."""
    _, n = packed.shape
    m = a.shape[0]
    dtype = _out_dtype(a, packed)
    parts = []
    for b in packed.buckets:
        gathered = jnp.take(a, b.rows, axis=1)  # [M, T, R]
        parts.append(
            jnp.einsum(
                "mtr,trg->mtg", gathered, b.weights, preferred_element_type=jnp.float32
            ).reshape(m, -1)
        )
    compact_out = jnp.concatenate(parts, axis=1) if parts else jnp.zeros((m, 0), jnp.float32)
    if compact:
        return compact_out.astype(dtype)
    out = (
        jnp.zeros((m, n), jnp.float32).at[:, compact_columns(packed)].set(compact_out, mode="drop")
    )
    return out.astype(dtype)


# Working set per chunk of A's rows (gathered columns, compact and full output
# rows) that stays in this CPU's L2 + share of L3; small enough chunks make the
# gather and scatter run from cache, large enough ones keep the GEMMs at BLAS
# speed (benchmarks/tw_matmul.py --alternatives).
CHUNK_BYTES = 8 << 20
MIN_BLOCK_M = 128


def auto_block_m(packed: PackedTW, m: int) -> int:
    """Rows of A per chunk: the power of two nearest CHUNK_BYTES / bytes per row,
    at least MIN_BLOCK_M, at most m (static: uses shapes only)."""
    _, n = packed.shape
    per_row = sum(b.rows.size for b in packed.buckets) + packed.compact_width + n
    rows = CHUNK_BYTES / (4 * max(per_row, 1))
    return int(min(max(2 ** round(np.log2(max(rows, 1))), MIN_BLOCK_M), m))


def tw_matmul_xla(
    a: jax.Array, packed: PackedTW, *, block_m: int | None = None, compact: bool = False
):
    """Chunked gather + batched GEMM + in-cache scatter (see module doc);
    block_m=None picks `auto_block_m`."""
    k, n = packed.shape
    m = a.shape[0]
    dtype = _out_dtype(a, packed)
    if packed.num_slots == 0:
        return jnp.zeros((m, 0 if compact else n), dtype)
    bm = min(block_m or auto_block_m(packed, m), m)
    chunks = jnp.pad(a, ((0, -m % bm), (0, 0))).reshape(-1, bm, k)
    acc = jnp.promote_types(dtype, jnp.float32)

    def chunk(x):  # [bm, K] -> [bm, N]
        parts = []
        for b in packed.buckets:
            t, r, _ = b.weights.shape
            gathered = jnp.take(x, b.rows.reshape(-1), axis=1).reshape(bm, t, r).transpose(1, 0, 2)
            # Batch-first [T, bm, R] x [T, R, G]: the layout XLA runs at BLAS speed.
            # XLA:CPU has no bf16 x bf16 -> f32 batched dot: accumulate by upcasting.
            product = jnp.matmul(gathered.astype(acc), b.weights.astype(acc))
            parts.append(product.transpose(1, 0, 2).reshape(bm, -1))
        c = jnp.concatenate(parts + [jnp.zeros((bm, 1), acc)], axis=1)
        # Pruned columns read the zero column at the end.
        return (c[:, :-1] if compact else c[:, packed.inverse]).astype(dtype)

    out = lax.map(chunk, chunks)
    return out.reshape(-1, out.shape[-1])[:m]


def default_backend() -> str:
    """ "pallas" on GPU, "xla" elsewhere."""
    return "pallas" if jax.default_backend() == "gpu" else "xla"


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
    return default_backend() if backend == "auto" else backend


def tw_matmul(
    a: jax.Array,
    packed: PackedTW,
    *,
    backend: str = "auto",
    interpret: bool = False,
    compact: bool = False,
    block_m: int | None = None,
):
    """`a @ W` for a packed tile-wise-sparse W (jit-able; `packed` is a pytree).

    Args:
      a: [..., K] activations (leading axes fold into M).
      packed: `pack_tw(W, g)` of W[K, N].
      backend: "xla" (CPU default), "pallas" (GPU default; `interpret=True`
        runs it anywhere), "reference", or "auto".
      interpret: run the Pallas kernel in interpret mode.
      compact: return only the compact product [..., packed.compact_width]
        (the kept columns in packing order, `compact_columns(packed)` names
        their N-indices; N marks padding columns, which hold zeros).
      block_m: rows of A per chunk (xla, default `auto_block_m`) or per
        program (pallas, default 64).

    Returns:
      [..., N] (zeros in pruned columns), or the compact product; dtype
      of `a` and W promoted; products accumulate in float32.
    """
    backend = check_backend(backend)
    if block_m is not None and (not isinstance(block_m, int) or block_m < 1):
        raise ValueError(f"block_m={block_m!r} must be an integer >= 1")
    sizes = {} if block_m is None else {"block_m": block_m}
    a = jnp.asarray(a)
    _check_operand(a, packed)
    lead = a.shape[:-1]
    a2 = a.reshape(-1, a.shape[-1])
    if backend == "reference":
        out = tw_matmul_reference(a2, packed, compact=compact)
    elif backend == "xla":
        out = tw_matmul_xla(a2, packed, compact=compact, **sizes)
    else:
        from tasd_jax.kernels import tw_pallas  # Pallas is imported only when used.

        out = tw_pallas.tw_matmul_pallas(a2, packed, interpret=interpret, compact=compact, **sizes)
    return out.reshape(*lead, out.shape[-1])


def compact_columns(packed: PackedTW) -> jax.Array:
    """[compact_width] int32 N-index of each column of the compact product
    (N for the padding columns of a narrow last tile)."""
    if not packed.buckets:
        return jnp.zeros((0,), jnp.int32)
    return jnp.concatenate([b.cols.reshape(-1) for b in packed.buckets])
