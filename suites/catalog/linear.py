"""Input generators of the linear cross-entropy cases: hidden [N, d], weight [C, d], labels [N].

Each generator draws in float64 from the case's stream and returns ``(hidden, weight, labels)``;
the case adds the bias and padding rows and rounds every array to the dtype once. Scales are
chosen so the *logits* z = hidden @ weight.T have the stated size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = -100  # torch's and cut-cross-entropy's default padding label


@dataclass(frozen=True)
class LinearDraw:
    """What a generator may use: the stream and the shape (N rows, C classes, d features)."""

    rng: np.random.Generator
    rows: int
    classes: int
    hidden: int


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def normal(draw: LinearDraw, scale: float = 3.0) -> Arrays:
    """Logits ~ N(0, scale^2): hidden N(0, 1), weight N(0, scale^2 / d); random labels."""
    x = draw.rng.normal(size=(draw.rows, draw.hidden))
    w = draw.rng.normal(scale=scale / np.sqrt(draw.hidden), size=(draw.classes, draw.hidden))
    return x, w, draw.rng.integers(0, draw.classes, size=draw.rows)


def confident(draw: LinearDraw, gap: float = 12.0) -> Arrays:
    """The true class's logit is ``gap`` and the others ~N(0, 1): softmax_y = 1 - ~C e^-gap.

    Each row's label gets the weight row hidden_i * gap / |hidden_i|^2 (labels distinct).
    """
    x, w, _ = normal(draw, scale=1.0)
    labels = draw.rng.choice(draw.classes, size=draw.rows, replace=False)
    w[labels] = x * (gap / (x * x).sum(axis=1, keepdims=True))
    return x, w, labels


def offset(draw: LinearDraw, offset: float = 1000.0, scale: float = 3.0) -> Arrays:
    """A common logit offset: feature 0 of every hidden is 1 and of every weight row ``offset``."""
    x, w, labels = normal(draw, scale)
    x[:, 0], w[:, 0] = 1.0, offset
    return x, w, labels


def non_finite(
    draw: LinearDraw, value: float = float("nan"), row: int = 0, pad: bool = False
) -> Arrays:
    """``normal``, with hidden[row, 0] = ``value`` (NaN, +-inf: a corrupted or overflowed
    activation), the row padded (label IGNORE_INDEX) if ``pad``; ``reference.linear_limits``
    gives the limits (NaN row, +-inf logits, an ignored row taking no part)."""
    x, w, labels = normal(draw)
    x[row, 0] = value
    if pad:
        labels[row] = IGNORE_INDEX
    return x, w, labels


LINEAR_GENERATORS: dict[str, Callable[..., Arrays]] = {
    "normal": normal,
    "confident": confident,
    "offset": offset,
    "non_finite": non_finite,
}

# Rows for non-finite inputs (hidden states holding NaN or inf), in LINEAR_ROWS's tuple form.
NON_FINITE_LINEAR: tuple[tuple, ...] = (
    (
        "nan-hidden-row",
        "non_finite",
        {"value": float("nan")},
        8,
        32,
        100,
        {"bias": True},
        "one hidden row holds NaN: its loss and dX row are NaN, so are all of dW and db",
    ),
    (
        "inf-hidden",
        "non_finite",
        {"value": float("inf"), "row": 1},
        8,
        32,
        100,
        {},
        "an overflowed activation (+inf): that row's logits are +-inf, its loss +inf or NaN",
    ),
    (
        "nan-padding-row",
        "non_finite",
        {"value": float("nan"), "row": 0, "pad": True},
        8,
        32,
        100,
        {"padding": 0.5},
        "NaN in hidden rows, some padded: an ignored row takes no part (loss 0, no gradient)",
    ),
)

# The LLM head on the linear op (reference.linear_head), in LINEAR_ROWS's tuple form.
HEAD_LINEAR: tuple[tuple, ...] = (
    (
        "softcap-30",
        "normal",
        {"scale": 50.0},
        8,
        32,
        100,
        {"padding": 0.25, "options": {"softcap": 30.0}},
        "cap 30 alone on logits of std 50, padding rows, no bias: Gemma 2's head as fused "
        "kernels take it (cut-cross-entropy's softcap=30), tanh saturating",
    ),
    (
        "softcap-30-temperature-per-row",
        "normal",
        {"scale": 50.0},
        8,
        32,
        100,
        {
            "bias": True,
            "padding": 0.25,
            "options": {"softcap": 30.0, "temperature": "@temperatures"},
        },
        "cap 30 on logits of std 50 (Gemma 2's final_logit_softcapping), one temperature per "
        "row in [0.5, 2], padding rows: tanh saturates, the slope sech^2 / T_i in every gradient",
    ),
    (
        "head-confident",
        "confident",
        {"gap": 20.0},
        4,
        64,
        256,
        {"bias": True, "options": {"temperature": 0.5, "softcap": 30.0, "z_loss": 1e-4}},
        "confident rows (gap 20), T 0.5, cap 30, z-loss 1e-4: the full head, p_y near 1",
    ),
    (
        "offset-z-loss",
        "offset",
        {"offset": 1000.0},
        4,
        32,
        128,
        {"bias": True, "options": {"temperature": 2.0, "z_loss": 1e-4}},
        "a common offset of 1000 at T 2: z-loss 1e-4 of a logsumexp of ~500 dominates",
    ),
)

# The linear family's table rows, expanded by ``suites.catalog.cases``:
# (name, generator, its params, rows N, features d, classes C, extra Scenario fields, why)
LINEAR_ROWS: tuple[tuple, ...] = (
    ("normal", "normal", {}, 8, 32, 100, {}, "typical logits (std 3): the baseline"),
    ("bias", "normal", {}, 8, 32, 100, {"bias": True}, "a bias [C] and its gradient"),
    (
        "confident",
        "confident",
        {"gap": 12.0},
        4,
        64,
        256,
        {},
        "softmax_y ~ 1 - 0.002 rounds to 1 in bfloat16: p_y - 1 must not be formed there",
    ),
    (
        "offset-1000",
        "offset",
        {"offset": 1000.0},
        4,
        32,
        128,
        {},
        "a common logit offset of 1000: the loss must not move with it",
    ),
    (
        "hundreds-128k",
        "normal",
        {"scale": 300.0},
        2,
        16,
        131072,
        {},
        "|logit| in the hundreds over 128k classes: logits kept in 16 bits lose the softmax",
    ),
    (
        "padding-75pct",
        "normal",
        {},
        32,
        32,
        200,
        {"padding": 0.75},
        "3 rows in 4 padded (ignore_index -100): no loss, no gradient, no division by N",
    ),
    (
        "chunk-boundaries",
        "normal",
        {},
        37,
        48,
        1031,
        {"bias": True},
        "N = 37 and C = 1031 (prime): every chunk size leaves a ragged last chunk",
    ),
    ("hidden-4096", "normal", {}, 4, 4096, 256, {}, "d = 4096: long dot products"),
    *NON_FINITE_LINEAR,
    *HEAD_LINEAR,
)
