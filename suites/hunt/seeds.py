"""Structured starting rows: the shapes of input where softmax and cross-entropy go wrong.

Each generator draws one row of C logits for a dtype, scaled by that dtype's limits: ``L`` is
log(max), where exp overflows; ``U`` is -log(smallest subnormal), where exp underflows to 0.
Labels are drawn per op by the label generators below (near one-hot, uniform, unnormalised,
zero on masked classes, ...). ``seed_candidates`` crosses them into a deterministic list.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xentbench.reference.dtypes import finfo
from xentbench.suites.hunt.candidates import SIGMOID, SOFT, SPARSE, Candidate, make


@dataclass(frozen=True)
class Limits:
    """A dtype's landmarks for generators: max, eps, tiny, overflow and underflow exponents."""

    max: float
    eps: float
    tiny: float
    overflow: float  # L = log(max)
    underflow: float  # U = -log(smallest subnormal)

    @classmethod
    def of(cls, dtype: str) -> Limits:
        info = finfo(dtype)
        tiny = float(info.smallest_subnormal)
        return cls(
            float(info.max), float(info.eps), tiny, math.log(float(info.max)), -math.log(tiny)
        )


Row = Callable[[np.random.Generator, int, Limits], np.ndarray]


def _spread(scale: float) -> Row:
    """An evenly spaced row from -scale·L to scale·L, shuffled: most terms underflow."""
    return lambda rng, c, lim: rng.permutation(
        np.linspace(-scale * lim.overflow, scale * lim.overflow, c)
    )


def _offset(low: float, high: float, centre: Callable[[Limits], float]) -> Row:
    """Uniform in [low, high] around a landmark (overflow, underflow, a large constant)."""
    return lambda rng, c, lim: centre(lim) + rng.uniform(low, high, c)


def _adjacent(base: Callable[[Limits], float]) -> Row:
    """base + k ulp(base), k in 0..3: adjacent floats and ties at one magnitude."""

    def row(rng, c, lim):
        b = base(lim)
        return b + b * lim.eps * rng.integers(0, 4, c)

    return row


def _quantised(step: float, scale: float) -> Row:
    """Multiples of ``step`` in ±scale (quantised or integer logits): large exact shifts exist."""
    return lambda rng, c, lim: step * rng.integers(-round(scale / step), round(scale / step) + 1, c)


def _dominant(gap: Callable[[Limits], float]) -> Row:
    def row(rng, c, lim):
        x = rng.standard_normal(c)
        x[rng.integers(c)] += gap(lim)
        return x

    return row


def _masked(fraction: float) -> Row:
    """Normal logits with about ``fraction`` of the classes at -inf (never all of them)."""

    def row(rng, c, lim):
        x = rng.standard_normal(c)
        count = min(c - 1, max(1, round(fraction * c)))
        x[rng.permutation(c)[:count]] = -np.inf
        return x

    return row


LOGITS: dict[str, Row] = {
    "normal": lambda rng, c, lim: rng.standard_normal(c),
    "normal-3": lambda rng, c, lim: 3.0 * rng.standard_normal(c),
    "zeros": lambda rng, c, lim: np.zeros(c),
    "ties": lambda rng, c, lim: np.full(c, rng.normal(0.0, 10.0)),
    "adjacent-1": _adjacent(lambda lim: 1.0),
    "adjacent-large": _adjacent(lambda lim: lim.overflow),
    "spread-half": _spread(0.5),
    "spread-1": _spread(1.0),
    "spread-10": _spread(10.0),
    "near-overflow": _offset(-3.0, 3.0, lambda lim: lim.overflow),
    "near-max": lambda rng, c, lim: lim.max * rng.uniform(0.5, 0.9, c) * rng.choice([-1, 1], c),
    "near-underflow": _offset(-3.0, 3.0, lambda lim: -lim.underflow),
    "negative-only": _offset(-25.0, 25.0, lambda lim: -1.05 * lim.underflow),
    "negative-small": _offset(-2.0, 0.0, lambda lim: -0.5 * lim.overflow),
    "large": _offset(-25.0, 25.0, lambda lim: min(1e4, 0.01 * lim.max)),
    "large-positive": _offset(-25.0, 25.0, lambda lim: 1.05 * lim.underflow),
    "quantised-eighths": _quantised(0.125, 8.0),
    "quantised-integers": _quantised(1.0, 64.0),
    "dominant-20": _dominant(lambda lim: 20.0),
    "dominant-L": _dominant(lambda lim: lim.overflow),
    "masked-one": _masked(0.0),
    "masked-half": _masked(0.5),
    "subnormal": lambda rng, c, lim: lim.tiny * rng.integers(-3, 4, c),
}

