"""Fast sparse matmuls: tile-wise (TW) and TASD-series products.

    packed = pack_tw(w, g=128)            # outside jit: structure from w's zeros
    y = tw_matmul(a, packed)              # a @ w; backend "xla" on CPU, "pallas" on GPU
    s = pack_series(tasd.decompose(w, "2:4+1:8", axis=0), "2:4+1:8")  # outside jit: checked
    y = series_matmul(a, s)               # a @ sum(terms)

`TWDense` + `pack_tw_params` run a pruned flax model through `tw_matmul`
(`fold=BERT_FFN_FOLD` also keeps BERT's FFN activations compact);
`tasd_jax.kernel_speed` times them against dense.

Modules (each imports only those listed before it; the Pallas ones are
imported by `matmul` only when a "pallas" backend runs):
  formats        packed TW and N:M formats, packing and unpacking
  backends       backend names, the default per platform
  tw_xla         TW product, XLA and reference backends
  series_xla     TASD-series product, XLA and reference backends
  tw_pallas      TW product, Pallas kernel
  series_pallas  TASD-series product, Pallas kernel
  matmul         `tw_matmul`, `series_matmul`: checks and dispatch
  layers         `TWDense`, `pack_tw_params`
"""

from tasd_jax.kernels.backends import BACKENDS
from tasd_jax.kernels.formats import (
    PackedNM,
    PackedSeries,
    PackedTW,
    TWBucket,
    compact_columns,
    pack_nm,
    pack_series,
    pack_tw,
    plan_buckets,
    unpack_nm,
    unpack_series,
    unpack_tw,
)
from tasd_jax.kernels.layers import BERT_FFN_FOLD, TW_COLLECTION, TWDense, pack_tw_params
from tasd_jax.kernels.matmul import series_matmul, tw_matmul

__all__ = [
    "BACKENDS",
    "BERT_FFN_FOLD",
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
