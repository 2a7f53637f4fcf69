r"""EDP of ResNet-50 (224x224, one image) on the TASD paper's accelerators.

    python -m experiments.run --config=configs/edp_resnet50.py --workdir=/tmp/edp_resnet50
    python -m experiments.run --config=configs/edp_resnet50.py --workdir=/tmp/edp_trained \
        --config.init_from=/tmp/tw_digits/export

Without `init_from` the weights are random-init ResNet-50 weights, magnitude-
pruned layer-wise to each of `sparsities` (shapes-only estimates); with it, the
export's trained model and weights as they are (its own input shape; `prune`
re-prunes them). The weights are decomposed into each series; each layer's
measured density feeds the cost model (docs/cost_model.md).
Writes per_layer.csv, totals.csv, results.json and edp_<workload>.png; prints
the dense / 2:4 / tasd EDP table. Tuples are overridden as strings, e.g.
`--config.sparsities='(0.5, 0.9)'`.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "edp"
    config.model = "resnet50"
    config.model_kwargs = ml_collections.ConfigDict()
    config.input_shapes = ((1, 224, 224, 3),)
    config.seed = 0
    # A training run's export/ to measure instead of random-init weights.
    config.init_from = config_dict.placeholder(str)
    # Random-init weights: each GEMM kernel magnitude-pruned to each sparsity.
    config.sparsities = (0.5, 0.75, 0.9, 0.95)
    # A pattern spec re-pruning the weights `rule` selects (either source), e.g. 'ew(sparsity=0.9)'.
    config.prune = config_dict.placeholder(str)
    config.rule = r"kernel$"  # conv and dense kernels; biases and BN stay dense
    # The TASD paper's six designs (docs/tasd.md#the-accelerators; "tc", the dense
    # tensor core, is the reference), then the prior structured-sparse hardware
    # that runs a series term after term (tasd_jax/cost/hardware.py).
    config.hardware = (
        "tc", "dstc", "ttc_stc_m4", "ttc_stc_m8", "ttc_vegeta_m4", "ttc_vegeta_m8",
        "stc", "vegeta", "vegeta_m8",
    )
    # Every candidate series of those designs (`Hardware.candidate_series`): dense,
    # then least compute first; each design runs the ones it supports. 3:4, 3:8, 5:8 and 6:8
    # are the two-term series 2:4+1:4, 2:8+1:8, 4:8+1:8 and 4:8+2:8.
    config.series = (
        "dense", "1:8", "1:4", "2:8", "2:8+1:8", "2:4", "4:8", "4:8+1:8", "2:4+1:4", "4:8+2:8",
    )
    config.energy = "sparseloop"  # each design's own table; or "horowitz45" everywhere
    # Fraction of non-zero activations (A operands) for every GEMM; 1.0 = no
    # activation sparsity assumed (post-ReLU ResNet activations are ~50% zero).
    config.activation_density = 1.0
    # The per-layer "tasd" choice keeps at least this share of each pruned
    # layer's L1 magnitude (stand-in for TASDER's 99%-accuracy budget).
    config.min_kept_l1 = 0.99
    return config
