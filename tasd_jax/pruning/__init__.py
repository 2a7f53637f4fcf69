"""Gradual structured pruning (issue 5 §3; DESIGN.md §2, the tile-wise paper's recipes).

* `scores`: magnitude and Taylor importance scores.
* `schedules`: one-shot, staged (the TW paper's stage lists) and cubic
  (Zhu & Gupta) schedules, all as a static list of `(step, sparsity)` updates.
* `masking`: `Pruner` (path rules -> patterns from `tasd_jax.patterns`) and the
  optax wrapper `prune` keeping the masks in the optimizer state.
"""

from tasd_jax.pruning.masking import (
    PruneState,
    Pruner,
    Target,
    mask_tree,
    prune,
    sparsity_metrics,
)
from tasd_jax.pruning.schedules import (
    TW_BERT_STAGES,
    TW_VGG16_STAGES,
    Schedule,
    cubic,
    one_shot,
    staged,
    stages_up_to,
)
from tasd_jax.pruning.scores import SCORES, magnitude, taylor_increment

__all__ = [
    "PruneState", "Pruner", "SCORES", "Schedule", "TW_BERT_STAGES", "TW_VGG16_STAGES",
    "Target", "cubic", "magnitude", "mask_tree", "one_shot", "prune", "sparsity_metrics",
    "staged", "stages_up_to", "taylor_increment",
]
