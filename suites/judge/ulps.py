"""Output dtypes and errors measured in ULPs of them, against the exact value ``t = hi + lo``.

The ruler shared by the allowance (``suites.judge.allowance``) and the measurement
(``suites.judge.measure``).
"""

from __future__ import annotations

import numpy as np

from xentbench.reference import Exact
from xentbench.reference.dtypes import finfo, numpy_dtype


def spacing(values: np.ndarray, dtype: str | np.dtype) -> np.ndarray:
    """ULP of ``dtype`` at each value: the gap in its binade [2^e, 2^(e+1)); NaN if not finite.

    At a power of two this is the gap above it (Goldberg's ulp); at 0 and at subnormals it is
    the smallest subnormal.
    """
    info = finfo(dtype)
    magnitude = np.abs(np.asarray(values, dtype=np.float64))
    _, exponent = np.frexp(magnitude)  # magnitude = m * 2^exponent, m in [0.5, 1)
    gaps = np.ldexp(1.0, exponent - (info.nmant + 1))
    gaps = np.where(magnitude < float(info.smallest_normal), float(info.smallest_subnormal), gaps)
    return np.where(np.isfinite(magnitude), gaps, np.nan)


def truth_in(exact: Exact, dtype: np.dtype) -> np.ndarray:
    """The exact value correctly rounded to ``dtype``, as float64 (inf where it overflows).

    Rounded once per exact result and dtype, and kept on the result (read-only): a case's exact
    value judges every implementation of it, the allowance and the measurement alike.
    """
    memo = exact.__dict__.setdefault("_truth_in", {})  # Exact is frozen: its __dict__ holds it
    name = numpy_dtype(dtype).name
    if name not in memo:
        truth = exact.rounded(dtype).astype(np.float64)
        truth.flags.writeable = False
        memo[name] = truth
    return memo[name]


def ulp_at(truth: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.where(np.isfinite(truth), spacing(truth, dtype), np.nan)


def absolute_errors(got: np.ndarray, exact: Exact) -> np.ndarray:
    """|got - (hi + lo)| as |(got - hi) - lo| in float64, so beyond float64; NaN if non-finite."""
    got = np.asarray(got).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs((got - exact.hi) - exact.lo)
    return np.where(np.isfinite(got) & np.isfinite(exact.hi), error, np.nan)


def relative(errors: np.ndarray, exact: Exact) -> np.ndarray:
    """Absolute errors relative to |t|: 0 where both are 0, inf where only t is 0."""
    magnitude = np.abs(exact.hi)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # beyond float64: inf
        relative = errors / magnitude
    at_zero = np.where(errors == 0, 0.0, np.where(errors > 0, np.inf, np.nan))
    return np.where(magnitude == 0, at_zero, relative)


def nonfinite_mismatches(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """True where the kinds differ; a match is both NaN, both finite or the same infinity.

    ``expected`` is the exact value rounded to the output dtype, so a truth beyond the dtype's
    range is the infinity that IEEE rounding makes of it.
    """
    got = np.asarray(got).astype(np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    match = (np.isnan(got) & np.isnan(expected)) | (np.isfinite(got) & np.isfinite(expected))
    return ~(match | (np.isinf(got) & (got == expected)))
