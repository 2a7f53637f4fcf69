"""Speed of the tile-wise sparse matmul against dense `jnp.dot`.

Times, in one run with interleaved repetitions (median of --reps), dense
`jnp.dot`, the reference backend and each available backend of
`tasd_jax.kernels.tw_matmul` on the TW paper's BERT shapes (K x N = 768x768,
768x3072, 3072x768) and 4096x4096, at 50/75/90% TW sparsity (G = 128, masks
from `patterns.parse("tw(sparsity=S,g=128)")`), and writes the speed-up table.

  python -m benchmarks.tw_matmul                 # CPU, float32, M = 2048
  python -m benchmarks.tw_matmul --gpu           # GPU, bf16, M = 12800, + 8192^3
  python -m benchmarks.tw_matmul --e2e           # + BERT-base forward, all Dense TW-75%
  python -m benchmarks.tw_matmul --alternatives  # + layouts tried for the XLA path

Results: OUT_DIR/tw_matmul_{cpu,gpu}.{json,md} (see --out_dir).
"""

import argparse
import functools
import json
from typing import Callable

import jax
import jax.numpy as jnp

from benchmarks import common
from tasd_jax import kernel_speed, kernels
from tasd_jax.kernels import tw_xla

BERT_SHAPES = ((768, 768), (768, 3072), (3072, 768))


def matmul_rows(args, dtype) -> list[dict]:
    """`kernel_speed.matmul_speed` for every shape and sparsity."""
    shapes = list(BERT_SHAPES) + [tuple(s) for s in args.square]
    rows = []
    for k, n in shapes:
        for sparsity in args.sparsity:
            row = kernel_speed.matmul_speed(
                args.m, k, n, sparsity, args.g, dtype=dtype, reps=args.reps, backends=args.backends
            )
            print(
                json.dumps(
                    {
                        key: row[key]
                        for key in ("K", "N", "sparsity", "speedup", "fraction_of_limit")
                    }
                ),
                flush=True,
            )
            rows.append(row)
    return rows


def k_major_chunked(a: jax.Array, packed: kernels.PackedTW, block_m: int) -> jax.Array:
    """The alternative layout: per chunk, gather rows of A^T (K-major, as the TW
    paper stores A) and run `[T, G, R] x [T, R, bm]`; scatter rows, transpose."""
    m, k = a.shape
    block_m = min(block_m, m)
    chunks = a.reshape(-1, block_m, k)

    def chunk(x):
        x_t = x.T
        parts = [
            jax.lax.dot_general(b.weights, x_t[b.rows], (((1,), (1,)), ((0,), (0,)))).reshape(
                -1, block_m
            )
            for b in packed.buckets
        ]
        c = jnp.concatenate(parts + [jnp.zeros((1, block_m), a.dtype)], axis=0)
        return c[packed.inverse].T

    return jax.lax.map(chunk, chunks).reshape(m, -1)


def expand_after_loop(a: jax.Array, packed: kernels.PackedTW) -> jax.Array:
    """The compact product of every chunk first, then one gather of the N output
    columns after the loop (fusible with a consumer, but out of cache)."""
    return tw_xla.expand(tw_xla.compact_with_zero(a, packed), packed)


def per_tile_gemms(a: jax.Array, packed: kernels.PackedTW) -> jax.Array:
    """One [M, R] x [R, G] GEMM per tile instead of a batched GEMM per bucket."""
    parts = [
        jnp.dot(jnp.take(a, rows, axis=1), w)
        for b in packed.buckets
        for rows, w in zip(b.rows, b.weights)
    ]
    c = jnp.concatenate(parts + [jnp.zeros((a.shape[0], 1), a.dtype)], axis=1)
    return tw_xla.expand(c, packed)


def elementwise_expand(a: jax.Array, packed: kernels.PackedTW) -> jax.Array:
    """The full output as an element-wise gather out[i, j] = c[i, inverse[j]]
    instead of a gather of whole columns."""
    c = tw_xla.compact_with_zero(a, packed)
    return c[jnp.arange(a.shape[0])[:, None], packed.inverse[None, :]]


def alternatives(args, dtype) -> list[dict]:
    """The layouts tried for the XLA path, on 768x3072 and 3072x768 at 75%."""
    return [
        row for k, n in ((768, 3072), (3072, 768)) for row in alternatives_for(args, dtype, k, n)
    ]


