"""One evaluation pass: loss and accuracy summed over padded, masked batches."""

from typing import Any, Callable, Iterable, Mapping

import jax
import numpy as np


def evaluate(
    eval_fn: Callable[[Mapping[str, Any]], Mapping[str, jax.Array]],
    batches: Iterable[Mapping[str, np.ndarray]],
    put: Callable[[Any], Any] = lambda x: x,
) -> dict[str, float]:
    """Loss and accuracy over one pass of padded, masked batches.

    Args:
      eval_fn: batch -> {"loss_sum", "correct", "count"} (e.g. a jitted `eval_step`).
      batches: the evaluation batches.
      put: places a host batch on the devices.

    Raises:
      ValueError: the batches hold no real example.
    """
    totals = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
    for batch in batches:
        for k, v in eval_fn(put(batch)).items():
            totals[k] += float(v)
    if totals["count"] == 0:
        raise ValueError("the evaluation data is empty: no example to score")
    return {
        "test_loss": totals["loss_sum"] / totals["count"],
        "test_accuracy": totals["correct"] / totals["count"],
    }
