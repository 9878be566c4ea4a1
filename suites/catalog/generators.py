"""Input generators for the accuracy cases: logits generators and label generators, by name.

A logits generator takes a ``Draw`` (random stream, shape, the dtype's limits) and frozen
parameters and returns float64 ``[batch, classes]``; a label generator takes the same stream and
those logits (to find the argmax class or the masked classes) and returns int64 class ids or
float64 labels. ``suites.catalog.cases`` names them in its tables and rounds what they draw
to the dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from xentbench.reference.shards import bounds

# Committed inputs (a hunted failure promoted into the catalog): ``saved`` reads them.
SAVED_DIR = Path(__file__).resolve().parent / "saved"


@dataclass(frozen=True)
class Draw:
    """What a logits generator may use: the random stream, the shape, the dtype's limits."""

    rng: np.random.Generator
    shape: tuple[int, int]
    max: float  # largest finite value of the dtype
    eps: float  # spacing of the dtype's floats in [1, 2)
    tiny: float  # smallest positive subnormal of the dtype


# Logits generators: (draw, **params) -> float64 [batch, classes] --------------------------


def _normal(draw: Draw, scale: float = 1.0) -> np.ndarray:
    return scale * draw.rng.standard_normal(draw.shape)


def _uniform(draw: Draw, scale: float, shift: float = 0.0) -> np.ndarray:
    return shift + draw.rng.uniform(-scale, scale, draw.shape)


def _grid(draw: Draw, step: float, scale: float) -> np.ndarray:
    """Multiples of ``step`` in [-scale, scale], as quantised or integer logits are: exact in
    every dtype, and shiftable by large exact constants (suites.judge.shift)."""
    steps = round(scale / step)
    return step * draw.rng.integers(-steps, steps, draw.shape, endpoint=True).astype(np.float64)


def _near_max(draw: Draw, signed: bool) -> np.ndarray:
    """Magnitudes in [0.8, 0.9]·max of the dtype, with random signs or all positive."""
    magnitude = draw.rng.uniform(0.8, 0.9, draw.shape) * draw.max
    sign = np.where(draw.rng.random(draw.shape) < 0.5, -1.0, 1.0) if signed else 1.0
    return sign * magnitude


def _signed(draw: Draw, magnitude: float) -> np.ndarray:
    """Random signs on magnitudes in [1, 1.1]·magnitude."""
    sign = np.where(draw.rng.random(draw.shape) < 0.5, -1.0, 1.0)
    return sign * magnitude * draw.rng.uniform(1.0, 1.1, draw.shape)


def _spread(draw: Draw, scale: float) -> np.ndarray:
    """Each row an evenly spaced grid from -scale to scale, shuffled."""
    grid = np.broadcast_to(np.linspace(-scale, scale, draw.shape[1]), draw.shape)
    return draw.rng.permuted(grid, axis=1)


def _constant(draw: Draw, value: float | None = None) -> np.ndarray:
    """Each row one repeated value: ``value``, or a random one per row."""
    rows = draw.rng.normal(0.0, 10.0, (draw.shape[0], 1)) if value is None else value
    return np.broadcast_to(rows, draw.shape).astype(np.float64)


def _adjacent(draw: Draw) -> np.ndarray:
    """Values 1, 1 + eps, 1 + 2 eps, 1 + 3 eps of the dtype: adjacent floats, with ties."""
    return 1.0 + draw.eps * draw.rng.integers(0, 4, draw.shape)


def _dominant(draw: Draw, gap: float) -> np.ndarray:
    """Normal logits with one random class per row raised by ``gap``."""
    logits = _normal(draw)
    logits[np.arange(draw.shape[0]), draw.rng.integers(0, draw.shape[1], draw.shape[0])] += gap
    return logits


def _subnormal(draw: Draw) -> np.ndarray:
    """Small multiples (-3..3, zero included) of the dtype's smallest subnormal."""
    return draw.tiny * draw.rng.integers(-3, 4, draw.shape)


def _ranks(draw: Draw) -> np.ndarray:
    """A random permutation of the classes in every row: ``ranks < k`` picks k classes."""
    return draw.rng.random(draw.shape).argsort(axis=1)


def _even_rows(draw: Draw) -> np.ndarray:
    return (np.arange(draw.shape[0]) % 2 == 0)[:, None]


def _masked(draw: Draw, count: int) -> np.ndarray:
    """Normal logits with ``count`` classes per row at -inf (masked, as for padding)."""
    return np.where(_ranks(draw) < count, -np.inf, _normal(draw))


def _padded_vocabulary(
    draw: Draw, padding: int, scale: float = 3.0, shift: float = 0.0
) -> np.ndarray:
    """Normal logits (``shift`` + ``scale`` N(0, 1)) with the last ``padding`` classes at -inf:
    a vocabulary padded to a multiple of 64 (nanoGPT's 50257 -> 50304), the padding masked."""
    padded = np.arange(draw.shape[1]) >= draw.shape[1] - padding
    return np.where(padded, -np.inf, shift + _normal(draw, scale))


