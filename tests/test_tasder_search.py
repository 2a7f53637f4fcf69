"""TASDER searches on the trained digits MLP: budgets hold, `ours` never loses to its
own starting points on any design, and comes within 5% of the exhaustive optimum."""

import functools
import re

import jax
import numpy as np
import pytest

from tasd_jax import cost, data, export as export_lib, models, patterns, tasder


@pytest.fixture(scope="module")
def problem(dense_digits_run):
    """The dense digits MLP (dense_0 reads pixels; dense_1 and head read ReLU outputs)."""
    exp = export_lib.load_export(str(dense_digits_run / "train" / "export"))
    model, like = models.init_model(exp.model, exp.input_shape, seed=None, **exp.model_kwargs)
    inputs = data.image_inputs(exp.dataset, batch_size=128, eval_batch_size=60, seed=0,
                               data_dir=str(dense_digits_run / "tfds"))
    return tasder.Problem(functools.partial(model.apply, train=False),
                          jax.tree.map(np.asarray, exp.variables_like(like)),
                          evaluate=tasder.top1_accuracy(inputs.eval_batches),
                          calibration=next(inputs.train)["image"])


def test_activation_layers_come_from_the_graph(problem):
    assert problem.activation_layers == ("dense_1", "head")
    assert problem.layer_inputs["dense_0"].source == "input"
    assert not problem.layer_inputs["dense_0"].eligible
    assert "ReLU" in problem.layer_inputs["dense_1"].reason


DESIGNS = [d for d in cost.PAPER_DESIGNS if d != "tc"] + ["stc"]


@pytest.mark.parametrize("hardware", DESIGNS)
@pytest.mark.parametrize("operand", ["weights", "activations", "both"])
def test_every_mode_keeps_the_budget_and_ours_is_never_worse(problem, hardware, operand):
    floor = 0.99 * problem.baseline
    results = {mode: tasder.search(problem, hardware=hardware, budget=0.99, mode=mode,
                                   operand=operand) for mode in ("network", "paper", "ours")}
    # The design's own candidates, per operand (weight and activation modes differ).
    design = cost.hardware(hardware)
    weight_series = set(design.candidate_series("weight"))
    activation_series = set(design.candidate_series("activation"))
    for mode, r in results.items():
        assert r.metric >= floor, mode
        assert r.metric == problem.metric(r.choice)  # the reported metric is measured
        assert r.relative_edp == pytest.approx(problem.relative_edp(r.choice, hardware))
        assert set(r.choice.weights.values()) <= weight_series, (mode, r.choice)
        assert set(r.choice.activations.values()) <= activation_series, (mode, r.choice)
        # One M for every activation series: one compiled forward pass serves them all.
        activation_ms = {term.m for spec in r.choice.activations.values() if spec != "dense"
                         for term in patterns.as_series(spec).terms}
        assert len(activation_ms) <= 1, (mode, r.choice)
        assert (r.hardware, r.mode, r.operand, r.batch) == (cost.hardware(hardware).name, mode,
                                                            operand, 1)
        if cost.hardware(hardware).sparse_operands < 2:
            assert not set(r.choice.weights) & set(r.choice.activations)
    assert results["ours"].relative_edp <= min(results["network"].relative_edp,
                                               results["paper"].relative_edp) + 1e-12
    network = results["network"].choice
    assert len(set(network.weights.values()) | set(network.activations.values())) <= 1


def test_ours_is_within_five_percent_of_the_exhaustive_optimum(problem):
    # On both operands (7 x 13 x 13 choices) the optimum found here keeps the budget
    # with dense_1 at 1:8, a series that alone breaks it: on 355 test digits (1% is
    # 3.5 of them) that is luck a stepwise search does not reproduce.
    for operand in ("weights", "activations"):
        exhaustive = tasder.search(problem, hardware="ttc_vegeta_m8", mode="exhaustive",
                                   operand=operand)
        ours = tasder.search(problem, hardware="ttc_vegeta_m8", mode="ours", operand=operand)
        assert exhaustive.metric >= 0.99 * problem.baseline
        assert exhaustive.relative_edp <= ours.relative_edp + 1e-12  # it is the optimum
        assert ours.relative_edp <= 1.05 * exhaustive.relative_edp, (operand, ours, exhaustive)


def test_refining_never_loses_its_start_and_stops_when_told(problem):
    problem.forget()
    start = tasder.search(problem, hardware="ttc_vegeta_m8", mode="ours", operand="both",
                          refine_evaluations=0)
    baselines = [tasder.search(problem, hardware="ttc_vegeta_m8", mode=m, operand="both")
                 for m in ("network", "paper")]
    assert start.relative_edp == min(r.relative_edp for r in baselines)
    problem.forget()
    capped = tasder.search(problem, hardware="ttc_vegeta_m8", mode="ours", operand="both",
                           refine_evaluations=2)
    problem.forget()
    free = tasder.search(problem, hardware="ttc_vegeta_m8", mode="ours", operand="both",
                         refine_evaluations=None)
    assert capped.evaluations <= start.evaluations + 2
    assert free.relative_edp <= capped.relative_edp <= start.relative_edp


def test_exhaustive_refuses_too_many_combinations(problem, monkeypatch):
    count = tasder.combinations(problem, "ttc_vegeta_m8", "both")
    assert count == 7 * 13 * 13  # dense_0: dense + 6 weight series; the others + 6 activation
    monkeypatch.setattr(tasder.searches, "EXHAUSTIVE_LIMIT", 100)
    message = (f"mode='exhaustive' would evaluate up to {count} combinations (3 layers, "
               "options per layer [7, 13, 13]); the limit is 100: use mode='ours'")
    with pytest.raises(ValueError, match=re.escape(message)):
        tasder.search(problem, hardware="ttc_vegeta_m8", mode="exhaustive", operand="both")


