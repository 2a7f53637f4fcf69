r"""TASD decomposition report of a ResNet-50's magnitude-pruned weights.

  python -m experiments.run --config=configs/decompose_report.py --workdir=/tmp/decompose
  python -m experiments.run --config=configs/decompose_report.py \
      --config.prune='ew(sparsity=0.9)' --workdir=/tmp/decompose90

Random-init ResNet-50-shaped weights (until trained models exist), each layer
pruned by magnitude to `prune`, then decomposed along the contraction axis
into every series of `series`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "decompose_report"
    config.model = "resnet50"
    config.model_kwargs = ml_collections.ConfigDict()
    config.input_shape = (1, 224, 224, 3)
    config.seed = 0
    config.rule = r"kernel$"  # conv and dense kernels; biases and BN stay dense
    config.prune = "ew(sparsity=0.75)"
    config.series = ("1:4", "2:4", "2:8", "1:8+1:8", "2:8+1:8", "2:4+1:8", "2:4+2:8", "3:4")
    return config
