"""How fast is the linear_cross_entropy reference? Seconds per quantity next to a plain loop.

For float32 inputs, times ``reference.linear.linear_exact`` (Ozaki-split exact logits, double-
double softmax terms, split products for the gradients; no cache) for the loss, dX and dW, and
the plain loop one would write instead: every logit as ``math.fsum`` of the d exact float64
products (each product of two float32s is exact in float64), then the loss with mpmath at 30
digits. The loop runs on a prefix of the classes and is extrapolated linearly (said in the
table); its logits are only correctly rounded, not exact, and it gives no gradients.

Run from the repository root on a quiet machine:
``python tests/bench/linear_reference_benchmark.py [--shapes 2x16x131072 4x4096x256]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import mpmath
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from xentbench.reference import linear


def _inputs(rows: int, hidden: int, classes: int):
    rng = np.random.default_rng([rows, hidden, classes])
    x = rng.standard_normal((rows, hidden)).astype(np.float32)
    w = (rng.standard_normal((classes, hidden)) * 3 / math.sqrt(hidden)).astype(np.float32)
    return x, w, rng.integers(0, classes, size=rows)


def _plain_loop(x, w, labels, classes_done: int) -> float:
    """Seconds for fsum logits of the first ``classes_done`` classes and a 30-digit loss."""
    started = time.perf_counter()
    x64, w64 = x.astype(np.float64), w[:classes_done].astype(np.float64)
    with mpmath.workdps(30):
        for i in range(len(x64)):
            logits = [math.fsum(x64[i] * row) for row in w64]
            top = max(logits)
            total = mpmath.fsum(mpmath.exp(mpmath.mpf(z) - top) for z in logits)
            _ = top + mpmath.log(total) - logits[min(labels[i], classes_done - 1)]
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["2x16x131072", "4x4096x256"])
    args = parser.parse_args(argv)
    print("N x d x C | loss s | dX s | dW s | plain fsum+mpmath loss s (extrapolated from)")
    for text in args.shapes:
        rows, hidden, classes = (int(v) for v in text.split("x"))
        x, w, labels = _inputs(rows, hidden, classes)
        seconds = []
        for quantity in ("value", "grad_hidden", "grad_weight"):
            started = time.perf_counter()
            result = linear.linear_exact(quantity, x, labels, {"weight": w})
            seconds.append(time.perf_counter() - started)
            assert result.proven.all(), f"{text} {quantity}: unproven elements"
        probe = max(1, min(classes, 256))
        probe_s = _plain_loop(x, w, labels, probe)
        loop_s = probe_s * classes / probe
        cells = [text, *(f"{s:.2f}" for s in seconds), f"{loop_s:.1f} ({probe}/{classes} classes)"]
        print(" | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
