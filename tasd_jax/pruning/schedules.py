"""Pruning schedules: at which training steps masks are recomputed, and to what sparsity.

Every schedule is a finite, static list of mask updates `(step, sparsity)`.
This single representation covers three schedules:

* one-shot: one update;
* staged: the tile-wise paper's stage list (docs/tile_wise.md: VGG16 25, 40, ..., 96%;
  BERT 25, 35, ..., 95%), one update per stage, `k` fine-tune steps each;
* cubic (Zhu & Gupta 2017, "To prune, or not to prune"): sparsity
  `s_f + (s_i - s_f) (1 - t / T)^3` sampled every `frequency` steps.

Because the list is static (a tuple, hashed with the schedule), the jitted
train step looks the current update up with `update_index`; no step ever
triggers a recompilation.
"""

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# The stage lists of the tile-wise paper's pruning scripts.
TW_VGG16_STAGES = (0.25, 0.40, 0.50, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.92, 0.94, 0.96)
TW_BERT_STAGES = (0.25, 0.35, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95)
# Configs name a list (`pruning.stages = "tw_vgg16"`) rather than import it.
STAGE_LISTS = {"tw_vgg16": TW_VGG16_STAGES, "tw_bert": TW_BERT_STAGES}


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Mask updates at `steps` (strictly increasing) to `sparsities` (non-decreasing).

    Attributes:
      steps: training steps (the optimizer's update count) at which masks are set.
      sparsities: target sparsity in [0, 1) of each update, same length as `steps`.
    """

    steps: tuple[int, ...]
    sparsities: tuple[float, ...]

    def __post_init__(self):
        if len(self.steps) == 0:
            raise ValueError("a pruning schedule needs at least one update step, got none")
        if len(self.steps) != len(self.sparsities):
            raise ValueError(
                f"schedule steps {self.steps} and sparsities {self.sparsities} differ in length"
            )
        # A fractional step would be truncated (or never match the step counter).
        if any(not isinstance(s, (int, np.integer)) or isinstance(s, bool) for s in self.steps):
            raise ValueError(f"schedule steps {self.steps} must be integers")
        object.__setattr__(self, "steps", tuple(int(s) for s in self.steps))
        if any(s < 0 for s in self.steps) or any(
            b <= a for a, b in zip(self.steps, self.steps[1:])
        ):
            raise ValueError(f"schedule steps {self.steps} must be >= 0 and strictly increasing")
        if any(not 0.0 <= s < 1.0 for s in self.sparsities):
            raise ValueError(f"schedule sparsities {self.sparsities} must lie in [0, 1)")
        if any(b < a for a, b in zip(self.sparsities, self.sparsities[1:])):
            raise ValueError(f"schedule sparsities {self.sparsities} must be non-decreasing")

    @property
    def begin(self) -> int:
        """The first step at which a mask is set (dense training happens before it)."""
        return self.steps[0]

    @property
    def final_sparsity(self) -> float:
        return self.sparsities[-1]

    def update_index(self, step: jax.Array) -> jax.Array:
        """Index of the update due at `step` (int32 scalar), or -1 when none is due. Jit-able."""
        steps = jnp.asarray(self.steps, dtype=jnp.int32)
        hits = steps == jnp.asarray(step, dtype=jnp.int32)
        return jnp.where(hits.any(), jnp.argmax(hits), -1).astype(jnp.int32)

    def steps_until_next(self, step: jax.Array) -> jax.Array:
        """Steps from `step` to the next update at or after it; a large number when none is left."""
        steps = jnp.asarray(self.steps, dtype=jnp.int32)
        delta = steps - jnp.asarray(step, dtype=jnp.int32)
        return jnp.min(jnp.where(delta >= 0, delta, jnp.iinfo(jnp.int32).max))

    def sparsity_at(self, step: int) -> float:
        """Target sparsity in force after `step` (0 before the first update); host-side."""
        i = int(np.searchsorted(np.asarray(self.steps), step, side="right")) - 1
        return 0.0 if i < 0 else self.sparsities[i]


def one_shot(sparsity: float, step: int = 0) -> Schedule:
    """Prunes once, at `step`, straight to `sparsity`."""
    return Schedule(steps=(step,), sparsities=(float(sparsity),))


def staged(
    stages: Sequence[float], steps_per_stage: int, begin: int = 0, mask_delay: int = 0
) -> Schedule:
    """The tile-wise paper's staged schedule.

    Stage `i` starts at `begin + i * steps_per_stage`; its mask is set `mask_delay`
    steps into the stage (the paper's BERT recipe sets it at step 100 of each stage,
    after accumulating Taylor scores) and the remaining steps fine-tune.
    """
    if steps_per_stage <= 0:
        raise ValueError(f"steps_per_stage={steps_per_stage} must be positive")
    if not 0 <= mask_delay < steps_per_stage:
        raise ValueError(f"mask_delay={mask_delay} must lie in [0, steps_per_stage={steps_per_stage})")
    steps = tuple(begin + mask_delay + i * steps_per_stage for i in range(len(stages)))
    return Schedule(steps=steps, sparsities=tuple(float(s) for s in stages))


def cubic(
    final_sparsity: float,
    begin: int,
    end: int,
    frequency: int,
    initial_sparsity: float = 0.0,
) -> Schedule:
    """Zhu & Gupta's gradual schedule: `s_f + (s_i - s_f)(1 - (t - begin)/(end - begin))^3`.

    Masks are updated every `frequency` steps from `begin` to `end` inclusive
    (`end - begin` must be a multiple of `frequency`, so the last update reaches
    `final_sparsity` exactly).
    """
    if frequency <= 0:
        raise ValueError(f"frequency={frequency} must be positive")
    if end <= begin or (end - begin) % frequency:
        raise ValueError(
            f"cubic schedule needs end > begin and (end - begin) a multiple of frequency;"
            f" got begin={begin}, end={end}, frequency={frequency}"
        )
    steps = tuple(range(begin, end + 1, frequency))
    frac = (np.asarray(steps) - begin) / (end - begin)
    sparsities = final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - frac) ** 3
    return Schedule(steps=steps, sparsities=tuple(float(s) for s in sparsities))


def stages_up_to(stages: Sequence[float], target: float) -> tuple[float, ...]:
    """The stages below `target`, then `target`: the paper's list truncated at the goal."""
    return tuple(s for s in stages if s < target) + (float(target),)


def stage_list(stages: "str | Sequence[float]", target: float) -> tuple[float, ...]:
    """The stages of a staged schedule ending at `target`.

    Args:
      stages: a name in `STAGE_LISTS` ("tw_vgg16", "tw_bert"), comma-separated
        sparsities ("0.5,0.7,0.8"), or a sequence of sparsities.
      target: the final sparsity; the list is cut below it (`stages_up_to`).
    """
    if isinstance(stages, str):
        if stages in STAGE_LISTS:
            stages = STAGE_LISTS[stages]
        else:
            try:
                stages = tuple(float(s) for s in stages.split(","))
            except ValueError:
                raise ValueError(
                    f"pruning.stages={stages!r} is neither one of {sorted(STAGE_LISTS)} nor "
                    "comma-separated sparsities such as '0.5,0.7,0.8'"
                ) from None
    return stages_up_to(stages, target)
