"""experiments.progress: the plain-text bar and its estimate of the time left."""

import io
import re

import pytest

from experiments import progress


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_without_a_terminal_one_line_per_tenth_with_the_time_left():
    clock, out = _Clock(), io.StringIO()
    bar = progress.Progress("search", total=20, stream=out, clock=clock)
    for _ in range(20):
        clock.now += 3.0  # every unit takes 3 s
        bar.advance()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # every 2 of the 20 units, the last at 20/20
    assert lines[0] == ("[search] [##..................] 2/20 (10%), 6 s so far, "
                        "about 54 s left")
    assert lines[4].startswith("[search] [##########..........] 10/20 (50%), 30 s so far, "
                               "about 30 s left")
    assert lines[-1] == "[search] [####################] 20/20 (100%), 1 min 00 s so far"


def test_on_a_terminal_the_bar_is_redrawn_in_place():
    out = _Terminal()
    bar = progress.Progress("train", total=3, stream=out, clock=_Clock())
    for _ in range(3):
        bar.advance()
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("3/3 (100%), 0 s so far\n")
    assert text.count("\n") == 1


@pytest.mark.parametrize("seconds, text", [(42.4, "42 s"), (185, "3 min 05 s"),
                                           (3720, "1 h 02 min")])
def test_format_seconds(seconds, text):
    assert progress.format_seconds(seconds) == text


@pytest.mark.parametrize("total", [0, -1, 2.5, True])
def test_a_total_that_is_not_a_positive_integer_is_refused(total):
    with pytest.raises(ValueError, match=re.escape(f"total={total!r}): total must be an integer >= 1")):
        progress.Progress("x", total=total)
