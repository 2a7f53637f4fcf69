"""Gradual structured pruning (the tile-wise paper's recipes, docs/tile_wise.md).

* `scores`: the registry of importance scores (magnitude, Taylor).
* `schedules`: one-shot, staged (the TW paper's stage lists) and cubic
  (Zhu & Gupta) schedules, all as a static list of `(step, sparsity)` updates.
* `masking`: `Pruner` (path rules -> patterns from `tasd_jax.patterns`) and the
  optax wrapper `prune` keeping the masks in the optimizer state.
"""

from tasd_jax.pruning.masking import (
    PruneState,
    Pruner,
    Target,
    final_sparsity,
    mask_tree,
    prune,
    prune_tree,
    sparsity_metrics,
)
from tasd_jax.pruning.schedules import (
    STAGE_LISTS,
    TW_BERT_STAGES,
    TW_VGG16_STAGES,
    Schedule,
    cubic,
    one_shot,
    staged,
    stage_list,
    stages_up_to,
)
from tasd_jax.pruning.scores import Score, magnitude, taylor_increment
from tasd_jax.pruning.scores import register as register_score
from tasd_jax.pruning.scores import registered as registered_scores

__all__ = [
    "PruneState", "Pruner", "STAGE_LISTS", "Schedule", "Score", "TW_BERT_STAGES", "TW_VGG16_STAGES",
    "Target", "cubic", "final_sparsity", "magnitude", "mask_tree", "one_shot", "prune", "prune_tree",
    "register_score", "registered_scores", "sparsity_metrics", "stage_list", "staged", "stages_up_to", "taylor_increment",
]
