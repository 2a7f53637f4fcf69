"""The `decompose_report` experiment: how well TASD series approximate a model's weights.

    python -m experiments.run --config=configs/decompose_report.py --workdir=DIR
    python -m experiments.run --config=configs/decompose_report.py --workdir=DIR \\
        --config.init_from=TRAIN_DIR/export

Per layer and for the whole model, each series of `config.series` is
decomposed along the contraction axis (conv kernels on their GEMM view,
docs/conventions.md) from the weights `experiments.weights` picks: a
training run's export as it is, or random-init weights magnitude-pruned to
each of `config.sparsities`.

Writes into the workdir: `results.json` (which weights, per-series model
totals), `layers.csv` (per weight set, layer and series: shape, sparsity, kept
non-zeros %, kept L1/L2 %, relative error, compute cost) and
`kept_vs_cost.png` (kept energy against compute cost, one point per series).
"""

import os

import ml_collections
import numpy as np

from experiments import outputs
from experiments import weights as weights_lib
from tasd_jax import patterns, tasd, tree_paths


def _totals(rows: list[dict], weights: dict[str, np.ndarray], spec: str) -> dict:
    """Model totals of one series: kept fractions weighted by each layer's own total."""
    nonzeros = {p: float(np.count_nonzero(w)) for p, w in weights.items()}
    abs_sum = {p: float(np.abs(w).sum()) for p, w in weights.items()}
    energy = {p: float(np.square(w).sum()) for p, w in weights.items()}

    def weighted(key, weight):
        return sum(r[key] * weight[r["layer"]] for r in rows) / max(sum(weight.values()), 1e-30)

    return {
        "kept_nonzero_pct": weighted("kept_nonzero_pct", nonzeros),
        "kept_l1_pct": weighted("kept_l1_pct", abs_sum),
        "kept_l2_pct": weighted("kept_l2_pct", energy),
        "compute_cost": patterns.as_series(spec).compute_cost,
    }


def decompose_report(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Decomposes the chosen weights into each series of `config.series`.

    Returns:
      The contents of results.json: {"weights": [per weight set: its source,
      sparsity, layers, totals per series]}.
    """
    if not config.series:
        raise ValueError("config.series is empty: name at least one series, e.g. '2:4'")
    series_list = [patterns.as_series(s).spec() for s in config.series]
    weight_sets = weights_lib.load_weights(config)
    os.makedirs(workdir, exist_ok=True)

    rows, sets = [], []
    for ws in weight_sets:
        flat = tree_paths.flatten(ws.variables["params"])
        chosen = tree_paths.match_rules(list(flat), [(config.rule, None)])
        leaves = {p: w for p, w in flat.items() if chosen[p]}
        as_float = {p: np.asarray(w, np.float64) for p, w in leaves.items()}
        totals = {}
        for spec in series_list:
            series_rows = []
            for leaf in tasd.decompose_tree(leaves, [(".", spec)]).report:
                w = as_float[leaf.path]
                series_rows.append({
                    "weights": ws.label, "layer": leaf.path, "shape": "x".join(map(str, leaf.shape)),
                    "sparsity": 1.0 - np.count_nonzero(w) / w.size,
                    "series": leaf.series, "axis": leaf.axis,
                    "kept_nonzero_pct": 100 * leaf.metrics.kept_nonzero,
                    "kept_l1_pct": 100 * leaf.metrics.kept_l1,
                    "kept_l2_pct": 100 * leaf.metrics.kept_l2,
                    "rel_error": leaf.metrics.rel_error,
                    "compute_cost": leaf.metrics.compute_cost,
                })
            totals[spec] = _totals(series_rows, as_float, spec)
            rows += series_rows
        sets.append({
            "label": ws.label, "source": ws.source, "layers": len(leaves),
            "parameters_decomposed": int(sum(w.size for w in as_float.values())),
            "weight_sparsity": ws.sparsity, "series": totals,
        })
        print(weights_lib.summary(ws))
        for spec, t in totals.items():
            print(f"{spec:>12}: cost {t['compute_cost']:.3f}  kept non-zeros {t['kept_nonzero_pct']:.1f}%  "
                  f"kept L2 {t['kept_l2_pct']:.2f}%")

    outputs.write_csv(os.path.join(workdir, "layers.csv"), rows)
    results = {"model": weight_sets[0].model_name, "rule": config.rule, "weights": sets}
    outputs.write_json(os.path.join(workdir, "results.json"), results)
    _plot(sets, os.path.join(workdir, "kept_vs_cost.png"), weight_sets[0].model_name)
    return results


def _plot(sets: list[dict], path: str, model_name: str) -> None:
    fig, ax = outputs.plt.subplots(figsize=(6, 4.5))
    for ws in sets:
        specs = list(ws["series"])
        points = [(ws["series"][s]["compute_cost"], ws["series"][s]["kept_l2_pct"]) for s in specs]
        ax.scatter(*zip(*points), s=40, label=f"{ws['label']} (sparsity {ws['weight_sparsity']:.2f})")
        for spec, point in zip(specs, points):
            ax.annotate(spec, point, textcoords="offset points", xytext=(5, -10), fontsize=8)
    ax.set_xlabel("compute cost (fraction of dense, sum of N/M)")
    ax.set_ylabel("kept L2 energy of the weights (%)")
    ax.set_title(f"{model_name}: TASD series of its weights")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    outputs.save_figure(fig, path, dpi=120)
