"""TASD-A on a pretrained sentence encoder: the embedding-agreement metric, and the
experiment end to end on a tiny random BERT checkpoint and WordNet files written here."""

import json
import os
import re

import jax.numpy as jnp
import numpy as np
import pytest

from configs import minilm_tasder as minilm_config
from experiments import minilm_tasder
from experiments.errors import ConfigError
from tasd_jax import models, tasder
from test_pretrained import TINY_CONFIG, WORDS, tiny_tensors, write_checkpoint, write_tokenizer
from test_wordnet import LICENCE, write_wordnet


def _identity_apply(variables, x):
    return x * variables["scale"]


def test_agreement_is_the_mean_cosine_with_the_reference():
    x = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], np.float32)
    batches = [{"inputs": x[:2], "reference": x[:2]}, {"inputs": x[2:], "reference": x[2:]}]
    metric = tasder.embedding_agreement(batches, lambda out, inputs: out)
    assert metric(_identity_apply, {"scale": 1.0}) == pytest.approx(1.0)
    assert metric(_identity_apply, {"scale": -2.0}) == pytest.approx(-1.0)  # opposite: -1
    rotated = [{"inputs": np.array([[0.0, 1.0]], np.float32), "reference": np.array([[1.0, 1.0]])}]
    assert tasder.embedding_agreement(rotated, lambda out, inputs: out)(
        _identity_apply, {"scale": 1.0}) == pytest.approx(np.sqrt(0.5))
    # A zero embedding agrees with nothing (0), and stays finite.
    assert metric(_identity_apply, {"scale": 0.0}) == 0.0


def test_with_reference_pairs_each_batch_with_the_models_own_embedding():
    inputs = [np.ones((2, 3), np.float32), np.full((1, 3), 2.0, np.float32)]
    batches = tasder.with_reference(_identity_apply, {"scale": 3.0}, inputs, lambda out, x: out)
    np.testing.assert_array_equal(batches[1]["reference"], np.full((1, 3), 6.0))
    assert batches[0]["inputs"] is inputs[0]


def test_agreement_refuses_a_batch_without_its_keys():
    with pytest.raises(ValueError, match=r"batch 0 has no 'reference' \(it has \['inputs'\]\)"):
        tasder.embedding_agreement([{"inputs": 1}], lambda out, x: out)


def test_sentence_embeddings_pool_the_real_tokens_to_unit_length():
    hidden = jnp.array([[[3.0, 0.0], [1.0, 0.0], [100.0, 100.0]]])  # the last token is padding
    got = models.sentence_embeddings(hidden, jnp.array([[1, 1, 0]]))
    np.testing.assert_allclose(got, [[1.0, 0.0]], atol=1e-6)


# ------------------------------------------------------------ the experiment


def _sentences(count: int) -> str:
    """A data.noun of `count` synsets, each with one example of 4-6 tokenizer words,
    filed under four lexicographer files in turn (noun.Tops, noun.act, ...)."""
    rng = np.random.default_rng(0)
    lines = [LICENCE]
    for i in range(count):
        words = " ".join(rng.choice(WORDS[:-1], int(rng.integers(4, 7))))
        lines.append(f'{i:08d} {i % 4 + 3:02d} n 01 w 0 000 | gloss; "{words}"  \n')
    return "".join(lines)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("minilm_tasder")
    checkpoint = write_checkpoint(root / "ckpt", TINY_CONFIG, tiny_tensors(TINY_CONFIG))
    write_tokenizer(checkpoint)
    write_wordnet(root / "wordnet", nouns=_sentences(40))
    config = tiny_config(checkpoint, root / "wordnet")
    return root, config, minilm_tasder.minilm_tasder(config, str(root / "run"))


def tiny_config(checkpoint, wordnet_dir):
    config = minilm_config.get_config()
    config.checkpoint, config.wordnet_dir = str(checkpoint), str(wordnet_dir)
    config.num_sentences, config.calibration_sentences, config.eval_batch_size = 8, 4, 4
    config.supersense.train_sentences, config.supersense.test_sentences = 24, 8
    config.max_length, config.batch = 8, 2
    config.hardware = ("ttc_vegeta_m8",)
    return config


