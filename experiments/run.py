r"""Runs one experiment: `python -m experiments.run --config=configs/NAME.py --workdir=DIR`.

Every config names its experiment in `config.experiment`; the experiment is a
function `(config, workdir) -> dict` of a module in this package, looked up in
`EXPERIMENTS`. Fields are overridden on the command line with
`--config.field=value`, and a config that takes a variant is chosen with
`--config=configs/NAME.py:variant`.

Mistakes in the input end the command with one line on stderr (`error: ...`)
and exit status 1, no traceback: an override of a field the config does not
have (with the closest field name), the experiments' `ConfigError` and
`CheckpointError`, and a data set that is missing (`DataNotFoundError`) or
malformed (`IdxFormatError`), whose messages say what to change
(`--verbosity=1` logs their traceback). `--resume_with_changes` lets a rerun resume a workdir with
the fields that may change on resume changed (`experiments.resume.CHANGEABLE_ON_RESUME`).

The console shows progress, results, warnings and errors; the libraries' INFO
lines (datasets, JAX, checkpoints) appear with `--verbose`. `--list` prints
every config of configs/ and its variants with the first line of its docstring.
"""

import difflib
import importlib
import importlib.util
import inspect
import logging as std_logging
import os
import pkgutil
import re
import sys
from typing import Any, Callable

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

import configs
from experiments import decompose_report
from experiments import edp_report
from experiments import minilm_tasder
from experiments import quickstart
from experiments import repro_tasd
from experiments import repro_tw
from experiments import sweep
from experiments import tasder
from experiments import checks
from experiments import resume
from experiments import train
from experiments import tw_kernels
from experiments.errors import ConfigError
from tasd_jax import data
from tasd_jax import training

EXPERIMENTS: dict[str, Callable[[Any, str], Any]] = {
    "train": train.train_and_evaluate,
    "sweep": sweep.sweep,
    "decompose_report": decompose_report.decompose_report,
    "edp": edp_report.edp_report,
    "tw_kernels": tw_kernels.tw_kernels,
    "tasder": tasder.tasder_experiment,
    "tasder_table": tasder.tasder_table,
    "minilm_tasder": minilm_tasder.minilm_tasder,
    "quickstart": quickstart.quickstart,
    "repro_tasd": repro_tasd.repro_tasd,
    "repro_tw": repro_tw.repro_tw,
}

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to an ml_collections config file (required unless --list).",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for every output of the run (required unless --list).")
_LIST = flags.DEFINE_bool(
    "list", False, "Print every config of configs/ and its variants, with the first line of "
    "its docstring, and exit.")
_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Show every log line, the libraries' INFO lines included (datasets, "
    "JAX, checkpoints); by default only progress, results, warnings and errors.")
_IMPORTS = flags.DEFINE_list(
    "imports", [],
    "Python modules to import before the run, comma-separated: module names "
    "(`mypackage.models`) or .py files; what they register (models, sparsity patterns) "
    "is then known to the config by name.",
)
_RESUME_WITH_CHANGES = flags.DEFINE_bool(
    "resume_with_changes", False,
    "Resume a workdir whose run started with a config that differs from this one only in "
    f"fields that may change on resume ({', '.join(resume.CHANGEABLE_ON_RESUME)}); sets "
    "config.resume_with_changes.",
)

# Errors whose message says what to change: reported in one line, without a traceback.
_INPUT_ERRORS = (ConfigError, training.CheckpointError, data.DataNotFoundError,
                 data.IdxFormatError)


def experiment_fn(name: str) -> Callable[[Any, str], Any]:
    """Returns the experiment function registered under `name`."""
    if name not in EXPERIMENTS:
        raise ValueError(
            f"config.experiment={name!r} is not a known experiment; known: {sorted(EXPERIMENTS)}"
        )
    return EXPERIMENTS[name]


