r"""Time of the TASDER searches on a trained model (target: `ours`, both operands, on
ttc_vegeta_m8 in at most 15 s after preparation for the MNIST ResNet-20).

  python -m benchmarks.tasder_search --export=workdir/mnist/resnet/export

Builds the problem (`tasd_jax.tasder.Problem`: the export's model, top-1
accuracy on its 1000 test digits in batches of `--eval_batch_size` as the
metric, 512 training images to calibrate on, TASD-A layers from the graph),
prepares it for the accelerator (every weight under every candidate, what
every activation candidate drops, the compiled forward pass), then times every
mode on the weights, on the activations and on both at the 99% budget (`ours`
with its default evaluation cap, and once on both operands until nothing
changes). Each search starts with no measured choice (`Problem.forget` between searches), so
no search profits from an earlier one; reports seconds, evaluations (an
early-stopped one counts once), batches read, accuracy and EDP.
"""

import argparse
import functools
import os
import time

import jax
import numpy as np

from benchmarks import common
from tasd_jax import data, models, tasder
from tasd_jax import export as export_lib

TARGET_SECONDS = 15.0


def main(argv=None) -> dict:
    """Times every search (module doc) and writes tasder_search.{json,md}; returns the json."""
    args = _parse(argv)
    mach = common.machine()
    export = export_lib.load_export(args.export)
    problem, build_s, prepare_s = _prepared_problem(args, export)
    rows = _time_searches(problem, args.hardware)
    payload = {"machine": mach, "export": os.path.abspath(args.export), "model": export.model,
               "hardware": args.hardware, "baseline_accuracy": problem.baseline,
               "activation_layers": list(problem.activation_layers),
               "build_s": build_s, "prepare_s": prepare_s, "searches": rows,
               "target_seconds": TARGET_SECONDS}
    lines = _markdown(export.model, args.hardware, problem, build_s, prepare_s, rows)
    common.write_results(args.out_dir, "tasder_search", payload, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return payload


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line's settings."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True, help="a training run's export/ directory")
    parser.add_argument("--hardware", default="ttc_vegeta_m8")
    parser.add_argument("--eval_batch_size", type=int, default=100)
    parser.add_argument("--data_dir", default=None)
    common.add_out_dir(parser)
    return parser.parse_args(argv)


def _prepared_problem(args: argparse.Namespace,
                      export: export_lib.Export) -> tuple[tasder.Problem, float, float]:
    """(the export's problem prepared for `args.hardware`, seconds to build it, seconds
    to prepare it)."""
    model, like = models.init_model(export.model, export.input_shape, seed=None, **export.model_kwargs)
    variables = jax.tree.map(np.asarray, export.variables_like(like))
    inputs = data.image_inputs(export.dataset, batch_size=512, eval_batch_size=args.eval_batch_size,
                               seed=0, data_dir=args.data_dir)
    start = time.perf_counter()
    problem = tasder.Problem(functools.partial(model.apply, train=False), variables,
                             evaluate=tasder.top1_accuracy(inputs.eval_batches),
                             calibration=next(inputs.train)["image"])
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    problem.prepare(args.hardware)
    prepare_s = time.perf_counter() - start
    return problem, build_s, prepare_s


def _time_searches(problem: tasder.Problem, hardware: str) -> list[dict]:
    """One row per search (operand, mode, seconds, evaluations, batches read, accuracy,
    EDP), each from no measured choice; printed as it ends."""
    rows = []
    operands = ("weights",) + (("activations", "both") if problem.activation_layers else ())
    runs = [(operand, mode, tasder.REFINE_EVALUATIONS) for operand in operands
            for mode in ("network", "paper", "ours")]
    runs.append(("both" if problem.activation_layers else "weights", "ours", None))
    for operand, mode, refine in runs:
        problem.forget()
        batches = problem.batches_evaluated
        r = tasder.search(problem, hardware=hardware, budget=0.99, mode=mode,
                          operand=operand, refine_evaluations=refine)
        if refine is None:
            mode = "ours, until nothing changes"
        rows.append({"operand": operand, "mode": mode, "seconds": r.seconds,
                     "evaluations": r.evaluations,
                     "batches": problem.batches_evaluated - batches,
                     "accuracy": r.metric, "relative_edp": r.relative_edp})
        print(rows[-1], flush=True)
    return rows


def _markdown(model: str, hardware: str, problem: tasder.Problem, build_s: float,
              prepare_s: float, rows: list[dict]) -> list[str]:
    """The lines of tasder_search.md: the set-up times, whether `ours` on both operands
    met the target, and the table of searches."""
    ours_both = next((r for r in rows if r["operand"] == "both" and r["mode"] == "ours"), None)
    verdict = ("no activation layer: not measured" if ours_both is None else
               f"{ours_both['seconds']:.1f} s: target <= {TARGET_SECONDS:.0f} s "
               f"{'met' if ours_both['seconds'] <= TARGET_SECONDS else 'missed'}")
    lines = [f"# TASDER search time, {model} on {hardware}", "",
             f"Problem built in {build_s:.1f} s (graph, calibration statistics, the baseline "
             f"accuracy); prepared for {hardware} in {prepare_s:.1f} s (every weight under "
             f"every candidate, activation candidates, compilation). {len(problem.activation_layers)} "
             f"of {len(problem.layers)} layers take a decomposable input. `ours` on both "
             f"operands: {verdict}.",
             "", "| operand | mode | seconds | evaluations | batches read | accuracy | EDP / tc dense |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['operand']} | {r['mode']} | {r['seconds']:.1f} | {r['evaluations']} | "
              f"{r['batches']} | {r['accuracy']:.4f} | {r['relative_edp']:.3f} |" for r in rows]
    return lines


if __name__ == "__main__":
    main()
