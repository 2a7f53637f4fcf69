r"""Quick start: the whole pipeline on scikit-learn's digits (no download), in one command.

    python -m experiments.run --config=configs/quickstart.py --workdir=workdir/quickstart

Stages, each into its own folder of the workdir (a rerun reuses the stages
already done; an interrupted training stage resumes from its last checkpoint):

  dense         the MLP (64 -> 256 -> 128 -> 10) trained dense (`dense`)
  tw            that export pruned gradually (cubic schedule, one global
                threshold) to tile-wise tw2 75% on both hidden kernels (G = 32),
                then fine-tuned (`tw`)
  tasder_dense  TASDER on `tasder.hardware` (TTC-VEGETA-M8) for the dense model,
  tasder_tw     and for the TW model: series for the weights and for the input
                activations of the hidden layers, keeping 99% of the model's
                own test accuracy, plus the EDP-accuracy frontier (`tasder`)
  edp_dense     the EDP of each export on every accelerator of the cost model,
  edp_tw        dense, 2:4 and the per-layer series (`edp`)
  tw_kernels    the TW model packed for the TW kernels: test accuracy and the
                CPU forward speed against the masked-dense model (`tw_kernels`)

and writes WORKDIR/report.md: what ran, each stage's figures, the plots.
Every field can be overridden, e.g. `--config.tw.pruning.rules=...` or
`--config.tasder.hardware=ttc_stc_m4`.
"""

import ml_collections
from ml_collections import config_dict

from configs import edp_resnet50
from configs import tw_digits
from configs import tw_kernels_digits


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "quickstart"
    config.data_dir = config_dict.placeholder(str)  # None: tfds' default data dir
    config.seed = 0

    # Dense training: the digits MLP of configs/tw_digits.py, no pruning rule.
    config.dense = tw_digits.get_config()
    config.dense.num_steps = 600
    config.dense.pruning.rules = ()
    config.dense.eval_every = 200
    config.dense.checkpoint_every = 200

    # Tile-wise: starts from the dense export (set at run time), prunes along the
    # cubic schedule over the first 500 steps and fine-tunes for the last 500 as
    # the cosine schedule decays the rate.
    config.tw = tw_digits.get_config()
    config.tw.num_steps = 1000
    config.tw.pruning.begin = 0
    config.tw.pruning.end = 500
    config.tw.eval_every = 250
    config.tw.checkpoint_every = 250

    # TASDER: the fields of configs/tasder.py without its training section.
    config.tasder = ml_collections.ConfigDict()
    config.tasder.hardware = "ttc_vegeta_m8"
    config.tasder.budget = 0.99
    config.tasder.mode = "ours"  # network | paper | ours (all three are reported)
    config.tasder.operands = "both"
    config.tasder.batch = 1  # examples per forward pass the EDP is computed for
    config.tasder.calibration_examples = 512
    config.tasder.eval_batch_size = 100
    config.tasder.frontier_budgets = (0.999, 0.99, 0.98, 0.95)

    # EDP on every accelerator (configs/edp_resnet50.py's designs and series).
    edp = edp_resnet50.get_config()
    config.edp = ml_collections.ConfigDict()
    for field in ("hardware", "series", "energy", "min_kept_l1", "activation_density"):
        config.edp[field] = edp[field]

    # The TW kernels (configs/tw_kernels_digits.py's timing settings).
    kernels = tw_kernels_digits.get_config()
    config.tw_kernels = ml_collections.ConfigDict()
    for field in ("eval_batch_size", "timing_batch", "reps"):
        config.tw_kernels[field] = kernels[field]
    return config
