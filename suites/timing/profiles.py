"""Timing profiles: how much timing a run does, chosen for the question it answers.

``default`` answers "which implementation is fastest here" within one run: every
implementation, dtype and mode of the timing suite on three shapes of the five, one round in
one worker process per backend (the framework imported and each compiled mode compiled once;
``--repeat-runs`` adds rounds, pooled in that same worker). ``full`` is the grid and rounds a
change is gated with: every shape, each of ``DEFAULT_ROUNDS`` rounds in a fresh process.
``run --against`` (an A/B pair) always times with ``full``'s process rules and
``AB_DEFAULT_ROUNDS``. docs/timing.md states the statistics each relies on.
"""

from __future__ import annotations

from dataclasses import dataclass

from xentbench.suites.catalog.selection import DEFAULT_SHAPES
from xentbench.suites.timing.harness import MIN_WINDOW_S
from xentbench.suites.timing.rounds import DEFAULT_ROUNDS


@dataclass(frozen=True)
class Profile:
    """A timing profile: its rounds, whether they share one process, its shapes, and the
    sampling window of the per-call overhead (a [1, 2] input; 0: no contention window)."""

    name: str
    rounds: int
    rounds_in_process: bool
    shapes: tuple[tuple[int, int], ...]
    overhead_window_s: float
    summary: str

    def describe(self, rounds: int | None = None, in_process: bool | None = None) -> str:
        """One line for the report: the profile and the rounds it ran with."""
        rounds = self.rounds if rounds is None else rounds
        in_process = self.rounds_in_process if in_process is None else in_process
        where = "in one process per backend" if in_process else "each in a fresh process"
        plural = "s" if rounds != 1 else ""
        return f"{self.name} ({rounds} round{plural} {where}; {self.summary})"


# The default grid keeps three regimes where implementations trade places: a latency-bound
# row (1x1000), a large batch of a mid-sized vocabulary (256x32000) and a language model's
# vocabulary (8x256000). Of the full grid's five, 64x1000 most often has 1x1000's fastest
# implementation and 32x128000 lies between the two large shapes (the committed sample).
DEFAULT_PROFILE_SHAPES: tuple[tuple[int, int], ...] = ((1, 1000), (256, 32000), (8, 256000))

PROFILES: dict[str, Profile] = {
    "default": Profile(
        "default",
        rounds=1,
        rounds_in_process=True,
        shapes=DEFAULT_PROFILE_SHAPES,
        overhead_window_s=0.0,
        summary="ranks the implementations within this run",
    ),
    "full": Profile(
        "full",
        rounds=DEFAULT_ROUNDS,
        rounds_in_process=False,
        shapes=DEFAULT_SHAPES,
        overhead_window_s=MIN_WINDOW_S,
        summary="the grid and rounds a change is gated with",
    ),
}
DEFAULT_PROFILE = "default"


def profile_named(name: str) -> Profile:
    """The profile called ``name``; ValueError naming the valid ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        valid = ", ".join(PROFILES)
        raise ValueError(f"unknown profile {name!r}; valid: {valid}") from None
