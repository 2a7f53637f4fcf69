"""Stages of a composite experiment (the quick start, the reproductions).

A stage is one experiment function `(config, folder) -> dict` run into its own
folder under the workdir. It runs once: `stage.json`, written atomically after
the stage finishes, holds the config it ran with and its result, and a rerun
returns that result instead of running again. A rerun whose config differs is
refused, so one folder never mixes two configs. A stage killed part-way leaves
no `stage.json` and runs again; the training stages resume from their last
checkpoint (`experiments.train`), the others are short and start over.

Each stage prints one progress line when it starts and one when it ends.
"""

import os
import time
from typing import Any, Callable

import ml_collections

from experiments import outputs
from experiments import resume
from experiments.errors import ConfigError

STAGE_FILE = "stage.json"


def run_stage(
    name: str,
    workdir: str,
    config: ml_collections.ConfigDict,
    fn: Callable[[ml_collections.ConfigDict, str], Any],
) -> Any:
    """`fn(config, workdir/name)`, or the result it returned there before with this config.

    Raises:
      ConfigError: the folder holds this stage run with a different config.
    """
    folder = os.path.join(workdir, name)
    record_path = os.path.join(folder, STAGE_FILE)
    settings = resume.run_config(config)
    if os.path.exists(record_path):
        record = outputs.read_json(record_path)
        changes = resume.changed_fields(record["config"], settings)
        if changes:
            listed = ", ".join(f"{path} {a!r} -> {b!r}" for path, (a, b) in changes.items())
            raise ConfigError(
                f"stage {name!r} in {folder!r} ran with a different config ({listed}); "
                "use a new --workdir, or delete that folder to run the stage again"
            )
        print(f"[{name}] done earlier ({record['seconds']:.0f} s): reusing {folder}", flush=True)
        return record["result"]
    print(f"[{name}] running into {folder}", flush=True)
    start = time.perf_counter()
    result = fn(config, folder)
    seconds = time.perf_counter() - start
    outputs.write_json(record_path, {"config": settings, "seconds": seconds, "result": result})
    print(f"[{name}] done in {seconds:.0f} s", flush=True)
    return result


def export_of(workdir: str, name: str) -> str:
    """The absolute path of the export a training stage `name` wrote under `workdir`."""
    return os.path.abspath(os.path.join(workdir, name, "export"))


def training_config(section: ml_collections.ConfigDict, *, data_dir: str | None, seed: int,
                    init_from: str | None = None) -> ml_collections.ConfigDict:
    """A copy of a training config section with the composite experiment's data
    folder and seed, starting from `init_from` (an export) when given."""
    out = section.copy_and_resolve_references()
    with out.unlocked():
        out.data_dir, out.seed = data_dir, seed
        if init_from:
            out.init_from = init_from
    return out
