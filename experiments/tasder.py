"""The `tasder` experiment: TASDER on a trained model, every search mode side by side.

    python -m experiments.run --config=configs/tasder.py:resnet --workdir=DIR
    python -m experiments.run --config=configs/tasder.py:resnet,ew90 --workdir=DIR \\
        --config.hardware=ttc_stc_m4 --config.budget=0.98 --config.mode=paper

Without `init_from` the variant's model is trained first into `DIR/train/`
(reused when already there). The problem (`tasd_jax.tasder.Problem`) is the
model, its top-1 test accuracy as the metric and `config.calibration_examples`
training images; TASD-A layers are found from the traced model (after a
ReLU, GELU or SiLU). The search picks series for the weights and/or the input
activations on `config.hardware`, keeping `config.budget` of the model's own
test accuracy, with the EDP computed for `config.batch` examples.

Writes:
* `tasder.json`: model, hardware, batch, budget, mode, operands,
  baseline_accuracy, accuracy, edp {tc_dense, chosen, relative}, search
  seconds and evaluations, every mode at `config.budget`, 2:4 on every layer
  of `stc`, init_from, and per GEMM layer its series, densities and what
  produces its input;
* `result/`: the search result (`tasd_jax.tasder.save`; `tasder.load` reads it);
* `layers.csv`, `frontier.csv` and `frontier.png`: relative EDP against
  accuracy for every mode over `config.frontier_budgets` (an empty tuple skips
  them), with the dense model and 2:4 on every layer of `stc` marked.
"""

import functools
import os

from absl import logging
import ml_collections
import numpy as np

from experiments import exports
from experiments import outputs
from experiments import problems
from experiments import progress
from experiments import train as train_experiment
from experiments.errors import ConfigError
from tasd_jax import cost
from tasd_jax import export as export_lib
from tasd_jax import tasder


# The modes every run compares (at config.budget and along the frontier).
_COMPARED_MODES = ("network", "paper", "ours")


def check(config: ml_collections.ConfigDict, prefix: str = "config") -> None:
    """The search fields of a config (hardware, mode, operands, budget(s), batch), each
    with the rule it must follow; raises `ConfigError` before any work."""
    if config.hardware not in cost.hardware_names():
        raise ConfigError(
            f"{prefix}.hardware={config.hardware!r} is not a known accelerator; known: "
            f"{cost.hardware_names(aliases=False)}")
    if config.mode not in tasder.MODES:
        raise ConfigError(f"{prefix}.mode={config.mode!r} is not one of {tasder.MODES}")
    if config.operands not in tasder.OPERANDS:
        raise ConfigError(
            f"{prefix}.operands={config.operands!r} is not one of {tasder.OPERANDS}")
    rule = "a budget must lie in (0, 1] (the fraction of the model's own accuracy to keep, e.g. 0.99)"
    if not _is_budget(config.budget):
        raise ConfigError(f"{prefix}.budget={config.budget!r}: {rule}")
    frontier = config.get("frontier_budgets", ())
    for b in frontier:
        if not _is_budget(b):
            raise ConfigError(
                f"{prefix}.frontier_budgets={tuple(frontier)!r} holds {b!r}: {rule}")
    batch = config.get("batch", 1)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"{prefix}.batch={batch!r} must be an integer >= 1")


