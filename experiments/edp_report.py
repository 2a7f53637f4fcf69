"""The `edp` experiment: EDP of a model's GEMMs on every accelerator and series (TASD evaluation).

    python -m experiments.run --config=configs/edp_resnet50.py --workdir=DIR
    python -m experiments.run --config=configs/edp_resnet50.py --workdir=DIR \
        --config.init_from=TRAIN_DIR/export

`edp_report(config, workdir)` takes the weights `experiments.weights` picks (a
training run's export as it is, or random-init weights magnitude-pruned to each
of `config.sparsities`), lists the model's GEMMs at each input shape (the
export's, or `config.input_shapes`), decomposes every GEMM weight into each
series of `config.series` along its contraction axis, and measures each layer's
executed weight density from the real decomposed weights. Then for every
accelerator in `config.hardware` it estimates every series the accelerator
runs, plus a per-layer "tasd" choice.

"tasd" stands in for TASDER (which ranks series by EDP under a model-accuracy
budget): per layer it takes the series with the lowest layer EDP among those
the accelerator runs that keep at least `config.min_kept_l1` of the pruned
layer's L1 magnitude; dense when none does. The accuracy budget is replaced by
this weight-fidelity proxy until trained models exist; say so beside its numbers.

Outputs in `workdir`: `per_layer.csv`, `totals.csv`, `results.json` (with
which weights were used), one heat map `edp_<workload>.png` per workload (a
panel per weight set: designs x series, each cell's relative EDP printed, each
design's lowest within the budget boxed, series breaking it faded), and
a printed table of model EDP relative to the dense accelerator running the
dense model: dense / 2:4 / tasd.
"""

import os
from typing import Iterable, NamedTuple

import ml_collections
import numpy as np

from experiments import outputs
from experiments import weights as weights_lib
from tasd_jax import patterns
from tasd_jax.cost.edp import PARTS as cost_parts
from tasd_jax.cost.gemms import total_macs
from tasd_jax.cost.hardware import design_name, hardware
from tasd_jax.cost.sweep import Run, sweep_workload
from tasd_jax.cost.workloads import LayerWeights, Workload, measure_weights, workload

_PER_LAYER_FIELDS = [
    "workload", "weights", "sparsity", "hardware", "series", "layer", "batch", "m", "k", "n", "weight",
    "weight_density", "kept_l1", "cycles", "compute_cycles", "dram_cycles", "smem_cycles",
    "energy_pj", *(f"{part}_pj" for part in cost_parts), "edp_pj_cycles",
]
_TOTAL_FIELDS = [
    "workload", "weights", "sparsity", "hardware", "series", "macs", "cycles", "energy_pj", "edp_pj_cycles",
    "rel_cycles", "rel_energy", "rel_edp", "rel_layer_edp", "kept_l1", "kept_nonzero",
]


def _model_kept(weights: LayerWeights, choice: dict[str, str]) -> tuple[float, float]:
    """Model-level kept L1 and kept non-zeros for a path -> series choice."""
    l1 = sum(weights.abs_sum[p] for p in choice)
    nz = sum(weights.nonzero[p] for p in choice)
    kept_l1 = sum(weights.kept_l1[(s, p)] * weights.abs_sum[p] for p, s in choice.items())
    kept_nz = sum(weights.kept_nonzero[(s, p)] * weights.nonzero[p] for p, s in choice.items())
    return kept_l1 / max(l1, 1e-30), kept_nz / max(nz, 1.0)


def _layer_rows(wl: Workload, weights: weights_lib.Weights, run: Run) -> Iterable[dict]:
    est = run.estimate
    for i, g in enumerate(wl.gemms):
        yield {
            "workload": wl.name, "weights": weights.label, "sparsity": weights.sparsity, "hardware": run.hardware,
            "series": run.series, "layer": g.name, "batch": g.batch, "m": g.m, "k": g.k,
            "n": g.n, "weight": g.weight, "weight_density": run.density[i],
            "kept_l1": run.kept_l1[i], "cycles": est.cycles[i],
            "compute_cycles": est.compute_cycles[i], "dram_cycles": est.dram_cycles[i],
            "smem_cycles": est.smem_cycles[i], "energy_pj": est.energy_pj[i],
            **{f"{part}_pj": est.energy_by_part[part][i] for part in cost_parts},
            "edp_pj_cycles": est.edp[i],
        }


