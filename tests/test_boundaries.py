"""Which floors of the library may import which, read from the source with `ast`.

`tasd_jax/kernels/` is a floor below models and pruning: its formats and
products must load without either, directly or through another `tasd_jax`
module they import. An import counts wherever it is written (inside a
function too), and importing `a.b.c` also runs the packages `a` and `a.b`.
"""

import ast
import collections
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "tasd_jax"


def module_files(root: pathlib.Path = REPO / PACKAGE) -> dict[str, pathlib.Path]:
    """Dotted module name -> source file, for every module under `root`
    (a package is named by its `__init__.py`)."""
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def with_parents(name: str) -> list[str]:
    """`a.b.c` -> [`a`, `a.b`, `a.b.c`]: importing a module runs its packages too."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def direct_imports(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """The modules of `known` that module `name` (source `path`) imports."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import sub` imports the submodule `pkg.sub` when there is one.
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            found.update(m for m in with_parents(target) if m in known)
    return found


def import_graph(files: dict[str, pathlib.Path]) -> dict[str, set[str]]:
    """Module -> the `tasd_jax` modules it imports directly (with their packages)."""
    known = set(files)
    return {name: direct_imports(name, path, known) for name, path in files.items()}


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module loaded by importing `start` (breadth first), each mapped to
    the module that first imports it, to print the chain when a boundary is crossed."""
    via = {parent: start for parent in with_parents(start)[:-1] if parent in graph}
    queue = collections.deque([start, *via])
    while queue:
        importer = queue.popleft()
        for imported in sorted(graph[importer]):
            if imported != start and imported not in via:
                via[imported] = importer
                queue.append(imported)
    return via


def chain(via: dict[str, str], start: str, module: str) -> str:
    """`start -> ... -> module` along the recorded first importers."""
    links = [module]
    while links[-1] != start:
        links.append(via[links[-1]])
    return " -> ".join(reversed(links))


def forbidden_reached(
    graph: dict[str, set[str]], floor: str, forbidden: tuple[str, ...]
) -> list[str]:
    """For every module under `floor`, each import chain into a `forbidden` package."""
    crossings = []
    for start in sorted(m for m in graph if m == floor or m.startswith(floor + ".")):
        via = reachable(graph, start)
        inside = {m for m in via if any(m == f or m.startswith(f + ".") for f in forbidden)}
        # Only where a chain enters a forbidden package, not what loads from inside it.
        crossings += [chain(via, start, m) for m in sorted(inside) if via[m] not in inside]
    return crossings


FILES = module_files()
GRAPH = import_graph(FILES)


def test_the_graph_sees_the_kernels_own_imports():
    # Guards the parser: the test below passes vacuously if it sees nothing.
    assert "tasd_jax.kernels.formats" in GRAPH["tasd_jax.kernels.matmul"]
    assert "tasd_jax.patterns" in GRAPH["tasd_jax.kernels.formats"]
    # A lazy import inside a function counts.
    assert "tasd_jax.kernels.tw_pallas" in GRAPH["tasd_jax.kernels.matmul"]
    assert "tasd_jax.models" in reachable(GRAPH, "tasd_jax.kernel_speed")


@pytest.mark.parametrize("forbidden", ["tasd_jax.models", "tasd_jax.pruning"])
def test_kernels_import_neither_models_nor_pruning(forbidden):
    assert forbidden_reached(GRAPH, "tasd_jax.kernels", (forbidden,)) == []


def test_a_crossing_is_reported_with_its_chain(tmp_path):
    # A throwaway package where kernels reaches models through a third module.
    for rel, text in {
        "tasd_jax/__init__.py": "",
        "tasd_jax/kernels/__init__.py": "from tasd_jax.kernels import ops\n",
        "tasd_jax/kernels/ops.py": "def f():\n    from tasd_jax import helper\n",
        "tasd_jax/helper.py": "from .models import bert\n",
        "tasd_jax/models/__init__.py": "",
        "tasd_jax/models/bert.py": "",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = import_graph(module_files(tmp_path / "tasd_jax"))
    assert forbidden_reached(graph, "tasd_jax.kernels", ("tasd_jax.models",)) == [
        "tasd_jax.kernels -> tasd_jax.kernels.ops -> tasd_jax.helper -> tasd_jax.models",
        "tasd_jax.kernels -> tasd_jax.kernels.ops -> tasd_jax.helper -> tasd_jax.models.bert",
        "tasd_jax.kernels.ops -> tasd_jax.helper -> tasd_jax.models",
        "tasd_jax.kernels.ops -> tasd_jax.helper -> tasd_jax.models.bert",
    ]
