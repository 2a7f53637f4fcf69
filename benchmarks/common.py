"""Shared benchmark helpers: interleaved timing and the machine description
(from `tasd_jax.timing`), and the results writer.

Speed targets are ratios measured in one run: the candidates are timed in
turn, round after round, so a change in machine load hits all of them alike.

A benchmark never writes into the checkout unless told to: results go to
`--out_dir` (default `DEFAULT_OUT_DIR`, under the system's temporary
folder). Recorded results are committed on purpose, by running with
`--out_dir=benchmarks/results`.
"""

import argparse
import json
import os
import tempfile

from tasd_jax.timing import command_line, interleaved_medians, interleaved_times, machine

__all__ = [
    "DEFAULT_OUT_DIR",
    "add_out_dir",
    "interleaved_medians",
    "interleaved_times",
    "machine",
    "write_results",
]

DEFAULT_OUT_DIR = os.path.join(tempfile.gettempdir(), "tasd_jax_benchmarks")


def add_out_dir(parser: argparse.ArgumentParser) -> None:
    """Adds `--out_dir`: where the results go (default outside the checkout)."""
    parser.add_argument(
        "--out_dir",
        default=DEFAULT_OUT_DIR,
        help="folder for the results (default %(default)s); "
        "--out_dir=benchmarks/results records them in the repository",
    )


def machine_line(mach: dict) -> str:
    """One line naming the machine of `machine()` and its load when it was taken."""
    return (
        f"Machine: {mach['platform']}, {mach['processor']}, {mach['cpu_count']} CPUs, "
        f"jax {mach['jax']} ({mach['backend']}, {mach['device']}); load average (1 min) "
        f"{mach['load_average_1m']:.2f} at the start, {mach['date']}."
    )


def write_results(out_dir: str, name: str, payload: dict, markdown: str) -> str:
    """Writes `out_dir/name`.json and .md (creating the folder); returns the stem.

    `payload["machine"]` is `machine()` taken before the measurements. Both
    files record it and the command that produced them; the Markdown ends with
    them.
    """
    command = command_line()
    stem = os.path.join(out_dir, name)
    os.makedirs(out_dir, exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump({"command": command, **payload}, f, indent=2)
    with open(stem + ".md", "w") as f:
        f.write(markdown.rstrip("\n") + f"\n\n{machine_line(payload['machine'])}\n\n"
                f"Command: `{command}`\n")
    print(f"wrote {stem}.json and {stem}.md")
    return stem
