"""The `sweep` experiment: accuracy against sparsity for several pruning patterns.

    python -m experiments.run --config=configs/tw_sweep_digits.py --workdir=DIR

The tile-wise paper's pattern comparison (docs/tile_wise.md: EW, VW, BW, TW,
TEW at increasing sparsity). The dense model is trained once
(`workdir/dense`); then every (pattern, sparsity) starts from its export,
prunes gradually and fine-tunes (`workdir/<label>_<sparsity>`), each a full
`train` run with its own checkpoints: rerunning the command skips finished
runs and resumes an interrupted one.

Outputs: `sweep.csv` (one row per run), `sweep.png` (test accuracy against
sparsity, one line per pattern, the dense accuracy as a horizontal line) and
`results.json` (the same rows).
"""

import os
from absl import logging
import ml_collections

from experiments import outputs
from experiments import train as train_experiment
from tasd_jax import patterns

CSV_FIELDS = (
    "pattern", "spec", "target_sparsity", "sparsity", "pattern_valid", "test_accuracy",
    "dense_test_accuracy", "accuracy_drop",
)


def variant_spec(template: str, sparsity: float) -> str:
    """The pattern spec of a variant at `sparsity`; checked by `patterns.parse`."""
    spec = template.format(sparsity=sparsity)
    patterns.parse(spec)
    return spec


def _variant_config(
    config: ml_collections.ConfigDict, dense_export: str, spec: str
) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict(config.base.to_dict())
    cfg.init_from = dense_export
    cfg.num_steps = config.finetune_steps
    cfg.learning_rate = config.finetune_learning_rate
    cfg.pruning.rules = ((config.rule, spec),)
    return cfg


def plot_sweep(rows: list[dict], dense_accuracy: float, path: str) -> None:
    """Test accuracy against achieved sparsity, one line per pattern."""
    fig, ax = outputs.plt.subplots(figsize=(6, 4))
    for label in dict.fromkeys(r["pattern"] for r in rows):
        points = sorted((r["sparsity"], r["test_accuracy"]) for r in rows if r["pattern"] == label)
        ax.plot(*zip(*points), marker="o", label=label)
    ax.axhline(dense_accuracy, color="k", linestyle="--", label="dense")
    ax.set_xlabel("sparsity of the pruned layers")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    outputs.save_figure(fig, path, dpi=100)


def sweep(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs the dense baseline and every `config.variants` x `config.sparsities` run.

    Config fields (see configs/tw_sweep_digits.py):
      base: a `train` config (model, data, optimizer, pruning schedule).
      dense_steps: training steps of the dense baseline.
      finetune_steps, finetune_learning_rate: each pruned run, from the dense weights.
      rule: path regex of the pruned parameters.
      variants: (label, spec template) pairs; "{sparsity}" in the template is
        replaced by each of `sparsities`.

    Returns:
      {"dense_test_accuracy": float, "rows": [one dict per run, CSV_FIELDS]}.
    """
    # Every spec is checked before the first step of the first run.
    specs = [
        (label, s, variant_spec(template, s))
        for label, template in config.variants
        for s in config.sparsities
    ]
    os.makedirs(workdir, exist_ok=True)
    dense_config = ml_collections.ConfigDict(config.base.to_dict())
    dense_config.num_steps = config.dense_steps
    dense_config.pruning.rules = ()
    dense_dir = os.path.join(workdir, "dense")
    dense = train_experiment.train_once(dense_config, dense_dir)["final"]
    rows = []
    for label, sparsity, spec in specs:
        logging.info("sweep: %s at %.2f (%s)", label, sparsity, spec)
        run_dir = os.path.join(workdir, f"{label.lower()}_{sparsity:g}")
        final = train_experiment.train_once(_variant_config(config, os.path.join(dense_dir, "export"), spec), run_dir)["final"]
        rows.append({
            "pattern": label,
            "spec": spec,
            "target_sparsity": sparsity,
            "sparsity": final["sparsity"],
            "pattern_valid": final["pattern_valid"],
            "test_accuracy": final["test_accuracy"],
            "dense_test_accuracy": dense["test_accuracy"],
            "accuracy_drop": dense["test_accuracy"] - final["test_accuracy"],
        })
    outputs.write_csv(os.path.join(workdir, "sweep.csv"), rows, CSV_FIELDS)
    plot_sweep(rows, dense["test_accuracy"], os.path.join(workdir, "sweep.png"))
    results = {"dense_test_accuracy": dense["test_accuracy"], "rows": rows}
    outputs.write_json(os.path.join(workdir, "results.json"), results)
    for r in rows:
        print(f"{r['pattern']:>5} {r['target_sparsity']:.2f}: accuracy {100 * r['test_accuracy']:.2f}% "
              f"(sparsity {r['sparsity']:.3f}, dense {100 * r['dense_test_accuracy']:.2f}%)")
    return results
