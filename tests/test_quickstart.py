"""The quick start runs every stage, reports their figures, and a rerun redoes nothing."""

import os

import pytest

from configs import quickstart as quickstart_config
from experiments import outputs
from experiments import quickstart
from experiments import stages
from experiments.errors import ConfigError


def small_config(data_dir: str):
    config = quickstart_config.get_config()
    config.data_dir = data_dir
    d, t = config.dense, config.tw
    d.num_steps, d.log_every, d.eval_every, d.checkpoint_every = 60, 20, 60, 60
    t.num_steps, t.log_every, t.eval_every, t.checkpoint_every = 60, 20, 30, 30
    t.pruning.begin, t.pruning.end, t.pruning.frequency = 0, 40, 10
    config.tasder.frontier_budgets = ()
    config.tasder.calibration_examples = 128
    config.tw_kernels.timing_batch, config.tw_kernels.reps = 256, 3
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("quickstart")
    config = small_config(str(root / "tfds"))
    summary = quickstart.quickstart(config, str(root / "run"))
    return root, config, summary


STAGES = ("dense", "tw", "tasder_dense", "tasder_tw", "edp_dense", "edp_tw", "tw_kernels")


def test_every_stage_ran_and_the_report_quotes_its_figures(run):
    root, _, summary = run
    assert set(summary) == set(STAGES)
    for stage in STAGES:
        assert os.path.exists(root / "run" / stage / stages.STAGE_FILE), stage
    # The TW stage starts from the dense stage's export and ends tile-wise sparse.
    tw = outputs.read_json(root / "run" / "tw" / "results.json")
    assert tw["init_from"]["path"] == str(root / "run" / "dense" / "export")
    assert tw["final"]["sparsity"] == pytest.approx(0.75, abs=0.02)
    assert summary["tasder_tw"]["init_from"]["path"] == str(root / "run" / "tw" / "export")
    report = (root / "run" / "report.md").read_text()
    assert f"{100 * tw['final']['test_accuracy']:.1f}%" in report
    ours = summary["tasder_dense"]["modes"]["ours"]["relative_edp"]
    assert f"| ours | {100 * summary['tasder_dense']['modes']['ours']['accuracy']:.1f}% | {ours:.3f} |" in report
    speed = summary["tw_kernels"]["forward"]["speedup"]
    assert f"**{speed:.2f}x**" in report
    for png in ("dense/plots.png", "tw/plots.png", "edp_tw/edp_mlp_1x8x8x1.png"):
        assert f"({png})" in report and os.path.exists(root / "run" / png)


def test_a_rerun_reuses_every_stage(run, capsys):
    root, config, summary = run
    stamps = {s: os.stat(root / "run" / s / stages.STAGE_FILE).st_mtime_ns for s in STAGES}
    again = quickstart.quickstart(config, str(root / "run"))
    assert again == outputs.jsonable(summary)
    assert {s: os.stat(root / "run" / s / stages.STAGE_FILE).st_mtime_ns for s in STAGES} == stamps
    assert capsys.readouterr().out.count("done earlier") == len(STAGES)


def test_an_interrupted_stage_runs_again_alone(run, capsys):
    root, config, _ = run
    os.remove(root / "run" / "tw_kernels" / stages.STAGE_FILE)  # killed before it finished
    quickstart.quickstart(config, str(root / "run"))
    out = capsys.readouterr().out
    assert out.count("done earlier") == len(STAGES) - 1
    assert "[tw_kernels] running" in out


def test_a_changed_config_is_refused_not_mixed(run):
    root, config, _ = run
    changed = small_config(config.data_dir)
    changed.tasder.budget = 0.95
    with pytest.raises(ConfigError, match=r"tasder_dense.*budget 0\.99 -> 0\.95"):
        quickstart.quickstart(changed, str(root / "run"))
