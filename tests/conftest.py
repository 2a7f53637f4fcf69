"""Shared test settings: CPU only, one XLA compilation cache per test process,
XLA's backend optimisation off, a deterministic hypothesis profile for CI, and the
jit / no-jit parametrisation."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Every program this test process compiles, and those of the subprocesses it
# starts (they inherit the environment), goes to one on-disk cache: many tests
# run the same training programs again (a killed run restarted, two processes
# against one), and the later runs read them instead of compiling (a SIGKILL and
# restart test took 18 s against 32 s). Set before jax is imported: jax reads
# these once.
_COMPILATION_CACHE = tempfile.mkdtemp(prefix="tasd_jax_tests_xla_cache_")
atexit.register(shutil.rmtree, _COMPILATION_CACHE, ignore_errors=True)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _COMPILATION_CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Most of the suite's time is XLA compiling small programs that then run for
# milliseconds: LLVM's optimisation passes cost more than they save here
# (tests/test_tasd.py: 93 s against 68 s without them). The programs and every
# check are the same; only the machine code is less tuned. Benchmarks
# and experiments keep XLA's default.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


# The files that take longest (setup included; `pytest --durations=0` on 2 cores,
# about 10-140 s each), slowest first. With several workers (`-n auto --dist
# loadfile`) a long file handed out last leaves the other workers idle while it
# runs: these go out first, the rest fill in around them.
SLOWEST_FILES = (
    "test_repro_tasd.py", "test_patterns.py", "test_tasd.py", "test_train.py",
    "test_kernels.py", "test_bad_runs.py", "test_distributed.py", "test_models.py",
    "test_repro_tw.py", "test_readme.py", "test_cli.py", "test_train_configs.py",
    "test_bad_inputs.py", "test_vit.py", "test_pruning.py", "test_tasder_user_model.py",
    "test_minilm_tasder.py", "test_quickstart.py", "test_kernels_layers.py",
    "test_pipeline.py",
)


def pytest_configure(config):
    # xdist hands out files with the most tests first unless told to keep the
    # collection order, which `pytest_collection_modifyitems` below sets.
    if config.pluginmanager.hasplugin("xdist"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file kept


@pytest.fixture(params=[False, True], ids=["nojit", "jit"])
def jit(request):
    """Runs a test twice: `jit(fn, **jit_kwargs)` is `jax.jit(fn, **jit_kwargs)`
    in the "jit" case and `fn` itself in the "nojit" case."""

    def maybe_jit(fn, **jit_kwargs):
        return jax.jit(fn, **jit_kwargs) if request.param else fn

    return maybe_jit


@pytest.fixture(scope="session")
def dense_digits_run(tmp_path_factory):
    """A finished dense run of the digits MLP (300 steps): its directory, with
    `tfds/` (the prepared data) and `train/export`."""
    from configs import tw_digits
    from experiments import train as train_experiment

    root = tmp_path_factory.mktemp("dense_digits")
    config = tw_digits.get_config()
    config.data_dir = str(root / "tfds")
    config.pruning.rules = ()
    config.num_steps, config.log_every, config.eval_every, config.checkpoint_every = 300, 100, 300, 300
    train_experiment.train_and_evaluate(config, str(root / "train"))
    return root
