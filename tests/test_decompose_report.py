"""The decomposition report, run from the command line as a user would."""

import csv
import json
import os
import subprocess
import sys

import pytest

from configs import decompose_report as report_config
from experiments import decompose_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_command_line_writes_results_csv_and_plot(tmp_path):
    workdir = tmp_path / "report"
    cmd = [
        sys.executable, "-m", "experiments.run", "--config=configs/decompose_report.py",
        f"--workdir={workdir}", "--config.model=mlp", "--config.input_shapes=((1,8,8,1),)",
        "--config.sparsities=(0.5,)", "--config.series=('2:4','2:4+1:8','4:4')",
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=300, capture_output=True)
    results = json.loads((workdir / "results.json").read_text())
    (weights,) = results["weights"]
    assert weights["source"]["source"] == "random_init"
    assert weights["source"]["pruned_here_with"] == "ew(sparsity=0.5)"
    assert weights["weight_sparsity"] == pytest.approx(0.5, abs=1e-3)
    totals = weights["series"]
    assert totals["4:4"]["kept_nonzero_pct"] == 100.0 and totals["4:4"]["compute_cost"] == 1.0
    assert totals["2:4"]["kept_l2_pct"] < totals["2:4+1:8"]["kept_l2_pct"] < 100.0
    with open(workdir / "layers.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * weights["layers"]
    assert {r["series"] for r in rows} == {"2:4", "2:4+1:8", "4:4"}
    # Each layer was pruned on its own to 50%: its row says so.
    assert all(float(r["sparsity"]) == pytest.approx(0.5, abs=0.01) for r in rows)
    from PIL import Image

    with Image.open(workdir / "kept_vs_cost.png") as image:
        assert image.format == "PNG" and len(set(image.convert("L").getdata())) > 2


def test_empty_series_is_an_error(tmp_path):
    config = report_config.get_config()
    config.series = ()
    with pytest.raises(ValueError, match="config.series is empty"):
        decompose_report.decompose_report(config, str(tmp_path))


def test_init_from_a_directory_that_is_not_an_export_is_an_error(tmp_path):
    config = report_config.get_config()
    config.init_from = str(tmp_path)
    with pytest.raises(ValueError, match="is not an export"):
        decompose_report.decompose_report(config, str(tmp_path / "out"))
