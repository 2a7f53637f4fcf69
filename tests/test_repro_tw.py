"""The TW reproduction end to end on its tiny variant: every run in the CSV and the
report, the paper's figures beside ours, a rerun that trains nothing; the plot's
y-range and the config checks."""

import csv
import os
import re

import pytest

from configs import repro_tw as repro_config
from experiments import repro_tw
from experiments.errors import ConfigError
from tasd_jax import data
from tasd_jax.data import fashion_mnist


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro_tw")
    config = repro_config.get_config("tiny")
    for model in config.models.values():
        model.base.data_dir = str(root / "tfds")
    return root / "run", config, repro_tw.repro_tw(config, str(root / "run"))


def _read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_every_run_is_in_the_csv_and_the_report(run):
    workdir, config, results = run
    rows = _read_csv(workdir / "accuracy.csv")
    expected = {
        (model, mode, label, s)
        for model in config.models
        for mode in config.threshold_modes
        for label, _ in config.patterns
        for s in config.sparsities
    }
    got = {(r["model"], r["threshold"], r["pattern"], float(r["target_sparsity"])) for r in rows}
    assert got == expected
    assert len(rows) == len(expected)
    report = (workdir / "report.md").read_text()
    for r in rows:
        assert abs(float(r["sparsity"]) - float(r["target_sparsity"])) < 0.01, r
        assert r["pattern_valid"] == "True", r
        # Each run's own folder holds its export, and its accuracy is in the report.
        assert os.path.exists(workdir / r["stage"] / "export" / "params.npz")
        assert f"{100 * float(r['test_accuracy']):.1f}" in report
    for model, accuracy in results["dense_test_accuracy"].items():
        assert f"dense test accuracy {100 * accuracy:.1f}%" in report
        assert 0.1 < accuracy <= 1.0  # trained: above chance on 10 classes
    assert "![accuracy against sparsity](accuracy.png)" in report
    assert (workdir / "accuracy.png").stat().st_size > 10_000


def test_speed_is_measured_beside_the_paper(run):
    workdir, config, results = run
    rows = _read_csv(workdir / "speed.csv")
    assert [r["what"].split(" (")[0] for r in rows] == [
        f"GEMM {k}x{n}" for k, n in config.speed.shapes
    ] + ["encoder"]
    for r in rows:
        # The speed-up is the ratio of the two median times; the fraction of the limit
        # divides it by the compute limit 1 / density.
        speedup = float(r["dense_ms"]) / float(r["tw_ms"])
        assert float(r["speedup"]) == pytest.approx(speedup, rel=1e-9), r["what"]
        assert float(r["compute_limit"]) == pytest.approx(1 / (1 - config.speed.sparsity), rel=0.01)
        assert float(r["fraction_of_limit"]) == pytest.approx(
            speedup / float(r["compute_limit"]), rel=1e-9), r["what"]
    report = (workdir / "report.md").read_text()
    encoder = results["speed"][-1]
    assert f"**{encoder['speedup']:.2f}x**" in report
    assert f"{repro_tw.PAPER_MODEL_SPEEDUP:.2f}x" in report
    assert "## Differences from the paper" in report


def test_report_puts_the_papers_gemm_figures_beside_ours():
    def gemm(k, n, x):
        return {"M": 2048, "K": k, "N": n, "sparsity": 0.75, "g": 128, "density": 0.25,
                "ms": {"dense": 10.0 * x, "xla": 10.0}, "speedup": {"xla": x},
                "speedup_min": {"xla": x}, "compute_limit": 4.0,
                "fraction_of_limit": {"xla": x / 4}}

    speed = {
        "gemms": [gemm(768, 768, 1.11), gemm(768, 3072, 1.22), gemm(3072, 768, 1.33),
                  gemm(64, 64, 1.44)],
        "encoder": {"model": "bert", "sparsity": 0.75, "g": 128, "density": 0.25,
                    "ms": {"dense": 15.5, "tw": 10.0}, "speedup": 1.55, "speedup_min": 1.5,
                    "compute_limit": 4.0, "fraction_of_limit": 0.3875},
    }
    table = repro_tw.speed_table(repro_tw.speed_rows(speed)).splitlines()
    for line, ours, paper in zip(table[2:], ("1.11", "1.22", "1.33", "1.44", "1.55"),
                                 ("2.14x", "2.79x", "2.04x", "not in the paper", "1.95x")):
        assert f"**{ours}x**" in line and line.rstrip(" |").endswith(paper), line


def test_rerun_reuses_every_stage(run, capsys):
    workdir, config, results = run
    stamps = {
        p: os.stat(p).st_mtime_ns
        for p in workdir.glob("*/results.json")
    }
    assert len(stamps) == len(results["rows"]) + len(config.models)
    again = repro_tw.repro_tw(config, str(workdir))
    assert {p: os.stat(p).st_mtime_ns for p in stamps} == stamps  # nothing trained again
    assert again["rows"] == results["rows"] and again["speed"] == results["speed"]
    printed = capsys.readouterr().out
    assert "running into" not in printed
    assert printed.count("done earlier") == len(stamps) + 1  # + the speed stage


def test_y_band_leaves_only_a_collapsed_run_below_the_range():
    close = [0.975, 0.978, 0.98, 0.972, 0.977, 0.979]
    low, high = repro_tw.y_band(close + [0.1], dense=0.981)
    assert 0.96 < low < 0.972 and high > 0.981  # 0.1 would squash the rest
    low, _ = repro_tw.y_band(close + [0.951], dense=0.981)
    assert low < 0.951  # a few points below the rest is shown
    low, _ = repro_tw.y_band([0.9, 0.85, 0.7, 0.6, 0.45, 0.4], dense=0.92)
    assert low < 0.4  # a steady decline is shown whole
    low, _ = repro_tw.y_band([0.858, 0.894], dense=0.897)
    assert low < 0.858  # two runs: neither is an outlier


@pytest.mark.parametrize("field, value, message", [
    ("workers", 0, "config.workers=0 must be an integer >= 1"),
    ("threshold_modes", ("layer", "tile"),
     "config.threshold_modes has 'tile'; each must be one of ['global', 'layer']"),
    ("patterns", (("TW", "tw(sparsity={sparsity},g=0)"),),
     "config.patterns: a template does not make a valid spec (pattern spec "
     "'tw(sparsity=0.75,g=0)': g=0 must be an integer >= 1)"),
    ("patterns", (("TW", "ew(sparsity={sparsity})"), ("TW", "vw(sparsity={sparsity})")),
     "config.patterns labels ['TW', 'TW'] must be distinct (each names its runs)"),
])
def test_bad_config_is_refused_before_anything_runs(tmp_path, field, value, message):
    config = repro_config.get_config("tiny")
    config[field] = value
    with pytest.raises(ConfigError, match=re.escape(message)):
        repro_tw.repro_tw(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_the_fashion_variant_without_its_data_stops_before_any_run(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEFAULT_IDX_DIR", str(tmp_path / "nowhere"))
    config = repro_config.get_config("fashion")
    assert {m.base.dataset for m in config.models.values()} == {"fashion_mnist_idx"}
    assert not config.speed.enabled
    for model in config.models.values():
        model.base.data_dir = str(tmp_path / "tfds")
    with pytest.raises(data.DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        repro_tw.repro_tw(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
