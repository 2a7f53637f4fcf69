"""Timing as ratios measured in one run: interleaved repetitions, and where they ran.

Candidates are timed in turn, round after round, so a change in machine load
hits all of them alike; `machine` records the machine, its load average and
the command beside every figure.
"""

import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from typing import Any, Callable

import jax


def interleaved_times(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds of every repetition of each zero-argument function, timed
    round-robin (one call of each per round)."""
    for fn in fns.values():
        for _ in range(warmup):
            jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return times


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each zero-argument function, timed round-robin."""
    return {name: statistics.median(t) for name, t in interleaved_times(fns, repeats, warmup).items()}


def command_line() -> str:
    """The command that is running, as a user would type it (`python -m
    module ...` when run as a module)."""
    module = sys.modules["__main__"].__spec__
    program = f"python -m {module.name}" if module else f"python {sys.argv[0]}"
    return " ".join([program] + [shlex.quote(a) for a in sys.argv[1:]])


def machine() -> dict:
    """Where and how a benchmark ran."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
    }