class HeatMap(NamedTuple):
    """One weight set's panel of the EDP heat map: D designs x S series."""

    values: np.ndarray  # [D, S] model EDP relative to the dense core (NaN: not run)
    within_budget: np.ndarray  # [D, S] bool, the series keeps >= min_kept_l1 of the L1
    best: np.ndarray  # [D] the series index of each design's lowest EDP within budget


def heat_map(totals: list[dict], label: str, hw_names: list[str], series_names: list[str],
             min_kept_l1: float) -> HeatMap:
    """The cells of weight set `label`'s panel from `totals` rows (rel_edp, kept_l1).

    "dense" and the per-layer "tasd" choice are always within budget (dense keeps
    everything; "tasd" keeps `min_kept_l1` of every layer by construction).
    """
    cells = {(r["hardware"], r["series"]): r for r in totals if r["weights"] == label}
    values = np.full((len(hw_names), len(series_names)), np.nan)
    within = np.zeros(values.shape, bool)
    for i, hw_name in enumerate(hw_names):
        for j, name in enumerate(series_names):
            if (hw_name, name) in cells:
                r = cells[hw_name, name]
                values[i, j] = r["rel_edp"]
                within[i, j] = r["kept_l1"] >= min_kept_l1 or name in ("dense", "tasd")
    best = np.argmin(np.where(within, values, np.inf), axis=1)  # dense always runs
    return HeatMap(values, within, best)


def _plot(path: str, wl_name: str, totals: list[dict], labels: list[str], hw_names: list[str],
          min_kept_l1: float) -> None:
    """A heat map per weight set: rows designs, columns series, each cell the model EDP
    relative to the dense core running the dense model, printed in the cell.

    Colour is log-scaled and centred at 1.0 (blue: below the dense core, red: above);
    the lowest cell within the budget of each design is boxed; cells whose series
    keeps less than `min_kept_l1` of the weights' L1 are faded (they break the budget).
    """
    # The per-layer choice last, after the fixed series it chooses from.
    series_names = [s for s in dict.fromkeys(r["series"] for r in totals) if s != "tasd"] + ["tasd"]
    # One symmetric log range for every panel, so a colour means the same number everywhere.
    span = max(abs(np.log10(r["rel_edp"])) for r in totals) or 1.0
    plt = outputs.plt
    norm = plt.Normalize(vmin=-span, vmax=span)
    cmap = plt.get_cmap("RdBu_r")
    columns = min(2, len(labels))
    rows = -(-len(labels) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(0.75 * len(series_names) * columns + 2.5, 0.42 * len(hw_names) * rows + 1.8),
        squeeze=False, layout="constrained")
    for ax in axes.flat[len(labels):]:
        ax.set_visible(False)
    for ax, label in zip(axes.flat, labels):
        panel = heat_map(totals, label, hw_names, series_names, min_kept_l1)
        for (i, j), value in np.ndenumerate(panel.values):
            if np.isnan(value):  # the design does not run this series: left blank
                continue
            faded, best = not panel.within_budget[i, j], j == panel.best[i]
            shade = norm(np.log10(value))
            ax.add_patch(plt.Rectangle(
                (j - 0.5, i - 0.5), 1, 1, facecolor=cmap(shade),
                alpha=0.2 if faded else 1.0, edgecolor="white", lw=1.5))
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="0.6" if faded else ("white" if abs(shade - 0.5) > 0.3 else "black"),
                    fontstyle="italic" if faded else "normal",
                    fontweight="bold" if best else "normal")
            if best:
                ax.add_patch(plt.Rectangle(
                    (j - 0.46, i - 0.46), 0.92, 0.92, fill=False, edgecolor="black", lw=1.8))
        ax.set_xlim(-0.5, len(series_names) - 0.5)
        ax.set_ylim(len(hw_names) - 0.5, -0.5)
        ax.set_xticks(range(len(series_names)),
                      [f"{s}\n(per layer)" if s == "tasd" else s for s in series_names], fontsize=8)
        ax.xaxis.tick_top()
        ax.set_yticks(range(len(hw_names)), hw_names, fontsize=8)
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_title(f"weights {label}", fontsize=9, pad=22)
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap),
                       ax=axes.ravel().tolist(), shrink=0.8, pad=0.02)
    ticks = [t for t in (0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100) if abs(np.log10(t)) <= span]
    bar.set_ticks(np.log10(ticks), labels=[f"{t:g}" for t in ticks])
    bar.set_label("EDP / dense core, dense model (log)", fontsize=8)
    fig.suptitle(
        f"{wl_name}: model EDP relative to the dense core (tc) running the dense model, lower is "
        f"better\nboxed: each design's lowest within budget; faded: keeps < {min_kept_l1:.0%} of "
        "the weights' L1 (breaks the budget); blank: the design does not run the series", fontsize=9)
    outputs.save_figure(fig, path, dpi=100)


