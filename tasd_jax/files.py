"""Files replaced at once: a run killed while writing leaves the old file or the new one.

Every JSON file the library and the drivers write goes through
`write_json_atomic`: written to `PATH.tmp` beside it, flushed to disk, then
renamed over `PATH` (a rename within a directory is atomic); other files
(an export's and a search's `.npz` arrays) go through `atomic_open` the same way.
"""

import contextlib
import json
import os
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w") -> Iterator[Any]:
    """A file object writing `path.tmp`, renamed to `path` once the block ends
    without an error (parent directories are created)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, mode, **({"newline": ""} if "b" not in mode else {})) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(
    path: str, obj: Any, *, indent: int = 2, default: Callable[[Any], Any] | None = None
) -> None:
    """Writes `obj` as indented JSON to `path`, replacing it at once.

    Args:
      path: the file to write.
      obj: a JSON-serialisable value.
      indent: spaces per nesting level.
      default: converts values json cannot encode (as `json.dump`'s `default`).
    """
    with atomic_open(path) as f:
        json.dump(obj, f, indent=indent, default=default)
