"""A search result on disk, for any model: the chosen series, the weights they give,
the metric and the EDP.

`save(directory, problem, result)` writes

* `tasder_result.json`: the choice ({layer: series} for weights and
  activations), metric, baseline, budget, relative EDP, hardware, batch, mode,
  operand, search seconds and evaluations, plus any `extra` fields;
* `variables.npz`: every variable with the chosen weight series applied, one
  array per leaf keyed "collection/path" (`tree_paths.flatten`).

`load(directory)` reads both back as a `Saved`; `apply_choice(apply_fn,
choice)` is the model with the chosen activation series, so
`apply_choice(model.apply, saved.choice)(saved.variables, inputs)` is the
model the search measured. No model registry is involved: the caller brings
its own `apply_fn`.
"""

import json
import os
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from tasd_jax import files, tree_paths
from tasd_jax.tasder import activations
from tasd_jax.tasder.problem import Choice, Problem
from tasd_jax.tasder.searches import Result

RESULT_FILE = "tasder_result.json"
VARIABLES_FILE = "variables.npz"


class Saved(NamedTuple):
    """A result read back: `result` (a `searches.Result`), `variables` (nested dicts of
    numpy arrays, the chosen weight series applied) and `extra` (the caller's fields).

    Each array of `variables` has the shape of the model's leaf (a Dense kernel
    [in, out], a Conv kernel [kh, kw, in, out]); `choice` is `result.choice`.

    Example:
      >>> saved = load("runs/resnet20")
      >>> saved.result.relative_edp, saved.choice.weights, saved.extra
      >>> logits = apply_choice(model.apply, saved.choice)(saved.variables, images)
    """

    result: Result
    variables: dict[str, Any]
    extra: dict[str, Any]

    @property
    def choice(self) -> Choice:
        return self.result.choice


def save(directory: str, problem: Problem, result: Result, extra: dict | None = None) -> str:
    """Writes the result and its variables into `directory` (created); returns it.

    Args:
      directory: where `tasder_result.json` and `variables.npz` go (module docstring).
      problem: the `Problem` searched: it gives the variables for `result.choice`.
      result: the `search` result to keep.
      extra: JSON-serialisable fields stored with it (`Saved.extra`).

    Example:
      >>> result = search(problem, hardware="ttc_vegeta_m8", budget=0.99)
      >>> save("runs/resnet20", problem, result, extra={"model": "resnet20"})
    """
    os.makedirs(directory, exist_ok=True)
    flat = {k: np.asarray(jax.device_get(v))
            for k, v in tree_paths.flatten(problem.variables_for(result.choice)).items()}
    with files.atomic_open(os.path.join(directory, VARIABLES_FILE), "wb") as f:
        np.savez(f, **flat)
    record = {**result._asdict(), "choice": result.choice._asdict(), "extra": extra or {}}
    files.write_json_atomic(os.path.join(directory, RESULT_FILE), record)
    return directory


def load(directory: str) -> Saved:
    """Reads what `save` wrote.

    Returns:
      A `Saved`: the result, the variables (nested dicts of numpy arrays, each of
      its leaf's original shape) and the extra fields.

    Raises:
      ValueError: `directory` holds no saved result.

    Example:
      >>> saved = load("runs/resnet20")
      >>> saved.result.metric, saved.choice.activations
    """
    path = os.path.join(directory, RESULT_FILE)
    if not os.path.exists(path) or not os.path.exists(os.path.join(directory, VARIABLES_FILE)):
        raise ValueError(f"{directory!r} holds no TASDER result ({RESULT_FILE} and "
                         f"{VARIABLES_FILE}, written by tasder.save)")
    with open(path) as f:
        record = json.load(f)
    extra = record.pop("extra", {})
    record["choice"] = Choice(**record["choice"])
    with np.load(os.path.join(directory, VARIABLES_FILE)) as data:
        flat = {k: data[k] for k in data.files}
    return Saved(Result(**record), _nest(flat), extra)


def _nest(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    """{"a/b/c": x} -> {"a": {"b": {"c": x}}} (the inverse of `tree_paths.flatten` on
    nested dicts, which is what flax variables are)."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        *parents, leaf = path.split("/")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


def apply_choice(apply_fn: Callable[[Any, Any], Any], choice: Choice) -> Callable[[Any, Any], Any]:
    """`apply_fn` with the choice's activation series applied (weights are in the
    variables: pass `Saved.variables` or `problem.variables_for(choice)`).

    Returns:
      A function with `apply_fn`'s signature (`apply_fn` itself when every
      activation is dense); each chosen layer's input [..., K] is decomposed
      along its last axis K and keeps its shape.

    Example:
      >>> saved = load("runs/resnet20")
      >>> logits = apply_choice(model.apply, saved.choice)(saved.variables, images)  # [B, classes]
    """
    series = {p: s for p, s in choice.activations.items() if s != "dense"}
    return activations.with_activation_series(apply_fn, series=series) if series else apply_fn
