"""TASDER: choosing TASD series for a trained model's weights and activations.

* `activations`: the inputs of every GEMM layer on a calibration set, their
  sparsity statistics, and a model transform that decomposes chosen layers'
  input activations into a series inside the forward pass (TASD-A).
"""

from tasd_jax.tasder.activations import (
    ActivationStats,
    activation_stats,
    capture_inputs,
    keep_top_per_group,
    same_m_keep_count,
    with_activation_series,
)

__all__ = [
    "ActivationStats",
    "activation_stats",
    "capture_inputs",
    "keep_top_per_group",
    "same_m_keep_count",
    "with_activation_series",
]
