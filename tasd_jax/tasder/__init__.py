"""TASDER: choosing TASD series for a trained model's weights and activations.

* `activations`: the inputs of every GEMM layer on a calibration set, their
  sparsity statistics, which layers the paper decomposes (TASD-A), and a model
  transform that decomposes chosen layers' input activations in the forward pass.
* `searches`: the network-wise, the paper's greedy and our searches under an
  accuracy budget, on a prepared `Problem`.
* `saved`: a search's result as an export (`save`), and `load(DIR)` rebuilding it.
"""

from tasd_jax.tasder.activations import (
    ActivationStats,
    activation_stats,
    capture_inputs,
    eligible_layers,
    keep_top_per_group,
    same_m_keep_count,
    with_activation_series,
)
from tasd_jax.tasder.saved import load, save
from tasd_jax.tasder.searches import MODES, OPERANDS, Choice, Evaluated, Problem, search

__all__ = [
    "ActivationStats",
    "Choice",
    "Evaluated",
    "MODES",
    "OPERANDS",
    "Problem",
    "activation_stats",
    "capture_inputs",
    "eligible_layers",
    "keep_top_per_group",
    "load",
    "same_m_keep_count",
    "save",
    "search",
    "with_activation_series",
]