def field_paths(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Dotted paths of every field of `config`, nested ConfigDicts and their fields alike."""
    paths = []
    for key, value in config.items():
        paths.append(prefix + key)
        if isinstance(value, ml_collections.ConfigDict):
            paths.extend(field_paths(value, f"{prefix}{key}."))
    return paths


def _argument(argv: list[str], name: str) -> str | None:
    """The value of `--name=VALUE` or `--name VALUE` in `argv`, None if absent."""
    for i, arg in enumerate(argv):
        if arg.lstrip("-") == name and arg.startswith("-") and i + 1 < len(argv):
            return argv[i + 1]
        if re.match(rf"^--?{re.escape(name)}=", arg):
            return arg.split("=", 1)[1]
    return None


def unknown_field_message(argv: list[str]) -> str | None:
    """'unknown config field ...' for the first `--config.FIELD` of `argv` that the
    config file does not have, with the closest field name; None if all exist."""
    config_file = _argument(argv, "config")
    if config_file is None:
        return None
    config = flags.FLAGS["config"].parser.parse(config_file)  # the flag's own loader
    known = field_paths(config)
    for arg in argv:
        match = re.match(r"^--?(?:no)?config\.([^=]+)", arg)
        if match and match[1] not in known:
            # A typo is looked for among the fields beside it ("pruning.frequancy").
            parent, _, name = match[1].rpartition(".")
            siblings = {p.rpartition(".")[2]: p for p in known if p.rpartition(".")[0] == parent}
            close = difflib.get_close_matches(name, list(siblings), n=1)
            hint = (
                f"; did you mean {siblings[close[0]]!r}?" if close
                else f" ({config_file} has no such field)"
            )
            return f"unknown config field {match[1]!r}{hint}"
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, where an override of a field the config does not have
    (a bare AttributeError or KeyError from ml_collections) is one line naming it."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError):
        message = unknown_field_message(argv)
        if message is None:
            raise
        sys.exit(f"error: {message}")


def import_user_modules(names: list[str]) -> None:
    """Imports each of `names` (module names, or paths of .py files).

    Raises:
      ConfigError: a module that cannot be found or fails to import, naming it.
    """
    for name in names:
        try:
            if name.endswith(".py"):
                if not os.path.isfile(name):
                    raise ConfigError(f"--imports names {name!r}, which is not a file")
                module = os.path.splitext(os.path.basename(name))[0]
                spec = importlib.util.spec_from_file_location(module, name)
                loaded = importlib.util.module_from_spec(spec)
                sys.modules[module] = loaded
                spec.loader.exec_module(loaded)
            else:
                importlib.import_module(name)
        except ConfigError:
            raise
        except Exception as err:  # any failure of the user's module is reported as such
            raise ConfigError(
                f"--imports: importing {name!r} failed: {type(err).__name__}: {err}") from err


def list_configs() -> str:
    """One line per config of configs/ (`configs/NAME.py` and the first line of its
    docstring), then one line per variant of a config whose `get_config` takes one:
    those its `VARIANTS` names, the default marked."""
    lines = []
    for info in sorted(pkgutil.iter_modules(configs.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"configs.{info.name}")
        if not hasattr(module, "get_config"):
            continue  # a helper module, not a config
        summary = (inspect.getdoc(module) or "(no docstring)").splitlines()[0]
        lines.append(f"configs/{info.name}.py  {summary}")
        parameters = inspect.signature(module.get_config).parameters.values()
        default = next(iter(parameters)).default if parameters else None
        if parameters:
            for variant in getattr(module, "VARIANTS", (default,)):
                marked = "  (default)" if variant == default else ""
                lines.append(f"    configs/{info.name}.py:{variant}{marked}")
    return "\n".join(lines)


_EXPERIMENTS_DIR = os.path.dirname(os.path.abspath(__file__))


def _from_experiments_or_warning(record: std_logging.LogRecord) -> bool:
    """The console without --verbose: the experiments' own lines (progress and results)
    and every warning and error; other libraries' INFO lines are dropped."""
    return (record.levelno >= std_logging.WARNING
            or os.path.dirname(os.path.abspath(record.pathname)) == _EXPERIMENTS_DIR)


class _ConsoleFormatter(std_logging.Formatter):
    """`15:59:43 step 10/20 ...`: the time and the message, with the level named only
    for warnings and errors (absl's default prefix names the thread and source line)."""

    def format(self, record: std_logging.LogRecord) -> str:
        level = f"{record.levelname.lower()}: " if record.levelno >= std_logging.WARNING else ""
        text = f"{self.formatTime(record, '%H:%M:%S')} {level}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _LIST.value:
        print(list_configs())
        return
    missing = [f"--{name}" for name in ("config", "workdir") if flags.FLAGS[name].value is None]
    if missing:
        raise app.UsageError(f"{' and '.join(missing)} must be given (or --list)")
    if not _VERBOSE.value:
        logging.get_absl_handler().addFilter(_from_experiments_or_warning)
        logging.get_absl_handler().setFormatter(_ConsoleFormatter())
    try:
        import_user_modules(_IMPORTS.value)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    config = _CONFIG.value
    if "experiment" not in config:
        raise ValueError("the config has no `experiment` field naming what to run")
    if _RESUME_WITH_CHANGES.value:
        with config.unlocked():
            config.resume_with_changes = True
    logging.info("Running %s in %s", config.experiment, _WORKDIR.value)
    try:
        checks.initialize_distributed(config)  # JAX's multi-process runtime: before any JAX work
        experiment_fn(config.experiment)(config, _WORKDIR.value)
    except _INPUT_ERRORS as err:
        logging.debug("Traceback of the error below", exc_info=True)
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
