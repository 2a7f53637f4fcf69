"""Training runs that go wrong: a changed config on resume, corrupted checkpoints,
a kill mid-run, and bad input on the command line. Each ends either exactly like
an uninterrupted run or with one clear line, before any work."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from configs import tw_digits
from experiments import resume
from experiments import train as train_experiment
from experiments.errors import ConfigError
from tasd_jax import training
from test_train import small_config  # the quick-start config shortened to 60 steps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# small_config on the command line (the same stored config.json as the Python runs).
SMALL = {
    "num_steps": 60, "pruning.begin": 20, "pruning.end": 40, "pruning.frequency": 10,
    "log_every": 10, "eval_every": 30, "checkpoint_every": 20, "keep_checkpoints": 3,
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A tfds data dir of this module (digits are prepared into it on first use)."""
    return str(tmp_path_factory.mktemp("tfds"))


def _config(data_dir, **overrides):
    """small_config keeping every checkpoint of its 60 steps (20, 40, 60)."""
    return small_config(data_dir, **{"keep_checkpoints": 3, **overrides})


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    """An uninterrupted 60-step run with checkpoints at steps 20, 40 and 60."""
    workdir = str(tmp_path_factory.mktemp("reference") / "run")
    train_experiment.train_and_evaluate(_config(data_dir), workdir)
    return workdir


def _interrupted_copy(reference, dest, drop_steps=()):
    """`reference` as a run that has not finished: no results or export, and
    without the checkpoints of `drop_steps`."""
    shutil.copytree(reference, dest)
    shutil.rmtree(os.path.join(dest, "export"))
    os.remove(os.path.join(dest, "results.json"))
    for step in drop_steps:
        shutil.rmtree(os.path.join(dest, "checkpoints", str(step)))
    return str(dest)


def _assert_same_export(a, b):
    with np.load(os.path.join(a, "export", "params.npz")) as x, \
            np.load(os.path.join(b, "export", "params.npz")) as y:
        assert x.files == y.files
        for key in x.files:
            np.testing.assert_array_equal(x[key], y[key])  # bitwise


def _logged_steps(workdir):
    """(steps of the training rows, steps of the dense-baseline rows) of metrics.jsonl."""
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    keys = ("train_loss", "dense_test_accuracy")
    return tuple([r["step"] for r in rows if key in r] for key in keys)


def _largest_file(step_dir):
    """The biggest file of a checkpoint step (array data), not its manifest."""
    files = [os.path.join(root, n) for root, _, names in os.walk(step_dir) for n in names]
    return max((f for f in files if not f.endswith(training.MANIFEST)), key=os.path.getsize)


