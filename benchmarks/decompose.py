r"""Speed of the jitted TASD decomposition against a numpy argsort baseline
and against the memory floor.

  python -m benchmarks.decompose            # CPU: OUT_DIR/decompose_cpu.{json,md}
  python -m benchmarks.decompose --size=8192  # e.g. on a GPU: OUT_DIR/decompose_gpu.*

For each series and axis, three functions are timed with interleaved
repetitions: `tasd.decompose_reference` (numpy), `tasd.decompose` (jax), and
the floor: a jitted pass of jax's own that reads the same array and writes as
many arrays of its shape as the series has terms (`x * 2`, `x * 3`, ...: no
pass can move less memory). Targets on a 4096x4096 float32 matrix for
"2:4+1:8" and "2:8+1:8": >= 10x the numpy implementation and <= 2x the floor.
GB/s counts x read once and every term written once; on a GPU it is also
given against the card's peak.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from tasd_jax import patterns, tasd

# Peak memory bandwidth (GB/s) by device kind, from the vendors' data sheets.
PEAK_GBPS = {"H100 80GB HBM3": 3350.0, "H100 PCIe": 2000.0, "NVIDIA H200": 4800.0, "H200": 4800.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--series", nargs="+", default=["2:4+1:8", "2:8+1:8"])
    common.add_out_dir(parser)
    args = parser.parse_args()

    mach = common.machine()
    x_np = np.random.default_rng(0).standard_normal((args.size, args.size)).astype(np.float32)
    x = jnp.asarray(x_np)
    rows = []
    for spec in args.series:
        terms = len(patterns.as_series(spec).terms)
        floor = jax.jit(lambda v, terms=terms: tuple(v * (i + 2) for i in range(terms)))
        for axis in (-1, -2):
            fns = {
                "numpy": lambda: tasd.decompose_reference(x_np, spec, axis),
                "jax": lambda: tasd.decompose(x, spec, axis),
                "floor": lambda: floor(x),
            }
            med = common.interleaved_medians(fns, args.repeats)
            rows.append({"series": spec, "axis": axis, "numpy_ms": med["numpy"] * 1e3,
                         "jax_ms": med["jax"] * 1e3, "floor_ms": med["floor"] * 1e3,
                         "speedup": med["numpy"] / med["jax"],
                         "over_floor": med["jax"] / med["floor"],
                         "effective_gbps": (1 + terms) * x_np.nbytes / med["jax"] / 1e9})
    peak = PEAK_GBPS.get(mach["device"])
    lines = [f"# TASD decomposition, {args.size}x{args.size} float32\n",
             f"Medians of {args.repeats} interleaved repetitions. Floor: a jitted pass reading x "
             "and writing one array of its shape per term. Targets: >= 10x numpy, <= 2x floor.\n",
             "| series | axis | numpy argsort (ms) | jax jit (ms) | floor (ms) | x numpy | x floor "
             "| GB/s | targets |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bw = f"{r['effective_gbps']:.1f}"
        if peak:
            bw += f" ({100 * r['effective_gbps'] / peak:.0f}% of peak)"
        met = "met" if r["speedup"] >= 10 and r["over_floor"] <= 2 else "missed"
        lines.append(f"| {r['series']} | {r['axis']} | {r['numpy_ms']:.0f} | {r['jax_ms']:.1f} | "
                     f"{r['floor_ms']:.1f} | {r['speedup']:.1f}x | {r['over_floor']:.2f}x | {bw} "
                     f"| {met} |")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    name = f"decompose_{'cpu' if mach['backend'] == 'cpu' else 'gpu'}"
    common.write_results(args.out_dir, name, {"machine": mach, "size": args.size, "rows": rows}, markdown)


if __name__ == "__main__":
    main()
