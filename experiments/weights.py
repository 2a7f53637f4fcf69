"""Which weights a report looks at: a training run's export, or random init.

Every experiment that measures weights (decomposition report, EDP report)
takes `config.init_from`, an `export/` directory of a training run: the model
is rebuilt from the export's description and its weights are used as they
are, with their own zeros. Without it the weights are the model's random
initialisation (`config.model`, `config.model_kwargs`, `config.input_shapes`,
`config.seed`), magnitude-pruned per layer to each of `config.sparsities`
(shapes-only estimates: no trained model behind them). In both cases
`config.prune` (a pattern spec) re-prunes the weights selected by
`config.rule` once by magnitude instead, and the outputs name it.
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from experiments import exports
from tasd_jax import models
from tasd_jax import patterns
from tasd_jax import pruning
from tasd_jax import tree_paths


class Weights(NamedTuple):
    """One set of weights a report measures.

    Attributes:
      label: a short name ("as exported", "ew(sparsity=0.75)", ...).
      model_name: the `tasd_jax.models` name.
      model: the flax module.
      variables: {"params": tree, ...} arrays.
      input_shapes: the input shapes the report evaluates the model at.
      sparsity: measured fraction of zeros over the leaves `config.rule` selects.
      source: JSON-able description: export path and accuracy, or random init,
        and the pruning applied here (None if none).
    """

    label: str
    model_name: str
    model: nn.Module
    variables: dict[str, Any]
    input_shapes: tuple[tuple[int, ...], ...]
    sparsity: float
    source: dict[str, Any]


def summary(weights: Weights) -> str:
    """One line naming the weights: where they come from, what was pruned here, the sparsity."""
    src = weights.source
    if src["source"] == "export":
        accuracy = src["test_accuracy"]
        origin = f"export {src['path']}" + (
            f" (its run's test accuracy {100 * accuracy:.2f}%)" if accuracy is not None else ""
        )
    else:
        origin = f"random-init {src['model']} (seed {src['seed']}, shapes-only estimate)"
    verb = "re-pruned" if src["source"] == "export" else "magnitude-pruned"
    pruned = f"{verb} with {src['pruned_here_with']}" if src["pruned_here_with"] else "as they are"
    return f"weights: {origin}, {pruned}, sparsity {100 * weights.sparsity:.1f}%"


def measured_sparsity(variables: Any, rule: str) -> float:
    """Fraction of zeros over the leaves whose path matches `rule`."""
    flat = tree_paths.flatten(variables)
    chosen = [p for p, r in tree_paths.match_rules(list(flat), [(rule, None)]).items() if r]
    zeros = sum(int(np.sum(np.asarray(flat[p]) == 0)) for p in chosen)
    return zeros / max(sum(int(np.size(flat[p])) for p in chosen), 1)


def _pruned(variables: dict, rule: str, spec: str) -> dict:
    params, _ = pruning.prune_tree(variables["params"], [(rule, spec)])
    return {**variables, "params": params}


def load_weights(config: ml_collections.ConfigDict) -> list[Weights]:
    """The weight sets of a report config (see the module doc), checked before any work.

    Config fields: init_from, model, model_kwargs, input_shapes, seed,
    sparsities, prune, rule.
    """
    if config.get("prune"):
        patterns.parse(config.prune)
    if config.get("init_from"):
        export = exports.load_export(config.init_from)
        model, like = models.init_model(
            export.model, export.input_shape, seed=None, **export.model_kwargs
        )
        variables = jax.tree.map(np.asarray, export.variables_like(like))
        name, shapes, base = export.model, (tuple(export.input_shape),), export.describe()
        levels = [("as exported", None)]
    else:
        bad = [s for s in config.sparsities if not 0.0 <= s < 1.0]
        if bad:
            raise ValueError(f"config.sparsities {bad} must lie in [0, 1)")
        kwargs = dict(config.get("model_kwargs", {}))
        shapes = tuple(tuple(s) for s in config.input_shapes)
        model, variables = models.init_model(config.model, shapes[0], seed=config.seed, **kwargs)
        name = config.model
        base = {"source": "random_init", "model": name, "seed": config.seed,
                "note": "shapes-only estimate: random-init weights, no trained model"}
        levels = [(f"ew(sparsity={s})", f"ew(sparsity={s})") for s in config.sparsities]
    if config.get("prune"):
        levels = [(patterns.parse(config.prune).spec(), config.prune)]
    out = []
    for label, spec in levels:
        pruned = variables if spec is None else _pruned(variables, config.rule, spec)
        out.append(Weights(
            label=label, model_name=name, model=model, variables=pruned, input_shapes=shapes,
            sparsity=measured_sparsity(pruned["params"], config.rule),
            source={**base, "pruned_here_with": spec},
        ))
    return out
