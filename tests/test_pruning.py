"""Tests of tasd_jax.pruning: schedules, scores, the Pruner and the optax wrapper."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tasd_jax import patterns
from tasd_jax import pruning


def _params(seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    return {
        "layer_0": {"kernel": jax.random.normal(k1, (32, 64)), "bias": jnp.zeros(64)},
        "layer_1": {"kernel": jax.random.normal(k2, (64, 16)), "bias": jnp.zeros(16)},
        "head": {"kernel": jax.random.normal(k3, (16, 4))},
    }


def _maybe_jit(fn, jit):
    return jax.jit(fn) if jit else fn


def _nm_reference(w: np.ndarray, n: int, m: int) -> np.ndarray:
    """N:M keep-mask along axis 0 (K) by numpy sort: top-n |w| of every m rows."""
    k, cols = w.shape
    groups = np.abs(w).reshape(k // m, m, cols)
    order = np.argsort(-groups, axis=1, kind="stable")
    keep = np.zeros_like(groups, bool)
    np.put_along_axis(keep, order[:, :n], True, axis=1)
    return keep.reshape(k, cols)


def _top_fraction(score: np.ndarray, sparsity: float) -> np.ndarray:
    """Unstructured reference: keep the (1 - sparsity) largest scores."""
    flat = score.ravel()
    num_keep = flat.size - int(round(flat.size * sparsity))
    keep = np.zeros(flat.size, bool)
    keep[np.argsort(-flat, kind="stable")[:num_keep]] = True
    return keep.reshape(score.shape)


# ----------------------------------------------------------------- schedules


def test_cubic_matches_zhu_gupta_formula_by_hand():
    s = pruning.cubic(0.75, begin=0, end=100, frequency=25)
    assert s.steps == (0, 25, 50, 75, 100)
    # 0.75 * (1 - (1 - t)^3) for t = 0, 1/4, 1/2, 3/4, 1
    np.testing.assert_allclose(s.sparsities, [0.0, 0.43359375, 0.65625, 0.73828125, 0.75])


def test_staged_follows_tw_stage_list_up_to_target():
    stages = pruning.stages_up_to(pruning.TW_VGG16_STAGES, 0.75)
    assert stages == (0.25, 0.40, 0.50, 0.60, 0.65, 0.70, 0.75)
    s = pruning.staged(stages, steps_per_stage=5000, begin=10, mask_delay=100)
    assert s.steps[:3] == (110, 5110, 10110)
    assert s.final_sparsity == 0.75 and s.begin == 110
    assert s.sparsity_at(109) == 0.0 and s.sparsity_at(5110) == 0.40 and s.sparsity_at(10**6) == 0.75


@pytest.mark.parametrize("jit", [False, True])
def test_update_index_and_steps_until_next(jit):
    s = pruning.Schedule(steps=(3, 7, 20), sparsities=(0.1, 0.5, 0.9))
    index = _maybe_jit(s.update_index, jit)
    until = _maybe_jit(s.steps_until_next, jit)
    assert [int(index(t)) for t in (0, 3, 4, 7, 19, 20, 21)] == [-1, 0, -1, 1, -1, 2, -1]
    assert [int(until(t)) for t in (0, 3, 4, 20)] == [3, 0, 3, 0]
    assert int(until(21)) == np.iinfo(np.int32).max


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: pruning.Schedule((), ()), "at least one"),
        (lambda: pruning.Schedule((5, 5), (0.1, 0.2)), "strictly increasing"),
        (lambda: pruning.Schedule((1, 2), (0.5, 0.2)), "non-decreasing"),
        (lambda: pruning.Schedule((1,), (1.0,)), r"\[0, 1\)"),
        (lambda: pruning.cubic(0.5, 0, 90, 25), "multiple of frequency"),
        (lambda: pruning.staged((0.5,), 0), "steps_per_stage=0"),
        (lambda: pruning.staged((0.5,), 10, mask_delay=10), "mask_delay=10"),
    ],
)
def test_bad_schedules_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# -------------------------------------------------------------------- scores


def test_taylor_increments_by_hand():
    w, g = jnp.array([2.0, -3.0]), jnp.array([0.5, 2.0])
    np.testing.assert_allclose(pruning.taylor_increment("taylor", w, g), [1.0, 6.0])
    np.testing.assert_allclose(pruning.taylor_increment("taylor_squared", w, g), [1.0, 36.0])
    np.testing.assert_allclose(pruning.magnitude(w), [2.0, 3.0])
    with pytest.raises(ValueError, match="unknown pruning score 'fisher'"):
        pruning.taylor_increment("fisher", w, g)


# --------------------------------------------------------------------- Pruner


def test_rule_matching_nothing_is_an_error():
    pruner = pruning.Pruner(rules=[("conv_.*/kernel", "2:4")], schedule=pruning.one_shot(0.5))
    with pytest.raises(ValueError, match=r"conv_\.\*/kernel.*match no parameter"):
        pruner.targets(_params())
    with pytest.raises(ValueError, match="match no parameter"):
        pruning.prune(optax.sgd(0.1), pruner).init(_params())


def test_rule_selecting_a_bias_is_an_error():
    pruner = pruning.Pruner(rules=[("layer_0", "2:4")], schedule=pruning.one_shot(0.5))
    with pytest.raises(ValueError, match="layer_0/bias.*rank >= 2"):
        pruner.targets(_params())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rules=[("kernel", "3:2")]), "3:2"),
        (dict(rules=[("kernel", "tw(sparsity=0.75,q=3)")]), "unknown parameter"),
        (dict(rules=[("kernel", "2:4")], score="fisher"), "unknown pruning score"),
        (dict(rules=[("kernel", "2:4")], taylor_steps=0), "taylor_steps=0"),
        (dict(rules=[("kernel", "2:4")], taylor_steps=2.5), "taylor_steps=2.5 must be an integer"),
        (dict(rules=[("kernel", "2:4")], taylor_steps=True), "taylor_steps=True must be an integer"),
        (dict(rules=[("([", "2:4")]), "not a valid regex"),
        (dict(rules=[]), "at least one"),
    ],
)
def test_bad_pruner_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pruning.Pruner(schedule=pruning.one_shot(0.5), **kwargs)


def test_targets_in_leaf_order_and_dense_rule_excludes():
    pruner = pruning.Pruner(
        rules=[("head", "dense"), ("kernel$", "tw(sparsity=0.5,g=8)")],
        schedule=pruning.one_shot(0.5),
    )
    paths = [t.path for t in pruner.targets(_params())]
    assert paths == ["layer_0/kernel", "layer_1/kernel"]


# ------------------------------------------------------------- optax wrapper


def _run(tx, params, grads_fn, steps, jit):
    """(params, state) after each of `steps` updates, from `tx.init(params)`."""
    state = tx.init(params)

    def step(params, state, t):
        updates, state = tx.update(grads_fn(t), state, params)
        return optax.apply_updates(params, updates), state

    step = _maybe_jit(step, jit)
    trajectory = []
    for t in range(steps):
        params, state = step(params, state, t)
        trajectory.append((params, state))
    return trajectory


def _random_grads(t):
    like = _params()
    keys = jax.random.split(jax.random.fold_in(jax.random.key(42), t), 3)
    return jax.tree.map(
        lambda x, k: jax.random.normal(k, x.shape), like,
        {"layer_0": {"kernel": keys[0], "bias": keys[0]},
         "layer_1": {"kernel": keys[1], "bias": keys[1]}, "head": {"kernel": keys[2]}},
    )


@pytest.mark.parametrize("jit", [False, True])
def test_one_shot_nm_mask_matches_numpy_and_pruned_weights_stay_zero(jit):
    params = _params()
    pruner = pruning.Pruner(rules=[("layer_0/kernel", "2:4")], schedule=pruning.one_shot(0.5, 0))
    tx = pruning.prune(optax.sgd(0.1, momentum=0.9), pruner)
    trajectory = _run(tx, params, _random_grads, 6, jit)
    new, state = trajectory[0]
    expected = _nm_reference(np.asarray(params["layer_0"]["kernel"]), 2, 4)
    np.testing.assert_array_equal(np.asarray(state.masks[0]), expected)
    w = np.asarray(new["layer_0"]["kernel"])
    assert np.all(w[~expected] == 0.0)  # exactly zero, not small
    # More steps with random gradients and momentum: still exactly zero.
    new, state = trajectory[-1]
    w = np.asarray(new["layer_0"]["kernel"])
    assert np.all(w[~expected] == 0.0) and np.all(w[expected] != 0.0)


@pytest.mark.parametrize("jit", [False, True])
def test_unpruned_params_follow_the_inner_optimizer_exactly(jit):
    params = _params()
    pruner = pruning.Pruner(rules=[("layer_0/kernel", "2:4")], schedule=pruning.one_shot(0.5, 2))
    inner = optax.sgd(0.1, momentum=0.9)
    pruned, _ = _run(pruning.prune(inner, pruner), params, _random_grads, 4, jit)[-1]
    plain, _ = _run(inner, params, _random_grads, 4, jit)[-1]
    for path in ("layer_1", "head"):
        np.testing.assert_array_equal(pruned[path]["kernel"], plain[path]["kernel"])
    np.testing.assert_array_equal(pruned["layer_0"]["bias"], plain["layer_0"]["bias"])


@pytest.mark.parametrize("jit", [False, True])
def test_global_threshold_uses_pattern_global_masks(jit):
    params = _params()
    # Scale layer_1 up so that a global threshold prunes layer_0 much more.
    params["layer_1"]["kernel"] = params["layer_1"]["kernel"] * 10.0
    spec = "tw(sparsity=0.75,g=8)"
    rules = [("layer_[01]/kernel", spec)]
    kernels = [params["layer_0"]["kernel"], params["layer_1"]["kernel"]]
    for global_threshold in (False, True):
        pruner = pruning.Pruner(rules, pruning.one_shot(0.75), global_threshold=global_threshold)
        _, state = _run(pruning.prune(optax.sgd(0.0), pruner), params, _random_grads, 1, jit)[-1]
        if global_threshold:
            expected = jax.jit(lambda ks: patterns.global_masks(spec, ks))([jnp.abs(k) for k in kernels])
        else:
            expected = [jax.jit(patterns.parse(spec).mask)(jnp.abs(k)) for k in kernels]
        for got, want in zip(state.masks, expected):
            np.testing.assert_array_equal(got, want)
    density_0, density_1 = (float(jnp.mean(m)) for m in state.masks)
    assert density_0 < 0.1 < 0.4 < density_1  # the global threshold moved the budget


@pytest.mark.parametrize("score", ["taylor", "taylor_squared"])
@pytest.mark.parametrize("jit", [False, True])
def test_taylor_scores_sum_the_window_before_the_update(score, jit):
    params = _params()
    pruner = pruning.Pruner(
        rules=[("layer_1/kernel", "ew(sparsity=0.5)")],
        schedule=pruning.one_shot(0.5, step=5),
        score=score,
        taylor_steps=3,
    )
    # lr = 0: the weights stay put, so the score is a sum over known gradients.
    _, state = _run(pruning.prune(optax.sgd(0.0), pruner), params, _random_grads, 6, jit)[-1]
    w = np.asarray(params["layer_1"]["kernel"], np.float64)
    wg = [w * np.asarray(_random_grads(t)["layer_1"]["kernel"], np.float64) for t in (3, 4, 5)]
    expected_score = sum(np.abs(x) if score == "taylor" else x * x for x in wg)
    np.testing.assert_array_equal(state.masks[0], _top_fraction(expected_score, 0.5))
    np.testing.assert_array_equal(state.scores[0], 0.0)  # reset after the update


def test_a_registered_score_is_used_by_the_pruner():
    # "square" ranks w^2 accumulated over the window: with lr = 0 and a single
    # step it keeps the largest |w|, like magnitude, but reaches the pruner
    # only through the registry.
    calls = []

    def square(weight, grad):
        calls.append(None)
        return jnp.square(weight.astype(jnp.float32)) + 0 * grad

    pruning.register_score("test_square", pruning.Score(increment=square))
    assert "test_square" in pruning.registered_scores()
    params = _params()
    pruner = pruning.Pruner(rules=[("layer_1/kernel", "ew(sparsity=0.5)")],
                            schedule=pruning.one_shot(0.5, step=2), score="test_square")
    _, state = _run(pruning.prune(optax.sgd(0.0), pruner), params, _random_grads, 3, False)[-1]
    assert calls
    w = np.asarray(params["layer_1"]["kernel"], np.float64)
    np.testing.assert_array_equal(state.masks[0], _top_fraction(w * w, 0.5))
    with pytest.raises(ValueError, match="already registered"):
        pruning.register_score("test_square", pruning.Score(of_weight=jnp.abs))
    with pytest.raises(ValueError, match="exactly one of"):
        pruning.Score()


@pytest.mark.parametrize("jit", [False, True])
def test_gradual_schedule_and_proportional_sparsity(jit):
    params = _params()
    pruner = pruning.Pruner(
        rules=[("layer_0/kernel", "ew(sparsity=0.8)"), ("layer_1/kernel", "ew(sparsity=0.4)")],
        schedule=pruning.Schedule(steps=(1, 3), sparsities=(0.4, 0.8)),
    )
    tx = pruning.prune(optax.sgd(0.01), pruner)
    metrics = _maybe_jit(lambda p, s: pruning.sparsity_metrics(pruner, p, s), jit)
    sparsities = []
    trajectory = _run(tx, params, _random_grads, 4, jit)
    for new, state in (trajectory[0], trajectory[1], trajectory[3]):
        m = metrics(new, state)
        sparsities.append((float(m["sparsity/layer_0/kernel"]), float(m["sparsity/layer_1/kernel"])))
        assert bool(m["pattern_valid"])
    # Before the first update: dense; then half-way (0.4 / 0.8 of each target); then the targets.
    np.testing.assert_allclose(sparsities, [(0.0, 0.0), (0.4, 0.2), (0.8, 0.4)], atol=1e-3)
    total = (0.8 * 32 * 64 + 0.4 * 64 * 16) / (32 * 64 + 64 * 16)
    np.testing.assert_allclose(float(m["sparsity"]), total, atol=1e-3)


def test_sparsity_metrics_catch_a_nonconforming_mask_and_a_nonzero_pruned_weight():
    params = {"w": {"kernel": jnp.arange(1.0, 17.0).reshape(8, 2)}}
    pruner = pruning.Pruner(rules=[("kernel", "2:4")], schedule=pruning.one_shot(0.5))
    keep = jnp.asarray(_nm_reference(np.asarray(params["w"]["kernel"]), 2, 4))
    state = pruning.PruneState(jnp.zeros([], jnp.int32), (keep,), (), ())
    zeroed = {"w": {"kernel": jnp.where(keep, params["w"]["kernel"], 0.0)}}
    m = pruning.sparsity_metrics(pruner, zeroed, state)
    assert bool(m["pattern_valid"]) and float(m["sparsity"]) == 0.5
    assert not bool(pruning.sparsity_metrics(pruner, params, state)["pattern_valid"])
    three_of_four = state._replace(masks=(keep.at[0, 0].set(True).at[1, 0].set(True),))
    assert not bool(pruning.sparsity_metrics(pruner, zeroed, three_of_four)["pattern_valid"])


def test_mask_updates_do_not_recompile():
    params = _params()
    pruner = pruning.Pruner(
        rules=[("layer_[01]/kernel", "tw(sparsity=0.75,g=8)")],
        schedule=pruning.cubic(0.75, begin=2, end=8, frequency=2),
        score="taylor",
        taylor_steps=2,
        global_threshold=True,
    )
    tx = pruning.prune(optax.adam(1e-2), pruner)
    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(None)  # runs only when jax traces (compiles) the function
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    seen = set()
    for t in range(12):  # due and not-due steps, four different sparsities
        params, state = step(params, state, _random_grads(t))
        seen.add(round(float(jnp.mean(state.masks[0] == 0)), 3))
    assert len(traces) == 1
    assert len(seen) >= 4  # the masks really changed along the way


def test_update_needs_params():
    pruner = pruning.Pruner(rules=[("kernel", "2:4")], schedule=pruning.one_shot(0.5))
    tx = pruning.prune(optax.sgd(0.1), pruner)
    params = _params()
    with pytest.raises(ValueError, match="needs `params`"):
        tx.update(params, tx.init(params))


def test_step_counter_saturates_instead_of_wrapping():
    pruner = pruning.Pruner(rules=[("layer_0/kernel", "2:4")], schedule=pruning.one_shot(0.5, 0))
    tx = pruning.prune(optax.sgd(0.1), pruner)
    params = _params()
    last = jnp.iinfo(jnp.int32).max
    state = tx.init(params)._replace(count=jnp.asarray(last, jnp.int32))
    _, state = tx.update(_random_grads(0), state, params)
    assert int(state.count) == last  # a wrapped counter would restart the schedule


def test_extra_arguments_reach_the_inner_transformation():
    seen = []

    def update(updates, state, params=None, *, value):
        seen.append(float(value))
        return updates, state

    inner = optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)
    pruner = pruning.Pruner(rules=[("layer_0/kernel", "2:4")], schedule=pruning.one_shot(0.5, 0))
    tx = pruning.prune(inner, pruner)
    params = _params()
    tx.update(_random_grads(0), tx.init(params), params, value=jnp.float32(1.5))
    assert seen == [1.5]


def test_masks_are_checkpointed_with_the_optimizer_state(tmp_path):
    import orbax.checkpoint as ocp

    params = _params()
    pruner = pruning.Pruner(rules=[("layer_0/kernel", "2:4")], schedule=pruning.one_shot(0.5))
    tx = pruning.prune(optax.sgd(0.1, momentum=0.9), pruner)
    _, state = _run(tx, params, _random_grads, 1, True)[-1]
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp_path / "opt", state)
        ckpt.wait_until_finished()
        restored = ckpt.restore(tmp_path / "opt", jax.tree.map(ocp.utils.to_shape_dtype_struct, state))
    assert isinstance(restored, pruning.PruneState)
    np.testing.assert_array_equal(restored.masks[0], state.masks[0])
    assert restored.masks[0].dtype == jnp.bool_


def test_stage_list_by_name_or_numbers_cut_at_the_target():
    assert pruning.stage_list("tw_vgg16", 0.75) == (0.25, 0.40, 0.50, 0.60, 0.65, 0.70, 0.75)
    assert pruning.stage_list("tw_bert", 0.6) == (0.25, 0.35, 0.50, 0.55, 0.6)
    assert pruning.stage_list("0.3,0.6,0.9", 0.7) == (0.3, 0.6, 0.7)
    with pytest.raises(ValueError, match="pruning.stages='vgg'"):
        pruning.stage_list("vgg", 0.5)


def test_prune_tree_prunes_once_like_the_pruner_and_leaves_the_rest():
    params = _params()
    pruned, keep = pruning.prune_tree(params, [(r"layer_[01]/kernel$", "tw(sparsity=0.75,g=16)")])
    assert sorted(keep) == ["layer_0/kernel", "layer_1/kernel"]
    tw = patterns.parse("tw(sparsity=0.75,g=16)")
    for name in ("layer_0", "layer_1"):
        w = pruned[name]["kernel"]
        np.testing.assert_allclose(float(jnp.mean(w == 0)), 0.75, atol=0.02)
        assert bool(tw.conforms(w != 0))
        kept = np.asarray(keep[f"{name}/kernel"])
        np.testing.assert_array_equal(np.asarray(w)[kept], np.asarray(params[name]["kernel"])[kept])
    np.testing.assert_array_equal(pruned["head"]["kernel"], params["head"]["kernel"])

    # One threshold across layers: the combined sparsity is the target, layers differ.
    pruned, _ = pruning.prune_tree(params, [(r"kernel$", "ew(sparsity=0.5)")], global_threshold=True)
    zeros = sum(int(jnp.sum(pruned[n]["kernel"] == 0)) for n in ("layer_0", "layer_1", "head"))
    total = sum(pruned[n]["kernel"].size for n in ("layer_0", "layer_1", "head"))
    assert zeros == total // 2
    with pytest.raises(ValueError, match="match no parameter"):
        pruning.prune_tree(params, [(r"conv", "2:4")])