def _is_budget(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0.0 < value <= 1.0


def layer_rows(problem: tasder.Problem, result: tasder.Result) -> list[dict]:
    """Per GEMM layer: its series, densities and what produces its input."""
    rows = []
    for layer, kernel in problem.layers.items():
        w = result.choice.weights.get(layer, "dense")
        a = result.choice.activations.get(layer, "dense")
        stats = problem.activation_stats.get(layer)
        kernel_values = problem.params[kernel]
        info = problem.layer_inputs.get(layer)
        rows.append({
            "name": kernel,
            "weight_series": w,
            "activation_series": a,
            "weight_density": (problem.weight_series(w)[layer][1] if w != "dense"
                               else float(np.count_nonzero(kernel_values) / np.size(kernel_values))),
            "activation_density": 1.0 - stats.mean_sparsity if stats else None,
            "activation_p99_sparsity": stats.p99_sparsity if stats else None,
            "activation_pseudo_sparsity": stats.pseudo_sparsity if stats else None,
            "tasd_a": ("eligible" if layer in problem.activation_layers else "dense"),
            "input": info.reason if info else "input not captured",
        })
    return rows


def tasder_experiment(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs the search of `config` (configs/tasder.py) and writes its outputs (module doc)."""
    check(config)
    export = train_experiment.export_or_train(config, workdir)
    problem = _problem(config, export)
    if config.operands == "activations" and not problem.activation_layers:
        raise ConfigError(
            f"config.operands='activations' but no GEMM layer of {export.model} takes its input "
            "from a ReLU, GELU or SiLU (the layers TASD-A decomposes)")
    problem.prepare(config.hardware)
    mode_order = list(dict.fromkeys((config.mode, *_COMPARED_MODES)))
    bar = progress.Progress(
        "tasder searches", len(mode_order) + len(_COMPARED_MODES) * len(config.frontier_budgets))
    modes = _search_modes(config, problem, mode_order, bar)
    result = modes[config.mode]
    logging.info("tasder: %s search in %.1f s, %d evaluations", config.mode, result.seconds,
                 result.evaluations)
    tasder.save(os.path.join(workdir, "result"), problem, result,
                extra={"init_from": export.describe()})

    rows = layer_rows(problem, result)
    outputs.write_csv(os.path.join(workdir, "layers.csv"), rows)
    stc = _stc_2of4_everywhere(problem, config.batch)
    if config.frontier_budgets:  # () skips the frontier (one budget only: a quicker table)
        _write_frontier(config, workdir, export.model, problem, stc, bar)
    out = _summary(config, export, problem, modes, stc, rows)
    outputs.write_json(os.path.join(workdir, "tasder.json"), out)
    print(
        f"{export.model} on {config.hardware} ({config.operands}, budget {config.budget}, batch "
        f"{config.batch}, dense accuracy {problem.baseline:.4f}): "
        + "; ".join(f"{m} accuracy {r.metric:.4f} EDP {r.relative_edp:.3f} (sum of layers "
                    f"{r.relative_layer_edp:.3f}; {r.seconds:.1f} s, "
                    f"{r.evaluations} evaluations)" for m, r in modes.items())
        + f"; 2:4 everywhere on stc: accuracy {stc.metric:.4f}, EDP {stc.relative_edp:.3f}"
    )
    return out


def _problem(config: ml_collections.ConfigDict, export: export_lib.Export) -> tasder.Problem:
    """The search problem of `export` with the calibration and evaluation settings of `config`."""
    return problems.from_export(export, calibration_examples=config.calibration_examples,
                                eval_batch_size=config.eval_batch_size, seed=config.seed,
                                data_dir=config.get("data_dir"))


def _search_modes(config: ml_collections.ConfigDict, problem: tasder.Problem,
                  mode_order: list[str], bar: progress.Progress) -> dict[str, tasder.Result]:
    """The search of every mode of `mode_order` at `config.budget`, by mode."""
    search = functools.partial(tasder.search, problem, hardware=config.hardware,
                               budget=config.budget, operand=config.operands, batch=config.batch)
    modes = {}
    for mode in mode_order:
        modes[mode] = search(mode=mode)
        bar.advance()
    return modes


def _stc_2of4_everywhere(problem: tasder.Problem, batch: int) -> tasder.Evaluated:
    """2:4 on the weights of every layer, on `stc`."""
    return problem.evaluate(tasder.Choice({layer: "2:4" for layer in problem.layers}, {}),
                            "stc", batch)


def _write_frontier(config: ml_collections.ConfigDict, workdir: str, model: str,
                    problem: tasder.Problem, stc: tasder.Evaluated,
                    bar: progress.Progress) -> None:
    """frontier.csv and frontier.png: every compared mode over `config.frontier_budgets`."""
    frontier = tasder.frontier(problem, config.hardware, config.frontier_budgets,
                               modes=_COMPARED_MODES, operand=config.operands,
                               batch=config.batch, on_result=lambda _: bar.advance())
    outputs.write_csv(os.path.join(workdir, "frontier.csv"), [
        {"mode": r.mode, "budget": r.budget, "accuracy": r.metric,
         "relative_edp": r.relative_edp} for r in frontier])
    tasder.plot_frontier(
        frontier, os.path.join(workdir, "frontier.png"),
        title=f"{model} on {config.hardware}, {config.operands}, batch {config.batch}",
        marks=[("dense model on tc", problem.baseline, 1.0),
               ("2:4 on every layer, stc", stc.metric, stc.relative_edp)],
        budget=config.budget)


def _summary(config: ml_collections.ConfigDict, export: export_lib.Export, problem: tasder.Problem,
             modes: dict[str, tasder.Result], stc: tasder.Evaluated, rows: list[dict]) -> dict:
    """The contents of tasder.json (module doc)."""
    result = modes[config.mode]
    tc_dense = problem.estimate(tasder.Choice({}, {}), "tc", config.batch).total_edp
    return {
        "model": export.model,
        "hardware": config.hardware,
        "batch": config.batch,
        "budget": config.budget,
        "mode": config.mode,
        "operands": config.operands,
        "baseline_accuracy": problem.baseline,
        "accuracy": result.metric,
        "edp": {"tc_dense": tc_dense, "chosen": result.relative_edp * tc_dense,
                "relative": result.relative_edp,
                "relative_sum_of_layers": result.relative_layer_edp,
                "aggregation": "total cycles x total energy (relative_sum_of_layers: the sum "
                               "of per-GEMM EDPs)"},
        "search_seconds": result.seconds,
        "evaluations": result.evaluations,
        "init_from": export.describe(),
        "modes": {m: {"accuracy": r.metric, "relative_edp": r.relative_edp,
                      "relative_layer_edp": r.relative_layer_edp,
                      "search_seconds": r.seconds, "evaluations": r.evaluations}
                  for m, r in modes.items()},
        "stc_2of4_everywhere": {"accuracy": stc.metric, "relative_edp": stc.relative_edp,
                                "relative_layer_edp": problem.relative_layer_edp(
                                    stc.choice, "stc", config.batch)},
        "layers": rows,
    }


def tasder_table(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Every mode on every model of `config.models` and every design of
    `config.designs` (configs/tasder_table.py); writes table.md, table.csv and
    table.json into `workdir`."""
    for design in config.designs:
        check(ml_collections.ConfigDict({"hardware": design, "mode": "ours",
                                         "operands": config.operands, "budget": config.budget,
                                         "batch": config.batch}))
    rows = []
    bar = progress.Progress("tasder_table", len(config.models) * len(config.designs))
    for name, train_config in config.models.items():
        problem = _problem(config, _table_export(config, workdir, name, train_config))
        stc = _stc_2of4_everywhere(problem, config.batch)
        for design in config.designs:
            rows.append(_table_row(config, name, problem, design, stc))
            bar.advance()
    outputs.write_csv(os.path.join(workdir, "table.csv"), rows,
                      fields=sorted({k for r in rows for k in r}))
    outputs.write_json(os.path.join(workdir, "table.json"), rows)
    held = sum(r["ours_at_most_both"] for r in rows)
    text = _table_markdown(config, rows, held)
    outputs.write_text(os.path.join(workdir, "table.md"), text)
    print(text)
    return {"rows": rows, "ours_at_most_both": held == len(rows)}


def _table_export(config: ml_collections.ConfigDict, workdir: str, name: str,
                  train_config: ml_collections.ConfigDict) -> export_lib.Export:
    """Model `name`'s export: from `config.exports` when set, else trained into
    `workdir/name/train` (reused when already there)."""
    if config.exports:
        return exports.load_export(os.path.join(config.exports, name, "export"), "exports")
    train_experiment.train_once(train_config, os.path.join(workdir, name, "train"))
    return exports.load_export(os.path.join(workdir, name, "train", "export"))


def _table_row(config: ml_collections.ConfigDict, name: str, problem: tasder.Problem,
               design: str, stc: tasder.Evaluated) -> dict:
    """One row of the table: every mode's search of model `name` on `design` (exhaustive
    too where it is small enough), logged and printed."""
    problem.prepare(design)
    row = {"model": name, "baseline_accuracy": problem.baseline, "design": design,
           "stc_2of4_accuracy": stc.metric, "stc_2of4_edp": stc.relative_edp}
    modes = ["network", "paper", "ours"]
    if tasder.combinations(problem, design, config.operands) <= tasder.EXHAUSTIVE_LIMIT:
        modes.append("exhaustive")
    for mode in modes:
        problem.forget()  # each mode pays for its own evaluations
        r = tasder.search(problem, hardware=design, budget=config.budget, mode=mode,
                          operand=config.operands, batch=config.batch)
        row.update({f"{mode}_accuracy": r.metric, f"{mode}_edp": r.relative_edp,
                    f"{mode}_layer_edp": r.relative_layer_edp,
                    f"{mode}_seconds": r.seconds, f"{mode}_evaluations": r.evaluations})
    row["ours_at_most_both"] = row["ours_edp"] <= min(row["network_edp"],
                                                      row["paper_edp"]) + 1e-12
    logging.info("tasder_table: %s on %s: %s", name, design,
                 {m: round(row[f"{m}_edp"], 3) for m in modes})
    print(f"{name} on {design}: " + ", ".join(
        f"{m} {row[f'{m}_accuracy']:.4f} / {row[f'{m}_edp']:.3f}" for m in modes),
        flush=True)
    return row


def _table_markdown(config: ml_collections.ConfigDict, rows: list[dict], held: int) -> str:
    """table.md: each row's modes as test accuracy / EDP, and on how many rows (`held`)
    `ours` is at most both `network` and `paper`."""
    cell = lambda r, m: (f"{100 * r[m + '_accuracy']:.1f}% / {r[m + '_edp']:.3f}"
                         if m + "_edp" in r else "-")
    table = outputs.markdown_table(
        ["model (test accuracy)", "design", "network", "paper", "ours (s, evaluations)",
         "exhaustive", "2:4 everywhere on stc"],
        [[f"{r['model']} ({100 * r['baseline_accuracy']:.1f}%)", f"`{r['design']}`",
          cell(r, "network"), cell(r, "paper"),
          f"**{cell(r, 'ours')}** ({r['ours_seconds']:.1f} s, {r['ours_evaluations']})",
          cell(r, "exhaustive"), cell(r, "stc_2of4")] for r in rows])
    return (f"# TASDER modes on every model and design\n\nBudget {config.budget}, operands "
            f"{config.operands}, EDP for batch {config.batch} relative to the dense model on "
            "`tc` (total cycles x total energy; the sum of per-layer EDPs is in table.csv, "
            "`*_layer_edp`); each cell test accuracy / EDP.\n\n" + table +
            f"\n\n`ours` <= min(`network`, `paper`) on {held} of {len(rows)} rows.\n")
