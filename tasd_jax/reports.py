"""The decomposition report (issue 3 §5): how well TASD series approximate a
model's magnitude-pruned weights, per layer and for the whole model.

Run by `python -m experiments.run --config=configs/decompose_report.py`.
Writes into the workdir: `results.json` (config and per-series model totals),
`layers.csv` (per layer and series: shape, sparsity, kept non-zeros %, kept
L2 %, relative error, compute cost) and `kept_vs_cost.png` (kept energy against
compute cost, one point per series).
"""

import csv
import json
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from tasd_jax import patterns, tasd, tree_paths  # noqa: E402
from tasd_jax.cost import workloads  # noqa: E402


def init_params(config: ml_collections.ConfigDict) -> Any:
    """Random-init parameters of `config.model` for an input `config.input_shape`."""
    _, variables = workloads.init_variables(
        config.model, tuple(config.input_shape), seed=config.seed, **config.get("model_kwargs", {})
    )
    return variables["params"]


def magnitude_prune(
    leaves: Mapping[str, jax.Array], pattern: "str | patterns.Pattern"
) -> dict[str, jax.Array]:
    """Each leaf pruned on its own by |w| with `pattern` along its contraction
    axis (-2 for kernels); returns path -> pruned array (zeros where pruned)."""
    pattern = patterns.parse(pattern)
    return {
        path: jnp.where(pattern.mask(jnp.abs(w), tree_paths.default_axis(w.ndim)), w, 0)
        for path, w in leaves.items()
    }


def decompose_report(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Decomposes a model's pruned weights into each series of `config.series`."""
    if not config.series:
        raise ValueError("config.series is empty: name at least one series, e.g. '2:4'")
    series_list = [patterns.as_series(s) for s in config.series]
    os.makedirs(workdir, exist_ok=True)
    flat = tree_paths.flatten(init_params(config))
    chosen = tree_paths.match_rules(list(flat), [(config.rule, config.prune)])
    pruned = magnitude_prune({p: w for p, w in flat.items() if chosen[p]}, config.prune)
    weights = {p: np.asarray(w, np.float64) for p, w in pruned.items()}
    nonzeros = {p: float(np.count_nonzero(w)) for p, w in weights.items()}
    energy = {p: float(np.sum(w * w)) for p, w in weights.items()}
    abs_sum = {p: float(np.sum(np.abs(w))) for p, w in weights.items()}

    rows, totals = [], {}
    for series in series_list:
        result = tasd.decompose_tree(pruned, [(".", series)])
        for leaf in result.report:
            rows.append({
                "layer": leaf.path, "shape": "x".join(map(str, leaf.shape)),
                "sparsity": 1.0 - nonzeros[leaf.path] / weights[leaf.path].size,
                "series": leaf.series, "axis": leaf.axis,
                "kept_nonzero_pct": 100 * leaf.metrics.kept_nonzero,
                "kept_l1_pct": 100 * leaf.metrics.kept_l1,
                "kept_l2_pct": 100 * leaf.metrics.kept_l2,
                "rel_error": leaf.metrics.rel_error,
                "compute_cost": leaf.metrics.compute_cost,
            })

        def weighted(key, weight):
            return sum(r[key] * weight[r["layer"]] for r in rows[-len(result.report):]) / sum(weight.values())

        totals[series.spec()] = {
            "kept_nonzero_pct": weighted("kept_nonzero_pct", nonzeros),
            "kept_l1_pct": weighted("kept_l1_pct", abs_sum),
            "kept_l2_pct": weighted("kept_l2_pct", energy),
            "compute_cost": series.compute_cost,
        }

    with open(os.path.join(workdir, "layers.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    results = {
        "config": config.to_dict(),
        "layers": len(weights),
        "parameters_decomposed": int(sum(w.size for w in weights.values())),
        "weight_sparsity": 1.0 - sum(nonzeros.values()) / sum(w.size for w in weights.values()),
        "series": totals,
    }
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    _plot(totals, os.path.join(workdir, "kept_vs_cost.png"), config)
    for spec, t in totals.items():
        print(f"{spec:>12}: cost {t['compute_cost']:.3f}  kept non-zeros {t['kept_nonzero_pct']:.1f}%  "
              f"kept L2 {t['kept_l2_pct']:.2f}%")
    return results


def _plot(totals: dict, path: str, config: ml_collections.ConfigDict) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for spec, t in totals.items():
        ax.scatter(t["compute_cost"], t["kept_l2_pct"], s=40)
        ax.annotate(spec, (t["compute_cost"], t["kept_l2_pct"]), textcoords="offset points", xytext=(5, -10))
    ax.set_xlabel("compute cost (fraction of dense, sum of N/M)")
    ax.set_ylabel("kept L2 energy of pruned weights (%)")
    ax.set_title(f"{config.model}, weights pruned with {config.prune}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
