"""The `tasder` experiment: TASDER on a trained model, against the paper's greedy and one series for all.

    python -m experiments.run --config=configs/tasder.py:resnet --workdir=DIR
    python -m experiments.run --config=configs/tasder.py:resnet,ew90 --workdir=DIR \\
        --config.hardware=ttc_stc_m4 --config.budget=0.98 --config.mode=paper

Without `init_from` the variant's model is trained first into `DIR/train/`
(reused when already there). The search (`tasd_jax.tasder`) picks series for
the weights and/or the input activations of the layers the paper allows, on
`config.hardware`, keeping `config.budget` of the model's own test accuracy.

Writes:
* `tasder.json`: model, hardware, budget, mode, operands, baseline_accuracy,
  accuracy (measured with every chosen series applied), edp {tc_dense, chosen,
  relative}, search_seconds, init_from, and per GEMM layer its series and
  densities (and, for layers left dense for activations, why);
* `export/`: the weights with their series applied and the activation choices,
  rebuilt by `tasd_jax.tasder.load(DIR)`;
* `layers.csv`, `frontier.csv` and `frontier.png`: relative EDP against
  accuracy for every mode over `config.frontier_budgets` (an empty tuple skips
  them), with the dense model and the plain structured baseline (2:4 on every
  layer on `stc`) marked; `tasder.json` also holds every mode at `config.budget`.
"""

import os
from typing import Sequence

from absl import logging
import jax
import ml_collections
import numpy as np

from experiments import outputs
from experiments import train as train_experiment
from tasd_jax import cost, data, models, tree_paths
from tasd_jax import export as export_lib
from tasd_jax import tasder
from tasd_jax.tasder import searches


def make_problem(config: ml_collections.ConfigDict, export: export_lib.Export, hardware: str,
                 activation_layers: Sequence[str]) -> tasder.Problem:
    """The search problem of an export on `hardware`: its test split for accuracy,
    `config.calibration_examples` training images for the activation statistics."""
    model, like = models.init_model(export.model, export.input_shape, seed=None, **export.model_kwargs)
    variables = jax.tree.map(np.asarray, export.variables_like(like))
    inputs = data.image_inputs(
        export.dataset, batch_size=config.calibration_examples,
        eval_batch_size=config.eval_batch_size, seed=config.seed, data_dir=config.get("data_dir"),
    )
    return tasder.Problem(
        model.apply, variables, list(inputs.eval_batches), next(inputs.train)["image"],
        hardware, activation_layers=tuple(activation_layers),
    )


def eligible_layers(export: export_lib.Export) -> tuple[list[str], dict[str, str]]:
    """(TASD-A eligible GEMM layers, {other layer: why it stays dense}) of an export."""
    layers = [p.removesuffix("/kernel") for p, w in export.variables["params"].items()
              if p.endswith("kernel") and w.ndim >= 2]
    return tasder.eligible_layers(export.model, layers)


def _check(config: ml_collections.ConfigDict) -> None:
    cost.hardware(config.hardware)
    if config.mode not in tasder.MODES:
        raise ValueError(f"config.mode={config.mode!r} is not one of {tasder.MODES}")
    if config.operands not in tasder.OPERANDS:
        raise ValueError(f"config.operands={config.operands!r} is not one of {tasder.OPERANDS}")
    for b in (config.budget, *config.frontier_budgets):
        if not 0.0 < b <= 1.0:
            raise ValueError(f"budget {b} must lie in (0, 1] (a fraction of the model's accuracy)")


def _layer_rows(problem: tasder.Problem, result: tasder.Evaluated, why_dense: dict) -> list[dict]:
    """Per GEMM layer (named by its kernel's path in the params tree): series and densities."""
    density = {p: float(np.count_nonzero(w) / np.size(w))
               for p, w in tree_paths.flatten(problem.variables["params"]).items()}
    rows = []
    for layer, kernel in problem.kernels.items():
        w = result.choice.weights.get(layer, "dense")
        a = result.choice.activations.get(layer, "dense")
        stats = problem.activation_stats.get(layer)
        rows.append({
            "name": kernel,
            "weight_series": w,
            "activation_series": a,
            "weight_density": problem.weight_density.get((w, layer), density[kernel]),
            "activation_density": 1.0 - stats.mean_sparsity if stats else None,
            "activation_p99_sparsity": stats.p99_sparsity if stats else None,
            "activation_pseudo_sparsity": stats.pseudo_sparsity if stats else None,
            "activation_note": why_dense.get(layer, "TASD-A eligible"),
        })
    return rows


