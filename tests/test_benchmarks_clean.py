"""Running a benchmark writes where the user says and leaves the checkout alone."""

import json
import os
import subprocess
import sys

from benchmarks import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tree_listing() -> dict:
    """Every file under benchmarks/ with its modification time."""
    out = {}
    for root, _, files in os.walk(os.path.join(REPO, "benchmarks")):
        for name in files:
            path = os.path.join(root, name)
            if "__pycache__" not in path:
                out[path] = os.stat(path).st_mtime_ns
    return out


def test_default_out_dir_is_outside_the_checkout():
    assert not os.path.abspath(common.DEFAULT_OUT_DIR).startswith(REPO + os.sep)


def test_benchmark_writes_to_out_dir_and_not_the_tree(tmp_path):
    before = tree_listing()
    out_dir = tmp_path / "results"
    subprocess.run(
        [sys.executable, "-m", "benchmarks.cost_sweep", "--repeats=1", f"--out_dir={out_dir}"],
        cwd=REPO, check=True, capture_output=True, timeout=300,
    )
    assert tree_listing() == before
    payload = json.loads((out_dir / "cost_sweep.json").read_text())
    assert payload["command"].startswith("python -m benchmarks.cost_sweep")
    assert f"--out_dir={out_dir}" in payload["command"]
    recorded = (out_dir / "cost_sweep.md").read_text()
    assert "Command: `python -m benchmarks.cost_sweep" in recorded
    # The machine and its load are recorded beside the figures.
    assert "Machine: " in recorded and "load average (1 min)" in recorded
