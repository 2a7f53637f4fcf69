r"""Quick start: dense training, then gradual tile-wise (tw2) pruning to 75% on digits.

    python -m experiments.run --config=configs/tw_digits.py --workdir=/tmp/tw_digits

The MLP (64 -> 256 -> 128 -> 10) trains dense for `pruning.begin` steps; the
dense test accuracy is recorded then (results.json: final.dense_test_accuracy).
Its two hidden kernels are then pruned to tw2 75% along a cubic schedule
(Zhu & Gupta; a mask update every `frequency` steps) with one global threshold
across both layers, as in the TW paper, and fine-tuned to the end. The head
(128 x 10, 1% of the weights) stays dense, as the paper keeps the classifier.

Tile width G: the TW paper's G = 128 is one GPU threadblock tile of output
columns. Here the hidden kernels have only 256 and 128 columns, and tw2 first
removes about half of them (per-dimension rate 1 - sqrt(1 - 0.75) = 50%), so
G = 128 would leave a single tile per layer (plain row + column pruning, no
tile freedom). G = 32 gives 4 and 2 tiles of kept columns, each free to keep
its own K-rows, while staying a realistic SIMD/tile width on a CPU.

Every field can be overridden, e.g. `--config.num_steps=1200`
`--config.pruning.rules='(("dense_[01]/kernel$", "tw(sparsity=0.9,g=32)"),)'`.

The same run as two processes on one machine (docs/distributed.md), each started with

    python -m experiments.run --config=configs/tw_digits.py --workdir=/tmp/tw_digits_2p \
        --config.distributed.num_processes=2 --config.distributed.process_id=ID \
        --config.distributed.coordinator=127.0.0.1:12355

with ID 0 in one shell and 1 in another.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "train"
    config.seed = 0

    # Data: scikit-learn's digits as a tfds data set (prepared on first use).
    config.dataset = "sklearn_digits"
    config.data_dir = config_dict.placeholder(str)  # None: tfds' default data dir
    config.eval_split = "test"
    config.input = "image"  # image | tokens (pre-tokenized text, see configs/tw_bert.py)
    config.image_size = config_dict.placeholder(int)  # only for data sets whose images vary in size
    config.augment = False
    config.batch_size = 64
    config.eval_batch_size = 128

    config.model = "mlp"
    config.model_kwargs = ml_collections.ConfigDict({"hidden": (256, 128)})
    config.init_from = config_dict.placeholder(str)  # an `export/` dir of an earlier run to start from

    # Optimizer: SGD with momentum; cosine decay over the whole run leaves a
    # small learning rate for the last fine-tuning steps.
    config.optimizer = "momentum"  # sgd | momentum | adam | adamw
    config.learning_rate = 0.05
    config.lr_schedule = "cosine"  # constant | cosine | warmup_cosine | linear
    config.warmup_steps = 0
    config.momentum = 0.9
    config.nesterov = False
    config.weight_decay = 1e-4
    config.num_steps = 1500  # None: derived from a staged schedule

    config.pruning = ml_collections.ConfigDict()
    # (path regex on the params tree, pattern spec[, axis]); first match wins.
    config.pruning.rules = (("dense_[01]/kernel$", "tw(sparsity=0.75,g=32)"),)
    config.pruning.schedule = "cubic"  # one_shot | staged | cubic
    config.pruning.begin = 500
    config.pruning.end = 1000
    config.pruning.frequency = 50
    config.pruning.stages = ""  # staged only: "tw_vgg16", "tw_bert" or e.g. "0.5,0.7,0.8"
    config.pruning.steps_per_stage = 0  # staged only
    config.pruning.mask_delay = 0  # staged only
    config.pruning.score = "magnitude"  # magnitude | taylor | taylor_squared
    config.pruning.taylor_steps = 1
    config.pruning.global_threshold = True

    config.log_every = 100
    config.eval_every = 250
    config.checkpoint_every = 250
    config.keep_checkpoints = 2

    # JAX's multi-process runtime (docs/distributed.md): N processes, each with its own
    # process_id, train one run together; batch sizes are global. Unset fields are read
    # by jax.distributed.initialize from the environment (JAX_COORDINATOR_ADDRESS, SLURM,
    # Open MPI, ...). How a run is split into processes is not part of the run: these
    # fields are never stored with it, and a run resumes on any number of processes.
    config.distributed = ml_collections.ConfigDict()
    config.distributed.num_processes = 1  # 1: a single process, nothing is started
    config.distributed.process_id = config_dict.placeholder(int)  # 0 .. num_processes - 1
    config.distributed.coordinator = config_dict.placeholder(str)  # "host:port" of process 0
    return config
