"""The ``options`` family: cross-entropy as it is called (reductions, ignore_index, label
smoothing, class and sample weights, class axis 1) and derivatives along given directions
(cotangents for ``grad``, tangents for ``jvp``), on the inputs where they break in practice.

A case's ``options`` hold scalar call options as they are and array options as ``"@name"``,
the name of an array generator here: ``(rng, logits, labels, shape) -> float64`` where
``shape`` is the array's shape (class axis, rows, or the reduced output's). Arrays are drawn
after the case's inputs, from the same stream, then rounded to the dtype once, as the inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from xentbench.reference import options as family

IGNORE = -100  # torch's default ignore_index, used by the padding cases


def _class_weights_spread(rng, logits, labels, shape):
    """Class weights spanning 1e-3 .. 1e3 (log-uniform): very different magnitudes."""
    return 10.0 ** rng.uniform(-3.0, 3.0, shape)


def _sample_weights_spread(rng, logits, labels, shape):
    """Sample weights spanning 1e-3 .. 1e3, a fifth of them exactly 0."""
    weights = 10.0 ** rng.uniform(-3.0, 3.0, shape)
    return np.where(rng.random(shape) < 0.2, 0.0, weights)


def _normal(rng, logits, labels, shape):
    return rng.standard_normal(shape)


def _zero_on_masked_rows(rng, logits, labels, shape):
    """Normal, and exactly 0 on every row whose logits are all -inf (the CTC / log-semiring
    composition: an outer computation that weights an impossible row by zero)."""
    values = rng.standard_normal(shape)
    rows = np.isneginf(logits).all(axis=-1)
    if values.shape == logits.shape:
        return np.where(rows[..., None], 0.0, values)
    return np.where(rows.reshape(values.shape), 0.0, values)


def _extreme(rng, logits, labels, shape):
    """Cotangents or tangents of magnitudes 2^±12 with random signs: huge and tiny at once."""
    sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    return sign * np.exp2(rng.choice([-12.0, 12.0], shape)) * rng.uniform(1.0, 2.0, shape)


def _temperatures(rng, logits, labels, shape):
    """One temperature per row, log-uniform in [0.5, 2] (per-sequence sampling temperatures)."""
    return 2.0 ** rng.uniform(-1.0, 1.0, shape)


ARRAYS: dict[str, Callable[..., np.ndarray]] = {
    "temperatures": _temperatures,
    "class-weights-spread": _class_weights_spread,
    "sample-weights-spread": _sample_weights_spread,
    "normal": _normal,
    "zero-on-masked-rows": _zero_on_masked_rows,
    "extreme": _extreme,
}


def option_shape(name: str, op: str, options: dict[str, Any], logits_shape) -> tuple[int, ...]:
    """The shape of array option ``name`` for logits of ``logits_shape``."""
    axis = int(options.get("class_axis", -1)) % len(logits_shape)
    rows = tuple(n for i, n in enumerate(logits_shape) if i != axis)
    if name == "class_weight":
        return (logits_shape[axis],)
    if name in ("sample_weight", "temperature"):
        return rows
    if name == "tangent":
        return tuple(logits_shape)
    layout = family.output_layout(op, "value", options)
    return {"scalar": (), "rows": rows, "elements": tuple(logits_shape)}[layout]


def ignore_labels(rng: np.random.Generator, labels: np.ndarray, fraction: float) -> np.ndarray:
    """``fraction`` of the class ids (rounded, at random places) replaced by IGNORE."""
    flat = labels.ravel().copy()
    count = round(fraction * flat.size)
    flat[rng.permutation(flat.size)[:count]] = IGNORE
    return flat.reshape(labels.shape)


_DIRECTION_OF = {"cotangent": "grad", "tangent": "jvp"}


def draw_options(case, rng, logits, labels, quantity: str) -> dict[str, Any]:
    """The case's call options for ``quantity``: scalars as given, arrays drawn (float64);
    the cotangent belongs to grad and the tangent to jvp only."""
    spec = dict(case.options)
    drawn: dict[str, Any] = {}
    for name in family.OPTION_NAMES:
        if name not in spec:
            continue
        value = spec[name]
        if _DIRECTION_OF.get(name, quantity) != quantity:
            continue
        if isinstance(value, str) and value.startswith("@"):
            shape = option_shape(name, case.op, spec, logits.shape)
            value = ARRAYS[value[1:]](rng, logits, labels, shape)
        drawn[name] = value
    return drawn
