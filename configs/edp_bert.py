r"""EDP of a BERT-base encoder (sequence 128 and 384) on the TASD paper's accelerators.

    python -m experiments.run --config=configs/edp_bert.py --workdir=/tmp/edp_bert

Same sweep as configs/edp_resnet50.py; the weights (random init, magnitude-
pruned layer-wise, decomposed) are shared by both sequence lengths.
"""

import ml_collections

from configs import edp_resnet50


def get_config() -> ml_collections.ConfigDict:
    config = edp_resnet50.get_config()
    config.model = "bert"
    config.input_shapes = ((1, 128), (1, 384))
    return config
