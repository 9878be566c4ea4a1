"""Mutations: the moves from a bad input to a worse one, each a small change a kernel notices.

Every mutation returns a new candidate (values kept representable in the dtype by
``candidates.make``) and names itself in the candidate's ``origin``: scale (by an exact power of
two or not), shift (by an exact power of two, ``suites.judge.shift``, or not), move one logit
(to a new maximum, a tie, far below, a mask), perturb a few elements by a few ULPs, grow or
shrink C, permute, negate, change the label.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from xentbench.reference.dd import two_sum
from xentbench.reference.dtypes import finfo, numpy_dtype
from xentbench.suites.hunt.candidates import SIGMOID, SIZES, SOFT, SPARSE, Candidate, make
from xentbench.suites.hunt.seeds import LABELS, Limits
from xentbench.suites.judge.shift import exact_shifts

MAX_GROWN = 1024
Mutation = Callable[[np.random.Generator, Candidate, str, str], Candidate]


def _with(c: Candidate, logits, label, step: str, op: str, dtype: str) -> Candidate:
    steps = f"{c.origin}|{step}".split("|")
    if len(steps) > 8:  # the seed and the last mutations say enough
        steps = [steps[0], "...", *steps[-6:]]
    return make(logits, label, "|".join(steps), op, dtype)


def _finite(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x)] if np.isfinite(x).any() else np.zeros(1)


def scale_power_of_two(rng, c, op, dtype):
    k = int(rng.integers(-6, 7))
    return _with(c, np.ldexp(c.logits, k), c.label, f"x*2^{k}", op, dtype)


def scale(rng, c, op, dtype):
    factor = float(np.exp(rng.uniform(-3, 3)))
    return _with(c, c.logits * factor, c.label, f"x*{factor:.3g}", op, dtype)


def _is_exact_shift(x: np.ndarray, shift: float, dtype: str) -> bool:
    finite = x[np.isfinite(x)]
    total, error = two_sum(finite, np.full_like(finite, shift))
    limit = float(finfo(dtype).max)
    back = total.astype(numpy_dtype(dtype)).astype(np.float64)
    return bool(np.all(error == 0) and np.all(back == total) and np.all(np.abs(total) <= limit))


def shift_exact(rng, c, op, dtype):
    """x + 2^k, a shift ``dtype`` adds exactly to every element: the largest such shift
    (``suites.judge.shift.exact_shifts``) or a random smaller power of two."""
    largest = float(exact_shifts(c.logits[None, :], dtype)[0])
    if largest == 0.0:
        return scale_power_of_two(rng, c, op, dtype)
    k = math.frexp(abs(largest))[1] - 1
    chosen = k if rng.random() < 0.5 else int(rng.integers(min(k, max(k - 24, -20)), k + 1))
    shift = math.copysign(math.ldexp(1.0, chosen), largest)
    if not _is_exact_shift(c.logits, shift, dtype):
        shift = largest
    return _with(
        c, c.logits + shift, c.label, f"shift {'-' if shift < 0 else ''}2^{chosen}", op, dtype
    )


def shift(rng, c, op, dtype):
    offset = float(rng.choice([-1, 1]) * 10 ** rng.uniform(-1, 3))
    return _with(c, c.logits + offset, c.label, f"x+{offset:.3g}", op, dtype)


def move_one(rng, c, op, dtype):
    """One logit to a new maximum, the current maximum (a tie), far below, or a mask."""
    x, limits = c.logits.copy(), Limits.of(dtype)
    finite = _finite(x)
    i = int(rng.integers(len(x)))
    choice = int(rng.integers(5))
    targets = (
        finite.max() + abs(rng.normal(0, 5)),
        finite.max(),
        finite.min() - abs(rng.normal(0, limits.overflow)),
        float(rng.choice(finite)) + rng.normal(0, 1),
        -np.inf if len(x) > 1 and np.isfinite(x).sum() > 1 else finite.max(),
    )
    x[i] = targets[choice]
    names = ("new-max", "tie-max", "far-below", "near-other", "mask")
    return _with(c, x, c.label, f"move {names[choice]}", op, dtype)


def perturb_ulps(rng, c, op, dtype):
    """A few elements moved by a few ULPs of the dtype (ties broken, near-ties made)."""
    target = numpy_dtype(dtype)
    x = c.logits.astype(target)
    for i in rng.choice(len(x), size=min(len(x), int(rng.integers(1, 4))), replace=False):
        direction = target.type(np.inf if rng.random() < 0.5 else -np.inf)
        for _ in range(int(rng.integers(1, 5))):
            if np.isfinite(x[i]):
                x[i] = np.nextafter(x[i], direction) if target != np.dtype("bfloat16") else x[i]
    if target.name == "bfloat16":  # no nextafter: one ulp is eps·2^exponent
        ulp = np.ldexp(finfo(dtype).eps, np.frexp(c.logits)[1] - 1)
        moved = c.logits + rng.integers(-4, 5, len(x)) * ulp * (rng.random(len(x)) < 0.3)
        return _with(
            c, np.where(np.isfinite(c.logits), moved, c.logits), c.label, "ulps", op, dtype
        )
    return _with(c, x.astype(np.float64), c.label, "ulps", op, dtype)


def resize(rng, c, op, dtype):
    """C to a neighbouring size: grow with values like the row's own, shrink to a subset."""
    index = SIZES.index(c.classes) if c.classes in SIZES else SIZES.index(16)
    new_index = min(SIZES.index(MAX_GROWN), max(0, index + int(rng.choice([-1, 1]))))
    size = SIZES[new_index]
    x = c.logits
    if size > len(x):
        extra = rng.choice(x, size - len(x)) + rng.normal(0, 1, size - len(x)) * (
            rng.random() < 0.5
        )
        logits = np.concatenate([x, extra])
    else:
        logits = x[np.sort(rng.permutation(len(x))[:size])]
        if not np.isfinite(logits).any():
            logits[0] = 0.0
    return _with(c, logits, _resized_label(rng, c, op, logits), f"C={size}", op, dtype)


