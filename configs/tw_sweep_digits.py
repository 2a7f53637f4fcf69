r"""Accuracy against sparsity on digits: dense, EW, VW, BW, TW, TEW at 50/75/90%.

    python -m experiments.run --config=configs/tw_sweep_digits.py --workdir=/tmp/tw_sweep

The TW paper's pattern comparison (docs/tile_wise.md) on the quick-start MLP: one
dense model (`workdir/dense`), then for every pattern and sparsity a run that
starts from its weights, prunes the two hidden kernels along a cubic schedule
with one global threshold, and fine-tunes. Writes `sweep.csv` and `sweep.png`.

Granularities are scaled to the small layers (64 x 256 and 256 x 128):
VW keeps the TW paper's 16-long K-vectors, BW uses 16 x 16 blocks (the
paper's 32 x 32 would leave only 16 and 32 blocks per layer), TW/TEW use
G = 32 as in configs/tw_digits.py, TEW adds back delta = 5% (the paper's 1-D
choice).
"""

import ml_collections

from configs import tw_digits


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "sweep"
    config.base = tw_digits.get_config()
    config.base.pruning.begin = 0
    config.base.pruning.end = 400
    config.base.pruning.frequency = 50
    config.base.log_every = 200
    config.base.eval_every = 200
    config.base.checkpoint_every = 200
    config.dense_steps = 600
    config.finetune_steps = 800
    config.finetune_learning_rate = 0.02
    config.rule = "dense_[01]/kernel$"
    config.sparsities = (0.5, 0.75, 0.9)
    config.variants = (
        ("EW", "ew(sparsity={sparsity})"),
        ("VW", "vw(sparsity={sparsity},v=16)"),
        ("BW", "bw(sparsity={sparsity},block=16x16)"),
        ("TW", "tw(sparsity={sparsity},g=32)"),
        ("TEW", "tew(sparsity={sparsity},g=32,delta=0.05)"),
    )
    return config
