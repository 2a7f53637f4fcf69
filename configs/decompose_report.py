r"""TASD decomposition report: how well each series approximates a model's weights.

  python -m experiments.run --config=configs/decompose_report.py --workdir=/tmp/decompose
  python -m experiments.run --config=configs/decompose_report.py --workdir=/tmp/decompose_tw \
      --config.init_from=/tmp/tw_digits/export
  python -m experiments.run --config=configs/decompose_report.py \
      --config.prune='ew(sparsity=0.9)' --workdir=/tmp/decompose90

Without `init_from`: random-init ResNet-50 weights, each kernel magnitude-pruned
to each of `sparsities` (shapes-only: no trained model behind them). With
`init_from` (a training run's export/): that model's weights as they are, so a
TW-75% export is reported at its own per-layer sparsity. `prune` re-prunes
either once with a pattern spec. Every kernel `rule` selects is decomposed along
its contraction axis into each series of `series`.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "decompose_report"
    config.init_from = config_dict.placeholder(str)
    config.model = "resnet50"
    config.model_kwargs = ml_collections.ConfigDict()
    config.input_shapes = ((1, 224, 224, 3),)
    config.seed = 0
    config.sparsities = (0.75,)
    config.prune = config_dict.placeholder(str)
    config.rule = r"kernel$"  # conv and dense kernels; biases and BN stay dense
    config.series = ("1:4", "2:4", "2:8", "1:8+1:8", "2:8+1:8", "2:4+1:8", "2:4+2:8", "3:4")
    return config