def alternatives_for(args, dtype, k: int, n: int) -> list[dict]:
    """Every layout of `alternatives` on A [args.m, k] and a TW-75% W [k, n], timed
    against dense `jnp.dot` in one interleaved run; prints each row."""
    m, g = args.m, args.g
    a = jax.random.normal(jax.random.key(1), (m, k), jnp.float32).astype(dtype)
    w = kernel_speed.tw_weight(k, n, 0.75, g, seed=k * 7 + n, dtype=dtype)
    packed = kernels.pack_tw(w, g)
    least_padding = kernels.pack_tw(w, g, bucket_slack=0.0)
    variants = {"dense jnp.dot": (jax.jit(jnp.dot), (a, jnp.asarray(w)))}
    variants.update(_tw_matmul_variants(a, packed, least_padding))
    variants.update(_layout_variants(a, packed))
    base = "dense jnp.dot"
    got = kernel_speed.time_candidates(
        {name: functools.partial(f, *x) for name, (f, x) in variants.items()}, args.reps, base
    )
    out = [
        {
            "K": k,
            "N": n,
            "variant": name,
            "ms": ms,
            "speedup": got["speedup"].get(name, 1.0),
            "speedup_min": got["speedup_min"].get(name, 1.0),
        }
        for name, ms in got["ms"].items()
    ]
    for row in out:
        print(json.dumps(row), flush=True)
    return out


def _tw_matmul_variants(
    a: jax.Array, packed: kernels.PackedTW, least_padding: kernels.PackedTW
) -> dict[str, tuple[Callable, tuple]]:
    """label -> (jitted `kernels.tw_matmul` with one setting, its arguments): the
    reference backend, chunk sizes, the least-padding bucket plan, the compact output."""
    m = a.shape[0]
    variants = {}
    for label, p, kw in (
        (
            "reference: take + einsum (batch in the middle) + scatter",
            packed,
            {"backend": "reference"},
        ),
        (
            "xla unchunked (block_m=M): gather for all tiles, batched GEMM, expansion",
            packed,
            {"block_m": m},
        ),
        ("xla block_m=64", packed, {"block_m": 64}),
        ("xla block_m=128", packed, {"block_m": 128}),
        ("xla block_m=256", packed, {"block_m": 256}),
        (
            "xla default: block_m=auto (~8 MB per chunk), each chunk's N output "
            "columns gathered in cache",
            packed,
            {},
        ),
        ("xla block_m=512", packed, {"block_m": 512}),
        (
            (
                f"xla, least-padding bucket plan {[b.weights.shape[:2] for b in least_padding.buckets]}"
                f" instead of {[b.weights.shape[:2] for b in packed.buckets]}"
            ),
            least_padding,
            {},
        ),
        ("xla, compact output (no expansion to N columns)", packed, {"compact": True}),
    ):
        variants[label] = (jax.jit(functools.partial(kernels.tw_matmul, **kw)), (a, p))
    return variants


def _layout_variants(a: jax.Array, packed: kernels.PackedTW) -> dict[str, tuple[Callable, tuple]]:
    """label -> (jitted function, its arguments): the layouts of this module tried
    instead of `kernels.tw_matmul`'s."""
    variants = {}
    for label, f in (
        ("one gather of the N output columns after the chunk loop", expand_after_loop),
        ("one GEMM per tile (no batching)", per_tile_gemms),
        ("full output by an element-wise gather c[i, inverse[j]]", elementwise_expand),
    ):
        variants[label] = (jax.jit(f), (a, packed))
    for bm in (128, 256):
        f = jax.jit(functools.partial(k_major_chunked, block_m=bm))
        variants[
            f"K-major chunks block_m={bm}: [T, G, R] x [T, R, bm], row scatter + transpose"
        ] = (f, (a, packed))
    return variants


