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
    config.search_examples = 200  # of the 1000 test digits: each evaluation a fifth as long
    config.shapes_only.models = ("lenet5",)  # five GEMMs: the shapes-only path, quickly
    config.shapes_only.images = (1, 28, 28, 1)
    config.gap_searches = (("network", 0.95),)  # the quickest search, at a lower budget
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
    assert f"{100 * cut['geometric_mean']:.0f}% as a geometric mean" in report
    assert f"{100 * cut['average']:.0f}% as an arithmetic mean" in report
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


def test_the_gap_is_measured_by_size_budget_and_coverage(run):
    root, config, results = run
    report = (root / "run" / "report.md").read_text()
    assert "## Why ours differ, measured" in report
    for workload, _, operand in config.workloads:
        search = results["searches"][f"{workload}/ttc_vegeta_m8"]
        (extra,) = search["gap_searches"]
        assert (extra["mode"], extra["budget"]) == ("network", 0.95)
        assert extra["accuracy"] >= 0.95 * search["baseline_accuracy"]
        assert 0 <= search[config.mode]["covered_mac_share"] <= search["eligible_mac_share"] <= 1
        assert "scaled" not in search  # config.widths is empty
        picked = search[config.mode]["representative_layers"]
        assert [p["position"] for p in picked] == ["early", "middle", "late"]
        chosen = search[config.mode]["choice"]["weights" if operand == "weights" else "activations"]
        for p in picked:
            assert p["series"] == chosen.get(p["layer"], "dense")
    assert "**Search and budget**" in report and "`network` search, 95%" in report


@pytest.mark.parametrize("hardware", ["ttc_vegeta_m8", "dstc"])
def test_a_choice_costed_at_its_own_width_is_its_own_estimate(hardware):
    import functools
    import jax
    from tasd_jax import models, tasder

    shape, kwargs = (1, 28, 28, 1), {"depth": 11, "num_classes": 10}
    model, variables = models.init_model("resnet29_bottleneck", shape, seed=0, **kwargs)
    images = jax.nn.relu(jax.random.normal(jax.random.key(1), (4, 28, 28, 1)))
    problem = tasder.Problem(functools.partial(model.apply, train=False), variables,
                             evaluate=lambda apply, v: 1.0, calibration=images)
    layers = problem.activation_layers
    choice = tasder.Choice({}, {layer: ("4:8", "4:8+2:8")[i % 2] for i, layer in enumerate(layers)})
    scaled = repro_tasd.scaled_estimates(problem, choice, hardware, 1, "resnet29_bottleneck",
                                         kwargs, (1, 2))
    assert list(scaled) == ["x1", "x2", "resnet50"]
    own = repro_tasd._relative(problem.estimate(choice, hardware),
                               problem.estimate(tasder.Choice({}, {}), "tc"))
    for key, value in own.items():  # the same GEMMs with the same operands
        assert scaled["x1"][key] == pytest.approx(value, rel=1e-9), key
    assert scaled["x2"]["macs"] > 3 * scaled["x1"]["macs"]
    assert scaled["resnet50"]["macs"] == 4_089_184_256  # torchvision's 4.09 GMACs
    # Wider layers, the same series: the estimate moves (the layers are no longer as
    # memory-bound), so the width is measured, not assumed away.
    assert scaled["x2"]["edp"] != pytest.approx(scaled["x1"]["edp"], abs=1e-3)


def test_the_average_is_the_papers_geometric_mean():
    # The paper's four TTC-VEGETA-M8 bars, 0.42 / 0.39 / 0.17 / 0.18 of TC, give its 74%.
    cuts = [-c for c in repro_tasd.PAPER_FIGURE_12["ttc_vegeta_m8"]]
    assert repro_tasd.geometric_mean_cut(cuts) == pytest.approx(
        1 - (0.42 * 0.39 * 0.17 * 0.18) ** 0.25, abs=1e-12)
    assert round(repro_tasd.geometric_mean_cut(cuts), 2) == 0.73


def test_resnet50_layers_take_the_trained_layer_of_their_role_and_depth():
    from tasd_jax import cost, models
    import jax.numpy as jnp

    def gemms(name, shape):
        model, like = models.init_model(name, shape, seed=None)
        return cost.model_gemms(model, like, shape, jnp.float32)

    small = gemms("resnet29_bottleneck", (1, 28, 28, 1))
    big = gemms("resnet50", (1, 224, 224, 3))
    operands = {g.layer: cost.choice.Operands(g.layer, "dense", 1.0, 1.0) for g in small}
    mapped = dict(zip((g.layer for g in big),
                      (op.weight_series for op in repro_tasd.same_role_operands(
                          big, small, operands))))
    assert mapped["conv_stem"] == "conv_stem" and mapped["head"] == "head"
    assert mapped["stage0_block0/conv_1"] == "stage0_block0/conv_1"
    assert mapped["stage3_block2/conv_2"] == "stage2_block2/conv_2"
    # ResNet-50's 16 blocks spread over the 9 trained ones in order.
    order = [mapped[g.layer] for g in big if g.layer.endswith("/conv_1")]
    trained = [g.layer for g in small if g.layer.endswith("/conv_1")]
    assert sorted(set(order), key=trained.index) == trained
    assert order == sorted(order, key=trained.index)
    basic = gemms("resnet20", (1, 28, 28, 1))
    with pytest.raises(ValueError, match=re.escape("layer roles ['conv_2', 'shortcut_conv'] have no counterpart")):
        repro_tasd.same_role_operands(big, basic, {g.layer: None for g in basic})


