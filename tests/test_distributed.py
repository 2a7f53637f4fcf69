"""The train experiment on JAX's multi-process runtime: two processes on this machine
(one CPU device each, gloo collectives) against one process, and a kill mid-run."""

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import grain
import jax
import numpy as np
import pytest

from experiments import checks
from experiments import distributed
from experiments import train as train_experiment
from experiments.errors import ConfigError
from tasd_jax import data
from tasd_jax import training
from test_train import small_config  # the quick-start config shortened to a few dozen steps
from test_train_configs import TinyTokens  # 48 train / 13 validation token sequences

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240  # per process

# Long enough for the kill to land mid-run after the checkpoint at step 100.
OVERRIDES = {
    "num_steps": 200, "checkpoint_every": 50, "keep_checkpoints": 10, "log_every": 50,
    "eval_every": 100, "pruning.begin": 50, "pruning.end": 150, "pruning.frequency": 25,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(workdir, data_dir, num_processes=2, extra=None):
    """`num_processes` processes of one run, each `python -m experiments.run` on tw_digits;
    their stderr goes to `workdir`.pN.log."""
    port = _free_port()
    env = {
        **os.environ, "JAX_PLATFORMS": "cpu", "TFDS_DATA_DIR": str(data_dir),
    }
    overrides = {**OVERRIDES, **(extra or {}), "data_dir": data_dir,
                 "distributed.num_processes": num_processes,
                 "distributed.coordinator": f"127.0.0.1:{port}"}
    procs = []
    for pid in range(num_processes):
        argv = [sys.executable, "-m", "experiments.run", "--config=configs/tw_digits.py",
                f"--workdir={workdir}", f"--config.distributed.process_id={pid}",
                *[f"--config.{k}={v}" for k, v in overrides.items()]]
        log = open(f"{workdir}.p{pid}.log", "w")
        procs.append(subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                      stderr=log))
        log.close()
    return procs


def _log(workdir, pid):
    return open(f"{workdir}.p{pid}.log").read()


