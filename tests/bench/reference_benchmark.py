"""How fast is the exact reference? Elements per second next to a plain mpmath loop.

For logsumexp, softmax and the sparse cross-entropy on normal(0, 3) float32 logits, times
``reference.exact`` (correctly rounded float64 plus residual, no cache) and the loop one would
write with mpmath at 30 digits (m = max, s = fsum(exp(x - m)), L = m + log(s); softmax also
exp(x - L) per element, the loss L - x_k), checks that both give the same float64s, and
prints the ratio. Where the mpmath loop would exceed its time budget it runs on a prefix of
each row and the time is extrapolated linearly in the number of elements (said in the table).
Finally the 256k-element case is timed cold and warm through the on-disk cache.

Run from the repository root: ``.venv/bin/python tests/bench/reference_benchmark.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mpmath
import numpy as np

from xentbench import reference
from xentbench.reference.cache import cached_exact

SHAPES = ((1, 1000), (4, 32000), (1, 128000), (1, 256000))
OPS = ("logsumexp", "softmax", "sparse_softmax_cross_entropy")


@dataclass
class Row:
    op: str
    shape: tuple[int, int]
    reference_s: float
    mpmath_s: float
    mpmath_fraction: float  # share of each row the mpmath loop actually ran on
    mismatches: int
    compared: int


def inputs(shape: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=shape) * 3).astype(np.float32)
    return logits, rng.integers(0, shape[1], size=shape[0])


def mpmath_row(op: str, row: np.ndarray, label: int) -> list[float]:
    """The plain loop at 30 digits for one row, rounded to float64 at the end."""
    with mpmath.workdps(30):
        values = [mpmath.mpf(float(v)) for v in row]
        m = max(values)
        total = mpmath.fsum(mpmath.exp(v - m) for v in values)
        lse = m + mpmath.log(total)
        if op == "logsumexp":
            return [float(lse)]
        if op == "sparse_softmax_cross_entropy":
            return [float(lse - values[label])]
        return [float(mpmath.exp(v - lse)) for v in values]


def run_mpmath(op: str, logits, labels, width: int) -> tuple[float, list]:
    """Seconds and results of the mpmath loop on the first ``width`` logits of every row."""
    start = time.perf_counter()
    results = [
        mpmath_row(op, row[:width], label % width)
        for row, label in zip(logits, labels, strict=True)
    ]
    return time.perf_counter() - start, results


def time_mpmath(op: str, logits, labels, budget_s: float) -> tuple[float, int, list]:
    """(seconds for every element, prefix width actually run, its results).

    A probe on the first 1000 logits of each row estimates the whole; within the budget the
    loop then runs on everything, otherwise the probe's time is extrapolated linearly.
    """
    classes = logits.shape[1]
    width = min(classes, 1000)
    elapsed, results = run_mpmath(op, logits, labels, width)
    if width < classes and elapsed * classes / width <= budget_s:
        width = classes
        elapsed, results = run_mpmath(op, logits, labels, width)
    return elapsed * classes / width, width, results


def time_reference(op: str, logits, labels, repeat: int) -> tuple[float, reference.Exact]:
    """Median seconds of ``reference.exact`` over ``repeat`` runs, and its result."""
    labels = labels if op == "sparse_softmax_cross_entropy" else None
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = reference.exact(op, logits, labels)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def compare(op: str, logits, labels, width: int, results, exact) -> tuple[int, int]:
    """How many float64s differ between the mpmath loop and the reference on the same input."""
    if width < logits.shape[1]:  # the loop ran on a prefix: compare with the reference there
        used = labels % width if op == "sparse_softmax_cross_entropy" else None
        exact = reference.exact(op, np.ascontiguousarray(logits[:, :width]), used)
    expected = np.asarray(exact.hi).reshape(len(results), -1)
    got = np.array(results, dtype=np.float64).reshape(expected.shape)
    return int((got != expected).sum()), got.size


def measure(op: str, shape, budget_s: float, repeat: int) -> Row:
    logits, labels = inputs(shape)
    reference_s, exact = time_reference(op, logits, labels, repeat)
    mpmath_s, width, results = time_mpmath(op, logits, labels, budget_s)
    mismatches, compared = compare(op, logits, labels, width, results, exact)
    return Row(op, shape, reference_s, mpmath_s, width / shape[1], mismatches, compared)


def print_row(row: Row) -> None:
    elements = row.shape[0] * row.shape[1]
    note = "" if row.mpmath_fraction == 1 else f" (extrapolated from {row.mpmath_fraction:.1%})"
    print(
        f"{row.op:<29} {row.shape[0]}x{row.shape[1]:<7} "
        f"{row.reference_s * 1e3:>9.1f} ms {elements / row.reference_s:>12,.0f}/s   "
        f"{row.mpmath_s:>8.2f} s {elements / row.mpmath_s:>9,.0f}/s   "
        f"x{row.mpmath_s / row.reference_s:>6.0f}   {row.mismatches}/{row.compared}{note}"
    )


def cache_timing(shape: tuple[int, int]) -> None:
    """Cold (compute and write) and warm (read) time through the on-disk cache."""
    logits, _ = inputs(shape)
    with tempfile.TemporaryDirectory() as directory:
        for op in ("logsumexp", "softmax"):
            start = time.perf_counter()
            cached_exact(op, logits, None, "value", cache_dir=Path(directory))
            cold = time.perf_counter() - start
            start = time.perf_counter()
            cached_exact(op, logits, None, "value", cache_dir=Path(directory))
            warm = time.perf_counter() - start
            print(
                f"cache {op:<10} {shape[0]}x{shape[1]}: cold {cold * 1e3:.1f} ms, "
                f"warm {warm * 1e3:.1f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budget",
        type=float,
        default=20.0,
        help="seconds the mpmath loop may take per case before extrapolating",
    )
    parser.add_argument("--repeat", type=int, default=5, help="reference runs per case")
    args = parser.parse_args()
    print(
        f"mpmath {mpmath.__version__}, backend {mpmath.libmp.BACKEND}; numpy {np.__version__}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    print("reference: median of", args.repeat, "uncached runs; mpmath: one run at 30 digits")
    print(
        f"{'op':<29} {'shape':<9} {'reference':>26}   {'mpmath loop':>22}   {'ratio':>7}   "
        "float64s differing"
    )
    for op in OPS:
        for shape in SHAPES:
            print_row(measure(op, shape, args.budget, args.repeat))
    cache_timing(SHAPES[-1])


if __name__ == "__main__":
    main()
