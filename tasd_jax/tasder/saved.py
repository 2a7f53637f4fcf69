"""A TASDER result as an export: weights with their series applied, plus the activation choices.

`save` writes `DIR/export/` like a training run's export (the variables with
every chosen weight series applied, same keys, and model.json) plus
`DIR/export/tasder.json` ({module path: activation series}); `load(DIR)`
rebuilds the model that reaches the search's accuracy: the model's apply with
those layers' inputs decomposed, and its variables.
"""

import json
import os
from typing import Any, Callable

import jax
import numpy as np

from tasd_jax import export as export_lib
from tasd_jax import models
from tasd_jax.tasder import activations

CHOICE_FILE = "tasder.json"


def save(
    workdir: str, source: export_lib.Export, variables: Any, activation_series: dict[str, str]
) -> str:
    """Writes `workdir/export/`; returns its path.

    Args:
      workdir: the TASDER run's directory.
      source: the export the search started from (its model description is kept).
      variables: the variables with every chosen weight series applied.
      activation_series: {module path: series} of the decomposed inputs.
    """
    export_dir = os.path.join(workdir, "export")
    export_lib.save_export(
        export_dir, variables, model=source.model, model_kwargs=source.model_kwargs,
        input_shape=source.input_shape, input_dtype=source.input_dtype, dataset=source.dataset,
        pruning_rules=source.pruning_rules,
    )
    tmp = os.path.join(export_dir, CHOICE_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"activation_series": activation_series}, f, indent=2)
    os.replace(tmp, os.path.join(export_dir, CHOICE_FILE))
    return export_dir


def load(workdir: str) -> tuple[Callable[..., Any], dict[str, Any], export_lib.Export]:
    """(apply, variables, export) of a TASDER run: `apply(variables, images, train=False)`
    is the model with its chosen weight and activation series.

    Raises:
      ValueError: `workdir/export` is not a TASDER export.
    """
    export_dir = os.path.join(workdir, "export")
    export = export_lib.load_export(export_dir)
    choice_path = os.path.join(export_dir, CHOICE_FILE)
    if not os.path.exists(choice_path):
        raise ValueError(f"{export_dir!r} has no {CHOICE_FILE}: not written by a TASDER run")
    with open(choice_path) as f:
        series = json.load(f)["activation_series"]
    model, like = models.init_model(export.model, export.input_shape, seed=None, **export.model_kwargs)
    variables = jax.tree.map(np.asarray, export.variables_like(like))
    return activations.with_activation_series(model.apply, series=series), variables, export
