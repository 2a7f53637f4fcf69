"""TASDER on a model the library does not know: the user's flax module, inputs, metric
and training loop, through the public API only."""

import jax
import flax.linen as nn
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

from tasd_jax import tasder


class UserMLP(nn.Module):
    """A user's model: inputs are a dict, no `train` argument, layers fc1, fc2, head."""

    @nn.compact
    def __call__(self, inputs):
        x = inputs["pixels"].reshape(inputs["pixels"].shape[0], -1) * inputs["scale"]
        x = nn.relu(nn.Dense(96, name="fc1")(x))
        x = nn.relu(nn.Dense(64, name="fc2")(x))
        return nn.Dense(10, name="head")(x)


@pytest.fixture(scope="module")
def trained():
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    model = UserMLP()

    def inputs(images):
        return {"pixels": images, "scale": np.ones((len(images), 1), np.float32)}

    variables = model.init(jax.random.key(0), inputs(x[:2]))
    optimizer = optax.adam(3e-3)
    state = optimizer.init(variables)

    @jax.jit
    def step(variables, state, images, labels):
        def loss(v):
            logits = model.apply(v, inputs(images))
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        grads = jax.grad(loss)(variables)
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(variables, updates), state

    rng = np.random.default_rng(0)
    for _ in range(300):
        idx = rng.integers(0, 1400, 64)
        variables, state = step(variables, state, x[idx], y[idx])
    test = [(inputs(x[i:i + 100]), y[i:i + 100]) for i in range(1400, 1797, 100)]
    return model, variables, inputs(x[:256]), test


def agreement_f1(test):
    """The user's own metric: macro F1 of the predictions, in plain numpy."""
    def evaluate(apply, variables):
        predicted = np.concatenate([np.argmax(apply(variables, xb), -1) for xb, _ in test])
        truth = np.concatenate([yb for _, yb in test])
        f1 = []
        for c in range(10):
            tp = np.sum((predicted == c) & (truth == c))
            fp, fn = np.sum((predicted == c) & (truth != c)), np.sum((predicted != c) & (truth == c))
            f1.append(2 * tp / max(2 * tp + fp + fn, 1))
        return float(np.mean(f1))
    return evaluate


def test_the_users_model_and_metric_through_the_public_api(trained, tmp_path):
    model, variables, calibration, test = trained
    problem = tasder.Problem(model.apply, variables, evaluate=agreement_f1(test),
                             calibration=calibration, activation_layers="auto")
    assert problem.baseline > 0.85
    # fc1 reads the model's input; fc2 and head read ReLU outputs.
    assert problem.activation_layers == ("fc2", "head")
    assert problem.layer_inputs["fc1"].source == "input"
    result = tasder.search(problem, hardware="ttc_vegeta_m8", budget=0.99, mode="ours",
                           operand="both", batch=1)
    assert result.metric >= 0.99 * problem.baseline
    assert result.relative_edp < 1.0
    assert result.choice.weights or result.choice.activations
    for mode in ("network", "paper"):
        other = tasder.search(problem, hardware="ttc_vegeta_m8", mode=mode)
        assert result.relative_edp <= other.relative_edp + 1e-12

    # Saved and reloaded without any registry: the user brings apply_fn.
    tasder.save(str(tmp_path / "result"), problem, result)
    saved = tasder.load(str(tmp_path / "result"))
    assert saved.choice == result.choice and saved.result.metric == result.metric
    apply = tasder.apply_choice(model.apply, saved.choice)
    assert agreement_f1(test)(apply, saved.variables) == pytest.approx(result.metric)

    rows = tasder.frontier(problem, "ttc_vegeta_m8", budgets=(0.999, 0.98))
    assert [(r.budget, r.mode) for r in rows][:3] == [(0.999, "network"), (0.999, "paper"),
                                                       (0.999, "ours")]
    tasder.plot_frontier(rows, str(tmp_path / "frontier.png"), title="user MLP",
                         marks=[("dense", problem.baseline, 1.0)])
    assert (tmp_path / "frontier.png").stat().st_size > 10_000


def test_a_lower_is_better_metric_is_passed_negated(trained):
    model, variables, calibration, test = trained

    def negative_loss(apply, variables):
        losses = [optax.softmax_cross_entropy_with_integer_labels(apply(variables, xb), yb).mean()
                  for xb, yb in test]
        return -float(np.mean(losses))

    problem = tasder.Problem(model.apply, variables, evaluate=negative_loss,
                             calibration=calibration, activation_layers=())
    result = tasder.search(problem, hardware="ttc_vegeta_m8", mode="network", operand="weights")
    # The loss may rise by at most 1% of itself.
    assert -result.metric <= 1.01 * -problem.baseline + 1e-9


