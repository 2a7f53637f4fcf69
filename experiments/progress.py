"""A plain-text progress bar with an estimate of the time left, for long stages.

    bar = progress.Progress("search", total=len(budgets))
    for budget in budgets:
        ...
        bar.advance()

On a terminal the bar is redrawn in place; when the output is not a terminal
(a log file, a pipe, a test), a line is printed each time another `every`
share of the work is done, and at the end, so a log shows steady progress
without one line per step. The time left assumes the remaining units take as
long as the finished ones did on average.
"""

import sys
import time
from typing import Callable, TextIO


def format_seconds(seconds: float) -> str:
    """`seconds` as "42 s", "3 min 05 s" or "1 h 02 min"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Counts finished units of a stage of `total` units and prints a bar.

    Args:
      label: what runs, printed in brackets before the bar (e.g. "tasder").
      total: the number of units, an integer >= 1.
      stream: where the bar goes (default: stdout at the time of each print).
      every: when `stream` is not a terminal, the share of `total` between printed lines.
      clock: seconds, monotonic (a fake clock in tests).
    """

    WIDTH = 20  # characters of the bar itself

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None,
                 every: float = 0.1, clock: Callable[[], float] = time.monotonic):
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"Progress({label!r}, total={total!r}): total must be an integer >= 1")
        if not 0.0 < every <= 1.0:
            raise ValueError(f"Progress({label!r}, every={every!r}): every must lie in (0, 1]")
        self.label, self.total, self.every = label, total, every
        self._stream, self._clock = stream, clock
        self._start = clock()
        self.done = 0
        self._printed_share = 0.0

    def line(self) -> str:
        """The current bar: `[label] [#####.....] 3/8 (38%), 12 s so far, about 20 s left`."""
        share = self.done / self.total
        filled = int(share * self.WIDTH)
        elapsed = self._clock() - self._start
        text = (f"[{self.label}] [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                f"{self.done}/{self.total} ({share:.0%}), {format_seconds(elapsed)} so far")
        if 0 < self.done < self.total:
            text += f", about {format_seconds(elapsed / self.done * (self.total - self.done))} left"
        return text

    def advance(self, units: int = 1) -> None:
        """Marks `units` more as done (never past `total`) and prints the bar when due."""
        self.done = min(self.total, self.done + units)
        stream = self._stream or sys.stdout
        if stream.isatty():
            end = "\n" if self.done == self.total else ""
            print("\r" + self.line(), end=end, file=stream, flush=True)
            return
        share = self.done / self.total
        if self.done == self.total or share - self._printed_share >= self.every - 1e-9:
            self._printed_share = share
            print(self.line(), file=stream, flush=True)
