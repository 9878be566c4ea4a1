"""The definition of every op on one regular row, in ball arithmetic (Arb, via python-flint).

Every quantity is a ball certain to contain the true real value. The precision is doubled
until each ball decides the float64 rounding (Ziv's strategy, "Fast evaluation of elementary
functions", 1991); a ball's width reflects every rounding, so cancellation simply costs more
precision instead of giving a wrong answer.

Formulas (row x with max m at first index i*, d_i = x_i - m <= 0, e_i = exp(d_i)):
  T = sum_{i != i*} e_i,  S = 1 + T,  log S = log1p(T)  (log1p keeps log S accurate when T is tiny)
  logsumexp = m + log S          log_softmax_i = d_i - log S      softmax_i = exp(d_i - log S)
  sparse CE (label k) = -d_k + log S      grad_i = p_i - [i = k], with p_k - 1 = -R_k / S
  and R_k = sum_{j != k} e_j (no cancellation when p_k is close to 1)
  soft CE = (sum y) log S + sum_i y_i (-d_i)        grad_i = (sum y) p_i - y_i
  sigmoid CE = z softplus(-x) + (1 - z) softplus(x),  softplus(x) = max(x, 0) + log1p(exp(-|x|))
  sigmoid CE grad = sigmoid(x) - z
A -inf logit contributes e_i = 0 (its probability is exactly 0 and log-probability -inf).

Outputs that are an exact dyadic part plus a remainder of known sign (logsumexp = m + log S,
log_softmax_i = d_i - log S, the losses, the sigmoid gradient) are returned as ``Split`` so
that a remainder far below any working precision (log S ~ e^-1e30) still rounds correctly
when the exact part lies on a rounding midpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from flint import arb, ctx

from xentbench.reference.rounding import exact_to_fraction, round_ball, round_one_sided

START_PRECISION = 128
MAX_PRECISION = 8192
EXACT_PRECISION = 4400  # sums of products of two float64s are exact at this precision
TINY = Fraction(2) ** -1080


@dataclass(frozen=True)
class Split:
    """``exact + rest``: ``exact`` an exact ball (radius 0), ``rest`` a ball."""

    exact: arb
    rest: arb


Value = arb | float | Split


def _exactly(compute) -> arb:
    with ctx.workprec(EXACT_PRECISION):
        return compute()


def _split(exact: arb, rest: arb) -> Value:
    return Split(exact, rest) if exact.is_exact() else exact + rest


def _row_shifted(x: np.ndarray) -> tuple[int, float, list[arb | None]]:
    """The max's index and value, and the exact shifted logits d_i (None where masked)."""
    finite = np.isfinite(x)
    star = int(np.argmax(np.where(finite, x, -np.inf)))
    m = float(x[star])
    shifted = _exactly(
        lambda: [arb(float(v)) - arb(m) if ok else None for v, ok in zip(x, finite, strict=True)]
    )
    return star, m, shifted


def _exp(shifted: list[arb | None], star: int) -> list[arb | None]:
    exps = [d.exp() if d is not None else None for d in shifted]
    exps[star] = arb(1)
    return exps


def _sum(values: list[arb | None], skip: set[int]) -> arb:
    total = arb(0)
    for index, value in enumerate(values):
        if value is not None and index not in skip:
            total += value
    return total


def row_outputs(
    op: str,
    quantity: str,
    x: np.ndarray,
    label: np.ndarray | int | None,
    wanted: list[int],
    tail: arb | None = None,
) -> list[Value]:
    """Balls (or exact floats) for the outputs ``wanted`` of one regular row at ``ctx.prec``.

    ``tail``, when given, is a ball known to contain T (from the fast path's bound): then only
    the wanted elements' exponentials are evaluated.
    """
    star, m, shifted = _row_shifted(x)
    exps = _exp(shifted, star) if tail is None else None
    tail = _sum(exps, {star}) if tail is None else tail
    total = 1 + tail
    log_total = tail.log1p()

    def probability(i: int) -> Value:
        return 0.0 if shifted[i] is None else (shifted[i] - log_total).exp()

    if op == "logsumexp" and quantity == "value":
        return [_split(arb(m), log_total)]
    if op == "log_softmax":
        return [-math.inf if shifted[i] is None else _split(shifted[i], -log_total) for i in wanted]
    if op in ("softmax", "logsumexp"):
        return [probability(i) for i in wanted]
    if op == "sparse_softmax_cross_entropy":
        k = int(label)
        if quantity == "value":
            return [math.inf if shifted[k] is None else _split(-shifted[k], log_total)]
        if k == star:
            rest = tail
        elif exps is not None:
            rest = _sum(exps, {k})
        else:  # R_k = 1 + (T - e_k) >= 1: T's error stays relatively small
            rest = 1 + (tail - (shifted[k].exp() if shifted[k] is not None else 0))
        return [-rest / total if i == k else probability(i) for i in wanted]
    labels = [float(v) for v in label]
    label_sum = sum((arb(v) for v in labels), arb(0))
    if quantity == "value":
        products = [(y, d) for y, d in zip(labels, shifted, strict=True) if d is not None and y]
        weighted = _exactly(lambda: sum((arb(y) * -d for y, d in products), arb(0)))
        return [_split(weighted, label_sum * log_total)]
    return [_split(arb(-labels[i]), label_sum * probability(i)) for i in wanted]