def _masked_blocks(draw: Draw, live: int) -> np.ndarray:
    """Normal logits (std 3) with most of each row at -inf in long runs, as vocabulary masks
    and constrained decoding leave them, so that a chunked or online (flash-style) softmax meets
    chunks of nothing but -inf. Row by row in turn: live classes only in the last quarter (the
    leading chunks masked), only in the first eighth (the trailing ones), ``live`` scattered
    classes, a window of ``live`` classes mid-row."""
    batch, classes = draw.shape
    index = np.arange(classes)
    patterns = (
        index >= classes - max(1, classes // 4),
        index < max(1, classes // 8),
        np.isin(index, draw.rng.choice(classes, min(live, classes), replace=False)),
        (index >= classes // 2) & (index < classes // 2 + live),
    )
    keep = np.stack([patterns[row % len(patterns)] for row in range(batch)])
    return np.where(keep, _normal(draw, 3.0), -np.inf)


def _all_masked(draw: Draw) -> np.ndarray:
    """Normal logits, with every even row entirely -inf."""
    return np.where(_even_rows(draw), -np.inf, _normal(draw))


def _plus_inf(draw: Draw, count: int) -> np.ndarray:
    return np.where(_ranks(draw) < count, np.inf, _normal(draw))


def _mixed_inf(draw: Draw) -> np.ndarray:
    """Normal logits with one +inf and one -inf class per row."""
    ranks, logits = _ranks(draw), _normal(draw)
    return np.where(ranks == 0, np.inf, np.where(ranks == 1, -np.inf, logits))


def _nan(draw: Draw) -> np.ndarray:
    """Normal logits with one NaN in every even row (odd rows must stay unaffected)."""
    return np.where((_ranks(draw) == 0) & _even_rows(draw), np.nan, _normal(draw))


def _infinite(draw: Draw) -> np.ndarray:
    """Normal logits with about half the elements replaced by +inf or -inf."""
    infinity = np.where(draw.rng.random(draw.shape) < 0.5, -np.inf, np.inf)
    return np.where(draw.rng.random(draw.shape) < 0.5, infinity, _normal(draw))


def _saved(draw: Draw, logits: str, labels: str = "") -> np.ndarray:
    """The logits of a committed ``.npy`` in ``SAVED_DIR`` (``labels`` names its labels file,
    read by ``saved_labels``): a hunted input promoted into the catalog."""
    values = np.load(SAVED_DIR / logits, allow_pickle=False).astype(np.float64)
    if values.shape != draw.shape:
        raise ValueError(f"{logits} holds shape {values.shape}; the case declares {draw.shape}")
    return values


def saved_labels(labels: str, **_: object) -> np.ndarray:
    """The labels of a committed ``.npy`` in ``SAVED_DIR`` (int64 ids or float labels)."""
    values = np.load(SAVED_DIR / labels, allow_pickle=False)
    return values.astype(np.int64 if values.dtype.kind in "iu" else np.float64)


GENERATORS: dict[str, Callable[..., np.ndarray]] = {
    "normal": _normal,
    "uniform": _uniform,
    "grid": _grid,
    "near_max": _near_max,
    "signed": _signed,
    "spread": _spread,
    "constant": _constant,
    "adjacent": _adjacent,
    "dominant": _dominant,
    "subnormal": _subnormal,
    "masked": _masked,
    "masked_blocks": _masked_blocks,
    "padded_vocabulary": _padded_vocabulary,
    "all_masked": _all_masked,
    "plus_inf": _plus_inf,
    "mixed_inf": _mixed_inf,
    "nan": _nan,
    "infinite": _infinite,
    "saved": _saved,
}
# Generators that put non-finite values in the logits (or, for the linear op, the hidden states)
# on purpose; no other may.
NONFINITE_GENERATORS: frozenset[str] = frozenset(
    {
        "masked",
        "masked_blocks",
        "padded_vocabulary",
        "all_masked",
        "plus_inf",
        "mixed_inf",
        "nan",
        "infinite",
        "non_finite",
    }
)

# Label generators: (rng, float64 logits) -> labels --------------------------------------


def _class_among(rng: np.random.Generator, allowed: np.ndarray) -> np.ndarray:
    """One random class per row among ``allowed`` (among all classes where none is allowed)."""
    allowed = allowed | ~allowed.any(axis=1, keepdims=True)
    return np.where(allowed, rng.random(allowed.shape), -1.0).argmax(axis=1)


def _argmax(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    return logits.argmax(axis=1)


def _not_argmax(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    others = np.arange(logits.shape[1]) != logits.argmax(axis=1)[:, None]
    return _class_among(rng, others)


def _alternate(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """The argmax class on even rows, another class on odd rows."""
    even = np.arange(len(logits)) % 2 == 0
    return np.where(even, _argmax(rng, logits), _not_argmax(rng, logits))


def _out_of_range(rng: np.random.Generator, logits: np.ndarray, below: bool) -> np.ndarray:
    """Random classes, except on the last row: -1 (``below``) or C, just outside [0, C)."""
    labels = rng.integers(0, logits.shape[1], len(logits))
    labels[-1] = -1 if below else logits.shape[1]
    return labels


def _shard_boundaries(rng: np.random.Generator, logits: np.ndarray, shards: int) -> np.ndarray:
    """The first and last class of each of ``shards`` shards (``reference.shards.bounds``),
    in turn down the rows: where a shard offset off by one reads the wrong logit."""
    edges = [c for start, stop in bounds(logits.shape[1], shards) for c in (start, stop - 1)]
    return np.resize(np.asarray(edges, dtype=np.int64), len(logits))


_CLASS_LABELS: dict[str, Callable[[np.random.Generator, np.ndarray], np.ndarray]] = {
    "random": lambda rng, x: rng.integers(0, x.shape[1], len(x)),
    "argmax": _argmax,
    "not-argmax": _not_argmax,
    "alternate": _alternate,
    "unmasked": lambda rng, x: _class_among(rng, x != -np.inf),
    "on-masked": lambda rng, x: _class_among(rng, x == -np.inf),
    "first": lambda rng, x: np.zeros(len(x), dtype=np.int64),
    "last": lambda rng, x: np.full(len(x), x.shape[1] - 1, dtype=np.int64),
    "minus-one": partial(_out_of_range, below=True),
    "classes": partial(_out_of_range, below=False),
    **{f"shard-boundaries-{k}": partial(_shard_boundaries, shards=k) for k in (2, 3, 8)},
}


def _one_hot(pick: Callable[[np.random.Generator, np.ndarray], np.ndarray]) -> Callable:
    def soft(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
        labels = np.zeros(logits.shape)
        labels[np.arange(len(logits)), pick(rng, logits)] = 1.0
        return labels

    return soft


def _dirichlet(
    rng: np.random.Generator,
    logits: np.ndarray,
    alpha: float = 1.0,
    total: float = 1.0,
    support: str = "all",
) -> np.ndarray:
    """Random distributions times ``total``, zero outside ``support`` (renormalised)."""
    weights = rng.dirichlet(np.full(logits.shape[1], alpha), size=len(logits))
    if support == "unmasked":
        keep = logits != -np.inf
    elif support == "half":
        keep = rng.random(logits.shape).argsort(axis=1) < max(1, logits.shape[1] // 2)
    else:
        return total * weights
    keep |= ~keep.any(axis=1, keepdims=True)
    kept = np.where(keep, weights, 0.0)
    return total * kept / kept.sum(axis=1, keepdims=True)


def _smoothed(rng: np.random.Generator, logits: np.ndarray, eps: float) -> np.ndarray:
    """Label smoothing: (1 - eps)·one_hot + eps / C."""
    return (1.0 - eps) * _one_hot(_CLASS_LABELS["random"])(rng, logits) + eps / logits.shape[1]


def _constant_labels(value: float) -> Callable:
    return lambda rng, x: np.full(x.shape, value)


LABELS: dict[str, dict[str, Callable[[np.random.Generator, np.ndarray], np.ndarray]]] = {
    "sparse_softmax_cross_entropy": _CLASS_LABELS,
    "softmax_cross_entropy": {
        "random": _dirichlet,
        "spiky": partial(_dirichlet, alpha=0.2),
        "sum-0.5": partial(_dirichlet, total=0.5),
        "sum-2": partial(_dirichlet, total=2.0),
        "zero-classes": partial(_dirichlet, support="half"),
        "unmasked": partial(_dirichlet, support="unmasked"),
        "on-masked": _dirichlet,  # positive on every class, masked ones included
        "smoothed": partial(_smoothed, eps=0.1),
        **{
            key: _one_hot(_CLASS_LABELS[pick])
            for key, pick in (
                ("one-hot", "random"),
                ("argmax", "argmax"),
                ("not-argmax", "not-argmax"),
                ("alternate", "alternate"),
            )
        },
    },
    "sigmoid_cross_entropy": {
        "random": lambda rng, x: rng.random(x.shape),
        "binary": lambda rng, x: rng.integers(0, 2, x.shape).astype(np.float64),
        "mixed": lambda rng, x: rng.choice([0.0, 1.0, 0.3], size=x.shape),
        "zero": _constant_labels(0.0),
        "one": _constant_labels(1.0),
        "fraction": _constant_labels(0.3),
    },
}
