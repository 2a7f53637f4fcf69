"""Benchmarks time the library: none of them imports a driver from `experiments`."""

import ast
import pathlib

import pytest

BENCHMARKS = sorted((pathlib.Path(__file__).parent.parent / "benchmarks").glob("*.py"))


def experiments_imports(source: str) -> list[str]:
    """Each `import experiments...` / `from experiments... import ...` of `source`, as written."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names
                      if a.name.split(".")[0] == "experiments"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "experiments":
                found.append(f"from {node.module} import {', '.join(a.name for a in node.names)}")
    return found


def test_the_check_finds_both_import_forms():
    source = "import experiments.outputs\nfrom experiments import edp_report\nimport tasd_jax\n"
    assert experiments_imports(source) == [
        "import experiments.outputs", "from experiments import edp_report"]


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_imports_no_driver(path):
    assert BENCHMARKS, "no benchmarks/*.py found"
    imports = experiments_imports(path.read_text())
    assert not imports, f"benchmarks/{path.name} imports driver code: {imports}"
