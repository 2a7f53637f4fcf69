"""Masks in the optimizer state: an optax wrapper for gradual structured pruning.

The tile-wise paper's prune / fine-tune loop (docs/tile_wise.md).
`prune(inner, pruner)` is an `optax.GradientTransformationExtraArgs` whose state
(`PruneState`) holds one boolean keep-mask per pruned parameter, so
checkpointing the optimizer state checkpoints the masks. At every step it

1. accumulates Taylor scores (if the score needs gradients) over the
   `taylor_steps` steps that end with the next mask update;
2. when the schedule says an update is due, recomputes every mask from the
   scores with the pattern from the registry (`tasd_jax.patterns`), per layer
   or with one global threshold, at the schedule's sparsity; this runs inside
   `lax.cond` and the sparsity is a traced value, so the jitted step compiles
   once for the whole run;
3. masks the gradients before the inner optimizer (momentum of pruned weights
   stays zero) and returns `-w` as the update of every pruned weight, so after
   `optax.apply_updates` pruned weights are exactly zero.

Parameters are chosen by `tree_paths.Rule`s on the '/'-joined parameter path
(re.search, first matching rule wins); a rule that matches no parameter is a
ValueError at `init`, before training starts.
"""

import dataclasses
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tasd_jax import patterns
from tasd_jax import tree_paths
from tasd_jax.pruning import schedules as schedules_lib
from tasd_jax.pruning import scores as scores_lib
from tasd_jax.pruning.schedules import Schedule


class Target(NamedTuple):
    """One pruned parameter: its path, its pattern and the axis of N:M groups."""

    path: str
    pattern: patterns.Pattern
    axis: int | None  # None: the kernel's contraction axis (`patterns.gemm_view`)


class PruneState(NamedTuple):
    """Optimizer state of `prune`.

    Attributes:
      count: int32 scalar, number of updates applied (the training step).
      masks: one bool keep-mask per target, shaped like its parameter, in the
        order of `Pruner.targets`.
      scores: accumulated Taylor scores (float32, like `masks`); empty for
        magnitude scores.
      inner_state: the wrapped optimizer's state.
    """

    count: jax.Array
    masks: tuple[jax.Array, ...]
    scores: tuple[jax.Array, ...]
    inner_state: optax.OptState