def sigmoid_output(quantity: str, x: float, z: float) -> arb:
    """Sigmoid cross-entropy value or gradient for one finite (logit, label) at ``ctx.prec``."""
    a = arb(abs(x))
    t = (-a).exp()
    if quantity == "grad":  # sigmoid(x) - z = (1 - z) - t/(1+t) for x >= 0, t/(1+t) - z otherwise
        if x >= 0:
            return _split(_exactly(lambda: 1 - arb(z)), -t / (1 + t))
        return _split(arb(-z), t / (1 + t))
    # z softplus(-x) + (1 - z) softplus(x) = z max(-x, 0) + (1 - z) max(x, 0) + log1p(t)
    exact = _exactly(lambda: (1 - arb(z)) * x if x >= 0 else arb(z) * -x)
    return _split(exact, t.log1p())


def _round_split(value: Split, final: bool) -> tuple[float, float] | None:
    total = value.exact + value.rest
    pair = round_ball(total)
    if pair is not None or value.rest.contains(0):
        return pair if pair is not None else round_ball(total, final=final)
    exact = exact_to_fraction(value.exact)
    width = exact_to_fraction(abs(value.rest).upper())
    if exact is None or (width is None and abs(value.rest) > 1):
        return round_ball(total, final=final)
    width = TINY if width is None else width
    pair = round_one_sided(exact, width, 1 if value.rest > 0 else -1)
    return pair if pair is not None else round_ball(total, final=final)


def _to_pair(value: Value, final: bool) -> tuple[float, float] | None:
    if isinstance(value, float):
        return value, 0.0
    if isinstance(value, Split):
        return _round_split(value, final)
    return round_ball(value, final=final)


def exact_values(evaluate, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Raise the precision until ``evaluate()`` (``count`` balls) decides every rounding."""
    hi = np.empty(count)
    lo = np.empty(count)
    pending = list(range(count))
    precision = START_PRECISION
    while pending:
        final = precision >= MAX_PRECISION
        still = []
        with ctx.workprec(precision):
            for index, value in zip(pending, evaluate(pending), strict=True):
                pair = _to_pair(value, final)
                if pair is None:
                    still.append(index)
                else:
                    hi[index], lo[index] = pair
        pending = still
        precision *= 2
    return hi, lo


def exact_row(
    op: str,
    quantity: str,
    x: np.ndarray,
    label: np.ndarray | int | None,
    wanted: list[int],
    tail_hint: tuple[float, float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(hi, lo)`` of the outputs ``wanted`` of one regular row, each correctly rounded.

    ``tail_hint = (hi, lo, error)`` encloses T = S - 1 (the fast path's double-double sum and
    its rigorous bound); the first attempt uses it instead of summing the whole row again.
    """
    attempts = 0

    def evaluate(positions: list[int]) -> list[Value]:
        nonlocal attempts
        tail = None
        if tail_hint is not None and attempts == 0:
            tail = arb(tail_hint[0]) + arb(tail_hint[1]) + arb(0, tail_hint[2])
        attempts += 1
        return row_outputs(op, quantity, x, label, [wanted[p] for p in positions], tail)

    return exact_values(evaluate, len(wanted))


def exact_sigmoid(quantity: str, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(hi, lo)`` of sigmoid cross-entropy for finite 1-D ``x`` and ``z``, element by element."""

    def evaluate(positions: list[int]) -> list[Value]:
        return [sigmoid_output(quantity, float(x[p]), float(z[p])) for p in positions]

    return exact_values(evaluate, len(x))
