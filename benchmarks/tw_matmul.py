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
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from tasd_jax import kernels, patterns

BERT_SHAPES = ((768, 768), (768, 3072), (3072, 768))


def tw_weight(k: int, n: int, sparsity: float, g: int, seed: int, dtype) -> np.ndarray:
    """A random W[K, N] pruned by the library's tw2 pattern (magnitude scores)."""
    w = jax.random.normal(jax.random.key(seed), (k, n), jnp.float32)
    keep = patterns.parse(f"tw(sparsity={sparsity},g={g})").mask(jnp.abs(w), axis=0)
    return np.asarray(jnp.where(keep, w, 0).astype(dtype))


def time_interleaved(fns: dict, reps: int) -> dict:
    """(median, min) seconds of each thunk, timed round-robin so that load from
    other processes hits all of them alike; the minimum is the least disturbed
    run on a shared machine."""
    times = common.interleaved_times(fns, reps)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def summary(got: dict, base: str) -> dict:
    """ms (median, min) and speed-up over `base` (by median and by min)."""
    return {
        "ms": {name: 1e3 * t[0] for name, t in got.items()},
        "ms_min": {name: 1e3 * t[1] for name, t in got.items()},
        "speedup": {name: got[base][0] / t[0] for name, t in got.items() if name != base},
        "speedup_min": {name: got[base][1] / t[1] for name, t in got.items() if name != base},
    }


