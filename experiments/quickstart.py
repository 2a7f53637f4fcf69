"""The `quickstart` experiment: the whole pipeline on one small model (configs/quickstart.py).

    python -m experiments.run --config=configs/quickstart.py --workdir=DIR

Runs the stages of the config's docstring in order, each into `DIR/STAGE/`
through `experiments.stages` (done once; a rerun reuses them), and writes
`DIR/report.md` and `DIR/summary.json` (every stage's figures).
"""

import os
import time
from typing import Any

import ml_collections

from experiments import edp_report
from experiments import outputs
from experiments import stages
from experiments import tasder as tasder_experiment
from experiments import train as train_experiment
from experiments import tw_kernels as tw_kernels_experiment
from tasd_jax import tree_paths


def _with(section: ml_collections.ConfigDict, **fields: Any) -> ml_collections.ConfigDict:
    """A copy of a config section with `fields` set (the stage's own config)."""
    out = ml_collections.ConfigDict(section.to_dict())
    for key, value in fields.items():
        out[key] = value
    return out


def quickstart(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs every stage (module doc) and writes the report.

    Returns:
      The contents of summary.json: each stage's result, keyed by stage name.
    """
    start = time.perf_counter()
    runs: dict[str, Any] = {}
    data = {"data_dir": config.data_dir, "seed": config.seed}
    runs["dense"] = stages.run_stage("dense", workdir,
                                     stages.training_config(config.dense, **data),
                                     train_experiment.train_once)
    runs["tw"] = stages.run_stage(
        "tw", workdir,
        stages.training_config(config.tw, **data, init_from=stages.export_of(workdir, "dense")),
        train_experiment.train_once)
    for model in ("dense", "tw"):
        runs[f"tasder_{model}"] = stages.run_stage(
            f"tasder_{model}", workdir,
            _with(config.tasder, experiment="tasder", init_from=stages.export_of(workdir, model),
                  data_dir=config.data_dir, seed=config.seed),
            tasder_experiment.tasder_experiment)
    for model in ("dense", "tw"):
        runs[f"edp_{model}"] = stages.run_stage(
            f"edp_{model}", workdir,
            _with(config.edp, experiment="edp", init_from=stages.export_of(workdir, model),
                  rule=r"kernel$", prune=None, seed=config.seed),
            edp_report.edp_report)
    runs["tw_kernels"] = stages.run_stage(
        "tw_kernels", workdir,
        _with(config.tw_kernels, experiment="tw_kernels", init_from=stages.export_of(workdir, "tw"),
              data_dir=config.data_dir),
        tw_kernels_experiment.tw_kernels)
    seconds = time.perf_counter() - start
    outputs.write_json(os.path.join(workdir, "summary.json"), runs)
    outputs.write_text(os.path.join(workdir, "report.md"), report(config, runs, seconds))
    print(f"[report] {os.path.join(workdir, 'report.md')} ({seconds:.0f} s this run)", flush=True)
    return runs


# ------------------------------------------------------------------ report


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _training(runs: dict) -> str:
    dense, tw = runs["dense"], runs["tw"]["final"]
    layers = ", ".join(f"`{tree_paths.layer_name(p)}` {_pct(s)}"
                       for p, s in sorted(tw["layer_sparsity"].items()))
    return "\n".join([
        f"* Dense MLP: test accuracy **{_pct(dense['final']['test_accuracy'])}** after "
        f"{dense['final']['step']} steps.",
        f"* Tile-wise 75% (tw2, one global threshold), fine-tuned from the dense export: "
        f"**{_pct(tw['test_accuracy'])}** after {tw['step']} steps (dense at the start of "
        f"pruning: {_pct(tw['dense_test_accuracy'])}); sparsity of the pruned kernels "
        f"{_pct(tw['sparsity'])} ({layers}).",
        "",
        "![dense training](dense/plots.png) ![tile-wise training](tw/plots.png)",
    ])


def _tasder(runs: dict, config: ml_collections.ConfigDict) -> str:
    rows = []
    for model in ("dense", "tw"):
        r = runs[f"tasder_{model}"]
        for mode in ("network", "paper", "ours"):
            m = r["modes"][mode]
            rows.append((f"{model} ({_pct(r['baseline_accuracy'])})", mode, _pct(m["accuracy"]),
                         f"{m['relative_edp']:.3f}", f"{m['relative_layer_edp']:.3f}",
                         f"{m['search_seconds']:.1f}"))
        s = r["stc_2of4_everywhere"]
        rows.append((f"{model} ({_pct(r['baseline_accuracy'])})", "2:4 on every layer, `stc`",
                     _pct(s["accuracy"]), f"{s['relative_edp']:.3f}",
                     f"{s['relative_layer_edp']:.3f}", "-"))
    choice = []
    for model in ("dense", "tw"):
        for layer in runs[f"tasder_{model}"]["layers"]:
            choice.append((model, f"`{layer['name']}`", layer["weight_series"],
                           layer["activation_series"]))
    return "\n".join([
        f"TASDER on `{config.tasder.hardware}`, {config.tasder.operands} operands, keeping "
        f"{config.tasder.budget:.0%} of each model's own test accuracy; EDP (batch "
        f"{config.tasder.batch}) relative to the dense model on the dense tensor core `tc`: "
        "total cycles x total energy (the search's objective), and the sum of per-layer EDPs.",
        "",
        outputs.markdown_table(("model (test accuracy)", "search", "accuracy", "EDP",
                                "sum of layers' EDP", "s"), rows),
        "",
        f"Series chosen by `{config.tasder.mode}`:",
        "",
        outputs.markdown_table(("model", "layer", "weights", "input activations"), choice),
        "",
        "![dense model frontier](tasder_dense/frontier.png) "
        "![TW model frontier](tasder_tw/frontier.png)"
        if config.tasder.frontier_budgets else "",
    ])


def _edp(runs: dict) -> str:
    rows = []
    hardware = list(dict.fromkeys(r["hardware"] for r in runs["edp_dense"]["totals"]))
    for hw in hardware:
        cells = [f"`{hw}`"]
        for model in ("dense", "tw"):
            by_series = {r["series"]: r["rel_edp"] for r in runs[f"edp_{model}"]["totals"]
                         if r["hardware"] == hw}
            cells += [f"{by_series[s]:.3f}" if s in by_series else "-" for s in ("2:4", "tasd")]
        rows.append(cells)
    pngs = " ".join(f"![{model}](edp_{model}/edp_{w}.png)"
                    for model in ("dense", "tw") for w in runs[f"edp_{model}"]["workloads"])
    return "\n".join([
        "Each export's weights on every accelerator of the cost model, EDP relative to `tc` "
        "running the same weights dense. `tasd`: per layer, the lowest-EDP series the "
        "accelerator runs that keeps >= 99% of the layer's L1 magnitude (a weight-fidelity "
        "stand-in; TASDER above measures accuracy instead).",
        "",
        outputs.markdown_table(("accelerator", "dense: 2:4", "dense: tasd", "TW: 2:4", "TW: tasd"),
                               rows),
        "",
        pngs,
    ])


def _kernels(runs: dict) -> str:
    r = runs["tw_kernels"]
    f = r["forward"]
    return (
        f"The TW model's {len(r['packed_layers'])} pruned layers packed for the TW kernels "
        f"(G = {r['g']}): test accuracy {_pct(r['accuracy']['tw_kernels'])} against "
        f"{_pct(r['accuracy']['masked_dense'])} for the masked-dense model (max |logit "
        f"difference| {r['max_abs_logit_difference']:.1e}); CPU forward of {f['batch']} "
        f"examples {f['tw_ms']:.3f} ms against {f['dense_ms']:.3f} ms dense: "
        f"**{f['speedup']:.2f}x** (median of {f['reps']}, {r['machine']['cpu_count']} CPUs, "
        f"load average {r['machine']['load_average_1m']:.1f}). On a model this small the "
        "gathers cost about as much as the work they skip; benchmarks/tw_matmul.py measures "
        "BERT-sized layers."
    )


def report(config: ml_collections.ConfigDict, runs: dict, seconds: float) -> str:
    """The one-page Markdown report of a quick-start run."""
    return "\n\n".join([
        "# Quick start: the whole pipeline on digits",
        "The MLP 64 -> 256 -> 128 -> 10 on scikit-learn's 8x8 digits (1797 images; "
        "no download), trained here. Stages and their folders: `dense`, `tw` (training), "
        "`tasder_dense`, `tasder_tw`, `edp_dense`, `edp_tw`, `tw_kernels`; each holds its "
        f"own outputs and `stage.json`. This run took {seconds:.0f} s (stages done earlier "
        "were reused).",
        "## Training and tile-wise pruning",
        _training(runs),
        "## TASDER: series for weights and activations",
        _tasder(runs, config),
        "## EDP on every accelerator",
        _edp(runs),
        "## TW kernels",
        _kernels(runs),
    ]) + "\n"