def _resized_label(rng, c: Candidate, op: str, logits: np.ndarray):
    if op == SPARSE:
        return c.label if 0 <= c.label < len(logits) else int(rng.integers(len(logits)))
    if c.label is None:
        return None
    return LABELS[op]["uniform" if op == SOFT else "random"](rng, logits)


def permute(rng, c, op, dtype):
    order = rng.permutation(c.classes)
    label = c.label
    if op == SPARSE:
        label = int(np.flatnonzero(order == c.label)[0]) if c.valid() else c.label
    elif label is not None:
        label = label[order]
    return _with(c, c.logits[order], label, "permute", op, dtype)


def negate(rng, c, op, dtype):
    x = np.where(np.isneginf(c.logits), -np.inf, -c.logits)
    return _with(c, x, c.label, "negate", op, dtype)


def relabel(rng, c, op, dtype):
    """A new label of a structured kind; for sparse ops, rarely one outside [0, C)."""
    if c.label is None:
        return move_one(rng, c, op, dtype)
    if op == SPARSE and rng.random() < 0.1:
        bad = int(rng.choice([-1, c.classes, -c.classes, c.classes + 3]))
        return _with(c, c.logits, bad, f"label {bad} (invalid)", op, dtype)
    kinds = LABELS[op]
    name = str(rng.choice(list(kinds)))
    if op == SIGMOID and rng.random() < 0.5:  # one element's label only
        label = c.label.copy()
        label[int(rng.integers(c.classes))] = float(rng.choice([0.0, 1.0, 0.5]))
        return _with(c, c.logits, label, "label one", op, dtype)
    return _with(c, c.logits, kinds[name](rng, c.logits), f"label {name}", op, dtype)


MUTATIONS: tuple[tuple[Mutation, float], ...] = (
    (scale_power_of_two, 1.0),
    (scale, 1.0),
    (shift_exact, 2.0),
    (shift, 1.0),
    (move_one, 2.0),
    (perturb_ulps, 1.5),
    (resize, 0.7),
    (permute, 0.3),
    (negate, 0.3),
    (relabel, 1.5),
)
_WEIGHTS = np.array([weight for _, weight in MUTATIONS]) / sum(weight for _, weight in MUTATIONS)


def mutant(rng: np.random.Generator, parent: Candidate, op: str, dtype: str) -> Candidate:
    """``parent`` after one to three random mutations."""
    child = parent
    for _ in range(int(rng.integers(1, 4))):
        mutation = MUTATIONS[int(rng.choice(len(MUTATIONS), p=_WEIGHTS))][0]
        with np.errstate(all="ignore"):
            child = mutation(rng, child, op, dtype)
    return child