def _frontier(problem: tasder.Problem, budgets, operand: str) -> list[dict]:
    rows = []
    for budget in budgets:
        network = searches.network(problem, budget, operand)
        paper = searches.paper(problem, budget, operand)
        ours = searches.ours(problem, budget, operand, start=paper)
        for mode, r in (("network", network), ("paper", paper), ("ours", ours)):
            rows.append({"mode": mode, "budget": budget, "accuracy": r.accuracy,
                         "relative_edp": r.relative_edp})
        logging.info("frontier: budget %.3f done", budget)
    return rows


def _plot(rows: list[dict], baseline: float, stc: tasder.Evaluated, title: str, path: str) -> None:
    fig, ax = outputs.plt.subplots(figsize=(6.5, 4.5))
    for mode in tasder.MODES:
        points = sorted((r["accuracy"], r["relative_edp"]) for r in rows if r["mode"] == mode)
        ax.plot(*zip(*points), marker="o", label=f"TASDER {mode}")
    ax.scatter([baseline], [1.0], marker="s", color="k", zorder=3, label="dense model on tc")
    ax.scatter([stc.accuracy], [stc.relative_edp], marker="^", color="r", zorder=3,
               label="2:4 on every layer, stc")
    ax.set_xlabel("test accuracy")
    ax.set_ylabel("EDP relative to the dense model on tc")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    outputs.save_figure(fig, path)


def tasder_experiment(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs the search of `config` (configs/tasder.py) and writes its outputs (module doc)."""
    _check(config)
    export = train_experiment.export_or_train(config, workdir)
    eligible, why_dense = eligible_layers(export)
    if config.operands == "activations" and not eligible:
        raise ValueError(
            f"config.operands='activations' but {export.model} has no layer the paper decomposes "
            "activations of (after a ReLU inside a residual block or an MLP, or after a "
            "transformer MLP's GELU)"
        )
    problem = make_problem(config, export, config.hardware, eligible)
    result, seconds = tasder.search(problem, budget=config.budget, mode=config.mode,
                                    operand=config.operands)
    logging.info("tasder: %s search in %.1f s, %d evaluations", config.mode, seconds,
                 problem.evaluations)
    modes = {config.mode: (result, seconds)}
    for mode in tasder.MODES:
        if mode not in modes:
            modes[mode] = tasder.search(problem, budget=config.budget, mode=mode,
                                        operand=config.operands)

    # The chosen weights, applied, as an export that tasder.load rebuilds.
    flat = tree_paths.flatten(problem.variables["params"])
    for layer, spec in result.choice.weights.items():
        flat[problem.kernels[layer]] = problem.weight_terms[spec, layer]
    variables = {**problem.variables, "params": tree_paths.unflatten(flat, like=problem.variables["params"])}
    os.makedirs(workdir, exist_ok=True)
    tasder.save(workdir, export, variables, result.choice.activations)

    rows = _layer_rows(problem, result, why_dense)
    outputs.write_csv(os.path.join(workdir, "layers.csv"), rows)
    stc = make_problem(config, export, "stc", ()).evaluate(
        tasder.Choice({layer: "2:4" for layer in problem.kernels}, {}))
    if config.frontier_budgets:  # () skips the frontier (one budget only: a quicker table)
        frontier = _frontier(problem, config.frontier_budgets, config.operands)
        outputs.write_csv(os.path.join(workdir, "frontier.csv"), frontier)
        _plot(frontier, problem.baseline_accuracy, stc,
              f"{export.model} on {config.hardware}, {config.operands}",
              os.path.join(workdir, "frontier.png"))

    tc_dense = problem.tc_dense_edp
    out = {
        "model": export.model,
        "hardware": config.hardware,
        "budget": config.budget,
        "mode": config.mode,
        "operands": config.operands,
        "baseline_accuracy": problem.baseline_accuracy,
        "accuracy": result.accuracy,
        "edp": {"tc_dense": tc_dense, "chosen": result.relative_edp * tc_dense,
                "relative": result.relative_edp},
        "search_seconds": seconds,
        "evaluations": problem.evaluations,
        "init_from": export.describe(),
        "modes": {m: {"accuracy": r.accuracy, "relative_edp": r.relative_edp, "search_seconds": t}
                  for m, (r, t) in modes.items()},
        "stc_2of4_everywhere": {"accuracy": stc.accuracy, "relative_edp": stc.relative_edp},
        "layers": rows,
    }
    outputs.write_json(os.path.join(workdir, "tasder.json"), out)
    print(
        f"{export.model} on {config.hardware} ({config.operands}, budget {config.budget}, dense "
        f"accuracy {problem.baseline_accuracy:.4f}): "
        + "; ".join(f"{m} accuracy {r.accuracy:.4f} EDP {r.relative_edp:.3f} ({t:.1f} s)"
                    for m, (r, t) in modes.items())
        + f"; 2:4 everywhere on stc: accuracy {stc.accuracy:.4f}, EDP {stc.relative_edp:.3f}"
    )
    return out
