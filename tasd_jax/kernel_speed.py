"""Speed of the tile-wise (TW) product against dense, as library functions.

    from tasd_jax import kernel_speed
    kernel_speed.matmul_speed(2048, 768, 3072, 0.75)  # one GEMM, TW vs jnp.dot
    kernel_speed.encoder_speed(sparsity=0.75)         # BERT-base forward, TW vs dense

Both time the candidates with `timing.interleaved_times` (round-robin, so load
from other processes hits every candidate alike) and report medians and
minima. The compute limit of a TW product is 1 / density: the dense
multiply-adds over the kept ones; `fraction_of_limit` is the speed-up over it.
`benchmarks/tw_matmul.py` is the command-line driver.
"""

import functools
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tasd_jax import patterns, pruning, timing
from tasd_jax.kernels import formats, layers, matmul
from tasd_jax.models import get_model


def tw_weight(k: int, n: int, sparsity: float, g: int, seed: int, dtype=jnp.float32) -> np.ndarray:
    """A random W[K, N] (normal) pruned by the library's `tw` pattern at `sparsity`
    with tile width `g` (magnitude scores, tiles along N)."""
    w = jax.random.normal(jax.random.key(seed), (k, n), jnp.float32)
    keep = patterns.parse(f"tw(sparsity={sparsity},g={g})").mask(jnp.abs(w), axis=0)
    return np.asarray(jnp.where(keep, w, 0).astype(dtype))


def time_candidates(fns: dict[str, Callable[[], Any]], reps: int, base: str) -> dict:
    """Times zero-argument thunks round-robin; returns ms (median), ms_min and
    the speed-up of every other candidate over `base`, by median and by minimum."""
    if reps < 1:
        raise ValueError(f"reps={reps!r} must be >= 1")
    times = timing.interleaved_times(fns, reps)
    med = {name: statistics.median(t) for name, t in times.items()}
    low = {name: min(t) for name, t in times.items()}
    return {
        "ms": {name: 1e3 * t for name, t in med.items()},
        "ms_min": {name: 1e3 * t for name, t in low.items()},
        "speedup": {name: med[base] / t for name, t in med.items() if name != base},
        "speedup_min": {name: low[base] / t for name, t in low.items() if name != base},
    }


def _check_sparsity(sparsity: float) -> None:
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity={sparsity!r} must be in [0, 1)")


def matmul_speed(
    m: int,
    k: int,
    n: int,
    sparsity: float,
    g: int = 128,
    *,
    dtype=jnp.float32,
    reps: int = 7,
    backends: Sequence[str] = ("xla",),
    seed: int = 0,
) -> dict:
    """Times `tw_matmul(a, pack_tw(W, g))` against dense `a @ W`, A [M, K] and a
    random TW-pruned W [K, N], both in `dtype` (float32 accumulation).

    Returns a dict with keys M, K, N, sparsity, g, density (measured non-zero
    fraction of W), padded_work (`PackedTW.compute_fraction`), buckets (their
    [T, R, G] shapes), ms {"dense", backend...} (median), ms_min, speedup
    {backend: x} (dense median / backend median), speedup_min,
    compute_limit (1 / density) and fraction_of_limit {backend: speedup /
    compute_limit}.
    """
    _check_sparsity(sparsity)
    a = jax.random.normal(jax.random.key(seed + 1), (m, k), jnp.float32).astype(dtype)
    w = tw_weight(k, n, sparsity, g, seed=seed + k * 7 + n, dtype=dtype)
    packed = formats.pack_tw(w, g)
    w_dev = jnp.asarray(w)
    dense = jax.jit(lambda a, w: jnp.dot(a, w, preferred_element_type=jnp.float32).astype(a.dtype))
    fns = {"dense": functools.partial(dense, a, w_dev)}
    for backend in backends:
        f = jax.jit(functools.partial(matmul.tw_matmul, backend=backend))
        fns[backend] = functools.partial(f, a, packed)
    got = time_candidates(fns, reps, "dense")
    density = float(np.mean(w != 0))
    limit = 1 / max(density, 1e-12)
    return {
        "M": m,
        "K": k,
        "N": n,
        "sparsity": sparsity,
        "g": g,
        "density": density,
        "padded_work": packed.compute_fraction,
        "buckets": [list(b.weights.shape) for b in packed.buckets],
        **got,
        "compute_limit": limit,
        "fraction_of_limit": {b: x / limit for b, x in got["speedup"].items()},
    }


def encoder_speed(
    num_layers: int = 12,
    seq: int = 128,
    batch: int = 16,
    sparsity: float = 0.75,
    g: int = 128,
    *,
    dtype=jnp.float32,
    reps: int = 5,
    hidden: int = 768,
    mlp_dim: int = 3072,
    num_heads: int = 12,
) -> dict:
    """Times the forward pass of a BERT encoder (BERT-base widths by default)
    whose every Dense kernel is TW-pruned at `sparsity`, packed (`TWDense` +
    `pack_tw_params`, the FFN folded by `layers.BERT_FFN_FOLD`) against the
    same masked weights run dense.

    Returns a dict with keys model (description), ms {"dense", "tw",
    "tw_unfolded"} (median; tw_unfolded packs every kernel without the FFN
    fold), ms_min, speedup (float, dense / tw by median), speedup_min,
    speedup_unfolded, density (kept fraction of all packed kernels' weights),
    compute_limit (1 / density), fraction_of_limit and max_abs_diff_logits
    (TW vs dense logits).
    """
    _check_sparsity(sparsity)
    model = get_model(
        "bert",
        dense=layers.TWDense,
        num_layers=num_layers,
        hidden=hidden,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
        max_len=max(seq, 512),
    )
    ids = jax.random.randint(jax.random.key(2), (batch, seq), 0, model.vocab_size)
    params = jax.jit(model.init)(jax.random.key(0), ids)["params"]
    pruned, _ = pruning.prune_tree(params, [(r"kernel$", f"tw(sparsity={sparsity},g={g})")])
    pruned = jax.tree.map(lambda x: x.astype(dtype), pruned)
    sparse_vars = layers.pack_tw_params(pruned, g, fold=layers.BERT_FFN_FOLD)
    unfolded_vars = layers.pack_tw_params(pruned, g)
    kernels_ = [
        leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(pruned)
        if "kernel" in str(path[-1])
    ]
    density = sum(float(jnp.sum(x != 0)) for x in kernels_) / sum(x.size for x in kernels_)
    apply = jax.jit(model.apply)
    got = time_candidates(
        {
            "dense": lambda: apply({"params": pruned}, ids),
            "tw": lambda: apply(sparse_vars, ids),
            "tw_unfolded": lambda: apply(unfolded_vars, ids),
        },
        reps,
        "dense",
    )
    diff = jnp.max(jnp.abs(apply({"params": pruned}, ids) - apply(sparse_vars, ids)))
    limit = 1 / max(density, 1e-12)
    speedup = got["speedup"]["tw"]
    return {
        "model": (
            f"bert hidden {hidden}, mlp {mlp_dim}, {num_layers} layers, seq {seq}, batch {batch}"
        ),
        "sparsity": sparsity,
        "g": g,
        "ms": got["ms"],
        "ms_min": got["ms_min"],
        "speedup": speedup,
        "speedup_min": got["speedup_min"]["tw"],
        "speedup_unfolded": got["speedup"]["tw_unfolded"],
        "density": density,
        "compute_limit": limit,
        "fraction_of_limit": speedup / limit,
        "max_abs_diff_logits": float(diff),
    }
