"""The decomposition report, run from the command line as a user would."""

import csv
import json
import os
import subprocess
import sys

import pytest

from configs import decompose_report as report_config
from tasd_jax import reports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_command_line_writes_results_csv_and_plot(tmp_path):
    workdir = tmp_path / "report"
    cmd = [
        sys.executable, "-m", "experiments.run", "--config=configs/decompose_report.py",
        f"--workdir={workdir}", "--config.model=mlp", "--config.input_shape=(1,8,8,1)",
        "--config.prune=ew(sparsity=0.5)", "--config.series=('2:4','2:4+1:8','4:4')",
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=300, capture_output=True)
    results = json.loads((workdir / "results.json").read_text())
    assert results["weight_sparsity"] == pytest.approx(0.5, abs=1e-3)
    totals = results["series"]
    assert totals["4:4"]["kept_nonzero_pct"] == 100.0 and totals["4:4"]["compute_cost"] == 1.0
    assert totals["2:4"]["kept_l2_pct"] < totals["2:4+1:8"]["kept_l2_pct"] < 100.0
    with open(workdir / "layers.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * results["layers"]
    assert {r["series"] for r in rows} == {"2:4", "2:4+1:8", "4:4"}
    assert (workdir / "kept_vs_cost.png").stat().st_size > 1000


def test_empty_series_is_an_error(tmp_path):
    config = report_config.get_config()
    config.series = ()
    with pytest.raises(ValueError, match="config.series is empty"):
        reports.decompose_report(config, str(tmp_path))
