"""Fast sparse matmuls: tile-wise (TW) and TASD-series products (issue 6).

    packed = pack_tw(w, g=128)            # outside jit: structure from w's zeros
    y = tw_matmul(a, packed)              # a @ w; backend "xla" on CPU, "pallas" on GPU
    s = pack_series(tasd.decompose(w, "2:4+1:8", axis=0), "2:4+1:8")
    y = series_matmul(a, s)               # a @ sum(terms)

`TWDense` + `pack_tw_params` run a pruned flax model through `tw_matmul`.
"""

from tasd_jax.kernels.layers import TW_COLLECTION, TWDense, pack_tw_params
from tasd_jax.kernels.series import (
    PackedNM,
    PackedSeries,
    pack_nm,
    pack_series,
    series_matmul,
    unpack_nm,
    unpack_series,
)
from tasd_jax.kernels.tw import (
    BACKENDS,
    PackedTW,
    TWBucket,
    compact_columns,
    pack_tw,
    plan_buckets,
    tw_matmul,
    unpack_tw,
)

__all__ = [
    "BACKENDS",
    "TW_COLLECTION",
    "PackedNM",
    "PackedSeries",
    "PackedTW",
    "TWBucket",
    "TWDense",
    "compact_columns",
    "pack_nm",
    "pack_series",
    "pack_tw",
    "pack_tw_params",
    "plan_buckets",
    "series_matmul",
    "tw_matmul",
    "unpack_nm",
    "unpack_series",
    "unpack_tw",
]
