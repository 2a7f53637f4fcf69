"""The tasder experiment end to end on a small trained model: outputs, export, rebuild."""

import csv
import functools
import json

import jax.numpy as jnp
import numpy as np
import pytest

from configs import tasder as tasder_config
from configs import tasder_table as tasder_table_config
from experiments import tasder as tasder_experiment
from experiments.errors import ConfigError
from tasd_jax import data, export as export_lib, models, tasder


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
    assert all(r["activation_series"] == "dense" for r in saved["layers"])  # weights only
    assert [r["tasd_a"] for r in saved["layers"]] == ["dense", "eligible", "eligible"]

    # The saved result rebuilds the measured accuracy with the project's model alone.
    saved = tasder.load(str(tmp_path / "result"))
    assert saved.result.metric == pytest.approx(out["accuracy"])
    assert saved.extra["init_from"]
    export = export_lib.load_export(config.init_from)
    model, _ = models.init_model(export.model, export.input_shape, seed=None, **export.model_kwargs)
    apply = tasder.apply_choice(functools.partial(model.apply, train=False), saved.choice)
    batches = data.eval_batches(export.dataset, batch_size=128, data_dir=config.data_dir)
    hits = total = 0
    for batch in batches:
        logits = apply(saved.variables, jnp.asarray(batch["image"]))
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


def test_bad_search_fields_fail_before_any_work(trained, tmp_path):
    config = tasder_config.get_config("lenet5")
    config.init_from = str(trained / "train" / "export")
    config.data_dir = str(trained / "tfds")
    config.operands, config.hardware = "weights", "tpu"
    with pytest.raises(ConfigError, match="config.hardware='tpu'"):
        tasder_experiment.tasder_experiment(config, str(tmp_path))
    config.hardware, config.budget = "ttc_vegeta_m8", 99
    with pytest.raises(ConfigError, match=r"config.budget=99.0: a budget must lie in \(0, 1\]"):
        tasder_experiment.tasder_experiment(config, str(tmp_path))


def test_the_table_runs_every_mode_on_every_design_from_one_problem(trained, tmp_path):
    config = tasder_table_config.get_config()
    config.exports = str(trained)  # the digits MLP's export is EXPORTS/train/export
    config.models = {"train": config.models.lenet5}
    config.designs = ("ttc_stc_m4", "ttc_vegeta_m8")
    config.data_dir = str(trained / "tfds")
    out = tasder_experiment.tasder_table(config, str(tmp_path))
    rows = out["rows"]
    assert [r["design"] for r in rows] == ["ttc_stc_m4", "ttc_vegeta_m8"]
    for r in rows:
        assert r["ours_edp"] <= min(r["network_edp"], r["paper_edp"]) + 1e-12
        for mode in ("network", "paper", "ours"):
            assert r[f"{mode}_accuracy"] >= 0.99 * r["baseline_accuracy"]
    assert "exhaustive_edp" in rows[0]  # 2 x 3 x 3 choices on the STC design
    assert rows[0]["exhaustive_edp"] <= rows[0]["ours_edp"] + 1e-12
    table = (tmp_path / "table.md").read_text()
    assert "`ours` <= min(`network`, `paper`) on 2 of 2 rows" in table
