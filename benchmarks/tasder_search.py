r"""Time of the TASDER search on a trained model (target: under 2 minutes for the MNIST ResNet).

  python -m benchmarks.tasder_search --export=workdir/mnist/resnet/export

Prepares the problem once (decomposing every weight under every candidate of
the accelerator, activation statistics on 512 training images, compiling the
evaluation) and times each search mode on the weights, on the activations and
on both, at the 99% budget; reports the seconds, the number of accuracy evaluations and
the evaluation's compile count (1: no candidate recompiles).
"""

import argparse
import os
import time

import jax
import numpy as np

from benchmarks import common
from tasd_jax import data, models, tasder
from tasd_jax import export as export_lib


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True, help="a training run's export/ directory")
    parser.add_argument("--hardware", default="ttc_vegeta_m8")
    parser.add_argument("--data_dir", default=None)
    common.add_out_dir(parser)
    args = parser.parse_args(argv)

    export = export_lib.load_export(args.export)
    model, like = models.init_model(export.model, export.input_shape, seed=None, **export.model_kwargs)
    variables = jax.tree.map(np.asarray, export.variables_like(like))
    inputs = data.image_inputs(export.dataset, batch_size=512, eval_batch_size=250, seed=0,
                               data_dir=args.data_dir)
    layers = [p.removesuffix("/kernel") for p in export.variables["params"] if p.endswith("kernel")]
    eligible, _ = tasder.eligible_layers(export.model, layers)
    mach = common.machine()
    start = time.perf_counter()
    problem = tasder.Problem(model.apply, variables, list(inputs.eval_batches),
                             next(inputs.train)["image"], args.hardware, activation_layers=eligible)
    prepare_s = time.perf_counter() - start
    rows = []
    for operand in ("weights",) + (("activations", "both") if eligible else ()):
        for mode in tasder.MODES:
            before = problem.evaluations
            result, seconds = tasder.search(problem, budget=0.99, mode=mode, operand=operand)
            rows.append({"operand": operand, "mode": mode, "seconds": seconds,
                         "evaluations": problem.evaluations - before,
                         "accuracy": result.accuracy, "relative_edp": result.relative_edp})
            print(rows[-1], flush=True)
    payload = {"machine": mach, "export": os.path.abspath(args.export),
               "model": export.model, "hardware": args.hardware,
               "baseline_accuracy": problem.baseline_accuracy, "prepare_s": prepare_s,
               "compiled_evaluations": problem._correct._cache_size(), "searches": rows}
    lines = [f"# TASDER search time, {export.model} on {args.hardware}", "",
             f"Prepare (decompose, calibrate, compile): {prepare_s:.1f} s; the evaluation compiled "
             f"{payload['compiled_evaluations']} time(s).",
             "", "| operand | mode | seconds | evaluations | accuracy | EDP / tc dense |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['operand']} | {r['mode']} | {r['seconds']:.1f} | {r['evaluations']} | "
              f"{r['accuracy']:.4f} | {r['relative_edp']:.3f} |" for r in rows]
    common.write_results(args.out_dir, "tasder_search", payload, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return payload


if __name__ == "__main__":
    main()
