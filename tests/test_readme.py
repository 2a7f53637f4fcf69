"""Every Python snippet of README.md runs as written, and its commands name real configs."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md")).read()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_readme_has_snippets():
    assert len(SNIPPETS) >= 5


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_python_snippet_runs(index, tmp_path):
    """Each snippet in a fresh interpreter (data prepared into a temporary tfds dir)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TFDS_DATA_DIR": str(tmp_path / "tfds")}
    proc = subprocess.run(
        [sys.executable, "-c", SNIPPETS[index]], cwd=str(tmp_path), env=env,
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"README snippet {index} failed:\n{SNIPPETS[index]}\n{proc.stderr[-3000:]}"


def test_readme_commands_name_existing_configs():
    configs = set(re.findall(r"--config=(configs/[a-z0-9_]+\.py)", README))
    assert "configs/tw_digits.py" in configs
    missing = [c for c in configs if not os.path.exists(os.path.join(ROOT, c))]
    assert not missing, f"README names configs that do not exist: {missing}"
