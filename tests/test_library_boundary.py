"""The library stands apart from its drivers: nothing under tasd_jax/ reads a config
(no ml_collections import) or names a driver (`experiments.`, `init_from=`, `python -m experiments`)."""

import ast
import glob
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY_FILES = sorted(glob.glob(os.path.join(REPO, "tasd_jax", "**", "*.py"), recursive=True))
# `python -m` alone is fine (timing.command_line rebuilds whatever command is running);
# `python -m experiments` names the drivers' entry point.
DRIVER_NAMES = ("experiments.", "init_from=", "python -m experiments")


def _imported_modules(path: str) -> set[str]:
    tree = ast.parse(open(path).read(), path)
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_the_library_has_files_to_check():
    assert any(p.endswith(os.path.join("training", "state.py")) for p in LIBRARY_FILES)


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: os.path.relpath(p, REPO))
def test_library_module_imports_no_config_library(path):
    configs = sorted(m for m in _imported_modules(path) if m.split(".")[0] == "ml_collections")
    assert not configs, f"{os.path.relpath(path, REPO)} imports {configs}: configs are read in experiments/"


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: os.path.relpath(p, REPO))
def test_library_module_names_no_driver(path):
    text = open(path).read()
    named = [s for s in DRIVER_NAMES if s in text]
    assert not named, f"{os.path.relpath(path, REPO)} names the drivers ({named}); drivers live in experiments/"
