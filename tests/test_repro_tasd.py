"""The TASD reproduction end to end on tiny training runs: every workload and design
searched, the paper's figures beside ours, shapes-only rows labelled, reruns reuse."""

import csv
import os
import pathlib
import re

import numpy as np
import pytest

from configs import repro_tasd as repro_config
from experiments import repro_tasd
from experiments import stages


DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def paper_figure_12() -> tuple[list[str], dict[str, list[float]]]:
    """docs/tasd.md's Figure 12 table: its model columns, and per design (as
    `cost.hardware` names it) the EDP changes (-0.58 for "-58%") in that order."""
    lines = (DOCS / "tasd.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("**Figure 12**"))
    table = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip("|").split("|")])
        elif table:
            break
    header, _, *body = table
    return header[1:], {row[0].lower().replace("-", "_"): [float(c.rstrip("%")) / 100
                                                           for c in row[1:]] for row in body}


def tiny_config(data_dir: str):
    config = repro_config.get_config()
    config.data_dir = data_dir
    for name in ("resnet", "vit", "resnet_ew90", "vit_ew90"):
        t = config.train[name]
        t.num_steps, t.log_every, t.eval_every, t.checkpoint_every = 20, 10, 20, 20
        if t.pruning.rules:
            t.pruning.begin, t.pruning.end, t.pruning.frequency = 0, 10, 5
    for name in ("resnet", "resnet_ew90"):
        config.train[name].model_kwargs.depth = 8  # ResNet-8: one block per stage
    for name in ("vit", "vit_ew90"):
        config.train[name].model_kwargs.num_layers = 1
    config.hardware = ("ttc_vegeta_m8", "dstc")
    config.calibration_examples = 64
    config.shapes_only.models = ("lenet5",)  # five GEMMs: the shapes-only path, quickly
    config.shapes_only.images = (1, 28, 28, 1)
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro_tasd")
    config = tiny_config(str(root / "tfds"))
    return root, config, repro_tasd.repro_tasd(config, str(root / "run"))


def test_every_workload_and_design_is_searched_beside_the_paper(run):
    root, config, results = run
    with open(root / "run" / "figure12.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["workload"], r["hardware"]) for r in rows} == {
        (w, hw) for w, _, _ in config.workloads for hw in config.hardware}
    paper_models, paper_edp = paper_figure_12()
    for r in rows:
        # config.workloads lists the workloads in the paper's column order.
        index = [w for w, _, _ in config.workloads].index(r["workload"])
        assert r["paper_model"] == paper_models[index]
        assert float(r["paper_edp"]) == pytest.approx(paper_edp[r["hardware"]][index], abs=1e-12)
        # Each search keeps the budget, measured on the model's own test split.
        assert float(r["ours_accuracy"]) >= config.budget * float(r["ours_baseline_accuracy"])
    # The dense workloads decompose activations only, the sparse ones weights only.
    for key, search in results["searches"].items():
        choice = search[config.mode]["choice"]
        workload = key.split("/")[0]
        operand = dict((w, o) for w, _, o in config.workloads)[workload]
        assert not (choice["weights"] if operand == "activations" else choice["activations"])


def test_report_quotes_the_paper_and_ours_and_labels_shapes_only(run):
    root, config, results = run
    report = (root / "run" / "report.md").read_text()
    for figure in ("-58%", "-61%", "-83%", "-82%", "+12%", "+167%", "-87%", "-55%", "74%", "83%",
                   "-24%", "-53%", "-75%", "-61%", "-47%"):
        assert figure in report, figure
    cut = results["summary"]["improvement"]
    assert f"average {100 * cut['average']:.0f}%" in report
    # The summary is the figure's TTC-VEGETA-M8 rows: the mean and largest EDP cut, and the
    # sparse CNN's own layer-wise changes.
    vegeta = [r for r in results["figure12"] if r["hardware"] == "ttc_vegeta_m8"]
    assert len(vegeta) == len(config.workloads)
    assert cut["average"] == pytest.approx(np.mean([-r["ours_edp"] for r in vegeta]), rel=1e-12)
    assert cut["maximum"] == pytest.approx(max(-r["ours_edp"] for r in vegeta), rel=1e-12)
    (sparse_cnn,) = [r for r in vegeta if r["workload"] == "sparse CNN"]
    layer_wise = results["summary"]["sparse_cnn"]["layer_wise"]
    for key in ("cycles", "energy", "edp"):
        assert layer_wise[key] == sparse_cnn[f"ours_{key}"], key
    assert layer_wise["accuracy"] == sparse_cnn["ours_accuracy"]
    assert "shapes-only estimates" in report and "## Differences from the paper" in report
    shapes = results["shapes_only"]["lenet5"]["rows"]
    assert {(r["workload"], r["hardware"]) for r in shapes} == {
        (w, hw) for w in ("dense", "sparse") for hw in config.hardware}
    # Pruned to 95% and decomposed, the sparse shapes-only model costs less than dense on tc.
    assert all(r["edp"] < 0 for r in shapes if r["workload"] == "sparse"
               and r["hardware"] == "ttc_vegeta_m8")
    assert os.path.getsize(root / "run" / "figure12.png") > 10_000


def test_a_rerun_reuses_every_stage(run, capsys):
    root, config, results = run
    again = repro_tasd.repro_tasd(config, str(root / "run"))
    assert again["figure12"] == results["figure12"]
    done = sorted(d for d in os.listdir(root / "run")
                  if os.path.exists(root / "run" / d / stages.STAGE_FILE))
    assert capsys.readouterr().out.count("done earlier") == len(done) == 4 + 4 * 2 + 1


def test_bad_settings_fail_before_any_work(tmp_path):
    config = tiny_config(str(tmp_path / "tfds"))
    config.hardware = ("ttc_vegeta_m8", "tpu")
    with pytest.raises(ValueError, match=re.escape(
            "config.hardware lists 'tpu', not a known accelerator; known: [")):
        repro_tasd.repro_tasd(config, str(tmp_path / "run"))
    config = tiny_config(str(tmp_path / "tfds"))
    config.workloads = (("dense CNN", "lenet", "activations"),)
    with pytest.raises(ValueError, match=re.escape(
            "workload 'dense CNN' names model 'lenet', which config.train does not define (it "
            "has ['resnet', 'resnet_ew90', 'vit', 'vit_ew90'])")):
        repro_tasd.repro_tasd(config, str(tmp_path / "run"))
    config = tiny_config(str(tmp_path / "tfds"))
    config.train.resnet_ew90.model_kwargs.depth = 20
    with pytest.raises(ValueError, match=re.escape(
            "config.train.resnet_ew90 is fine-tuned from config.train.resnet's export, so it "
            "must exist and have the same model and model_kwargs")):
        repro_tasd.repro_tasd(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")