def test_the_pretrained_workload_is_searched_on_its_gelu_layers_by_agreement(tmp_path):
    import ml_collections
    from test_minilm_tasder import _sentences, tiny_config as tiny_minilm
    from test_pretrained import TINY_CONFIG, tiny_tensors, write_checkpoint, write_tokenizer
    from test_wordnet import write_wordnet

    checkpoint = write_checkpoint(tmp_path / "ckpt", TINY_CONFIG, tiny_tensors(TINY_CONFIG))
    write_tokenizer(checkpoint)
    write_wordnet(tmp_path / "wordnet", nouns=_sentences(20))
    minilm = tiny_minilm(checkpoint, tmp_path / "wordnet")
    pretrained = {k: minilm[k] for k in repro_config.get_config("fashion").pretrained.minilm}
    config = ml_collections.ConfigDict({
        "init_from": "", "pretrained": pretrained, "hardware": "ttc_vegeta_m8",
        "operands": "activations", "mode": "paper", "budget": 0.99, "data_dir": "",
        "seed": 0, "calibration_examples": 64, "eval_batch_size": 4, "search_examples": None,
        "batch": pretrained["batch"], "gap_searches": (), "widths": ()})
    out = repro_tasd.search_stage(config, str(tmp_path / "search"))
    assert out["baseline_accuracy"] == pytest.approx(1.0, abs=1e-5)  # agreement with itself
    assert out["activation_layers"] == 2  # each layer's FFN output, after its GELU
    assert set(out["paper"]["choice"]["activations"]) <= {"layer_0/output", "layer_1/output"}
    assert out["paper"]["accuracy"] >= 0.99 * out["baseline_accuracy"]


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
            "workload 'dense CNN' names model 'lenet', which neither config.train nor "
            "config.pretrained defines (they have ['resnet', 'resnet_ew90', 'vit', 'vit_ew90'], "
            "[])")):
        repro_tasd.repro_tasd(config, str(tmp_path / "run"))
    for field, value, message in (
            ("gap_searches", (("ours", 0.9), ("ours", 1.5)),
             "config.gap_searches[1] budget 1.5 must lie in (0, 1]"),
            ("gap_searches", (("best", 0.9),), "config.gap_searches[0]=('best', 0.9) must be "
                                              "(mode, budget) with mode one of"),
            ("widths", (1, 0), "config.widths[1]"),
            ("search_examples", 150, "config.search_examples=150 must be a multiple of "
                                     "config.eval_batch_size=100")):
        config = tiny_config(str(tmp_path / "tfds"))
        config[field] = value
        with pytest.raises(ValueError, match=re.escape(message)):
            repro_tasd.repro_tasd(config, str(tmp_path / "run"))
    config = tiny_config(str(tmp_path / "tfds"))
    config.widths = (1, 2)
    with pytest.raises(ValueError, match=re.escape(
            "config.widths costs the CNN choices on ResNet-50's layer shapes, which needs a "
            "bottleneck ResNet (resnet29_bottleneck); workload 'dense CNN' trains 'resnet20'")):
        repro_tasd.repro_tasd(config, str(tmp_path / "run"))
    config = repro_config.get_config("fashion")
    config.pretrained.minilm.max_length = 1
    with pytest.raises(ValueError, match=re.escape(
            "config.pretrained.minilm.max_length=1 must be an integer >= 2")):
        repro_tasd.repro_tasd(config, str(tmp_path / "run"))
    config = repro_config.get_config("fashion")
    config.workloads = (("dense transformer", "minilm", "weights"),)
    with pytest.raises(ValueError, match=re.escape(
            "workload 'dense transformer': the pretrained model 'minilm' is dense, so its "
            "operand must be 'activations' (TASD-A)")):
        repro_tasd.repro_tasd(config, str(tmp_path / "run"))
    config = tiny_config(str(tmp_path / "tfds"))
    config.train.resnet_ew90.model_kwargs.depth = 20
    with pytest.raises(ValueError, match=re.escape(
            "config.train.resnet_ew90 is fine-tuned from config.train.resnet's export, so it "
            "must exist and have the same model and model_kwargs")):
        repro_tasd.repro_tasd(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")
