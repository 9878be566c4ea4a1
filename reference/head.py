"""The language-model head's options, exactly: temperature, soft-capping and z-loss.

As the libraries document them (Gemma 2's ``final_logit_softcapping``, PaLM's z-loss, a
sampling or distillation temperature), composed in this order on each row of logits ``x``:
``z = cap * tanh((x / T) / cap)`` (``z = x / T`` without a cap, ``cap = inf``), then the op on
``z``; the cross-entropies add ``z_loss * logsumexp(z)^2`` to each row's loss. Derivatives are
with respect to ``x``: ``dz_i/dx_i = sech^2(x_i / (T cap)) / T`` (``1 / T`` without a cap).

Limits follow the formula: ``x = +-inf`` under a finite cap gives ``z = +-cap`` (slope 0), so a
``-inf`` padding lane becomes ``-cap`` and keeps probability ``exp(-cap - lse)``. That is the
documented maths; an implementation that excludes padding lanes must mask them *after* the cap
(or give those rows labels that exclude them) and is then computing another function.

Arithmetic: each regular row in ball arithmetic (Arb) at a precision raised until every
softmax, log-softmax, logsumexp and slope element is known to 2^-120 relative (RELATIVE_BITS;
a value whose ball lies below 2^-3000 is taken as 0); the midpoints become Fractions that
``reference.options_math`` carries exactly, so results are within ~2^-118 relative of the truth
and round correctly except within that distance of a rounding boundary. Rows the transform
leaves without a finite maximum (NaN, or ``+inf`` or all ``-inf`` without a cap) take the plain
reference's limits, which a positive scaling does not change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from flint import arb, ctx

HEAD_OPTIONS: tuple[str, ...] = ("softcap", "temperature", "z_loss")
START_PRECISION = 256
MAX_PRECISION = 4096
RELATIVE_BITS = 120  # each element's ball within 2^-120 of its midpoint's magnitude
TOLERANCE = arb(2) ** -RELATIVE_BITS
FLUSH = arb(2) ** -3000  # balls below this magnitude are taken as exact zeros


def active(options: dict[str, Any]) -> bool:
    """Whether ``options`` name any of the head's options."""
    return any(name in options for name in HEAD_OPTIONS)


def validate(op: str, options: dict[str, Any], cross_entropies: tuple[str, ...]) -> None:
    """ValueError naming a bad cap, temperature or z-loss coefficient and what is valid."""
    if "softcap" in options:
        cap = float(options["softcap"])
        if not cap > 0:
            raise ValueError(f"softcap {cap} is invalid: a cap is a positive number (inf: none)")
    if "z_loss" in options:
        if op not in cross_entropies:
            raise ValueError(f"op {op} takes no option 'z_loss' (a cross-entropy term)")
        coefficient = float(options["z_loss"])
        if not (math.isfinite(coefficient) and coefficient >= 0):
            raise ValueError(f"z_loss {coefficient} is invalid: a finite coefficient >= 0")
    if "temperature" in options:
        values = np.asarray(options["temperature"], dtype=np.float64)
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            raise ValueError(
                f"temperature {values[bad].ravel()[0]} is invalid: a finite number > 0 "
                "(a scalar, or one per row)"
            )


def temperatures(options: dict[str, Any], lead: tuple[int, ...]) -> list[float]:
    """T per row (as floats, exactly the values given): a scalar repeated, or one per row."""
    value = np.asarray(options.get("temperature", 1.0), dtype=np.float64)
    count = int(np.prod(lead))
    if value.ndim == 0:
        return [float(value)] * count
    if value.shape != tuple(lead):
        raise ValueError(f"temperature shape {value.shape}, expected () or {tuple(lead)}")
    return value.ravel().tolist()


@dataclass(frozen=True)
class HeadRows:
    """Per row of ``z``: softmax, log-softmax (Fractions, floats where not finite), logsumexp,
    and the slope dz_i/dx_i."""

    p: list[list]
    lsm: list[list]
    lse: list
    slope: list[list]