def _run_cli(workdir, data_dir, overrides=None, wait=True):
    """`python -m experiments.run` on tw_digits in a subprocess; its stderr in `.stderr_text`."""
    argv = [
        sys.executable, "-m", "experiments.run", "--config=configs/tw_digits.py",
        f"--workdir={workdir}", f"--config.data_dir={data_dir}",
        *[f"--config.{k}={v}" for k, v in (overrides or {}).items()],
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TFDS_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if wait:
        proc.stderr_text = proc.communicate(timeout=300)[1]
    return proc


def _assert_one_line_error(proc, message):
    """The CLI failed with `error: ...message...` as its last line and printed no traceback."""
    assert proc.returncode not in (0, None), proc.stderr_text[-2000:]
    assert "Traceback" not in proc.stderr_text, proc.stderr_text[-3000:]
    last = proc.stderr_text.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last


# ------------------------------------------------------- config change on resume


def test_a_changed_config_is_refused_on_resume_listing_every_field(reference, tmp_path, data_dir):
    workdir = _interrupted_copy(reference, tmp_path / "run", drop_steps=(60,))
    before = open(os.path.join(workdir, "metrics.jsonl")).read()
    config = _config(data_dir, learning_rate=0.1, seed=1, log_every=20)
    with pytest.raises(ConfigError) as err:
        train_experiment.train_and_evaluate(config, workdir)
    message = str(err.value)
    for part in ("learning_rate 0.05 -> 0.1", "seed 0 -> 1", "log_every 10 -> 20", "new --workdir"):
        assert part in message
    # Unsafe fields never change on resume, not even with the override.
    for overrides in ({"learning_rate": 0.1, "log_every": 20},
                      {"pruning.rules": (("dense_0/kernel$", "tw(sparsity=0.5,g=32)"),)},
                      {"model_kwargs.hidden": (128, 64)}, {"num_steps": 80}, {"batch_size": 32}):
        config = _config(data_dir, **overrides)
        config.resume_with_changes = True
        with pytest.raises(ConfigError, match="cannot change on resume"):
            train_experiment.train_and_evaluate(config, workdir)
    assert open(os.path.join(workdir, "metrics.jsonl")).read() == before
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["20", "40"]


def test_a_safe_change_resumes_only_with_the_override_and_trains_the_same(
    reference, tmp_path, data_dir
):
    workdir = _interrupted_copy(reference, tmp_path / "run", drop_steps=(60,))
    config = _config(data_dir, log_every=20, keep_checkpoints=2)
    with pytest.raises(ConfigError, match="--resume_with_changes") as err:
        train_experiment.train_and_evaluate(config, workdir)
    assert "keep_checkpoints 3 -> 2, log_every 10 -> 20" in str(err.value)

    config.resume_with_changes = True
    results = train_experiment.train_and_evaluate(config, workdir)
    _assert_same_export(reference, workdir)
    assert _logged_steps(workdir) == ([10, 20, 30, 40, 60], [20])  # every 10 to 40, then every 20
    stored = json.load(open(os.path.join(workdir, resume.CONFIG_FILE)))
    assert stored["log_every"] == 20 and "resume_with_changes" not in stored
    assert results["config"] == stored
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["40", "60"]
    # The stored config is now the changed one: the same command reruns without the override.
    del config["resume_with_changes"]
    train_experiment.train_and_evaluate(config, workdir)


# ---------------------------------------------------------- corrupted checkpoints


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _garble(path):
    with open(path, "r+b") as f:  # same size, different bytes in the middle
        f.seek(os.path.getsize(path) // 2)
        chunk = f.read(16)
        f.seek(os.path.getsize(path) // 2)
        f.write(bytes(b ^ 0xFF for b in chunk))


CORRUPTIONS = {
    "truncated file": lambda step_dir: _truncate(_largest_file(step_dir)),
    "deleted file": lambda step_dir: os.remove(_largest_file(step_dir)),
    "garbled bytes": lambda step_dir: _garble(_largest_file(step_dir)),
    "deleted manifest": lambda step_dir: os.remove(os.path.join(step_dir, training.MANIFEST)),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupted_newest_checkpoint_is_skipped_and_the_run_ends_as_uninterrupted(
    reference, tmp_path, data_dir, caplog, corruption
):
    workdir = _interrupted_copy(reference, tmp_path / "run")
    CORRUPTIONS[corruption](os.path.join(workdir, "checkpoints", "60"))
    with caplog.at_level(logging.WARNING):
        train_experiment.train_and_evaluate(_config(data_dir), workdir)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    skipped = os.path.join("checkpoints", "60")
    assert any("Skipping" in w and skipped in w for w in warnings), warnings
    _assert_same_export(reference, workdir)
    assert _logged_steps(workdir) == ([10, 20, 30, 40, 50, 60], [20])
    assert training.checkpoint_problem(os.path.join(workdir, skipped)) is None  # saved again


def test_no_intact_checkpoint_fails_in_one_line_naming_the_directory(reference, tmp_path, data_dir):
    workdir = _interrupted_copy(reference, tmp_path / "run")
    for step in ("20", "40", "60"):
        _garble(_largest_file(os.path.join(workdir, "checkpoints", step)))
    proc = _run_cli(workdir, data_dir, SMALL)
    _assert_one_line_error(proc, f"no intact checkpoint in {os.path.join(workdir, 'checkpoints')}")
    assert "delete that directory" in proc.stderr_text and "step 20:" in proc.stderr_text
    # Nothing was deleted: what to do with them is the user's call.
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["20", "40", "60"]


# ------------------------------------------------------------------ kills


def test_sigkill_during_the_run_then_rerun_logs_every_step_once(tmp_path, data_dir):
    overrides = {"num_steps": 1500, "log_every": 50, "eval_every": 500, "checkpoint_every": 100}
    workdir = tmp_path / "killed"
    proc = _run_cli(workdir, data_dir, overrides, wait=False)
    done = workdir / "checkpoints" / "300" / training.MANIFEST
    deadline = time.time() + 240
    while not done.exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before being killed"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (workdir / "results.json").exists()
    rerun = _run_cli(workdir, data_dir, overrides)
    assert rerun.returncode == 0, rerun.stderr_text[-3000:]
    assert _logged_steps(workdir) == (list(range(50, 1501, 50)), [500])


def test_a_row_cut_short_by_a_kill_is_dropped_on_resume(reference, tmp_path, data_dir):
    workdir = _interrupted_copy(reference, tmp_path / "run", drop_steps=(60,))
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write('{"step": 70, "train_lo')  # the kill came mid-write
    train_experiment.train_and_evaluate(_config(data_dir), workdir)
    assert _logged_steps(workdir) == ([10, 20, 30, 40, 50, 60], [20])


# ------------------------------------------------- bad input on the command line


# Config checks of the training experiment itself, run in this process (a
# subprocess would pay seconds of imports for each): the same ConfigError the
# command line prints as its one line, raised before any data is read.
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_steps": 900}, "config.num_steps=900 ends before the cubic pruning schedule does"),
        ({"num_steps": 400}, "mask update (to sparsity 0.75) is at step 1000 (pruning.end=1000)"),
        ({"pruning.schedule": "staged", "pruning.stages": "0.5,0.6,0.7",
          "pruning.steps_per_stage": 600, "pruning.begin": 0},
         "ends before the staged pruning schedule does"),
        ({"learning_rate": -0.1}, "config.learning_rate=-0.1 must be a finite number >= 0"),
        ({"learning_rate": float("inf")}, "config.learning_rate=inf must be a finite number >= 0"),
        ({"learning_rate": 0}, "config.learning_rate=0 would train nothing"),
        ({"pruning.rules": ("dense_0/kernel$", "tw(sparsity=0.5,g=32)")},
         "config.pruning.rules[0]='dense_0/kernel$' is not a (path regex, pattern spec[, axis])"),
        ({"pruning.rules": (("dense_0/kernel$", "tw(sparsity=0.5)", "x"),)},
         "must be a tuple of (path regex, pattern spec[, axis]) tuples"),
    ],
    ids=["cubic_end", "cubic_begin", "staged", "lr_negative", "lr_inf", "lr_zero",
         "rule_string", "rule_axis"],
)
def test_bad_config_is_refused_before_any_work(tmp_path, overrides, message):
    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    config = tw_digits.get_config()
    config.data_dir = str(data_dir)
    config.update_from_flattened_dict(overrides)
    with pytest.raises(ConfigError) as err:
        train_experiment.train_and_evaluate(config, str(tmp_path / "run"))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not os.listdir(data_dir)  # no data was read (the digits were never prepared)
    assert not (tmp_path / "run").exists()  # nothing was written


# What only the command line does: its parser's overrides (a misspelt field, "nan"
# as a float), the distributed runtime joined before any JAX work (so in a fresh
# process), and printing a ConfigError as one line.
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"learning_rate": "nan"}, "config.learning_rate=nan must be a finite number >= 0"),
        ({"lerning_rate": 0.1}, "config field 'lerning_rate'; did you mean 'learning_rate'?"),
        ({"pruning.frequancy": 5}, "did you mean 'pruning.frequency'?"),
        ({"distributed.num_processes": 2, "distributed.process_id": 2,
          "distributed.coordinator": "127.0.0.1:12355"},
         "config.distributed.process_id=2 must be an integer in 0..1"),
        ({"distributed.num_processes": 2, "distributed.process_id": 0,
          "distributed.coordinator": "localhost"},
         "config.distributed.coordinator='localhost' must be 'host:port'"),
    ],
    ids=["lr_nan", "unknown_field", "unknown_nested_field", "process_id_out_of_range",
         "coordinator_without_port"],
)
def test_bad_config_fails_in_one_line_before_any_work(tmp_path, overrides, message):
    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    proc = _run_cli(tmp_path / "run", data_dir, overrides)
    _assert_one_line_error(proc, message)
    assert not os.listdir(data_dir)  # no data was read (the digits were never prepared)
    assert not (tmp_path / "run").exists()  # nothing was written


@pytest.mark.parametrize(
    "kind, message", [("file", "is a file, not a directory"), ("read_only", "is read-only")]
)
def test_a_workdir_that_is_a_file_or_read_only_fails_in_one_line(tmp_path, kind, message):
    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    workdir = tmp_path / "run"
    if kind == "file":
        workdir.write_text("not a directory")
    else:
        workdir.mkdir(mode=0o555)  # read-only for root too: no write permission bit at all
    proc = _run_cli(workdir, data_dir)
    _assert_one_line_error(proc, message)
    assert not os.listdir(data_dir)
    assert workdir.is_file() or not os.listdir(workdir)


def test_a_resumed_run_shows_a_bar_over_the_steps_it_has_left(reference, data_dir, tmp_path, capsys):
    workdir = _interrupted_copy(reference, tmp_path / "run", drop_steps=(60,))
    train_experiment.train_and_evaluate(_config(data_dir), workdir)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[train]")]
    # Steps 40..60 of 60: a line per tenth of the 20 steps left, the last one full.
    assert len(lines) == 10
    assert lines[0].startswith("[train] [##..................] 2/20 (10%)")
    assert "about" in lines[0] and "left" in lines[0]
    assert lines[-1].startswith("[train] [####################] 20/20 (100%)")
