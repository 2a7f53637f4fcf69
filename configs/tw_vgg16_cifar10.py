r"""The TW paper's VGG16 recipe (docs/tile_wise.md) on CIFAR-10: staged tile-wise pruning.

Two steps, each a `train` run (`--config=FILE:VARIANT`):

    # 1. dense VGG16 (BatchNorm, CIFAR variant) from scratch, with crop+flip augmentation
    python -m experiments.run --config=configs/tw_vgg16_cifar10.py:dense --workdir=/tmp/vgg16_dense
    # 2. staged tw2 pruning of the 13 conv layers from the dense weights
    python -m experiments.run --config=configs/tw_vgg16_cifar10.py:prune --workdir=/tmp/vgg16_tw \
        --config.init_from=/tmp/vgg16_dense/export

CIFAR-10 must be prepared as array_record in the tfds data dir first (no
TensorFlow needed to read it; see docs/guide/models_and_data.md, "Data").

Step 2 follows the paper's VGG16 script: the 13 conv kernels (GEMM view
[3*3*Cin, Cout]) pruned by magnitude with one global threshold, tw2 with
G = 128, stages 25, 40, 50, 60, 65, 70, 75% (the paper's list, cut at the
target; raise it with e.g. `--config.pruning.rules='(("conv_[0-9]+/kernel$",
"tw(sparsity=0.9,g=128)"),)'` to continue to 80, 85, 90%; the step budget,
stages x steps_per_stage, follows from the target), SGD momentum 0.9, lr 1e-4, weight
decay 1e-4, batch 128, 5000 fine-tune steps per stage. The paper repeats
5000-step rounds until top-5 accuracy recovers (ImageNet); here every stage
gets a fixed `steps_per_stage`. The classifier head stays dense.
"""

import ml_collections

from configs import tw_digits


VARIANTS = ("dense", "prune")  # as `python -m experiments.run --list` shows them


def get_config(variant: str = "prune") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} of tw_vgg16_cifar10 must be 'dense' or 'prune'")
    config = tw_digits.get_config()
    config.dataset = "cifar10"
    config.model = "vgg16"
    config.model_kwargs = ml_collections.ConfigDict({"variant": "cifar"})
    config.augment = True
    config.batch_size = 128
    config.eval_batch_size = 200  # 10000 test images: 50 batches, divisible by 1, 2, 4, 8 devices
    config.optimizer = "momentum"
    config.momentum = 0.9
    config.log_every = 200
    config.eval_every = 5000
    config.checkpoint_every = 1000
    config.keep_checkpoints = 3
    if variant == "dense":
        config.learning_rate = 0.05
        config.lr_schedule = "cosine"
        config.weight_decay = 5e-4
        config.num_steps = 78_000  # 200 epochs of 50000 images
        config.pruning.rules = ()
        return config

    target = 0.75
    config.learning_rate = 1e-4
    config.lr_schedule = "constant"
    config.weight_decay = 1e-4
    config.pruning.rules = (("conv_[0-9]+/kernel$", f"tw(sparsity={target},g=128)"),)
    config.pruning.schedule = "staged"
    config.pruning.stages = "tw_vgg16"  # the paper's list, cut at the rules' target sparsity
    config.pruning.steps_per_stage = 5000
    config.pruning.begin = 0
    config.pruning.mask_delay = 0
    config.pruning.score = "magnitude"
    config.pruning.global_threshold = True
    config.num_steps = None  # derived: pruning.begin + stages x steps_per_stage
    return config
