"""Shared benchmark helpers: interleaved timing and the machine description
(from `tasd_jax.timing`), and the results writer.

Speed targets are ratios measured in one run: the candidates are timed in
turn, round after round, so a change in machine load hits all of them alike.
"""

import json
import os

from tasd_jax.timing import interleaved_medians, interleaved_times, machine

__all__ = ["interleaved_medians", "interleaved_times", "machine", "write_results"]


def write_results(path_stem: str, payload: dict, markdown: str) -> None:
    """Writes `path_stem`.json and `path_stem`.md (creating the folder)."""
    os.makedirs(os.path.dirname(path_stem) or ".", exist_ok=True)
    with open(path_stem + ".json", "w") as f:
        json.dump(payload, f, indent=2)
    with open(path_stem + ".md", "w") as f:
        f.write(markdown)