def test_top1_accuracy_takes_generators_one_hot_labels_and_no_mask(trained):
    model, variables, calibration, test = trained
    batches = ({"inputs": xb, "y": np.eye(10, dtype=np.float32)[yb]} for xb, yb in test)
    metric = tasder.top1_accuracy(batches, inputs="inputs", label="y", mask=None)
    ids = tasder.top1_accuracy(({"inputs": xb, "y": yb} for xb, yb in test), inputs="inputs",
                               label="y", mask=None)
    assert metric(model.apply, variables) == ids(model.apply, variables) > 0.85
    problem = tasder.Problem(model.apply, variables, evaluate=metric, calibration=calibration)
    assert problem.baseline == metric(model.apply, variables)


def test_bad_metrics_and_batches_are_clear_errors(trained):
    model, variables, calibration, test = trained
    with pytest.raises(ValueError, match="batch 0 has no 'label'.*'inputs'"):
        tasder.top1_accuracy([{"inputs": test[0][0]}], inputs="inputs")
    with pytest.raises(ValueError, match="got no batch"):
        tasder.top1_accuracy(iter([]))
    with pytest.raises(ValueError, match="returned nan: the metric must be finite"):
        tasder.Problem(model.apply, variables, evaluate=lambda a, v: float("nan"),
                       calibration=calibration)
    with pytest.raises(ValueError, match="returned dict .* not a number"):
        tasder.Problem(model.apply, variables, evaluate=lambda a, v: {"acc": 1.0},
                       calibration=calibration)
    with pytest.raises(ValueError, match="returned 0 on the unmodified model"):
        tasder.Problem(model.apply, variables, evaluate=lambda a, v: 0.0, calibration=calibration)
    with pytest.raises(ValueError, match="activation_layers='all' must be 'auto'"):
        tasder.Problem(model.apply, variables, evaluate=agreement_f1(test),
                       calibration=calibration, activation_layers="all")


def test_early_stopping_agrees_with_the_full_metric(trained):
    model, variables, calibration, test = trained
    metric = tasder.top1_accuracy([{"x": xb, "y": yb} for xb, yb in test], inputs="x",
                                  label="y", mask=None)
    full = metric(model.apply, variables)
    for floor in (0.5, full - 1e-6, full + 1e-6, 0.999):
        outcome = metric.at_least(model.apply, variables, floor)
        assert outcome.passed == (full >= floor)
        assert outcome.value in (None, full)
    assert metric.at_least(model.apply, variables, 0.999).batches < len(test)  # stopped early


@pytest.mark.parametrize("spec", ["1:8", "2:8+1:8", "4:8+2:8"])
def test_the_search_forward_pass_equals_the_saved_models(trained, jit, spec):
    """The search's compiled pass (traced keep counts) and `apply_choice` (the series
    itself, as a saved result runs) give the same outputs."""
    model, variables, calibration, test = trained
    problem = tasder.Problem(model.apply, variables, evaluate=agreement_f1(test),
                             calibration=calibration)
    choice = tasder.Choice({}, {"fc2": spec, "head": "4:8"})
    searched = problem.apply_for(choice)(variables, calibration)
    saved = jit(tasder.apply_choice(model.apply, choice))(variables, calibration)
    dense = model.apply(variables, calibration)
    np.testing.assert_allclose(searched, saved, rtol=1e-6, atol=1e-6)
    assert not np.allclose(saved, dense)


def test_frontier_labels_name_the_modes_that_share_a_point():
    def result(mode, budget, metric, edp):
        return tasder.Result(tasder.Choice({}, {}), metric, edp, 0.98, budget, "stc", 1, mode,
                             "both")

    rows = [result("network", 0.999, 0.979, 0.95), result("paper", 0.999, 0.979, 0.95),
            result("ours", 0.999, 0.979, 0.95),
            result("network", 0.99, 0.975, 0.62), result("paper", 0.99, 0.972, 0.48),
            result("ours", 0.99, 0.972, 0.48)]
    assert tasder.frontier_labels(rows) == {
        (0.979, 0.95): "99.9% all modes", (0.975, 0.62): "99%", (0.972, 0.48): "99% paper = ours"}


def test_plot_frontier_refuses_no_results(tmp_path):
    with pytest.raises(ValueError, match="results is empty, there is nothing to draw"):
        tasder.plot_frontier([], str(tmp_path / "f.png"))