def _wait(procs, workdir):
    """Waits for every process (at most TIMEOUT_S each); all must succeed."""
    try:
        for pid, proc in enumerate(procs):
            assert proc.wait(timeout=TIMEOUT_S) == 0, _log(workdir, pid)[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _params(workdir):
    with np.load(os.path.join(workdir, "export", "params.npz")) as exported:
        return {key: exported[key] for key in exported.files}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"data_dir", "one": a 1-process run (in this process, 1 device), "two":
    the same config as 2 processes (1 device each)}: the same global batch of 64."""
    root = tmp_path_factory.mktemp("distributed")
    data_dir = str(root / "tfds")
    config = small_config(data_dir, **OVERRIDES)
    one = str(root / "one")
    train_experiment.train_and_evaluate(config, one)  # also prepares the data set
    two = str(root / "two")
    _wait(_start(two, data_dir), two)
    return {"data_dir": data_dir, "one": one, "two": two}


def test_two_processes_train_the_same_parameters_as_one(runs):
    one, two = _params(runs["one"]), _params(runs["two"])
    assert sorted(one) == sorted(two)
    for key in one:  # the same math; only the order of the gradient sums differs
        np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-6, err_msg=key)
    r1, r2 = (json.load(open(os.path.join(runs[k], "results.json"))) for k in ("one", "two"))
    assert (r2["num_processes"], r2["num_devices"]) == (2, 2)
    assert (r1["num_processes"], r1["num_devices"]) == (1, 1)
    assert r2["final"]["pattern_valid"] and abs(r2["final"]["sparsity"] - 0.75) < 0.01
    # Global metrics: both runs evaluate every test example once.
    np.testing.assert_allclose(r2["final"]["test_loss"], r1["final"]["test_loss"], rtol=1e-4)
    assert r2["config"] == r1["config"]  # how the run was split is not part of it
    # Process 0 alone wrote the outputs: one row per logged step, an intact checkpoint each.
    rows = [json.loads(line) for line in open(os.path.join(runs["two"], "metrics.jsonl"))]
    assert [r["step"] for r in rows if "train_loss" in r] == list(range(50, 201, 50))
    for step in range(50, 201, 50):
        step_dir = os.path.join(runs["two"], "checkpoints", str(step))
        assert training.checkpoint_problem(step_dir) is None, step


def test_a_process_killed_mid_run_resumes_with_both_from_the_last_checkpoint(runs, tmp_path):
    workdir = str(tmp_path / "killed")
    procs = _start(workdir, runs["data_dir"])
    manifest = os.path.join(workdir, "checkpoints", "100", training.MANIFEST)
    deadline = time.time() + TIMEOUT_S
    try:
        while not os.path.exists(manifest):
            assert all(p.poll() is None for p in procs), "a process ended before the kill"
            assert time.time() < deadline, "no checkpoint at step 100 in time"
            time.sleep(0.005)
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait()
    finally:
        # Process 0 waits in a collective for its dead peer: it goes too.
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert procs[1].returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(workdir, "results.json")), "killed after the end"
    saved = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    assert 100 in saved and saved[-1] < 200

    restarted = _start(workdir, runs["data_dir"])
    _wait(restarted, workdir)
    for pid in (0, 1):
        assert "Resumed from the checkpoint at step" in _log(workdir, pid)
    resumed_at = int(_log(workdir, 0).split("Resumed from the checkpoint at step ")[1].split()[0])
    assert 100 <= resumed_at < 200
    reference = _params(runs["two"])
    for key, value in _params(workdir).items():
        np.testing.assert_array_equal(value, reference[key], err_msg=key)  # bitwise
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in rows if "train_loss" in r] == list(range(50, 201, 50))


def test_a_two_process_checkpoint_resumes_on_one_process(runs, tmp_path, caplog):
    # num_processes may change on resume: a checkpoint holds the replicated state and the
    # global input position, and every step's global batch is the same for any split.
    workdir = tmp_path / "resumed"
    shutil.copytree(runs["two"], workdir)
    shutil.rmtree(workdir / "export")
    os.remove(workdir / "results.json")
    for step in (150, 200):
        shutil.rmtree(workdir / "checkpoints" / str(step))
    with caplog.at_level(logging.INFO):
        results = train_experiment.train_and_evaluate(
            small_config(runs["data_dir"], **OVERRIDES), str(workdir))
    assert any("Resumed from the checkpoint at step 100" in r.getMessage() for r in caplog.records)
    assert results["num_processes"] == 1
    one = _params(runs["one"])
    for key, value in _params(str(workdir)).items():
        np.testing.assert_allclose(value, one[key], rtol=1e-4, atol=1e-6, err_msg=key)


# ------------------------------------------------------------------- sharded data


def _concat(blocks):
    return {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}


def _assert_same_batches(whole, blocks):
    assert whole.keys() == blocks.keys()
    for key in whole:
        np.testing.assert_array_equal(blocks[key], whole[key], err_msg=key)


@pytest.mark.parametrize("augment", [False, True])
def test_image_shards_of_two_processes_make_up_the_one_process_batches(tmp_path, augment):
    common = dict(batch_size=64, eval_batch_size=128, seed=3, augment=augment,
                  data_dir=str(tmp_path / "tfds"), num_devices=2)
    whole = data.image_inputs("sklearn_digits", **common)
    shards = [data.image_inputs("sklearn_digits", **common,
                                shard=grain.sharding.ShardOptions(i, 2)) for i in range(2)]
    # Across an epoch boundary (22 batches of 64 per epoch of the 1442 training examples).
    for _ in range(25):
        blocks = [next(s.train) for s in shards]
        assert all(len(b["label"]) == 32 for b in blocks)
        _assert_same_batches(next(whole.train), _concat(blocks))
    # Evaluation: the padded last batch is split too; every example counts once.
    eval_blocks = [list(s.eval_batches) for s in shards]
    for batch, *blocks in zip(list(whole.eval_batches), *eval_blocks, strict=True):
        _assert_same_batches(batch, _concat(blocks))
    assert sum(int(b["mask"].sum()) for blocks in eval_blocks for b in blocks) == 355


class _RecordingSource:
    """A random-access source of examples {"image", "label"} read like an on-disk
    tfds source (`__getitems__`); `reads` collects the indices of every read."""

    def __init__(self, images, labels):
        self.images, self.labels, self.reads = images, labels, []

    def __len__(self):
        return len(self.labels)

    def __getitems__(self, indices):
        self.reads.extend(indices)
        return [{"image": self.images[i], "label": self.labels[i]} for i in indices]


class _RecordingArraySource(data.ArraySource):
    """An in-memory source; `reads` collects the indices of every gather."""

    def __init__(self, images, labels):
        super().__init__({"image": images, "label": labels})
        self.reads = []

    def gather(self, indices):
        self.reads.extend(int(i) for i in indices)
        return super().gather(indices)


def _sources(kind, num_sources):
    """`num_sources` recording sources over the same 20 train and 13 test examples, with
    their `DatasetInfo` and the `image_size` the pipelines need: fixed 5 x 5 images
    ("in_memory", "on_disk") or images of 4..9 rows and columns ("varying")."""
    rng = np.random.default_rng(7)
    splits = {}
    for split, n in (("train", 20), ("test", 13)):
        if kind == "varying":
            images = [rng.integers(0, 256, (*rng.integers(4, 10, 2), 3), np.uint8)
                      for _ in range(n)]
        else:
            images = rng.integers(0, 256, (n, 5, 5, 3), np.uint8)
        splits[split] = images, rng.integers(0, 3, n)
    make = _RecordingArraySource if kind == "in_memory" else _RecordingSource
    shape, image_size = ((None, None, 3), 4) if kind == "varying" else ((5, 5, 3), None)
    info = data.DatasetInfo("recorded", 3, shape, {"train": 20, "test": 13}, 255.0, "")
    return [{s: make(*splits[s]) for s in splits} for _ in range(num_sources)], info, image_size


@pytest.mark.parametrize("kind", ["in_memory", "on_disk", "varying"])
@pytest.mark.parametrize("augment", [False, True])
def test_image_shards_read_only_their_rows_of_every_global_batch(kind, augment):
    # sources[0] serves the 1-process pipelines, sources[1 + i] shard i of 2
    sources, info, image_size = _sources(kind, 3)
    shards = [None] + [grain.sharding.ShardOptions(i, 2) for i in range(2)]
    trains = [data.train_dataset(src["train"], info, batch_size=8, seed=5, augment=augment,
                                 crop_padding=1, image_size=image_size,
                                 shard=shard or grain.sharding.NoSharding())
              for src, shard in zip(sources, shards)]
    evals = [data.eval_dataset(src["test"], info, batch_size=4, image_size=image_size,
                               shard=shard or grain.sharding.NoSharding())
             for src, shard in zip(sources, shards)]
    # Augmented varying-size images are the one case read whole: the random cut of every
    # image takes a share of the batch's random stream that depends on its size.
    reads_whole = kind == "varying" and augment
    for datasets, split, count in ((trains, "train", 5), (evals, "test", 4)):
        # 2 batches per training epoch: crosses two epoch boundaries. The last evaluation
        # batch is 1 example and 3 padding rows: shard 1 reads nothing of it.
        for step in range(count):
            for src in sources:
                src[split].reads.clear()
            whole, *blocks = (dataset[step] for dataset in datasets)
            _assert_same_batches(whole, _concat(blocks))
            want = sources[0][split].reads
            real = int(whole["mask"].sum()) if "mask" in whole else len(whole["label"])
            assert len(want) == len(set(want)) == real
            got = [src[split].reads for src in sources[1:]]
            if split == "train" and reads_whole:
                assert got == [want, want]
            else:  # each shard reads its rows: disjoint, together the global batch's indices
                assert got[0] + got[1] == want
                half = len(whole["label"]) // 2
                assert len(got[0]) == min(half, len(want))


def test_token_shards_read_only_their_rows_and_make_up_the_one_process_batches(tmp_path):
    data_dir = str(tmp_path / "tfds")
    TinyTokens(data_dir=data_dir, file_format="array_record").download_and_prepare()
    common = dict(batch_size=8, eval_batch_size=4, seed=0, data_dir=data_dir,
                  eval_split="validation")
    whole = data.token_inputs("tiny_tokens", **common)
    shards = [data.token_inputs("tiny_tokens", **common, shard=grain.sharding.ShardOptions(i, 2))
              for i in range(2)]
    for _ in range(8):  # 6 batches per epoch
        _assert_same_batches(next(whole.train), _concat([next(s.train) for s in shards]))
    # 13 examples in batches of 4: the last global batch is 1 real row and 3 padding rows,
    # so process 1's block of it is all padding.
    eval_blocks = [list(s.eval_batches) for s in shards]
    for batch, *blocks in zip(list(whole.eval_batches), *eval_blocks, strict=True):
        _assert_same_batches(batch, _concat(blocks))
    assert [int(b["mask"].sum()) for b in eval_blocks[1]] == [2, 2, 2, 0]


def test_a_batch_that_does_not_split_over_the_processes_is_refused():
    with pytest.raises(ValueError, match="batch size 10 must be a multiple of the 4 processes"):
        data.inputs.shard_rows(10, grain.sharding.ShardOptions(0, 4))
    assert data.inputs.shard_rows(12, grain.sharding.ShardOptions(2, 4)) == slice(6, 9)


# ------------------------------------------------------------------ bad settings


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"num_processes": 0}, "config.distributed.num_processes=0 must be an integer >= 1"),
        ({"num_processes": 2, "process_id": -1},
         "config.distributed.process_id=-1 must be an integer in 0..1"),
        ({"num_processes": 2, "process_id": 0, "coordinator": "127.0.0.1:port"},
         "config.distributed.coordinator='127.0.0.1:port' must be 'host:port'"),
    ],
    ids=["no_processes", "negative_process_id", "port_not_a_number"],
)
def test_bad_distributed_settings_are_refused_before_any_work(tmp_path, fields, message):
    config = small_config(str(tmp_path / "tfds"))
    config.distributed.update(fields)
    with pytest.raises(ConfigError, match=re.escape(message)):
        train_experiment.train_and_evaluate(config, str(tmp_path / "run"))
    assert not os.listdir(tmp_path)  # nothing read (the data was never prepared), nothing written


def test_a_process_that_already_computed_with_jax_cannot_join_a_run(tmp_path):
    jax.devices()  # this test process has used JAX
    config = small_config(str(tmp_path / "tfds"))
    config.distributed.update(
        {"num_processes": 2, "process_id": 0, "coordinator": f"127.0.0.1:{_free_port()}"})
    with pytest.raises(ConfigError, match="before any JAX calls"):
        train_experiment.train_and_evaluate(config, str(tmp_path / "run"))
    assert not os.listdir(tmp_path)


def test_the_global_batch_must_split_evenly_over_the_devices_of_all_processes(tmp_path):
    config = small_config(str(tmp_path / "tfds"))
    with pytest.raises(ConfigError,
                       match="config.batch_size=64 must be a multiple of the 3 devices of the run"):
        checks.check_run(config, str(tmp_path / "run"), num_devices=3)


def test_unset_fields_are_left_to_the_environment(monkeypatch):
    config = small_config("unused")
    monkeypatch.delenv(distributed.COORDINATOR_ENV, raising=False)
    assert distributed.settings(config) is None  # the default: a single process
    monkeypatch.setenv(distributed.COORDINATOR_ENV, "10.0.0.1:1234")
    assert distributed.settings(config) == distributed.Settings(None, None, None)
    config.distributed.update({"num_processes": 4, "process_id": 3})
    assert distributed.settings(config) == distributed.Settings(4, 3, None)
    monkeypatch.setenv(distributed.COORDINATOR_ENV, "10.0.0.1")
    config.distributed.update({"num_processes": 1, "process_id": None})
    with pytest.raises(ValueError, match="JAX_COORDINATOR_ADDRESS='10.0.0.1' must be 'host:port'"):
        distributed.settings(config)
