r"""Runs one experiment: `python -m experiments.run --config=configs/NAME.py --workdir=DIR`.

Every config names its experiment in `config.experiment`; the experiment is a
function `(config, workdir) -> dict` in the library, looked up in `EXPERIMENTS`.
Fields are overridden on the command line with `--config.field=value`, and a
config that takes a variant is chosen with `--config=configs/NAME.py:variant`.
"""

import importlib
from typing import Any, Callable

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

# Experiment name -> "module:function". Imported lazily so that one experiment's
# dependencies never slow down or break another's start.
EXPERIMENTS = {
    "decompose_report": "tasd_jax.reports:decompose_report",
    "edp": "tasd_jax.cost.report:edp_report",
    "train": "tasd_jax.train:train_and_evaluate",
    "sweep": "tasd_jax.sweep:sweep",
}

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to an ml_collections config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for every output of the run.")


def experiment_fn(name: str) -> Callable[[Any, str], Any]:
    """Returns the experiment function registered under `name`."""
    if name not in EXPERIMENTS:
        raise ValueError(
            f"config.experiment={name!r} is not a known experiment; known: {sorted(EXPERIMENTS)}"
        )
    module_name, fn_name = EXPERIMENTS[name].split(":")
    return getattr(importlib.import_module(module_name), fn_name)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    if "experiment" not in config:
        raise ValueError("the config has no `experiment` field naming what to run")
    logging.info("Running %s in %s", config.experiment, _WORKDIR.value)
    experiment_fn(config.experiment)(config, _WORKDIR.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
