"""`python -m experiments.run` as a user drives it: their own model and pattern through
`--imports`, bad search settings refused in one line before any work, `--list`, and
a console that shows progress and results (everything with `--verbose`)."""

import glob
import importlib
import inspect
import json
import os
import re
import subprocess
import sys

import ml_collections
import pytest

from configs import tasder as tasder_config
from experiments import tasder as tasder_experiment
from experiments.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATTERNS_GUIDE = os.path.join(REPO, "docs", "guide", "patterns.md")

USER_MODEL = '''
import flax.linen as nn
from tasd_jax import models


class MyMLP(nn.Module):
    """The user's own classifier: its layers are named fc1 and head."""
    num_classes: int = 10
    hidden: tuple = (64,)

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(self.hidden[0], name="fc1")(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.num_classes, name="head")(x)


models.register("mymlp", MyMLP)
'''


def _readme_pattern() -> str:
    """The patterns guide's user-defined pattern ("rows"), as written there."""
    text = open(PATTERNS_GUIDE).read()
    section = text[text.index("### Adding a pattern"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _run(tmp_path, config, *args):
    data_dir = tmp_path / "tfds"
    data_dir.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "experiments.run", f"--config={config}",
            f"--workdir={tmp_path / 'run'}", *args]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TFDS_DATA_DIR": str(data_dir)}
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _assert_one_line_error(proc, message):
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last


def test_imports_make_a_user_model_and_pattern_known_to_the_cli(tmp_path):
    user = tmp_path / "user_code.py"
    user.write_text(USER_MODEL + _readme_pattern())
    data_dir = tmp_path / "tfds"
    args = [f"--config.data_dir={data_dir}", "--config.model=mymlp",
            "--config.pruning.rules=((\"fc1/kernel$\", \"rows(sparsity=0.5)\"),)",
            "--config.num_steps=40", "--config.pruning.begin=10", "--config.pruning.end=30",
            "--config.pruning.frequency=10", "--config.eval_every=40",
            "--config.checkpoint_every=40", "--config.log_every=10"]
    proc = _run(tmp_path, "configs/tw_digits.py", f"--imports={user}", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "run" / "results.json") as f:
        results = json.load(f)
    assert results["pruned_params"] == ["fc1/kernel"]
    assert results["final"]["pattern_valid"] is True
    assert abs(results["final"]["sparsity"] - 0.5) < 0.01

    # Without the import neither name is known: one line, before any work.
    (tmp_path / "again").mkdir()
    proc = _run(tmp_path / "again", "configs/tw_digits.py", *args)
    _assert_one_line_error(proc, "unknown pattern 'rows'")
    proc = _run(tmp_path / "again", "configs/tw_digits.py", *args[:2])
    _assert_one_line_error(proc, "unknown model 'mymlp'")
    proc = _run(tmp_path / "again", "configs/tw_digits.py", f"--imports={tmp_path / 'nope.py'}",
                *args)
    _assert_one_line_error(proc, "which is not a file")


# The search's own checks, in this process (a subprocess pays seconds of imports
# each): the ConfigError the command line prints as its one line, before any data.
@pytest.mark.parametrize("override, message", [
    ({"hardware": "ttc_vegeta_m16"}, "config.hardware='ttc_vegeta_m16' is not a known"),
    ({"mode": "greedy"}, "config.mode='greedy' is not one of"),
    ({"budget": 99.0}, "config.budget=99.0: a budget must lie in (0, 1]"),
    ({"batch": 0}, "config.batch=0 must be an integer >= 1"),
], ids=["hardware", "mode", "budget", "batch"])
def test_bad_search_settings_are_refused_before_any_work(tmp_path, override, message):
    (tmp_path / "tfds").mkdir()
    config = tasder_config.get_config("lenet5")
    config.data_dir = str(tmp_path / "tfds")
    config.update_from_flattened_dict(override)
    with pytest.raises(ConfigError) as err:
        tasder_experiment.tasder_experiment(config, str(tmp_path / "run"))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not os.listdir(tmp_path / "tfds")  # no data was read
    assert not (tmp_path / "run").exists() or not os.listdir(tmp_path / "run")


def test_a_bad_search_setting_fails_in_one_line_on_the_command_line(tmp_path):
    proc = _run(tmp_path, "configs/tasder.py:lenet5", f"--config.data_dir={tmp_path / 'tfds'}",
                "--config.budget=99")
    _assert_one_line_error(proc, "config.budget=99.0: a budget must lie in (0, 1]")
    proc = _run(tmp_path, "configs/tasder.py:lenet5", "--config.train.pruning.frequancy=5")
    _assert_one_line_error(proc, "did you mean 'train.pruning.frequency'?")
    assert not os.listdir(tmp_path / "tfds")  # no data was read
    assert not (tmp_path / "run").exists() or not os.listdir(tmp_path / "run")


def test_list_names_every_config_and_variant_with_its_docstring_line():
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "--list"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))):
        name = os.path.basename(path)
        if name == "__init__.py":
            continue
        module = importlib.import_module(f"configs.{name[:-3]}")
        first = inspect.getdoc(module).splitlines()[0]
        assert f"configs/{name}  {first}" in lines, (name, proc.stdout)
    assert "    configs/mnist.py:lenet5  (default)" in lines
    assert "    configs/mnist.py:resnet,tw75" in lines
    assert "    configs/repro_tw.py:tiny" in lines


@pytest.mark.parametrize("config_file", ["mnist", "tasder", "repro_tw", "tw_vgg16_cifar10"])
def test_every_listed_variant_builds(config_file):
    module = importlib.import_module(f"configs.{config_file}")
    for variant in module.VARIANTS:  # a listed variant the config refuses raises here
        assert isinstance(module.get_config(variant), ml_collections.ConfigDict)


def test_console_hides_library_info_lines_unless_verbose(tmp_path):
    args = ["--config.num_steps=20", "--config.pruning.begin=5", "--config.pruning.end=15",
            "--config.pruning.frequency=5", "--config.eval_every=20",
            "--config.checkpoint_every=20", "--config.log_every=10"]
    quiet = _run(tmp_path, "configs/tw_digits.py", f"--config.data_dir={tmp_path / 'tfds'}",
                 *args)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    (tmp_path / "again").mkdir()
    loud = _run(tmp_path / "again", "configs/tw_digits.py", f"--config.data_dir={tmp_path / 'tfds'}",
                "--verbose", *args)
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert "Load dataset info from" in loud.stderr  # tensorflow_datasets' absl INFO line
    assert "Load dataset info from" not in quiet.stderr
    # Without --verbose: time and message only, progress kept, no absl "I1206 ... file.py:N]" prefix.
    assert re.search(r"^\d\d:\d\d:\d\d step 10/20 ", quiet.stderr, re.M), quiet.stderr
    assert not re.search(r"^[IWE]\d{4} ", quiet.stderr, re.M), quiet.stderr
