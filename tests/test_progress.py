"""What a run shows: bars with counts and an ETA on a terminal, plain lines in CI or a pipe."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from xentbench.suites.run.progress import BarDisplay, LineDisplay, duration, plain_wanted


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("environ", "tty", "plain"),
    [
        ({}, True, False),
        ({}, False, True),
        ({"CI": "true"}, True, True),
        ({"CI": "1"}, True, True),
        ({"CI": "false"}, True, False),
        ({"CI": ""}, True, False),
    ],
)
def test_plain_lines_in_ci_or_when_stdout_is_not_a_terminal(environ, tty, plain):
    assert plain_wanted(environ, _Stream(tty)) is plain


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_plain_lines_every_tenth_or_every_30_seconds_and_at_the_end():
    out, clock = io.StringIO(), _Clock()
    display = LineDisplay(Console(file=out, width=80), clock)
    bar = display.bar(("run", "accuracy", "torch"), "accuracy torch")
    display.plan(bar, 40, 0)
    assert _lines(out) == ["accuracy torch: started, 40 tasks"]
    for _ in range(3):  # under a tenth, within 30 s: silent
        clock.now += 2
        display.advance(bar)
    assert len(_lines(out)) == 1
    clock.now += 2
    display.advance(bar)  # 4/40: a tenth, after 8 s; 36 left at 2 s each
    assert _lines(out)[-1] == "accuracy torch: 4/40 (10%), 8s so far, about 1m12s left"
    clock.now += 31
    display.advance(bar)  # not another tenth, but 31 s since the last line
    assert _lines(out)[-1].startswith("accuracy torch: 5/40 (12%), 39s so far, about ")
    for _ in range(35):
        display.advance(bar)
    assert _lines(out)[-1].startswith("accuracy torch: 36/40 (90%)")  # the last line before the end
    display.finish(bar)
    assert _lines(out)[-1] == "accuracy torch: 40/40 done in 39s"
    assert len(_lines(out)) == 12  # started, a line per tenth (10% to 90%), the 30 s one, done


def test_plain_lines_count_a_resumed_run_and_a_restarted_worker_once():
    out, clock = io.StringIO(), _Clock()
    display = LineDisplay(Console(file=out, width=80), clock)
    bar = display.bar("key", "accuracy jax")
    clock.now += 5  # importing the framework and planning: part of the time taken
    display.plan(bar, 10, 5)
    assert _lines(out) == ["accuracy jax: started, 10 tasks (5 stored before)"]
    display.advance(bar)  # a crash counts as done; its worker restarts and plans again
    before = _lines(out)
    display.plan(bar, 10, 6)
    assert _lines(out) == before  # no second "started"
    for _ in range(4):
        clock.now += 10
        display.advance(bar)
    display.finish(bar)
    # 4 tasks in the 30 s since the plan (the crash one of them): 7.5 s each, 1 left
    assert _lines(out)[-2] == "accuracy jax: 9/10 (90%), 35s so far, about 8s left"
    assert _lines(out)[-1] == "accuracy jax: 10/10 done in 45s"


def test_an_unfinished_backend_prints_no_done_line():
    out = io.StringIO()
    display = LineDisplay(Console(file=out, width=80), _Clock())
    bar = display.bar("key", "accuracy tensorflow")
    display.finish(bar)  # unavailable: never planned
    assert out.getvalue() == ""


def test_bars_show_done_of_total_elapsed_and_eta_per_backend():
    display = BarDisplay(Console(file=io.StringIO(), width=200))
    torch = display.bar(("run", "accuracy", "torch"), "accuracy torch")
    jax = display.bar(("run", "accuracy", "jax"), "accuracy jax")
    display.plan(torch, 10, 3)
    display.advance(torch)
    display.working_on(torch, "torch:F.softmax softmax/extreme/[huge] float16 value")
    display.plan(jax, 5, 0)
    out = io.StringIO()
    Console(file=out, width=200).print(display.progress.get_renderable())
    torch_line, jax_line = out.getvalue().splitlines()
    assert torch_line.startswith("accuracy torch") and "4/10" in torch_line
    assert "ETA" in torch_line and "softmax/extreme/[huge]" in torch_line  # no markup eaten
    assert jax_line.startswith("accuracy jax") and "0/5" in jax_line
    display.finish(torch)
    out = io.StringIO()
    Console(file=out, width=200).print(display.progress.get_renderable())
    assert out.getvalue().splitlines()[0].rstrip().endswith("done")


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (44.6, "45s"), (192, "3m12s"), (3900, "1h05m")]
)
def test_durations_read_as_people_write_them(seconds, text):
    assert duration(seconds) == text