def end_to_end(args, dtype) -> dict:
    """`kernel_speed.encoder_speed`: BERT-base forward (seq 128, M tokens), every Dense TW-75%."""
    row = kernel_speed.encoder_speed(
        args.e2e_layers,
        seq=128,
        batch=max(1, args.m // 128),
        sparsity=0.75,
        g=args.g,
        dtype=dtype,
        reps=max(3, args.reps // 2),
    )
    print(json.dumps(row), flush=True)
    return row


def markdown(result: dict) -> str:
    lines = [
        f"# TW matmul speed-up over dense ({result['dtype']})",
        "",
        f"Median of {result['reps']} interleaved repetitions; G = {result['g']}, M = {result['M']}.",
        "",
    ]
    backends = result["backends"]
    lines += [
        (
            "Speed-up x = dense time / backend time, by median (by minimum in brackets); "
            "limit = the compute limit 1 / density; of limit = x / limit."
        ),
        "",
        "| K x N | sparsity | density | limit | padded work | dense ms | "
        + " | ".join(f"{b} ms | {b} x | {b} of limit" for b in backends)
        + " |",
        "|---|---|---|---|---|---|" + "---|---|---|" * len(backends),
    ]
    for r in result["matmul"]:
        cells = " | ".join(
            f"{r['ms'][b]:.2f} | {r['speedup'][b]:.2f} ({r['speedup_min'][b]:.2f}) | "
            f"{r['fraction_of_limit'][b]:.0%}"
            for b in backends
        )
        lines.append(
            f"| {r['K']}x{r['N']} | {r['sparsity']:.0%} | {r['density']:.3f} | "
            f"{r['compute_limit']:.2f} | {r['padded_work']:.3f} | {r['ms']['dense']:.2f} | "
            f"{cells} |"
        )
    if result.get("alternatives"):
        lines += [
            "",
            "Alternatives for the XLA path (TW 75%):",
            "",
            "| K x N | variant | ms | x dense |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['K']}x{r['N']} | {r['variant']} | {r['ms']:.2f} | {r['speedup']:.2f} ({r['speedup_min']:.2f}) |"
            for r in result["alternatives"]
        ]
    if result.get("e2e"):
        e = result["e2e"]
        lines += [
            "",
            (
                f"End to end: {e['model']}, every Dense TW-{e['sparsity']:.0%} "
                f"(density {e['density']:.3f}, limit {e['compute_limit']:.2f}x): "
                f"dense {e['ms']['dense']:.1f} ms, TW {e['ms']['tw']:.1f} ms, "
                f"**{e['speedup']:.2f}x** ({e['speedup_min']:.2f}x by minimum), "
                f"{e['fraction_of_limit']:.0%} of the limit; without the FFN fold "
                f"TW {e['ms']['tw_unfolded']:.1f} ms, {e['speedup_unfolded']:.2f}x; "
                f"max |logit diff| {e['max_abs_diff_logits']:.2e}."
            ),
        ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--gpu", action="store_true", help="GPU run: bf16, M=12800, 8192^3, pallas backend"
    )
    parser.add_argument(
        "--m", type=int, default=None, help="rows of A (default 2048 CPU, 12800 GPU)"
    )
    parser.add_argument("--g", type=int, default=128)
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    parser.add_argument(
        "--square", type=int, nargs="*", default=None, help="extra square K=N sizes"
    )
    parser.add_argument("--backends", nargs="+", default=None)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--e2e", action="store_true", help="also time the BERT-base forward pass")
    parser.add_argument("--e2e_layers", type=int, default=12)
    parser.add_argument("--alternatives", action="store_true")
    common.add_out_dir(parser)
    args = parser.parse_args(argv)
    kind = "gpu" if args.gpu else "cpu"
    if args.gpu and jax.default_backend() != "gpu":
        parser.error(f"--gpu needs a GPU; jax runs on {jax.default_backend()}")
    dtype = jnp.bfloat16 if args.gpu else jnp.float32
    args.m = args.m or (12800 if args.gpu else 2048)
    if args.square is None:
        args.square = [8192, 4096] if args.gpu else [4096]
    args.square = [(s, s) for s in args.square]
    args.backends = args.backends or (
        ["xla", "pallas", "reference"] if args.gpu else ["xla", "reference"]
    )
    result = {
        "machine": common.machine(),
        "dtype": jnp.dtype(dtype).name,
        "M": args.m,
        "g": args.g,
        "reps": args.reps,
        "backends": args.backends,
        "matmul": matmul_rows(args, dtype),
    }
    if args.alternatives:
        result["alternatives"] = alternatives(args, dtype)
    if args.e2e:
        result["e2e"] = end_to_end(args, dtype)
    common.write_results(args.out_dir, f"tw_matmul_{kind}", result, markdown(result))
    return result


if __name__ == "__main__":
    main()