def head_rows(x: np.ndarray, options: dict[str, Any], lead, exact_fn) -> HeadRows:
    """The transformed rows' softmax terms and slopes (``exact_fn``: the plain reference)."""
    cap = float(options.get("softcap", math.inf))
    out = HeadRows([], [], [], [])
    for row, t in zip(x, temperatures(options, lead), strict=True):
        if _regular(row, cap):
            p, lsm, lse, slope = _exact_row(row, t, cap)
        else:
            p, lsm, lse = _limits(row, exact_fn)
            slope = [_limit_slope(v, t, cap) for v in row.tolist()]
        out.p.append(p)
        out.lsm.append(lsm)
        out.lse.append(lse)
        out.slope.append(slope)
    return out


def _regular(row: np.ndarray, cap: float) -> bool:
    """Whether z has a finite maximum: no NaN, and (a cap, or no +inf and some finite x)."""
    if np.isnan(row).any():
        return False
    return math.isfinite(cap) or (not np.isposinf(row).any() and np.isfinite(row).any())


def _limits(row: np.ndarray, exact_fn) -> tuple[list, list, Any]:
    """The plain reference's limit values for a row without a finite maximum."""
    out = []
    for op in ("softmax", "log_softmax", "logsumexp"):
        result = exact_fn(op, row[None, :])
        hi, lo = np.ravel(result.hi).tolist(), np.ravel(result.lo).tolist()
        out.append(
            [
                Fraction(h) + Fraction(r) if math.isfinite(h) else h
                for h, r in zip(hi, lo, strict=True)
            ]
        )
    return out[0], out[1], out[2][0]


def _limit_slope(v: float, t: float, cap: float):
    if math.isnan(v):
        return math.nan
    if math.isinf(v):
        return Fraction(0) if math.isfinite(cap) else 1 / Fraction(t)
    if not math.isfinite(cap):
        return 1 / Fraction(t)
    return _exact_row(np.array([v]), t, cap)[3][0]


def _exact_row(row: np.ndarray, t: float, cap: float) -> tuple[list, list, Fraction, list]:
    """Raise the precision until every element of one regular row is known (see module)."""
    precision = START_PRECISION
    while True:
        final = precision >= MAX_PRECISION
        with ctx.workprec(precision):
            balls = _row_balls(row, t, cap)
            converted = [[_fraction(b, final) for b in group] for group in balls]
        if all(v is not None for group in converted for v in group):
            p, lsm, lse, slope = converted
            return p, lsm, lse[0], slope
        precision *= 2


def _transformed(v: float, t: float, cap: float) -> tuple[arb | None, arb]:
    """(z, dz/dx) of one logit as balls; z None for a -inf lane without a cap."""
    if math.isinf(v):
        if math.isfinite(cap):
            return arb(math.copysign(cap, v)), arb(0)
        return None, 1 / arb(t)
    w = arb(v) / arb(t)
    if not math.isfinite(cap):
        return w, 1 / arb(t)
    u = w / arb(cap)
    return arb(cap) * u.tanh(), u.sech() ** 2 / arb(t)


def _row_balls(row: np.ndarray, t: float, cap: float) -> tuple[list, list, list, list]:
    """([p], [log p], [lse], [slope]) of one row at the current precision; masked lanes give
    p = 0 and log p = -inf as exact floats."""
    values = row.tolist()
    pairs = [_transformed(v, t, cap) for v in values]
    star = int(np.argmax(row))
    top = pairs[star][0]
    shifted = [
        None if z is None else arb(0) if values[i] == values[star] else z - top
        for i, (z, _) in enumerate(pairs)
    ]
    tail = arb(0)
    for i, d in enumerate(shifted):
        if d is not None and i != star:
            tail += d.exp()
    log_s = tail.log1p()
    lsm = [-math.inf if d is None else d - log_s for d in shifted]
    p = [0.0 if d is None else (d - log_s).exp() for d in shifted]
    return p, lsm, [top + log_s], [slope for _, slope in pairs]


def _fraction(ball, final: bool) -> Fraction | float | None:
    """The ball's midpoint as a Fraction when known to 2^-RELATIVE_BITS (or below FLUSH); exact
    floats (a masked lane's 0 and -inf) as they are; None when more precision is needed."""
    if isinstance(ball, float):
        return Fraction(ball) if ball == 0 else ball
    if abs(ball) < FLUSH:
        return Fraction(0)
    mid = ball.mid()
    if not final and not ball.rad() <= abs(mid) * TOLERANCE:
        return None
    man, exp = (int(part) for part in mid.man_exp())
    return Fraction(man << exp) if exp >= 0 else Fraction(man, 1 << -exp)
