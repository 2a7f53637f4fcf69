r"""The TW paper's BERT-base recipe (docs/tile_wise.md): staged tile-wise pruning with Taylor scores.

    python -m experiments.run --config=configs/tw_bert.py --workdir=/tmp/tw_bert \
        --config.dataset=glue_sst2_bert128 --config.init_from=/path/to/finetuned_bert/export

Data: a pre-tokenized text-classification data set prepared as array_record in
the tfds data dir (`config.dataset`, read through tfds data sources; no
TensorFlow needed), with the features
    input_ids       int32 [128]  word-piece ids (BERT uncased vocabulary, 30522)
    token_type_ids  int32 [128]  segment ids (optional; zeros when absent)
    attention_mask  int32 [128]  1 for real tokens, 0 for padding (optional)
    label           ClassLabel   (num_classes is read from it)
and splits "train" and `config.eval_split` ("validation" for GLUE). Such a
builder is a few lines of `tfds.core.GeneratorBasedBuilder` around a tokenizer;
tests/test_train.py builds a tiny one. `init_from` is an `export/` directory
(params.npz keyed by '/'-joined path and model.json, see `tasd_jax.export`) of a
BERT-base fine-tuned on the task; without it the run starts from random
weights (only useful as a smoke test).

Recipe (the paper's BERT script): every encoder GEMM (q, k, v, attention
output, intermediate, output: 72 kernels of 768x768, 768x3072, 3072x768)
pruned tw2 with G = 128 and one global threshold; Taylor scores sum (g * w)^2
over the 100 steps before each mask update, which happens at step 100 of each
stage; stages 25, 35, 50, 55, 60, 65, 70, 75% (the paper's list cut at the
target; the paper continues to 95%), one epoch per stage (SST-2: 67349
examples / 32 = 2104 steps); Adam, lr 2e-5, batch 32, sequence 128. The
embeddings, pooler and classifier stay dense.
"""

import ml_collections

from configs import tw_digits

ENCODER_KERNELS = r"layer_[0-9]+/(attention/(query|key|value|out)|intermediate|output)/kernel$"


def get_config() -> ml_collections.ConfigDict:
    config = tw_digits.get_config()
    config.input = "tokens"
    config.dataset = "glue_sst2_bert128"
    config.eval_split = "validation"
    config.augment = False
    config.model = "bert"
    config.model_kwargs = ml_collections.ConfigDict(
        {"num_layers": 12, "hidden": 768, "num_heads": 12, "mlp_dim": 3072, "max_len": 512,
         "dropout_rate": 0.1}
    )
    config.batch_size = 32
    config.eval_batch_size = 32
    config.optimizer = "adam"
    config.learning_rate = 2e-5
    config.lr_schedule = "constant"
    config.weight_decay = 0.0

    target = 0.75
    steps_per_epoch = 67349 // config.batch_size  # SST-2 train examples
    config.pruning.rules = ((ENCODER_KERNELS, f"tw(sparsity={target},g=128)"),)
    config.pruning.schedule = "staged"
    config.pruning.stages = "tw_bert"  # the paper's list, cut at the target sparsity
    config.pruning.steps_per_stage = steps_per_epoch
    config.pruning.begin = 0
    config.pruning.mask_delay = 100
    config.pruning.score = "taylor_squared"
    config.pruning.taylor_steps = 100
    config.pruning.global_threshold = True
    config.num_steps = None  # derived: pruning.begin + stages x steps_per_stage

    config.log_every = 100
    config.eval_every = steps_per_epoch
    config.checkpoint_every = 1000
    config.keep_checkpoints = 2
    return config
