r"""A trained tile-wise model run through the packed TW kernels: accuracy and forward speed.

    python -m experiments.run --config=configs/tw_kernels_digits.py --workdir=/tmp/tw_kernels
    python -m experiments.run --config=configs/tw_kernels_digits.py --workdir=/tmp/tw_kernels \
        --config.init_from=/tmp/tw_digits/export

Without `init_from` the quick-start run (configs/tw_digits.py: the digits MLP
pruned to TW-75%, G = 32) is trained first into WORKDIR/train. The export's
tile-wise-pruned kernels are packed (`kernels.pack_tw_params`, tile width from
its pruning rule) and the model runs with `kernels.TWDense`; test accuracy is
measured for the packed and the masked-dense model in one pass, and the
jitted forward of `timing_batch` examples is timed for both, interleaved.
"""

import ml_collections
from ml_collections import config_dict

from configs import tw_digits


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "tw_kernels"
    config.init_from = config_dict.placeholder(str)
    config.train = tw_digits.get_config()  # trained into WORKDIR/train without init_from
    config.data_dir = config_dict.placeholder(str)
    config.eval_batch_size = 128
    config.timing_batch = 4096  # test images repeated to this many rows
    config.reps = 21
    return config
