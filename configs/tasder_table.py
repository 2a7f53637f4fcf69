r"""TASDER's modes side by side on every MNIST model of configs/mnist.py and every design.

    python -m experiments.run --config=configs/tasder_table.py --workdir=workdir/tasder_table
    python -m experiments.run --config=configs/tasder_table.py --workdir=workdir/tasder_table \
        --config.exports=workdir/mnist

One problem per model (`tasd_jax.tasder.Problem`: top-1 accuracy on the 1000
test digits, 512 training images to calibrate on, TASD-A layers from the
graph) serves every design: `network`, `paper` and `ours` on each, and
`exhaustive` where its combinations stay under `tasder.EXHAUSTIVE_LIMIT`.
With `exports` set, model NAME (the variant with "," as "_": `resnet_ew90`)
is read from EXPORTS/NAME/export; else it is trained into WORKDIR/NAME/train.
"""

import ml_collections
from ml_collections import config_dict

from configs import mnist

VARIANTS = ("lenet5", "lenet5,ew90", "vit", "vit,ew90", "resnet", "resnet,ew90", "resnet,tw75")


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "tasder_table"
    config.exports = config_dict.placeholder(str)
    config.models = ml_collections.ConfigDict(
        {v.replace(",", "_"): mnist.get_config(v) for v in VARIANTS})
    config.designs = ("dstc", "ttc_stc_m4", "ttc_stc_m8", "ttc_vegeta_m4", "ttc_vegeta_m8")
    config.data_dir = config_dict.placeholder(str)
    config.seed = 0
    config.budget = 0.99  # keep 99% of each model's own test accuracy
    config.operands = "both"
    config.batch = 1  # examples per forward pass the EDP is computed for
    config.calibration_examples = 512
    config.eval_batch_size = 100
    return config