# Labels: (rng, logits row) -> a class id (sparse) or a float row (soft, sigmoid) ------------


def _one_hot(c: int, k: int, mass: float = 1.0) -> np.ndarray:
    y = np.zeros(c)
    y[k] = mass
    return y


def _unmasked_class(rng, x) -> int:
    allowed = np.flatnonzero(~np.isneginf(x))
    return int(rng.choice(allowed)) if allowed.size else 0


def _zero_on_masked(rng, x) -> np.ndarray:
    y = np.where(np.isneginf(x), 0.0, rng.dirichlet(np.ones(len(x))))
    return y / y.sum() if y.sum() > 0 else np.full(len(x), 1.0 / len(x))


SPARSE_LABELS = {
    "random": lambda rng, x: int(rng.integers(len(x))),
    "argmax": lambda rng, x: int(np.argmax(x)),
    "argmin": lambda rng, x: int(np.argmin(np.where(np.isneginf(x), np.inf, x))),
    "unmasked": _unmasked_class,
}
SOFT_LABELS = {
    "one-hot": lambda rng, x: _one_hot(len(x), _unmasked_class(rng, x)),
    "near-one-hot": lambda rng, x: 0.999 * _one_hot(len(x), int(np.argmax(x))) + 0.001 / len(x),
    "uniform": lambda rng, x: np.full(len(x), 1.0 / len(x)),
    "spiky": lambda rng, x: rng.dirichlet(np.full(len(x), 0.2)),
    "sum-2": lambda rng, x: 2.0 * rng.dirichlet(np.ones(len(x))),
    "sum-half": lambda rng, x: 0.5 * rng.dirichlet(np.ones(len(x))),
    "zero-on-masked": _zero_on_masked,
}
SIGMOID_LABELS = {
    "zero": lambda rng, x: np.zeros(len(x)),
    "one": lambda rng, x: np.ones(len(x)),
    "fraction": lambda rng, x: np.full(len(x), 0.3),
    "random": lambda rng, x: rng.random(len(x)),
    "binary": lambda rng, x: rng.integers(0, 2, len(x)).astype(np.float64),
}
LABELS: dict[str, dict[str, Callable]] = {
    SPARSE: SPARSE_LABELS,
    SOFT: SOFT_LABELS,
    SIGMOID: SIGMOID_LABELS,
}

SEED_SIZES: tuple[int, ...] = (16, 3, 256)
LONG = 1024


def seed_candidates(op: str, dtype: str, rng: np.random.Generator) -> list[Candidate]:
    """Every generator at a few sizes, each with every label kind of ``op``: the first
    population. Deterministic for ``rng``'s seed."""
    limits = Limits.of(dtype)
    labels = LABELS.get(op, {"none": lambda rng, x: None})
    seeds = []
    for name, row in LOGITS.items():
        for size in SEED_SIZES:
            x = row(rng, size, limits)
            for label_name, label in labels.items():
                origin = name if op not in LABELS else f"{name}+{label_name}"
                seeds.append(make(x, label(rng, x), f"{origin} C={size}", op, dtype))
    return seeds


def large_row_seeds(op: str, dtype: str, rng: np.random.Generator) -> list[Candidate]:
    """A few long rows (C = 1024): long reductions."""
    limits = Limits.of(dtype)
    labels = LABELS.get(op, {"none": lambda rng, x: None})
    label_name, label = next(iter(labels.items()))
    found = []
    for name in ("normal-3", "spread-1", "negative-only", "quantised-eighths"):
        x = LOGITS[name](rng, LONG, limits)
        found.append(make(x, label(rng, x), f"{name}+{label_name} C={LONG}", op, dtype))
    return found
