"""The verdict vocabulary and its rules, defined once (ARCHITECTURE.md, "Verdicts").

Every other module takes verdict names, their severity order and the rule for each kind of
outcome from here.
"""

from __future__ import annotations

# Every verdict, most favourable first; ``unsupported`` means nothing was evaluated.
VERDICTS: tuple[str, ...] = ("pass", "inaccurate", "wrong", "error", "unsupported")
# The verdicts of an evaluation that ran, by severity (a regression moves up this order).
SEVERITY: dict[str, int] = {"pass": 0, "inaccurate": 1, "wrong": 2, "error": 3}
FAILURES: tuple[str, ...] = ("inaccurate", "wrong", "error")


def verdict_for_result(nonfinite_mismatches: int, beyond_budget: int) -> str:
    """A returned result: wrong if any element has the wrong kind of number (NaN, inf or finite
    where the truth is another), else inaccurate if any is beyond its budget, else pass."""
    if nonfinite_mismatches > 0:
        return "wrong"
    return "inaccurate" if beyond_budget > 0 else "pass"


# How close an evaluated result came, beside its verdict, so passing implementations can be
# ranked: every element within 0.5 ULP, every element within 1 ULP, within the budget, over it.
ACCURACY_TIERS: tuple[str, ...] = (
    "correctly rounded",
    "faithful",
    "within budget",
    "over budget",
    "wrong",
)


def accuracy_tier(verdict: str, max_ulp_error: float) -> str:
    """The tier of a measured result from its verdict and its largest ULP error."""
    if verdict in ("wrong", "inaccurate"):
        return "wrong" if verdict == "wrong" else "over budget"
    if max_ulp_error <= 0.5 or max_ulp_error != max_ulp_error:  # NaN: nothing finite to miss
        return "correctly rounded"
    return "faithful" if max_ulp_error < 1 else "within budget"


def verdict_for_exception(input_invalid: bool) -> str:
    """Raising on invalid input (a sparse label outside [0, C)) passes; on valid input, error."""
    return "pass" if input_invalid else "error"


def verdict_for_invalid_result() -> str:
    """A silent number for invalid input is wrong: the caller cannot tell it from a loss."""
    return "wrong"


def at_or_beyond(level: str) -> tuple[str, ...]:
    """The evaluated verdicts at least as severe as ``level`` (``--fail-on``)."""
    return tuple(v for v, rank in SEVERITY.items() if rank >= SEVERITY[level])
