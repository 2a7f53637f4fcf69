"""TASDER: choosing TASD series for a trained model's weights and activations.

    problem = tasder.Problem(apply_fn, variables, evaluate=metric, calibration=inputs,
                             activation_layers="auto")
    result = tasder.search(problem, hardware="ttc_vegeta_m8", budget=0.99, mode="ours",
                           operand="both", batch=1)
    result.choice.weights, result.choice.activations, result.metric, result.relative_edp

* `problem`: the user's model, metric and calibration input, prepared once for
  every accelerator and batch (`Problem`, `Choice`).
* `graph`: which layers take a decomposable input (after a ReLU, GELU or
  SiLU), read from the traced computation.
* `metrics`: the metric's contract and its early-stopping per-batch form
  (`MeanOverBatches`, `top1_accuracy`).
* `activations`: layer inputs captured, their statistics, and the forward
  pass with activation series (TASD-A).
* `searches`: `network`, `paper`, `ours` and `exhaustive` (`search`).
* `saved` / `frontier`: a result on disk for any model; the EDP / metric
  frontier over budgets, and its plot.
"""

from tasd_jax.tasder.activations import (
    ActivationStats,
    activation_stats,
    capture_inputs,
    keep_top_per_group,
    same_m_keep_count,
    with_activation_series,
)
from tasd_jax.tasder.frontier import frontier, frontier_labels, plot_frontier
from tasd_jax.tasder.graph import LayerInput, layer_inputs
from tasd_jax.tasder.metrics import (
    MeanOverBatches,
    embedding_agreement,
    top1_accuracy,
    with_reference,
)
from tasd_jax.tasder.problem import Choice, Evaluated, Problem
from tasd_jax.tasder.saved import Saved, apply_choice, load, save
from tasd_jax.tasder.searches import (
    EXHAUSTIVE_LIMIT,
    MODES,
    OPERANDS,
    REFINE_EVALUATIONS,
    Result,
    alpha_rule,
    combinations,
    search,
)

__all__ = [
    "ActivationStats",
    "Choice",
    "EXHAUSTIVE_LIMIT",
    "Evaluated",
    "LayerInput",
    "MODES",
    "MeanOverBatches",
    "OPERANDS",
    "Problem",
    "REFINE_EVALUATIONS",
    "Result",
    "Saved",
    "activation_stats",
    "alpha_rule",
    "apply_choice",
    "capture_inputs",
    "combinations",
    "embedding_agreement",
    "frontier",
    "frontier_labels",
    "keep_top_per_group",
    "layer_inputs",
    "load",
    "plot_frontier",
    "same_m_keep_count",
    "save",
    "search",
    "top1_accuracy",
    "with_reference",
    "with_activation_series",
]
