"""The binary search over ordered releases: a preflight that the two ends differ, then halving
the range between the last release that behaves like the oldest and the first that does not.

The test is any oracle of a release: ``bad`` (the problem is there), ``good``, or ``skip``
(its environment did not build, or the test could not run there), which like ``git bisect
skip`` tries the nearest other release of the range instead. Whether the answer is a first
bad release (a regression) or a first fixed one follows from which end is bad.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

VERDICTS = ("good", "bad", "skip")


@dataclass(frozen=True)
class Trial:
    """One release tried: its verdict and what decided it."""

    version: str
    verdict: str
    detail: str = ""


class SameEnds(ValueError):
    """The preflight: both ends behave alike (or neither end could be tested)."""

    def __init__(self, message: str, trials: list[Trial]):
        super().__init__(message)
        self.trials = trials


@dataclass
class Outcome:
    """Where the behaviour changed: ``last`` behaves like the oldest release tested, ``first``
    is the first that does not; ``untested`` lie between them (their environments failed)."""

    kind: str  # "first bad" (a regression) or "first fixed"
    last: str
    first: str
    trials: list[Trial] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)

    @property
    def last_label(self) -> str:
        return "last good" if self.kind == "first bad" else "last bad"


Oracle = Callable[[str], Trial]


def bisect(versions: list[str], oracle: Oracle) -> Outcome:
    """First release whose verdict differs from the oldest's: ``2 + ceil(log2(n - 1))`` oracle
    calls for ``n`` releases when none is skipped."""
    trials: list[Trial] = []
    tried: dict[int, Trial] = {}

    def test(index: int) -> Trial:
        trial = oracle(versions[index])
        if trial.verdict not in VERDICTS:
            raise ValueError(f"an oracle verdict is one of {VERDICTS}, not {trial.verdict!r}")
        trials.append(trial)
        tried[index] = trial
        return trial

    low = _first_tested(range(len(versions)), test)
    high = _first_tested(range(len(versions) - 1, low, -1), test) if low is not None else None
    if low is None or high is None:
        raise SameEnds(
            f"no release between {versions[0]} and {versions[-1]} could be tested "
            f"({len(trials)} tried, every one skipped); see the environments' logs",
            trials,
        )
    old = tried[low].verdict
    if tried[high].verdict == old:
        raise SameEnds(
            f"both ends are {old}: {versions[low]} and {versions[high]}; nothing to bisect "
            "(widen --since/--until, or check the test)",
            trials,
        )
    while True:
        between = [i for i in range(low + 1, high) if i not in tried]
        if not between:
            break
        middle = (low + high) / 2
        index = min(between, key=lambda i: (abs(i - middle), i))
        verdict = test(index).verdict
        if verdict == "skip":
            continue
        if verdict == old:
            low = index
        else:
            high = index
    untested = [versions[i] for i in range(low + 1, high)]
    kind = "first bad" if old == "good" else "first fixed"
    return Outcome(kind, versions[low], versions[high], trials, untested)


def _first_tested(indices, test: Callable[[int], Trial]) -> int | None:
    """The first index in ``indices`` whose test is not skipped (an end moved inward)."""
    for index in indices:
        if test(index).verdict != "skip":
            return index
    return None


def render(outcome: Outcome, package: str) -> str:
    """The outcome in a few lines: the answer, then every release tried in order."""
    lines = [f"{outcome.kind}: {package} {outcome.first}", f"{outcome.last_label}: {outcome.last}"]
    if outcome.untested:
        lines.append(
            "untested between them (their environments failed): " + ", ".join(outcome.untested)
        )
    return "\n".join([*lines, render_trials(outcome.trials)])


def render_trials(trials: list[Trial]) -> str:
    """Every release tried, in order, with its verdict and what decided it."""
    lines = ["tried:"]
    lines += [f"  {t.version:<12} {t.verdict:<5} {t.detail}".rstrip() for t in trials]
    return "\n".join(lines)