@dataclasses.dataclass(frozen=True)
class Pruner:
    """What to prune, how and when.

    Attributes:
      rules: `(path_regex, pattern_spec[, axis])` rules; the spec is parsed with
        `patterns.parse`; axis defaults to None, the kernel's contraction axis
        (-2; the GEMM K of a convolution kernel).
      schedule: when masks are set and to which sparsity. A pattern with a
        target `sparsity` reaches it at the schedule's last update and follows
        the schedule proportionally before (`pattern.sparsity * s_i / s_final`);
        patterns without one (N:M, series) are simply re-applied at every update.
      score: a registered score (`scores.register`): "magnitude", "taylor"
        (sum |w g|) or "taylor_squared" (sum (w g)^2).
      taylor_steps: Taylor scores sum the gradients of this many steps, the last
        one being the step of the mask update.
      global_threshold: one threshold across all parameters that share a
        pattern (and axis) instead of one per parameter.
    """

    rules: tuple[tree_paths.Rule, ...]
    schedule: Schedule
    score: str = "magnitude"
    taylor_steps: int = 1
    global_threshold: bool = False

    def __post_init__(self):
        rules = tuple(
            tree_paths.Rule(r.pattern, patterns.parse(r.value), r.axis)
            for r in tree_paths.as_rules(self.rules)
        )
        object.__setattr__(self, "rules", rules)
        scores_lib.get(self.score)  # an unknown name fails here, before training
        if (isinstance(self.taylor_steps, bool) or not isinstance(self.taylor_steps, (int, np.integer))
                or self.taylor_steps < 1):
            raise ValueError(f"taylor_steps={self.taylor_steps!r} must be an integer >= 1")
        if not rules:
            raise ValueError("a Pruner needs at least one (path_regex, pattern) rule")
        # Pattern sparsities are scaled by the schedule's (`sparsity_scale`): a
        # schedule ending at 0 would prune nothing, whatever the rules ask.
        final = self.schedule.final_sparsity
        asking = [r.value.spec() for r in rules if getattr(r.value, "sparsity", 0.0) > 0]
        if final <= 0 and asking:
            raise ValueError(
                f"the schedule ends at sparsity {final}, but rule pattern(s) {asking} ask for "
                "sparsity > 0: patterns reach their sparsity at the schedule's end, so end it "
                "above 0 (e.g. at the largest pattern sparsity, `final_sparsity(rules)`)"
            )

    def targets(self, params: Any) -> tuple[Target, ...]:
        """The pruned parameters of `params`, in leaf order.

        Raises:
          ValueError: if a rule matches no parameter, or selects a leaf of rank < 2
            (biases, norms: a rule picking them is almost always a loose regex).
        """
        flat = tree_paths.flatten(params)
        chosen = tree_paths.match_rules(list(flat), self.rules)
        out = []
        for path, rule in chosen.items():
            if rule is None or isinstance(rule.value, patterns.Dense):
                continue
            tree_paths.check_kernel(rule, path, jnp.shape(flat[path]), "pruned")
            # None: the kernel's contraction axis (the GEMM K of a convolution).
            out.append(Target(path, rule.value, rule.axis))
        return tuple(out)

    def sparsity_scale(self, pattern: patterns.Pattern) -> float:
        """Factor from the schedule's sparsities to `pattern`'s (see `schedule`)."""
        final = self.schedule.final_sparsity
        return pattern.sparsity / final if final > 0 else 0.0

    def compute_masks(
        self, targets: Sequence[Target], scores: Sequence[jax.Array], update: jax.Array
    ) -> tuple[jax.Array, ...]:
        """Keep-masks of `targets` from their `scores` at schedule update `update`.

        Jit-able; `update` (int32 scalar) may be traced.
        """
        progress = jnp.asarray(self.schedule.sparsities, jnp.float32)[update]
        masks: list[Any] = [None] * len(targets)
        groups: dict[tuple, list[int]] = {}
        for i, t in enumerate(targets):
            key = (t.pattern, t.axis) if self.global_threshold else (t.pattern, t.axis, i)
            groups.setdefault(key, []).append(i)
        for (pattern, axis, *_), members in groups.items():
            sparsity = None
            if isinstance(pattern, patterns.ThresholdPattern):
                sparsity = progress * self.sparsity_scale(pattern)
            keeps = patterns.global_masks(pattern, [scores[i] for i in members], axis, sparsity=sparsity)
            for i, keep in zip(members, keeps):
                masks[i] = keep
        return tuple(masks)


