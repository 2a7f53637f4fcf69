"""Reading a training run's export for a driver: the `init_from` errors and the run's accuracy.

`tasd_jax.export.load_export` knows the files of an export; a driver also
knows where they came from: a training run (`python -m experiments.run
--config=configs/<train config> --workdir=WORKDIR`) writes WORKDIR/export and,
beside it, WORKDIR/results.json with the run's test accuracy.
"""

import os

from experiments import outputs
from tasd_jax import export as export_lib

RESULTS_FILE = "results.json"


def run_test_accuracy(export_dir: str) -> float | None:
    """`final.test_accuracy` of the results.json beside `export_dir`, or None when
    there is none (an export written by something other than a training run)."""
    results = os.path.join(os.path.dirname(os.path.abspath(export_dir)), RESULTS_FILE)
    if not os.path.exists(results):
        return None
    return outputs.read_json(results).get("final", {}).get("test_accuracy")


def load_export(export_dir: str, field: str = "init_from") -> export_lib.Export:
    """The export in `export_dir` (named by the config's `field`), with the test
    accuracy of the run that wrote it.

    Raises:
      ValueError: `export_dir` is not an export, naming the field and what writes one.
    """
    try:
        export = export_lib.load_export(export_dir)
    except ValueError as err:
        raise ValueError(
            f"{field}={export_dir!r}: {err}; a training run writes one into WORKDIR/export "
            "(python -m experiments.run --config=configs/<train config> --workdir=WORKDIR)"
        ) from err
    return export._replace(test_accuracy=run_test_accuracy(export_dir))
