"""README.md and every page under docs/: each Python snippet runs as written,
each command names a real config, and each relative link and anchor resolves."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
FENCE = re.compile(r"^```.*?^```", flags=re.S | re.M)
LINK = re.compile(r"\[[^\]]+\]\(([^)\s]+)\)")


def _name(page: pathlib.Path) -> str:
    return str(page.relative_to(ROOT))


SNIPPETS = [
    (_name(page), index, code)
    for page in PAGES
    for index, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))
]


def test_the_readme_stays_a_front_door():
    """The README keeps the two commands, the headline tables and a way on."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250, "README.md grew past 250 lines: move reference to docs/"
    assert "pip install -e . && python -m experiments.run --config=configs/quickstart.py" in text
    assert "pip install -q -e '.[test]' && python -m pytest" in text
    assert "](docs/guide/" in text


def test_the_pages_have_snippets():
    assert sum(name == "README.md" for name, _, _ in SNIPPETS) >= 1
    assert len(SNIPPETS) >= 8


@pytest.mark.parametrize("page,index,code", SNIPPETS, ids=[f"{p}:{i}" for p, i, _ in SNIPPETS])
def test_python_snippet_runs(page, index, code, tmp_path):
    """Each snippet in a fresh interpreter (data prepared into a temporary tfds dir)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TFDS_DATA_DIR": str(tmp_path / "tfds")}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=str(tmp_path), env=env,
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"{page} snippet {index} failed:\n{code}\n{proc.stderr[-3000:]}"


def test_commands_name_existing_configs():
    named = {(page, c) for page in PAGES
             for c in re.findall(r"--config=(configs/[a-z0-9_]+\.py)", page.read_text())}
    assert any(c == "configs/quickstart.py" for _, c in named)
    missing = sorted(f"{_name(p)}: {c}" for p, c in named if not (ROOT / c).exists())
    assert not missing, f"pages name configs that do not exist: {missing}"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: pathlib.Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {github_anchor(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def broken_links(page: pathlib.Path) -> list[str]:
    broken = []
    for url in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+://", url) or url.startswith("mailto:"):
            continue
        path, _, fragment = url.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{url} (no file {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target})")
        elif fragment and target.suffix == ".md" and fragment not in anchors(target):
            broken.append(f"{url} (no heading with anchor #{fragment})")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_resolve(page):
    broken = broken_links(page)
    assert not broken, f"{_name(page)} has broken links: {broken}"


def test_the_link_check_sees_a_broken_link(tmp_path, monkeypatch):
    """The check itself: a missing file and a missing anchor are both reported."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "a.md").write_text("# Title\n\n[ok](#title) [gone](b.md) [bad](#nowhere)\n")
    assert broken_links(tmp_path / "a.md") == ["b.md (no file b.md)", "#nowhere (no heading with anchor #nowhere)"]
