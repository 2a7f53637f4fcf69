"""Exports: the trained weights one pipeline stage hands to the next.

A training run ends by writing `WORKDIR/export/`:

* `params.npz` (and `batch_stats.npz` for BatchNorm models): one array per
  leaf, keyed by the '/'-joined parameter path (`tree_paths.flatten`);
* `model.json`: what is needed to rebuild the model without the training
  config: `model` (a `tasd_jax.models` name), `model_kwargs` (its fields,
  `num_classes` included), `input_shape` (one example batch, e.g.
  [1, 28, 28, 1]), `input_dtype`, `dataset`, and `pruning_rules` (the
  `(path regex, spec)` rules the weights were pruned with; [] for dense).

`load_export` is the one reader: training starts from an export, the
decomposition and EDP reports measure one, and the kernels pack one. An
export holds no accuracy; whoever knows the accuracy of the run that wrote it
puts it in `Export.test_accuracy`, so every report can say which weights it
used.
"""

import json
import os
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np

from tasd_jax import files, tree_paths

MODEL_FILE = "model.json"
COLLECTIONS = ("params", "batch_stats")


class Export(NamedTuple):
    """Weights and model description read from an export directory.

    Attributes:
      path: the export directory.
      model: the `tasd_jax.models` name.
      model_kwargs: the model's fields (num_classes included).
      input_shape: shape of one example batch the model was initialised on.
      input_dtype: its dtype name ("float32" images, "int32" token ids).
      dataset: the data set it was trained on.
      pruning_rules: ((path regex, spec), ...) it was pruned with; () if dense.
      variables: {"params": flat {path: array}, "batch_stats": ...}, flat dicts
        keyed by '/'-joined path (`tree_paths.unflatten` rebuilds a tree).
      test_accuracy: the test accuracy of the run that wrote it, when its
        reader knows it (`load_export` leaves it None).
    """

    path: str
    model: str
    model_kwargs: dict
    input_shape: tuple[int, ...]
    input_dtype: str
    dataset: str | None
    pruning_rules: tuple[tuple[str, str], ...]
    variables: dict[str, dict[str, np.ndarray]]
    test_accuracy: float | None = None

    def describe(self) -> dict[str, Any]:
        """What a report says about these weights (JSON-able)."""
        return {
            "source": "export",
            "path": os.path.abspath(self.path),
            "model": self.model,
            "dataset": self.dataset,
            "pruning_rules": [list(r) for r in self.pruning_rules],
            "test_accuracy": self.test_accuracy,
        }

    def variables_like(self, like: Mapping[str, Any]) -> dict[str, Any]:
        """The exported variables as trees shaped like `like` (e.g. a model's init).

        Raises:
          ValueError: a collection or a leaf of `like` is missing from the
            export, or a shape differs.
        """
        out = {}
        for name, tree in like.items():
            flat = self.variables.get(name)
            if flat is None:
                raise ValueError(f"export {self.path!r} has no {name}.npz, the model needs one")
            want = {k: tuple(np.shape(v)) for k, v in tree_paths.flatten(tree).items()}
            got = {k: tuple(v.shape) for k, v in flat.items()}
            if want != got:
                diff = sorted(set(want.items()) ^ set(got.items()))[:6]
                raise ValueError(
                    f"export {self.path!r} does not fit the model {self.model!r}: "
                    f"{name} leaves differ (path, shape) e.g. {diff}"
                )
            out[name] = tree_paths.unflatten(flat, like=tree)
        return out


def save_export(
    export_dir: str,
    variables: Mapping[str, Any],
    *,
    model: str,
    model_kwargs: Mapping[str, Any],
    input_shape: tuple[int, ...],
    input_dtype: str,
    dataset: str | None,
    pruning_rules: tuple = (),
) -> None:
    """Writes `variables` ({"params": tree, "batch_stats": tree}) and model.json."""
    os.makedirs(export_dir, exist_ok=True)
    for name in COLLECTIONS:
        flat = {
            k: np.asarray(jax.device_get(v))
            for k, v in tree_paths.flatten(variables.get(name, {})).items()
        }
        if flat:
            with files.atomic_open(os.path.join(export_dir, f"{name}.npz"), "wb") as f:
                np.savez(f, **flat)
    meta = {
        "model": model,
        "model_kwargs": dict(model_kwargs),
        "input_shape": [int(d) for d in input_shape],
        "input_dtype": str(input_dtype),
        "dataset": dataset,
        "pruning_rules": [[str(r[0]), str(r[1])] for r in pruning_rules],
    }
    files.write_json_atomic(os.path.join(export_dir, MODEL_FILE), meta)


def load_export(export_dir: str) -> Export:
    """Reads an export directory written by a training run (see the module doc).

    Raises:
      ValueError: `export_dir` is not an export (no such directory, no
        params.npz or no model.json).
    """
    if not os.path.isdir(export_dir):
        raise ValueError(f"{export_dir!r} is not a directory (expected a training run's export/)")
    meta_path = os.path.join(export_dir, MODEL_FILE)
    if not os.path.exists(os.path.join(export_dir, "params.npz")) or not os.path.exists(meta_path):
        raise ValueError(
            f"{export_dir!r} is not an export: it needs params.npz and {MODEL_FILE} "
            "(`save_export` writes both)"
        )
    with open(meta_path) as f:
        meta = json.load(f)
    variables = {}
    for name in COLLECTIONS:
        path = os.path.join(export_dir, f"{name}.npz")
        if os.path.exists(path):
            with np.load(path) as data:
                variables[name] = {k: data[k] for k in data.files}
    return Export(
        path=export_dir,
        model=meta["model"],
        model_kwargs={k: _tuples(v) for k, v in meta["model_kwargs"].items()},
        input_shape=tuple(meta["input_shape"]),
        input_dtype=meta["input_dtype"],
        dataset=meta.get("dataset"),
        pruning_rules=tuple(tuple(r) for r in meta.get("pruning_rules", [])),
        variables=variables,
    )


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples model fields were given as (hidden=(256, 128))."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value

