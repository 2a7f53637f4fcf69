"""The pipeline end to end: train with TW pruning -> export -> decompose -> EDP -> TW kernels.

Every later stage reads the training run's export through `tasd_jax.export`,
the way `--config.init_from=DIR/export` does on the command line.
"""

import numpy as np
import pytest

from configs import decompose_report as decompose_config
from configs import edp_resnet50 as edp_config
from configs import tw_digits
from configs import tw_kernels_digits
from experiments import decompose_report, edp_report, tw_kernels
from experiments import exports
from experiments import train as train_experiment
from tasd_jax import export as export_lib
from tasd_jax import patterns


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits MLP trained for 60 steps, pruned to TW-75% (G = 32) from step 20 to 40."""
    root = tmp_path_factory.mktemp("pipeline")
    config = tw_digits.get_config()
    config.data_dir = str(root / "tfds")
    config.num_steps, config.log_every, config.eval_every, config.checkpoint_every = 60, 20, 60, 60
    config.pruning.begin, config.pruning.end, config.pruning.frequency = 20, 40, 10
    results = train_experiment.train_and_evaluate(config, str(root / "train"))
    return root, results


def test_export_describes_the_model_and_its_run(trained):
    root, results = trained
    export = exports.load_export(str(root / "train" / "export"))
    assert (export.model, export.dataset) == ("mlp", "sklearn_digits")
    assert export.model_kwargs == {"hidden": (256, 128), "num_classes": 10}
    assert export.input_shape == (1, 8, 8, 1)
    assert export.pruning_rules == (("dense_[01]/kernel$", "tw(sparsity=0.75,g=32)"),)
    assert export.test_accuracy == results["final"]["test_accuracy"]
    kernel = export.variables["params"]["dense_0/kernel"]
    assert bool(patterns.parse("tw(sparsity=0.75,g=32)").conforms(kernel != 0))


def test_decomposition_report_reads_the_exports_own_sparsity(trained, tmp_path):
    root, results = trained
    config = decompose_config.get_config()
    config.init_from = str(root / "train" / "export")
    config.series = ("2:4", "2:8+1:8")
    out = decompose_report.decompose_report(config, str(tmp_path))
    (weights,) = out["weights"]
    assert weights["source"]["path"].endswith("train/export")
    assert weights["source"]["pruned_here_with"] is None
    assert weights["source"]["test_accuracy"] == results["final"]["test_accuracy"]
    rows = _csv(tmp_path / "layers.csv")
    by_layer = {r["layer"]: float(r["sparsity"]) for r in rows if r["series"] == "2:4"}
    trained_sparsity = results["final"]["layer_sparsity"]
    for layer in ("dense_0/kernel", "dense_1/kernel"):
        assert by_layer[layer] == pytest.approx(trained_sparsity[layer], abs=1e-9)
    assert by_layer["head/kernel"] == 0.0  # the dense head is reported dense, not re-pruned

    # Re-pruning is possible and named in the outputs.
    config.prune = "ew(sparsity=0.9)"
    again = decompose_report.decompose_report(config, str(tmp_path / "reprune"))
    assert again["weights"][0]["source"]["pruned_here_with"] == "ew(sparsity=0.9)"
    # Every layer loses its smallest weights to at least 90% zeros (layers already sparser stay so).
    relayers = [r for r in _csv(tmp_path / "reprune" / "layers.csv") if r["series"] == "2:4"]
    assert all(float(r["sparsity"]) >= 0.9 - 1e-3 for r in relayers)
    assert again["weights"][0]["weight_sparsity"] >= weights["weight_sparsity"]


def test_edp_report_estimates_the_trained_model(trained, tmp_path):
    root, _ = trained
    config = edp_config.get_config()
    config.init_from = str(root / "train" / "export")
    config.hardware = ("dense", "stc", "ttc")
    config.series = ("dense", "2:4", "2:8+1:8")
    out = edp_report.edp_report(config, str(tmp_path))
    assert list(out["workloads"]) == ["mlp_1x8x8x1"]
    assert out["weights"][0]["source"] == "export"
    totals = {(r["hardware"], r["series"]): r for r in out["totals"]}
    # Each total is the sum of its per-layer rows, its EDP total cycles x total energy, and
    # its relative figures divided by the dense core running the dense model.
    summed = {}
    for r in _csv(tmp_path / "per_layer.csv"):
        key = r["hardware"], r["series"]
        cycles, energy = summed.get(key, (0.0, 0.0))
        summed[key] = cycles + float(r["cycles"]), energy + float(r["energy_pj"])
    assert set(summed) == set(totals)
    base_cycles, base_energy = summed["dense", "dense"]
    for key, (cycles, energy) in summed.items():
        assert totals[key]["cycles"] == pytest.approx(cycles, rel=1e-9), key
        assert totals[key]["energy_pj"] == pytest.approx(energy, rel=1e-9), key
        assert totals[key]["edp_pj_cycles"] == pytest.approx(cycles * energy, rel=1e-9), key
        assert totals[key]["rel_cycles"] == pytest.approx(cycles / base_cycles, rel=1e-9), key
        assert totals[key]["rel_edp"] == pytest.approx(
            cycles * energy / (base_cycles * base_energy), rel=1e-9), key
    # 2:4 on the STC halves the compute of every layer: fewer cycles than dense.
    assert summed["stc", "2:4"][0] < base_cycles


def test_tw_kernels_run_the_export_with_the_masked_dense_accuracy(trained, tmp_path):
    root, _ = trained
    config = tw_kernels_digits.get_config()
    config.init_from = str(root / "train" / "export")
    config.data_dir = str(root / "tfds")
    config.timing_batch, config.reps = 256, 3
    out = tw_kernels.tw_kernels(config, str(tmp_path))
    assert out["g"] == 32 and out["packed_layers"] == ["dense_0", "dense_1"]
    assert out["accuracy"]["tw_kernels"] == out["accuracy"]["masked_dense"]
    assert out["max_abs_logit_difference"] < 1e-4
    assert out["test_examples"] == 355
    assert out["sparsity_of_packed_layers"] == pytest.approx(0.75, abs=0.01)
    forward = out["forward"]
    assert (forward["batch"], forward["reps"]) == (256, 3)
    assert forward["speedup"] == pytest.approx(forward["dense_ms"] / forward["tw_ms"], rel=1e-9)


def test_training_starts_from_the_export(trained, tmp_path):
    root, _ = trained
    config = tw_digits.get_config()
    config.data_dir = str(root / "tfds")
    config.init_from = str(root / "train" / "export")
    config.pruning.rules = ()
    config.num_steps, config.log_every, config.eval_every, config.checkpoint_every = 1, 1, 1, 1
    config.learning_rate = 0.0
    results = train_experiment.train_and_evaluate(config, str(tmp_path / "again"))
    before = export_lib.load_export(str(root / "train" / "export")).variables["params"]
    after = export_lib.load_export(str(tmp_path / "again" / "export")).variables["params"]
    for key in before:  # a zero learning rate keeps the imported weights
        np.testing.assert_array_equal(before[key], after[key])
    assert results["init_from"]["path"].endswith("train/export")

    config.model_kwargs.hidden = (64, 32)
    with pytest.raises(ValueError, match="does not fit the model"):
        train_experiment.train_and_evaluate(config, str(tmp_path / "misfit"))


def _csv(path):
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))