def matmul_rows(args, dtype) -> list[dict]:
    m = args.m
    shapes = list(BERT_SHAPES) + [tuple(s) for s in args.square]
    rows = []
    dense = jax.jit(lambda a, w: jnp.dot(a, w, preferred_element_type=jnp.float32).astype(a.dtype))
    for k, n in shapes:
        a = jax.random.normal(jax.random.key(1), (m, k), jnp.float32).astype(dtype)
        for sparsity in args.sparsity:
            w = tw_weight(k, n, sparsity, args.g, seed=k * 7 + n, dtype=dtype)
            packed = kernels.pack_tw(w, args.g)
            w_dev = jnp.asarray(w)
            fns = {"dense": functools.partial(dense, a, w_dev)}
            for backend in args.backends:
                f = jax.jit(functools.partial(kernels.tw_matmul, backend=backend))
                fns[backend] = functools.partial(f, a, packed)
            got = time_interleaved(fns, args.reps)
            row = {
                "M": m,
                "K": k,
                "N": n,
                "sparsity": sparsity,
                "g": args.g,
                "density": float(np.mean(w != 0)),
                "padded_work": packed.compute_fraction,
                "buckets": [list(b.weights.shape) for b in packed.buckets],
                **summary(got, "dense"),
            }
            print(
                json.dumps(
                    {key: row[key] for key in ("K", "N", "sparsity", "speedup", "speedup_min")}
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


def alternatives(args, dtype) -> list[dict]:
    """The layouts tried for the XLA path, on 768x3072 and 3072x768 at 75%."""
    return [
        row for k, n in ((768, 3072), (3072, 768)) for row in alternatives_for(args, dtype, k, n)
    ]


def alternatives_for(args, dtype, k: int, n: int) -> list[dict]:
    m, g = args.m, args.g
    a = jax.random.normal(jax.random.key(1), (m, k), jnp.float32).astype(dtype)
    w = tw_weight(k, n, 0.75, g, seed=k * 7 + n, dtype=dtype)
    packed = kernels.pack_tw(w, g)
    least_padding = kernels.pack_tw(w, g, bucket_slack=0.0)
    variants = {"dense jnp.dot": (jax.jit(jnp.dot), (a, jnp.asarray(w)))}
    for label, p, kw in (
        (
            "reference: take + einsum (batch in the middle) + scatter",
            packed,
            {"backend": "reference"},
        ),
        (
            "xla unchunked (block_m=M): gather for all tiles, batched GEMM, scatter",
            packed,
            {"block_m": m},
        ),
        ("xla block_m=64", packed, {"block_m": 64}),
        ("xla block_m=128", packed, {"block_m": 128}),
        ("xla block_m=256", packed, {"block_m": 256}),
        ("xla block_m=auto (default: ~8 MB working set per chunk)", packed, {}),
        ("xla block_m=512", packed, {"block_m": 512}),
        (
            (
                f"xla, least-padding bucket plan {[b.weights.shape[:2] for b in least_padding.buckets]}"
                f" instead of {[b.weights.shape[:2] for b in packed.buckets]}"
            ),
            least_padding,
            {},
        ),
        ("xla, compact output (no scatter)", packed, {"compact": True}),
    ):
        variants[label] = (jax.jit(functools.partial(kernels.tw_matmul, **kw)), (a, p))
    for bm in (128, 256):
        f = jax.jit(functools.partial(k_major_chunked, block_m=bm))
        variants[
            f"K-major chunks block_m={bm}: [T, G, R] x [T, R, bm], row scatter + transpose"
        ] = (f, (a, packed))
    got = time_interleaved(
        {name: functools.partial(f, *x) for name, (f, x) in variants.items()}, args.reps
    )
    dense_t = got["dense jnp.dot"]
    out = [
        {
            "K": k,
            "N": n,
            "variant": name,
            "ms": 1e3 * t[0],
            "speedup": dense_t[0] / t[0],
            "speedup_min": dense_t[1] / t[1],
        }
        for name, t in got.items()
    ]
    for row in out:
        print(json.dumps(row), flush=True)
    return out


def end_to_end(args, dtype) -> dict:
    """BERT-base encoder forward (seq 128, M = 2048 tokens), every Dense TW-75%."""
    from tasd_jax import pruning
    from tasd_jax.models import get_model

    seq, batch = 128, max(1, args.m // 128)
    model = get_model("bert", dense=kernels.TWDense, num_layers=args.e2e_layers)
    ids = jax.random.randint(jax.random.key(2), (batch, seq), 0, 30522)
    params = jax.jit(model.init)(jax.random.key(0), ids)["params"]
    pruned, _ = pruning.prune_tree(params, [(r"kernel$", f"tw(sparsity=0.75,g={args.g})")])
    pruned = jax.tree.map(lambda x: x.astype(dtype), pruned)
    sparse_vars = kernels.pack_tw_params(pruned, args.g)
    apply = jax.jit(model.apply)
    got = time_interleaved(
        {"dense": lambda: apply({"params": pruned}, ids), "tw75": lambda: apply(sparse_vars, ids)},
        max(3, args.reps // 2),
    )
    dense_out = apply({"params": pruned}, ids)
    sparse_out = apply(sparse_vars, ids)
    row = {
        "model": f"bert hidden 768, mlp 3072, {args.e2e_layers} layers, seq {seq}, batch {batch}",
        **summary(got, "dense"),
        "max_abs_diff_logits": float(jnp.max(jnp.abs(dense_out - sparse_out))),
    }
    print(json.dumps(row), flush=True)
    return row


def markdown(result: dict) -> str:
    mach = result["machine"]
    lines = [
        f"# TW matmul speed-up over dense ({result['dtype']})",
        "",
        (
            f"Machine: {mach['platform']}, {mach['processor']}, {mach['cpu_count']} CPUs, "
            f"jax {mach['jax']} ({mach['backend']}, {mach['device']}), {mach['date']}."
        ),
        (
            f"Command: `{mach['command']}`. Median of {result['reps']} interleaved repetitions; "
            f"G = {result['g']}, M = {result['M']}."
        ),
        "",
    ]
    backends = result["backends"]
    lines += [
        "Speed-up x = dense time / backend time, by median (by minimum in brackets).",
        "",
        "| K x N | sparsity | padded work | dense ms | "
        + " | ".join(f"{b} ms | {b} x" for b in backends)
        + " |",
        "|---|---|---|---|" + "---|---|" * len(backends),
    ]
    for r in result["matmul"]:
        cells = " | ".join(
            f"{r['ms'][b]:.2f} | {r['speedup'][b]:.2f} ({r['speedup_min'][b]:.2f})"
            for b in backends
        )
        lines.append(
            f"| {r['K']}x{r['N']} | {r['sparsity']:.0%} | {r['padded_work']:.3f} | {r['ms']['dense']:.2f} | {cells} |"
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
                f"End to end: {e['model']}: dense {e['ms']['dense']:.1f} ms, "
                f"TW-75% {e['ms']['tw75']:.1f} ms, **{e['speedup']['tw75']:.2f}x** "
                f"({e['speedup_min']['tw75']:.2f}x by minimum; "
                f"max |logit diff| {e['max_abs_diff_logits']:.2e})."
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