def prune(
    inner: optax.GradientTransformation, pruner: Pruner
) -> optax.GradientTransformationExtraArgs:
    """Wraps `inner` so that the parameters chosen by `pruner` are pruned on schedule.

    The returned transformation needs `params` in `update`. Pruned weights and
    their updates stay exactly zero; unchosen parameters are updated by `inner`
    untouched. Extra keyword arguments of `update` (e.g. optax's `value` for a
    line search) are passed on to `inner`.
    """
    inner = optax.with_extra_args_support(inner)
    score = scores_lib.get(pruner.score)
    taylor = score.needs_gradients

    def init_fn(params):
        targets = pruner.targets(params)
        flat = tree_paths.flatten(params)
        masks = tuple(jnp.ones(jnp.shape(flat[t.path]), bool) for t in targets)
        scores = (
            tuple(jnp.zeros(jnp.shape(flat[t.path]), jnp.float32) for t in targets)
            if taylor
            else ()
        )
        return PruneState(jnp.zeros([], jnp.int32), masks, scores, inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("prune(...).update needs `params` (the scores are computed from them)")
        targets = pruner.targets(params)
        flat_params = tree_paths.flatten(params)
        flat_grads = tree_paths.flatten(updates)
        weights = [flat_params[t.path] for t in targets]
        grads = [flat_grads[t.path] for t in targets]
        update = pruner.schedule.update_index(state.count)

        acc = state.scores
        if taylor:
            in_window = pruner.schedule.steps_until_next(state.count) < pruner.taylor_steps
            acc = tuple(
                jnp.where(in_window, a + score.increment(w, g), a)
                for a, w, g in zip(acc, weights, grads)
            )
        def new_masks():
            # Magnitudes inside the branch: steps without a mask update skip them.
            importance = acc if taylor else tuple(score.of_weight(w) for w in weights)
            return pruner.compute_masks(targets, importance, jnp.maximum(update, 0))

        masks = jax.lax.cond(update >= 0, new_masks, lambda: state.masks)
        if taylor:  # a finished window starts the next one from zero
            acc = tuple(jnp.where(update >= 0, jnp.zeros_like(a), a) for a in acc)

        for t, g, keep in zip(targets, grads, masks):
            flat_grads[t.path] = jnp.where(keep, g, jnp.zeros_like(g))
        inner_updates, inner_state = inner.update(
            tree_paths.unflatten(flat_grads, like=updates), state.inner_state, params, **extra_args
        )
        flat_updates = tree_paths.flatten(inner_updates)
        for t, w, keep in zip(targets, weights, masks):
            u = flat_updates[t.path]
            flat_updates[t.path] = jnp.where(keep, u, -w.astype(u.dtype))
        new_state = PruneState(optax.safe_int32_increment(state.count), masks, acc, inner_state)
        return tree_paths.unflatten(flat_updates, like=inner_updates), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def mask_tree(pruner: Pruner, params: Any, state: PruneState) -> dict[str, jax.Array]:
    """{path: keep-mask} of the pruned parameters."""
    return {t.path: m for t, m in zip(pruner.targets(params), state.masks)}


def sparsity_metrics(pruner: Pruner, params: Any, state: PruneState) -> dict[str, jax.Array]:
    """Sparsity of the pruned parameters and whether their masks have their pattern.

    Returns a flat dict (jit-able; values are scalars):
      "sparsity": fraction of zeros over all pruned parameters (by weight count),
      "pattern_valid": every mask conforms to its pattern and every pruned
        weight is zero,
      "sparsity/<path>": zeros fraction of each pruned parameter.
    Sparsity counts actual zeros of the weights, not only the masks, so a
    weight that an update failed to zero would show.
    """
    targets = pruner.targets(params)
    flat = tree_paths.flatten(params)
    out: dict[str, jax.Array] = {}
    zeros = total = 0
    valid = jnp.asarray(True)
    for t, keep in zip(targets, state.masks):
        w = flat[t.path]
        layer_zeros = jnp.sum(w == 0)
        out[f"sparsity/{t.path}"] = layer_zeros / w.size
        zeros, total = zeros + layer_zeros, total + w.size
        valid &= t.pattern.conforms(keep, t.axis) & jnp.all(jnp.where(keep, True, w == 0))
    out["sparsity"] = zeros / max(total, 1)
    out["pattern_valid"] = valid
    return out


def final_sparsity(rules: Sequence[tree_paths.Rule | tuple]) -> float:
    """The largest target `sparsity` among the rules' patterns (0 when none has one,
    e.g. N:M): what a schedule for these rules must end at (see `Pruner`).

    Raises:
      ValueError: a malformed rule or pattern spec.
    """
    specs = [patterns.parse(r.value) for r in tree_paths.as_rules(rules)]
    return max((getattr(p, "sparsity", 0.0) for p in specs), default=0.0)


def prune_tree(
    params: Any, rules: Sequence[tree_paths.Rule | tuple], *, global_threshold: bool = False
) -> tuple[Any, dict[str, jax.Array]]:
    """Prunes a parameter tree once, by magnitude, with `(path_regex, spec[, axis])` rules.

    The one-shot counterpart of `prune`: the same rules, patterns and
    thresholds as a `Pruner` at its last mask update, applied to `params` as
    they are (trained or random-init weights alike).

    Args:
      params: a pytree of arrays.
      rules: first matching rule wins; unmatched leaves stay as they are; a
        rule matching nothing is a ValueError.
      global_threshold: one threshold across the leaves that share a pattern.

    Returns:
      (pruned params shaped like `params`, {path: keep-mask} of the pruned leaves).
    """
    pruner = Pruner(
        rules=tuple(rules),
        schedule=schedules_lib.one_shot(final_sparsity(rules)),
        global_threshold=global_threshold,
    )
    targets = pruner.targets(params)
    flat = tree_paths.flatten(params)
    for t in targets:  # the patterns would raise too, without the path
        patterns.checks.check_finite(flat[t.path], f"parameter {t.path!r}")
    masks = pruner.compute_masks(
        targets, [scores_lib.magnitude(flat[t.path]) for t in targets], jnp.asarray(0)
    )
    keep = {t.path: m for t, m in zip(targets, masks)}
    for path, m in keep.items():
        flat[path] = jnp.where(m, flat[path], jnp.zeros_like(flat[path]))
    return tree_paths.unflatten(flat, like=params), keep