def test_every_search_keeps_the_budget_and_decomposes_only_its_layers(tiny_run):
    root, config, out = tiny_run
    rows = out["rows"]
    assert [(r["mode"], r["layers"], r["quality"]) for r in rows] == [
        tuple(s) for s in config.searches]
    assert {r["quality"] for r in rows} == {"agreement", "supersense"}
    for r in rows:
        if r["quality"] == "agreement":
            assert r["baseline"] == pytest.approx(1.0, abs=1e-5)
        assert r["kept"] >= config.budget * r["baseline"]
    gelu, everything = rows[1], rows[2]
    # Two layers of two GEMMs after GELU (each layer's FFN output), against all 12.
    assert (gelu["eligible_layers"], everything["eligible_layers"]) == (2, 12)
    for r in rows:
        if r["layers"] == "gelu":  # only the FFN's second GEMM, whose input a GELU produces
            assert set(r["activation_series"]) <= {"layer_0/output", "layer_1/output"}
    # ours starts from the better of its starting points: never above the paper's EDP.
    assert rows[1]["relative_edp"] <= rows[0]["relative_edp"] + 1e-9
    with open(root / "run" / "minilm_tasder.json") as f:
        assert json.load(f)["rows"] == json.loads(json.dumps(rows))
    report = (root / "run" / "report.md").read_text()
    for r in rows:
        kept = (f"{r['kept']:.4f} of {r['baseline']:.4f}" if r["quality"] == "agreement"
                else f"{r['kept']:.1%} of {r['baseline']:.1%}")
        assert f"| {r['quality']} | {kept} | {r['relative_edp']:.3f} |" in report
    task = out["supersense"]
    train, _ = minilm_tasder.supersense_split(config)
    assert (task["classes"], task["test_examples"]) == (len({e.lexname for e in train}), 8)
    assert f"fitted on {task['train_examples']} examples and tested on 8 others" in report
    # 99% of at most 8 right answers: losing any one breaks the budget.
    assert re.search(r"of its [1-8] right answers, a search may lose 0\.", report)


@pytest.mark.filterwarnings("ignore:The least populated class")  # a tiny data set
def test_the_supersense_baseline_is_the_probes_accuracy_on_the_unmodified_model(tiny_run):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    root, config, out = tiny_run
    problems, task = minilm_tasder.build_problems(config, {("gelu", "supersense")})
    train, test = minilm_tasder.supersense_split(config)
    model, variables = models.from_pretrained(config.checkpoint)
    tokenize = models.pretrained_tokenizer(config.checkpoint, max_length=config.max_length,
                                           pad_to_max_length=True)

    def embed(examples):
        tokens = tokenize([minilm_tasder.supersense_text(e) for e in examples])
        hidden = model.apply(variables, tokens["input_ids"],
                             attention_mask=tokens["attention_mask"], method="encode")
        return np.asarray(models.sentence_embeddings(hidden, tokens["attention_mask"]), np.float64)

    probe = GridSearchCV(LogisticRegression(max_iter=2000), {"C": [0.1, 1, 10, 100]}, cv=3)
    probe.fit(embed(train), [e.lexname for e in train])
    accuracy = probe.score(embed(test), [e.lexname for e in test])
    assert problems["gelu", "supersense"].baseline == pytest.approx(accuracy, abs=1e-9)
    assert task == out["supersense"]
    assert task["inverse_regularisation"] == probe.best_params_["C"]


def test_the_probe_separates_separable_classes_in_the_order_it_names():
    rng = np.random.default_rng(0)
    centres = {"verb.motion": [4.0, 0.0], "noun.act": [0.0, 4.0], "adj.all": [-4.0, -4.0]}
    labels = [name for name in centres for _ in range(30)]
    points = np.array([centres[n] for n in labels]) + rng.normal(0, 0.5, (90, 2))
    probe = minilm_tasder.fit_probe(points, labels, seed=0)
    assert probe.classes == ("adj.all", "noun.act", "verb.motion")
    assert probe.weights.shape == (2, 3) and probe.bias.shape == (3,)
    predicted = np.argmax(points @ probe.weights + probe.bias, axis=1)
    assert [probe.classes[i] for i in predicted] == labels
    assert probe.train_examples == 90 and probe.inverse_regularisation in (0.1, 1.0, 10.0, 100.0)


