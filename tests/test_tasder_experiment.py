"""The tasder experiment end to end on a small trained model: outputs, export, rebuild."""

import csv
import json

import jax.numpy as jnp
import numpy as np
import pytest

from configs import tasder as tasder_config
from experiments import tasder as tasder_experiment
from tasd_jax import data, tasder
from tasd_jax.tasder import activations


@pytest.fixture
def trained(dense_digits_run):
    return dense_digits_run


def test_tasder_writes_every_output_and_load_rebuilds_the_measured_accuracy(trained, tmp_path):
    config = tasder_config.get_config("lenet5")
    config.init_from = str(trained / "train" / "export")
    config.data_dir = str(trained / "tfds")
    config.operands = "weights"
    config.frontier_budgets = (0.999, 0.99, 0.98, 0.95, 0.9)
    out = tasder_experiment.tasder_experiment(config, str(tmp_path))
    saved = json.loads((tmp_path / "tasder.json").read_text())
    for key in ("model", "hardware", "budget", "mode", "baseline_accuracy", "accuracy", "edp",
                "search_seconds", "init_from", "layers"):
        assert key in saved, key
    assert saved["accuracy"] >= 0.99 * saved["baseline_accuracy"]
    assert saved["edp"]["relative"] == pytest.approx(saved["edp"]["chosen"] / saved["edp"]["tc_dense"])
    assert saved["edp"]["relative"] < 1.0
    assert [r["name"] for r in saved["layers"]] == ["dense_0/kernel", "dense_1/kernel", "head/kernel"]
    assert all(r["activation_series"] == "dense" for r in saved["layers"])  # an MLP: no TASD-A layer

    # The export keeps the training export's keys and holds the chosen series' weights.
    with np.load(tmp_path / "export" / "params.npz") as exported, \
            np.load(trained / "train" / "export" / "params.npz") as original:
        assert sorted(exported.files) == sorted(original.files)
    apply, variables, export = tasder.load(str(tmp_path))
    batches = data.eval_batches(export.dataset, batch_size=128, data_dir=config.data_dir)
    hits = total = 0
    for batch in batches:
        logits = apply(variables, jnp.asarray(batch["image"]), train=False)
        hits += int(np.sum((np.argmax(logits, -1) == batch["label"]) & batch["mask"]))
        total += int(np.sum(batch["mask"]))
    assert hits / total == pytest.approx(out["accuracy"])

    with open(tmp_path / "frontier.csv") as f:
        frontier = list(csv.DictReader(f))
    assert len(frontier) == 5 * 3
    for budget in config.frontier_budgets:
        rows = {r["mode"]: r for r in frontier if float(r["budget"]) == budget}
        assert float(rows["ours"]["relative_edp"]) <= float(rows["paper"]["relative_edp"])
    from PIL import Image

    with Image.open(tmp_path / "frontier.png") as image:
        assert image.format == "PNG" and len(set(image.convert("L").getdata())) > 2


def test_activations_on_a_model_without_eligible_layers_is_an_error(trained, tmp_path, monkeypatch):
    # The trained model is the digits MLP; without its rule it has no TASD-A layer.
    monkeypatch.delitem(activations.ELIGIBLE_LAYERS, r"^mlp$")
    config = tasder_config.get_config("lenet5")
    config.init_from = str(trained / "train" / "export")
    config.data_dir = str(trained / "tfds")
    config.operands = "activations"
    with pytest.raises(ValueError, match="no layer the paper decomposes"):
        tasder_experiment.tasder_experiment(config, str(tmp_path))
    config.operands, config.hardware = "weights", "tpu"
    with pytest.raises(ValueError, match="tpu"):
        tasder_experiment.tasder_experiment(config, str(tmp_path))
