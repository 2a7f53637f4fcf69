"""The one way drivers write their outputs: JSON, JSON lines, CSV and PNG files.

Every file is written to a temporary name in its directory and renamed into
place, so a run killed at any moment leaves either the old file or the new
one, never half of one. (A JSON-lines log may also be appended to row by row;
`read_jsonl` drops a last row that a kill cut short.)
"""

import csv
import io
import json
import os
from typing import Any, Iterable, Sequence

from absl import logging

from tasd_jax import files


def __getattr__(name: str) -> Any:
    """`outputs.plt`: matplotlib's pyplot on the file-only Agg backend, imported on
    first use, so that a command that draws nothing (a bad config, a resumed
    stage) does not pay its import (about 0.4 s)."""
    if name != "plt":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def jsonable(obj: Any) -> Any:
    """`obj` as it reads back from a JSON file (tuples become lists, numpy
    values plain), so that values written and values read compare equal."""
    return json.loads(json.dumps(obj, default=_jsonable))


def write_json(path: str, obj: Any) -> None:
    """`obj` as indented JSON (numpy scalars and other values via str)."""
    files.write_json_atomic(path, obj, default=_jsonable)


def write_text(path: str, text: str) -> None:
    """A text file (e.g. a Markdown report), replaced at once."""
    with files.atomic_open(path) as f:
        f.write(text)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table: `header` cells, then one line per row (cells via str)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def write_jsonl(path: str, rows: Iterable[dict]) -> None:
    """One JSON object per line (the whole file, replaced at once)."""
    with files.atomic_open(path) as f:
        f.writelines(json.dumps(r, default=_jsonable) + "\n" for r in rows)


def read_jsonl(path: str) -> list[dict]:
    """The rows of a JSON-lines file; [] when it does not exist.

    A last line without its newline is an append cut short by a kill; it is
    dropped with a warning (every complete row ends with a newline).
    """
    if not os.path.exists(path):
        return []
    with open(path) as f:
        *lines, tail = f.read().split("\n")
    if tail.strip():
        logging.warning("Dropping the unfinished last line of %s: %r", path, tail[:80])
    return [json.loads(line) for line in lines if line.strip()]


def write_csv(path: str, rows: Sequence[dict], fields: Sequence[str] | None = None) -> None:
    """A CSV with a header: `fields` (default: the first row's keys) in order."""
    if fields is None:
        if not rows:
            raise ValueError(f"write_csv({path!r}): no rows and no fields to write")
        fields = list(rows[0])
    with files.atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)


def save_figure(fig: Any, path: str, dpi: int = 110) -> None:
    """Saves a matplotlib figure as PNG and closes it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    __getattr__("plt").close(fig)
    with files.atomic_open(path, "wb") as f:
        f.write(buffer.getvalue())


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
