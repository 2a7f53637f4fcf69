"""Tests of tasd_jax.training and the train experiment: steps, the loop end to end on digits,
resume, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import tw_digits
from experiments import train as train_experiment
from tasd_jax import models
from tasd_jax import patterns
from tasd_jax import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A tfds data dir of this test session (digits are prepared into it on first use)."""
    return str(tmp_path_factory.mktemp("tfds"))


def small_config(data_dir, **overrides):
    """The quick-start config shortened to a few dozen steps."""
    config = tw_digits.get_config()
    config.data_dir = data_dir
    config.num_steps = 60
    config.pruning.begin = 20
    config.pruning.end = 40
    config.pruning.frequency = 10
    config.log_every = 10
    config.eval_every = 30
    config.checkpoint_every = 20
    for key, value in overrides.items():
        target = config
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return config


def _assert_png(path, min_width):
    """A real PNG image at least `min_width` pixels wide (not an empty or broken file)."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] >= min_width
        assert len(set(image.convert("L").getdata())) > 2  # something was drawn


# --------------------------------------------------------------------- steps


def _tiny_state(tx=None):
    model = models.get_model("mlp", hidden=(16,), num_classes=3)
    batch = {
        "image": jax.random.uniform(jax.random.key(1), (6, 4, 4, 1)),
        "label": jnp.array([0, 1, 2, 0, 1, 2], jnp.int32),
    }
    state = training.create_train_state(jax.random.PRNGKey(0), model, batch, tx or optax.sgd(0.5))
    return state, batch


@pytest.mark.parametrize("jit", [False, True])
def test_train_step_is_one_sgd_step_on_the_cross_entropy(jit):
    state, batch = _tiny_state()
    step = jax.jit(training.train_step) if jit else training.train_step
    new, metrics = step(state, batch)

    def loss(params):
        logits = state.apply_fn({"params": params}, batch["image"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

    expected_loss, grads = jax.value_and_grad(loss)(state.params)
    np.testing.assert_allclose(metrics["loss"], expected_loss, rtol=1e-6)
    expected = jax.tree.map(lambda p, g: p - 0.5 * g, state.params, grads)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new.params, expected)
    assert int(new.step) == 1


@pytest.mark.parametrize("jit", [False, True])
def test_eval_step_counts_only_unmasked_examples(jit):
    state, batch = _tiny_state()
    batch = {**batch, "mask": jnp.array([True, True, True, True, False, False])}
    out = (jax.jit(training.eval_step) if jit else training.eval_step)(state, batch)
    logits = np.asarray(state.apply_fn({"params": state.params}, batch["image"]))
    correct = (logits.argmax(-1) == np.asarray(batch["label"]))[:4].sum()
    assert float(out["count"]) == 4.0
    assert float(out["correct"]) == correct
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected_loss = -log_probs[np.arange(4), np.asarray(batch["label"])[:4]].sum()
    np.testing.assert_allclose(float(out["loss_sum"]), expected_loss, rtol=1e-5)


@pytest.mark.parametrize(
    "name, kwargs",
    [("cosine", {}), ("warmup_cosine", {"warmup_steps": 10}), ("linear", {}), ("constant", {})],
)
def test_lr_schedules(name, kwargs):
    lr = training.make_lr_schedule(name, 0.1, 100, **kwargs)
    start, middle, end = {
        "cosine": (0.1, 0.05, 0.0),  # 0.1 * (1 + cos(pi / 2)) / 2 half-way
        "warmup_cosine": (0.0, 0.1 * (1 + np.cos(np.pi * 40 / 90)) / 2, 0.0),
        "linear": (0.1, 0.05, 0.0),
        "constant": (0.1, 0.1, 0.1),
    }[name]
    np.testing.assert_allclose([float(lr(0)), float(lr(50)), float(lr(100))], [start, middle, end], atol=1e-6)


def test_decaying_lr_schedule_without_num_steps_names_the_missing_value():
    with pytest.raises(ValueError, match=r"lr_schedule='cosine' decays over the run, so it needs num_steps \(got None\)"):
        training.make_lr_schedule("cosine", 0.1, None)



# ------------------------------------------------------------ end to end


def test_train_and_evaluate_prunes_digits_and_writes_every_output(tmp_path, data_dir):
    workdir = str(tmp_path / "run")
    # Per-layer thresholds: one global threshold puts ~98% of the pruning into dense_1
    # (fan-in 256, so smaller weights than dense_0's), which 20 fine-tune steps do not
    # recover from; the global mode runs end to end in tests/test_pipeline.py.
    per_layer = {"pruning.global_threshold": False}
    results = train_experiment.train_and_evaluate(small_config(data_dir, **per_layer), workdir)
    final = results["final"]
    assert final["pattern_valid"] is True
    assert abs(final["sparsity"] - 0.75) < 0.01
    assert final["test_accuracy"] > 0.8 and final["dense_test_accuracy"] > 0.8
    assert results["pruned_params"] == ["dense_0/kernel", "dense_1/kernel"]
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["final"]["test_accuracy"] == final["test_accuracy"]
    _assert_png(os.path.join(workdir, "plots.png"), min_width=1000)

    # The export is the dense arrays with zeros, keyed by parameter path, in tw2 structure.
    with np.load(os.path.join(workdir, "export", "params.npz")) as exported:
        assert sorted(exported.files) == [
            "dense_0/bias", "dense_0/kernel", "dense_1/bias", "dense_1/kernel", "head/bias",
            "head/kernel",
        ]
        kernels = [exported[f"dense_{i}/kernel"] for i in (0, 1)]
        assert exported["head/kernel"].shape == (128, 10) and np.all(exported["head/kernel"] != 0)
    zeros = sum(int(np.sum(k == 0)) for k in kernels) / sum(k.size for k in kernels)
    np.testing.assert_allclose(zeros, final["sparsity"], atol=1e-6)
    tw = patterns.parse("tw(sparsity=0.75,g=32)")
    assert all(bool(tw.conforms(jnp.asarray(k != 0))) for k in kernels)

    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in rows if "train_loss" in r] == [10, 20, 30, 40, 50, 60]
    assert [r["sparsity"] for r in rows if "train_loss" in r][:2] == [0.0, 0.0]
    dense_rows = [r for r in rows if "dense_test_accuracy" in r]
    assert len(dense_rows) == 1 and dense_rows[0]["step"] == 20

    # Rerunning the finished command resumes at the last step and changes nothing.
    again = train_experiment.train_and_evaluate(small_config(data_dir, **per_layer), workdir)
    assert again["final"]["test_accuracy"] == final["test_accuracy"]
    assert len(open(os.path.join(workdir, "metrics.jsonl")).readlines()) == len(rows)


def _run_cli(workdir, data_dir, overrides, env=None, wait=True):
    args = [
        sys.executable, "-m", "experiments.run", "--config=configs/tw_digits.py",
        f"--workdir={workdir}", f"--config.data_dir={data_dir}",
    ] + [f"--config.{k}={v}" for k, v in overrides.items()]
    proc = subprocess.Popen(
        args, cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    if wait:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_and_restart_ends_bitwise_equal_to_an_uninterrupted_run(tmp_path, data_dir):
    # Prepares the data once (a dense step: a pruning schedule must end within num_steps).
    train_experiment.train_and_evaluate(
        small_config(data_dir, num_steps=1, **{"pruning.rules": ()}), str(tmp_path / "warm"))
    overrides = {
        "num_steps": 400, "checkpoint_every": 25, "log_every": 25, "eval_every": 400,
        "pruning.begin": 50, "pruning.end": 250, "pruning.frequency": 25,
    }
    reference = tmp_path / "reference"
    _run_cli(reference, data_dir, overrides)

    killed = tmp_path / "killed"
    proc = _run_cli(killed, data_dir, overrides, wait=False)
    # Kill it mid-run, while pruning, right after a checkpoint exists.
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "100").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before being killed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "results.json").exists()
    _run_cli(killed, data_dir, overrides)

    with np.load(reference / "export" / "params.npz") as a, np.load(killed / "export" / "params.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])  # bitwise, not approximately
    rows = [json.loads(line) for line in open(killed / "metrics.jsonl")]
    steps = [r["step"] for r in rows if "train_loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 400  # no duplicated rows after resume


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_data_parallel_on_8_host_devices_matches_one_device(tmp_path, data_dir):
    overrides = {"num_steps": 40, "checkpoint_every": 20, "eval_every": 40, "log_every": 20,
                 "pruning.begin": 10, "pruning.end": 30, "pruning.frequency": 10}
    one = tmp_path / "one"
    _run_cli(one, data_dir, overrides)
    eight = tmp_path / "eight"
    _run_cli(eight, data_dir, overrides, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    r1 = json.load(open(one / "results.json"))
    r8 = json.load(open(eight / "results.json"))
    assert r1["num_devices"] == 1 and r8["num_devices"] == 8
    assert r8["final"]["pattern_valid"] and abs(r8["final"]["sparsity"] - 0.75) < 0.01
    with np.load(one / "export" / "params.npz") as a, np.load(eight / "export" / "params.npz") as b:
        for key in a.files:  # same math, only the order of the gradient sums differs
            np.testing.assert_allclose(a[key], b[key], rtol=1e-3, atol=1e-4)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, data_dir):
    import orbax.checkpoint as ocp

    config = small_config(data_dir, learning_rate=1e12, lr_schedule="constant", checkpoint_every=1)
    config.pruning.rules = ()
    workdir = str(tmp_path / "nan")
    with pytest.raises(FloatingPointError, match=r"at step (\d+)") as err:
        train_experiment.train_and_evaluate(config, workdir)
    bad_step = int(err.value.args[0].split("at step ")[1].split(";")[0])
    assert bad_step > 1, "the test needs a run that diverges after its first checkpoint"
    with ocp.CheckpointManager(os.path.join(workdir, "checkpoints")) as manager:
        last = manager.latest_step()
        assert last == bad_step - 1
        restored = manager.restore(last, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    leaves = jax.tree.leaves(restored.state["params"])
    assert all(np.all(np.isfinite(x)) for x in leaves)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model": "alexnet"}, "unknown model 'alexnet'"),
        ({"dataset": "no_such_dataset_xyz"}, "unknown data set 'no_such_dataset_xyz'"),
        ({"optimizer": "lion"}, "config.optimizer='lion'"),
        ({"lr_schedule": "exp"}, "config.lr_schedule='exp'"),
        ({"pruning.rules": (("dense_[01]/kernel$", "tw(sparsity=1.5)"),)}, "sparsity=1.5"),
        ({"pruning.rules": (("conv_0/kernel", "2:4"),)}, "match no parameter"),
        ({"pruning.schedule": "exponential"}, "config.pruning.schedule='exponential'"),
        ({"batch_size": 0}, "batch_size"),
        ({"eval_every": 0}, "config.eval_every=0"),
    ],
)
def test_bad_config_fails_before_training(tmp_path, data_dir, overrides, message):
    workdir = tmp_path / "bad"
    with pytest.raises(ValueError, match=message):
        train_experiment.train_and_evaluate(small_config(data_dir, **overrides), str(workdir))
    assert not (workdir / "metrics.jsonl").exists()
    assert not (workdir / "checkpoints").exists()