def test_edp_depends_on_the_batch_and_each_batch_has_its_own_reference(problem):
    choice = tasder.Choice({"dense_1": "2:8"}, {})
    one = problem.relative_edp(choice, "ttc_vegeta_m8", batch=1)
    many = problem.relative_edp(choice, "ttc_vegeta_m8", batch=256)
    assert one != many
    assert problem.gemms(256)[0].m == 256 * problem.gemms(1)[0].m
    r = tasder.search(problem, hardware="ttc_vegeta_m8", mode="network", operand="weights",
                      batch=256)
    assert r.batch == 256
    assert r.relative_edp == pytest.approx(problem.relative_edp(r.choice, "ttc_vegeta_m8", 256))


def test_one_problem_serves_every_design(problem):
    choice = tasder.Choice({"dense_1": "2:4"}, {})
    problem.forget()
    before = problem.evaluations
    stc = problem.evaluate(choice, "stc")
    vegeta = problem.evaluate(choice, "ttc_vegeta_m4", batch=64)
    assert problem.evaluations == before + 1  # measured once
    assert stc.metric == vegeta.metric
    assert stc.relative_edp == problem.relative_edp(choice, "stc")
    assert vegeta.relative_edp == problem.relative_edp(choice, "ttc_vegeta_m4", 64)
    with pytest.raises(ValueError, match=re.escape(
            "hardware 'ttc_vegeta_m8' cannot run weight series '2:4' (terms ['2:4']; "
            "GEMMs ['MLP/dense_1']): its weight modes are ['1:8', '2:8', '4:8']")):
        problem.evaluate(choice, "ttc_vegeta_m8")


def test_alpha_rule_grows_more_aggressive_with_alpha(problem):
    _, acts = problem.candidates("ttc_vegeta_m8")
    costs = []
    for alpha in (-0.5, 0.0, 0.5):
        choice = tasder.alpha_rule(problem, acts, alpha, tasder.Choice({}, {}))
        costs.append(sum(patterns.as_series(choice.activations.get(p, "dense")).compute_cost
                         for p in problem.activation_layers))
    assert costs[0] >= costs[1] >= costs[2]
    assert costs[0] > costs[2]


@pytest.mark.parametrize("kwargs, message", [
    ({"budget": 0.0}, "budget=0.0 must lie in (0, 1] (the fraction of the model's own metric"),
    ({"budget": 99}, "budget=99 must lie in (0, 1] (the fraction of the model's own metric"),
    ({"mode": "greedy"}, "mode='greedy' is not one of ('network', 'paper', 'ours', 'exhaustive')"),
    ({"operand": "inputs"}, "operand='inputs' is not one of ('weights', 'activations', 'both')"),
    ({"hardware": "ttc_vegeta_m16"}, "unknown hardware 'ttc_vegeta_m16'; known: ["),
    ({"batch": 0}, "batch=0 must be an integer >= 1"),
    ({"refine_evaluations": -1}, "refine_evaluations=-1 must be an integer >= 0 or None"),
])
def test_bad_search_arguments(problem, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        tasder.search(problem, **kwargs)


def test_bad_problems_fail_before_any_search(problem):
    apply, variables, cal = problem.apply_fn, problem.variables, problem.calibration
    metric = problem.evaluate_fn
    with pytest.raises(ValueError, match=re.escape(
            "activation layers ['nope'] are not GEMM layers of the model (its layers: [")):
        tasder.Problem(apply, variables, evaluate=metric, calibration=cal,
                       activation_layers=("nope",))
    with pytest.raises(ValueError, match=re.escape(
            "variables must be a dict with a 'params' collection (flax model.init's output)")):
        tasder.Problem(apply, variables["params"], evaluate=metric, calibration=cal)
    with pytest.raises(ValueError,
                       match=re.escape("evaluate=0.97 is not callable: pass a function")):
        tasder.Problem(apply, variables, evaluate=0.97, calibration=cal)
    with pytest.raises(ValueError, match=re.escape(
            "calibration must be an input pytree whose every leaf has a leading examples axis "
            "with at least one example")):
        tasder.Problem(apply, variables, evaluate=metric, calibration=cal[:0])
    with pytest.raises(ValueError, match=re.escape(
            "choice.weights names ['nope'], not layers of the model (its layers: [")):
        problem.evaluate(tasder.Choice({"nope": "2:8"}, {}), "ttc_vegeta_m8")
    with pytest.raises(ValueError, match=re.escape(
            "choice.activations names ['dense_0'], not among the problem's activation layers "
            "['dense_1', 'head']")):
        problem.evaluate(tasder.Choice({}, {"dense_0": "2:8"}), "ttc_vegeta_m8")


def test_the_dstc_skips_the_zeros_the_weights_already_have(problem):
    variables = jax.tree.map(np.array, problem.variables)
    kernel = variables["params"]["dense_1"]["kernel"]
    kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.9)] = 0.0  # 90% pruned
    pruned = tasder.Problem(problem.apply_fn, variables, evaluate=problem.evaluate_fn,
                            calibration=problem.calibration)
    dense = tasder.Choice({}, {})
    assert pruned.relative_edp(dense, "dstc") < problem.relative_edp(dense, "dstc")
    assert pruned.relative_edp(dense, "ttc_vegeta_m8") == problem.relative_edp(dense,
                                                                                "ttc_vegeta_m8")