def format_table(totals: list[dict], columns: tuple[str, ...] = ("dense", "2:4", "tasd")) -> str:
    """Model EDP relative to the dense core running the dense model, one block per
    workload and weight set: rows hardware, columns `columns` (`-` where not run),
    then the share of the weights' L1 each non-dense column keeps."""
    kept_columns = [c for c in columns if c != "dense"]
    width = max([11] + [len(r["hardware"]) + 2 for r in totals])  # ttc_vegeta_m8 needs 15
    lines = []
    for wl_name, label, s in dict.fromkeys((r["workload"], r["weights"], r["sparsity"]) for r in totals):
        rows = {
            (r["hardware"], r["series"]): r
            for r in totals if r["workload"] == wl_name and r["weights"] == label
        }
        lines.append(
            f"{wl_name}, weights {label} (sparsity {s:.1%}): EDP relative to dense core / dense model"
        )
        lines.append(
            f"{'hardware':<{width}}" + "".join(f"{c:>9}" for c in columns)
            + "".join(f"{'kept ' + c:>12}" for c in kept_columns)
        )
        for hw_name in dict.fromkeys(h for h, _ in rows):
            edp = [
                f"{rows[hw_name, c]['rel_edp']:>9.3f}" if (hw_name, c) in rows else f"{'-':>9}"
                for c in columns
            ]
            kept = [
                f"{rows[hw_name, c]['kept_l1']:>12.3f}" if (hw_name, c) in rows else f"{'-':>12}"
                for c in kept_columns
            ]
            lines.append(f"{hw_name:<{width}}" + "".join(edp) + "".join(kept))
        lines.append("")
    return "\n".join(lines)


class _Sweep(NamedTuple):
    """Every estimate of a sweep: per-layer and model rows, each workload's size and
    each "tasd" per-layer choice (by "workload/weights/hardware")."""

    per_layer: list[dict]
    totals: list[dict]
    workloads: dict[str, dict]
    choices: dict[str, dict[str, str]]


