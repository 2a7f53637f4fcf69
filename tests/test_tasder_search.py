"""TASDER searches on a small trained model: budgets hold, ours never loses to the paper's greedy."""

import jax
import numpy as np
import pytest

from tasd_jax import data, export as export_lib, models
from tasd_jax.tasder import searches as search


@pytest.fixture(scope="module")
def problem(dense_digits_run):
    """The dense digits MLP on ttc_vegeta_m8, its hidden layers TASD-A eligible."""
    exp = export_lib.load_export(str(dense_digits_run / "train" / "export"))
    model, like = models.init_model(exp.model, exp.input_shape, seed=None, **exp.model_kwargs)
    inputs = data.image_inputs(exp.dataset, batch_size=128, eval_batch_size=128, seed=0,
                               data_dir=str(dense_digits_run / "tfds"))
    return search.Problem(
        model.apply, jax.tree.map(np.asarray, exp.variables_like(like)), list(inputs.eval_batches),
        next(inputs.train)["image"], "ttc_vegeta_m8", activation_layers=("dense_1", "head"),
    )


@pytest.mark.parametrize("operand", ["weights", "activations", "both"])
def test_every_mode_keeps_the_budget_and_ours_is_never_worse_than_the_paper(problem, operand):
    floor = 0.99 * problem.baseline_accuracy
    results = {mode: search.search(problem, budget=0.99, mode=mode, operand=operand)[0]
               for mode in search.MODES}
    for mode, r in results.items():
        assert r.accuracy >= floor, mode
        assert r.accuracy == problem.accuracy(r.choice)  # the reported accuracy is measured
        assert 0 < r.relative_edp <= problem.relative_edp(search.Choice({}, {})), mode
        for layer, spec in {**r.choice.weights, **r.choice.activations}.items():
            assert spec in problem.hw.candidate_series("weight"), (layer, spec)
        assert not set(r.choice.weights) & set(r.choice.activations)  # one sparse operand
    assert results["ours"].relative_edp <= results["paper"].relative_edp
    network = results["network"].choice
    assert len(set(network.weights.values()) | set(network.activations.values())) <= 1
    # The evaluation compiled once: series change values, not shapes.
    assert problem._correct._cache_size() == 1


def test_alpha_rule_grows_more_aggressive_with_alpha(problem):
    costs = []
    for alpha in (-0.5, 0.0, 0.5):
        choice = search.alpha_rule(problem, alpha, search.Choice({}, {}))
        costs.append(sum(search._compute(s) for s in choice.activations.values())
                     + len(problem.activation_layers) - len(choice.activations))
    assert costs[0] >= costs[1] >= costs[2]


@pytest.mark.parametrize("kwargs, message", [
    ({"budget": 0.0}, "budget=0.0"),
    ({"budget": 1.5}, "budget=1.5"),
    ({"mode": "exhaustive"}, "mode='exhaustive'"),
    ({"operand": "inputs"}, "operand='inputs'"),
])
def test_bad_search_arguments(problem, kwargs, message):
    with pytest.raises(ValueError, match=message):
        search.search(problem, **kwargs)


def test_bad_problems_fail_before_any_work(problem):
    with pytest.raises(ValueError, match="unknown accelerator|not one of|cannot|hardware"):
        search.Problem(problem.apply_fn, problem.variables, problem.eval_batches,
                       problem.calibration, "tpu_v9")
    empty = [{**problem.eval_batches[0], "mask": np.zeros_like(problem.eval_batches[0]["mask"])}]
    with pytest.raises(ValueError, match="evaluation data is empty"):
        search.Problem(problem.apply_fn, problem.variables, empty, problem.calibration,
                       "ttc_vegeta_m8")
    with pytest.raises(ValueError, match="not GEMM layers"):
        search.Problem(problem.apply_fn, problem.variables, problem.eval_batches,
                       problem.calibration, "ttc_vegeta_m8", activation_layers=("nope",))
