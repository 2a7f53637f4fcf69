"""TASD-A on a pretrained sentence encoder: the embedding-agreement metric, and the
experiment end to end on a tiny random BERT checkpoint and WordNet files written here."""

import json
import os

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
    """A data.noun of `count` synsets, each with one example of 4-6 tokenizer words."""
    rng = np.random.default_rng(0)
    lines = [LICENCE]
    for i in range(count):
        words = " ".join(rng.choice(WORDS[:-1], int(rng.integers(4, 7))))
        lines.append(f'{i:08d} {i % 20 + 3:02d} n 01 w 0 000 | gloss; "{words}"  \n')
    return "".join(lines)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("minilm_tasder")
    checkpoint = write_checkpoint(root / "ckpt", TINY_CONFIG, tiny_tensors(TINY_CONFIG))
    write_tokenizer(checkpoint)
    write_wordnet(root / "wordnet", nouns=_sentences(14))
    config = minilm_config.get_config()
    config.checkpoint, config.wordnet_dir = str(checkpoint), str(root / "wordnet")
    config.num_sentences, config.calibration_sentences, config.eval_batch_size = 8, 4, 4
    config.max_length, config.batch = 8, 2
    config.hardware = ("ttc_vegeta_m8",)
    out = minilm_tasder.minilm_tasder(config, str(root / "run"))
    return root, config, out


def test_every_search_keeps_the_budget_and_decomposes_only_its_layers(tiny_run):
    root, config, out = tiny_run
    rows = out["rows"]
    assert [(r["mode"], r["layers"]) for r in rows] == [tuple(s) for s in config.searches]
    for r in rows:
        assert r["baseline_agreement"] == pytest.approx(1.0, abs=1e-5)
        assert r["agreement"] >= config.budget * r["baseline_agreement"]
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
        assert f"{r['agreement']:.4f} | {r['relative_edp']:.3f}" in report


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
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("field, value, message", [
    ("num_sentences", 0, "config.num_sentences=0 must be an integer >= 1"),
    ("max_length", 1, "config.max_length=1 must be an integer >= 2"),
    ("budget", 1.5, "config.budget=1.5: a budget must lie in (0, 1]"),
    ("hardware", ("ttc_vegeta_m16",), "config.hardware='ttc_vegeta_m16' is not a known"),
    ("hardware", (), "config.hardware is empty"),
    ("batch", 0, "config.batch=0 must be an integer >= 1"),
    ("searches", (("greedy", "gelu"),), "config.searches[0]=('greedy', 'gelu') must be"),
])
def test_bad_settings_are_refused(tmp_path, field, value, message):
    config = minilm_config.get_config()
    config[field] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        minilm_tasder.minilm_tasder(config, str(tmp_path / "run"))