def edp_report(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs the EDP sweep of `config` (see configs/edp_resnet50.py) and writes its files.

    Returns:
      The contents of results.json.
    """
    reference = _check(config)
    config = config.copy_and_resolve_references()  # canonical specs; the caller's stays
    with config.unlocked():
        config.series = tuple(patterns.parse(spec).spec() for spec in config.series)
    weight_sets = weights_lib.load_weights(config)
    os.makedirs(workdir, exist_ok=True)
    swept = _sweep(config, weight_sets, reference, workdir)
    outputs.write_csv(os.path.join(workdir, "per_layer.csv"), swept.per_layer, _PER_LAYER_FIELDS)
    outputs.write_csv(os.path.join(workdir, "totals.csv"), swept.totals, _TOTAL_FIELDS)
    table = "\n".join(weights_lib.summary(ws) for ws in weight_sets) + "\n\n" + format_table(
        swept.totals)
    print(table)
    results = _results(config, reference, weight_sets, swept, table)
    outputs.write_json(os.path.join(workdir, "results.json"), results)
    return results


def _results(config: ml_collections.ConfigDict, reference: str,
             weight_sets: list[weights_lib.Weights], swept: _Sweep, table: str) -> dict:
    """The contents of results.json: the weights, units and set-up beside every model row."""
    return {
        "weights": [{"label": ws.label, "sparsity": ws.sparsity, **ws.source} for ws in weight_sets],
        "units": {
            "cycles": "cycles", "energy": "pJ",
            "edp": "pJ x cycles (model: total cycles x total pJ)",
        },
        "reference": f"rel_* are relative to {reference!r} (the dense tensor core) running "
        "the dense model with the same weights",
        "tasd": f"per-layer lowest-EDP series keeping >= {config.min_kept_l1} of the "
        "layer's L1 (a weight-fidelity stand-in for TASDER's accuracy budget)",
        "energy_table": config.energy,
        "activation_density": config.activation_density,
        "hardware": {h: hardware(h).description for h in config.hardware},
        "workloads": swept.workloads,
        "totals": swept.totals,
        "tasd_choice": swept.choices,
        "table": table,
    }


def _check(config: ml_collections.ConfigDict) -> str:
    """The name in `config.hardware` of the dense tensor core every EDP is relative to,
    after the checks that need no work.

    Raises:
      ValueError: a field is missing, a hardware name is unknown, or the dense core
        or the dense series is not in the config.
    """
    for field in ("hardware", "series", "energy"):
        if field not in config:
            raise ValueError(f"edp config has no {field!r} field")
    for name in config.hardware:
        hardware(name)  # an unknown name fails here, before any work
    reference = next((h for h in config.hardware if design_name(h) == "tc"), None)
    if reference is None or "dense" not in config.series:
        raise ValueError(
            f"config.hardware {list(config.hardware)} and config.series {list(config.series)} "
            "must both include 'dense' (in hardware: the dense tensor core 'tc' or its alias "
            "'dense'): every EDP is relative to the dense core running the dense model"
        )
    return reference


def _sweep(config: ml_collections.ConfigDict, weight_sets: list[weights_lib.Weights],
           reference: str, workdir: str) -> _Sweep:
    """Every accelerator and series of `config` on every weight set at every input
    shape; draws each workload's heat map into `workdir`."""
    swept = _Sweep([], [], {}, {})
    for shape in weight_sets[0].input_shapes:
        first = weight_sets[0]
        wl = workload(first.model_name, first.model, first.variables, shape)
        swept.workloads[wl.name] = {
            "gemms": len(wl.gemms), "macs": total_macs(wl.gemms),
            "weight_gemms": sum(g.weight for g in wl.gemms),
        }
        for ws in weight_sets:
            _sweep_weight_set(config, wl, ws, reference, swept)
        _plot(
            os.path.join(workdir, f"edp_{wl.name}.png"), wl.name,
            [r for r in swept.totals if r["workload"] == wl.name],
            [ws.label for ws in weight_sets], list(config.hardware), config.min_kept_l1,
        )
    return swept


def _sweep_weight_set(config: ml_collections.ConfigDict, wl: Workload, ws: weights_lib.Weights,
                      reference: str, swept: _Sweep) -> None:
    """Adds to `swept` every run of `config` on workload `wl` with weight set `ws`, each
    relative to the `reference` core running the dense series."""
    measured = measure_weights(ws.variables, wl.gemms, config.series)
    runs = sweep_workload(
        wl, measured, hardware=config.hardware, series=config.series,
        energy=config.energy, activation_density=config.activation_density,
        min_kept_l1=config.min_kept_l1)
    base = next(r.estimate for r in runs if r.hardware == reference and r.series == "dense")
    for run in runs:
        est = run.estimate
        swept.per_layer.extend(_layer_rows(wl, ws, run))
        kept_l1, kept_nz = _model_kept(measured, run.choice)
        swept.totals.append({
            "workload": wl.name, "weights": ws.label, "sparsity": ws.sparsity,
            "hardware": run.hardware, "series": run.series, "macs": float(est.macs.sum()),
            "cycles": est.total_cycles, "energy_pj": est.total_energy_pj,
            "edp_pj_cycles": est.total_edp,
            "rel_cycles": est.total_cycles / base.total_cycles,
            "rel_energy": est.total_energy_pj / base.total_energy_pj,
            "rel_edp": est.total_edp / base.total_edp,
            "rel_layer_edp": est.layer_edp_sum / base.layer_edp_sum,
            "kept_l1": kept_l1, "kept_nonzero": kept_nz,
        })
        if run.series == "tasd":
            swept.choices[f"{wl.name}/{ws.label}/{run.hardware}"] = run.choice