def test_no_synset_has_examples_on_both_sides_of_the_supersense_split(tmp_path):
    # Each synset has two examples: the split drops a training example whose
    # synset was tested.
    lines = [LICENCE] + [f'{i:08d} {i % 3 + 4:02d} n 01 w 0 000 | gloss; "the weather is '
                         f'lovely {i}"; "it is sunny today {i}"  \n' for i in range(30)]
    write_wordnet(tmp_path / "wordnet", nouns="".join(lines))
    config = minilm_config.get_config()
    config.wordnet_dir = str(tmp_path / "wordnet")
    config.supersense.train_sentences, config.supersense.test_sentences = 40, 10
    train, test = minilm_tasder.supersense_split(config)
    assert len(test) == 10 and not {e.synset for e in train} & {e.synset for e in test}
    assert 30 <= len(train) < 40  # the dropped ones are the tested synsets' other examples
    # Spread over the whole database, not its first lines.
    nouns = sorted(e.synset for e in test if e.synset.endswith("-n"))
    assert nouns[0] == "00000000-n" and nouns[-1] > "00000025"
    config.supersense.train_sentences = 100
    # 60 here and write_wordnet's verb "How fast does your new car go?".
    with pytest.raises(ConfigError, match=r"WordNet has 61 examples of >= 4 words, fewer than "
                                          r"supersense.train_sentences \+ "
                                          r"supersense.test_sentences = 110"):
        minilm_tasder.supersense_split(config)


def test_a_rerun_reuses_the_finished_searches(tiny_run, capsys):
    root, config, out = tiny_run
    again = minilm_tasder.minilm_tasder(config, str(root / "run"))
    assert again["rows"] == json.loads(json.dumps(out["rows"]))
    assert "[search_ttc_vegeta_m8] done earlier" in capsys.readouterr().out


def test_missing_wordnet_or_checkpoint_fails_before_any_work(tmp_path, tiny_run):
    _, config, _ = tiny_run
    bad = config.copy_and_resolve_references()
    bad.wordnet_dir = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="apt-get install wordnet-base"):
        minilm_tasder.minilm_tasder(bad, str(tmp_path / "run"))
    bad = config.copy_and_resolve_references()
    bad.checkpoint = str(tmp_path / "no_checkpoint")
    with pytest.raises(ConfigError, match="no_checkpoint"):
        minilm_tasder.minilm_tasder(bad, str(tmp_path / "run"))
    bad = config.copy_and_resolve_references()
    bad.supersense.train_sentences = 1000  # the tiny database holds a few dozen
    with pytest.raises(ConfigError, match=r"fewer than supersense.train_sentences \+ "
                                          r"supersense.test_sentences = 1008"):
        minilm_tasder.minilm_tasder(bad, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("field, value, message", [
    ("num_sentences", 0, "config.num_sentences=0 must be an integer >= 1"),
    ("max_length", 1, "config.max_length=1 must be an integer >= 2"),
    ("budget", 1.5, "config.budget=1.5: a budget must lie in (0, 1]"),
    ("hardware", ("ttc_vegeta_m16",), "config.hardware='ttc_vegeta_m16' is not a known"),
    ("hardware", (), "config.hardware is empty"),
    ("batch", 0, "config.batch=0 must be an integer >= 1"),
    ("searches", (("greedy", "gelu", "agreement"),),
     "config.searches[0]=('greedy', 'gelu', 'agreement') must be (mode, layers, quality)"),
    ("searches", (("ours", "gelu"),), "config.searches[0]=('ours', 'gelu') must be"),
    ("searches", (("ours", "gelu", "accuracy"),), "quality one of ('agreement', 'supersense')"),
    ("supersense.test_sentences", 0, "config.supersense.test_sentences=0 must be an integer"),
])
def test_bad_settings_are_refused(tmp_path, field, value, message):
    config = minilm_config.get_config()
    *parents, name = field.split(".")
    holder = config
    for parent in parents:
        holder = holder[parent]
    holder[name] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        minilm_tasder.minilm_tasder(config, str(tmp_path / "run"))
