"""The parameterised softmax family, exactly: cross-entropy as frameworks call it, any
cotangent (vector-Jacobian products), any tangent (forward mode).

Definitions (``R`` rows after moving the class axis last and flattening; ``p`` the softmax,
``nl_i = -log p_i`` per row; ``m_r`` 0 for an ignored row, else 1; ``sw_r`` the sample weight;
``cw`` the class weights; ``eps`` the label smoothing; ``C`` the size of the class axis):

- smoothed targets ``y' = (1 - eps) y + eps / C`` (torch ``label_smoothing``, Keras
  ``label_smoothing``, ``optax.smooth_labels``); sparse labels are one-hot ``y``;
- coefficients ``c_i = cw_i y'_i`` and the row loss ``l_r = m_r sw_r sum_i c_i nl_i`` (torch
  ``reduction='none'``, class weights inside the loss, 0 on ignored rows);
- reductions (``REDUCTIONS``): ``sum``; ``mean`` = ``sum l_r / sum m_r sw_r cw[y_r]`` (torch
  ``F.cross_entropy``/``F.nll_loss`` weighted mean over non-ignored rows, ONNX ``mean``; for soft
  labels the divisor is ``sum m_r sw_r``); ``mean_over_valid`` = ``sum l_r / sum m_r`` (Keras
  ``ignore_class`` and masks, optax ``where=`` then a mean over the kept rows);
  ``sum_over_batch_size`` = ``sum l_r / R`` (Keras's default, ``tf.reduce_mean`` of the per-row
  loss, torch ``mean`` with probability targets).
- ``shards`` (sparse labels): vocabulary-parallel, the same loss computed over k slices of
  the classes (``reference.shards``); only the count is checked, 1 <= k <= C;
- ``grad`` = the vector-Jacobian product with ``cotangent`` (ones by default) w.r.t. the logits;
  ``jvp`` = the directional derivative along ``tangent``.

Conventions, beyond ``reference.edges``: an ignored row contributes exactly 0 to values and
derivatives whatever it holds (it is padding). An exact-zero weight, cotangent row or tangent
row contributes exactly 0 even where that row's loss or derivative is undefined (all ``-inf``,
two ``+inf``): ``0 * undefined = 0`` is what an outer computation that weights a row by zero
means (pytorch#31829, jax#6811: the gradient of logsumexp through an all ``-inf`` row under a
zero cotangent is 0, not NaN); a NaN logit still gives NaN (NaN in, NaN out). The mean over
zero rows (every row ignored, or every weight 0) is ``0/0``: NaN, as torch returns (Keras's
``divide_no_nan`` returns 0, a convention the report shows as ``wrong``); its gradient is 0,
each row carrying its zero weight.

Arithmetic: rational (``fractions.Fraction``), exact on the reference's double-double
softmax and log-softmax elements (each within 2^-105 relative of the truth). Sums of
same-signed terms (every loss and reduction with non-negative weights) are therefore within
~2^-104 relative, far inside any float64 ULP; a difference of two such sums (the gradient
``p_j (S - c_j) - c_j (P - p_j)``, a VJP) is within 2^-104 of the larger term, which is
correct rounding except where the terms cancel to below ~2^-50 of their size.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

import xentbench.reference.head as head
import xentbench.reference.options_math as options_math
import xentbench.reference.shards as shards

OPTION_NAMES: tuple[str, ...] = (
    "reduction",
    "ignore_index",
    "label_smoothing",
    "class_weight",
    "sample_weight",
    "class_axis",
    "cotangent",
    "tangent",
    *head.HEAD_OPTIONS,  # softcap, temperature, z_loss: the LLM head (reference.head)
    "shards",  # vocabulary-parallel: the algorithm, not the maths (reference.shards)
)
REDUCTIONS: dict[str, str] = {
    "none": "per row l_r = sw_r sum_i cw_i y'_i (-log p_i), 0 on ignored rows",
    "sum": "sum_r l_r",
    "mean": "sum_r l_r / sum_r m_r sw_r cw[y_r] (torch weighted mean over non-ignored rows)",
    "mean_over_valid": "sum_r l_r / #non-ignored rows (Keras ignore_class, optax where=)",
    "sum_over_batch_size": "sum_r l_r / R, all rows (Keras default, tf.reduce_mean)",
}
CROSS_ENTROPIES = ("softmax_cross_entropy", "sparse_softmax_cross_entropy")
UNLABELLED = ("softmax", "log_softmax", "logsumexp")
# Options each op accepts in the reference.
ACCEPTED: dict[str, tuple[str, ...]] = {
    **{op: ("class_axis", "cotangent", "tangent", "softcap", "temperature") for op in UNLABELLED},
    **{op: tuple(name for name in OPTION_NAMES if name != "shards") for op in CROSS_ENTROPIES},
    shards.OP: OPTION_NAMES,
    "linear_cross_entropy": head.HEAD_OPTIONS,  # on its exact logits (reference.linear_head)
}
ARRAY_OPTIONS = ("class_weight", "sample_weight", "cotangent", "tangent", "temperature")


def canonical(options: dict[str, Any]) -> str:
    """A compact, stable description: ``name=value`` in OPTION_NAMES order, arrays by shape and
    a content hash (``class_weight=f32[16]#1a2b3c``); empty for no options."""
    parts = []
    for name in OPTION_NAMES:
        if name not in options:
            continue
        value = options[name]
        if isinstance(value, np.ndarray):
            digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:6]
            shape = "x".join(map(str, value.shape))
            value = f"{value.dtype.name}[{shape}]#{digest}"
        parts.append(f"{name}={value}")
    return ",".join(parts)


def validate(op: str, quantity: str, options: dict[str, Any]) -> None:
    """ValueError naming the first option ``op``/``quantity`` cannot take, or a bad value."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r}; valid: {', '.join(OPTION_NAMES)}")
    refused = sorted(set(options) - set(ACCEPTED.get(op, ())))
    if refused:
        takers = ", ".join(other for other, names in ACCEPTED.items() if refused[0] in names)
        raise ValueError(f"op {op} takes no option {refused[0]!r}; ops that take it: {takers}")
    reduction = options.get("reduction", "none")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
    eps = float(options.get("label_smoothing", 0.0))
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing {eps} is outside [0, 1]")
    head.validate(op, options, CROSS_ENTROPIES)
    if "tangent" in options and quantity != "jvp":
        raise ValueError("a tangent is for quantity jvp")
    if "cotangent" in options and quantity != "grad":
        raise ValueError("a cotangent is for quantity grad")


@dataclass(frozen=True)
class Rows:
    """The inputs as rows ``[R, C]`` with the class axis last, and what each row needs."""

    x: np.ndarray  # float64 logits [R, C]
    y: np.ndarray | None  # float64 soft labels [R, C], int64 class ids [R], or None
    p: list  # exact softmax per row: Fractions, or floats where not finite
    lsm: list  # exact log_softmax per row, likewise
    nan_row: np.ndarray  # rows holding a NaN logit


def _fractions(hi: np.ndarray, lo: np.ndarray) -> list[list]:
    """hi + lo per element as a Fraction, or the float hi where it is not finite."""
    rows = []
    for row_hi, row_lo in zip(hi.tolist(), lo.tolist(), strict=True):
        rows.append(
            [
                Fraction(h) + Fraction(lo_) if math.isfinite(h) else h
                for h, lo_ in zip(row_hi, row_lo, strict=True)
            ]
        )
    return rows


def to_exact(values: list) -> tuple[np.ndarray, np.ndarray]:
    """Fractions (or non-finite floats) -> (hi, lo): hi correctly rounded, lo the residual."""
    hi, lo = np.empty(len(values)), np.zeros(len(values))
    for index, value in enumerate(values):
        if isinstance(value, Fraction):
            try:
                hi[index] = float(value)
            except OverflowError:
                hi[index] = math.inf if value > 0 else -math.inf
                continue
            lo[index] = float(value - Fraction(hi[index])) if math.isfinite(hi[index]) else 0.0
        else:
            hi[index] = value
    return hi, lo


def exact_family(
    op: str, quantity: str, logits: np.ndarray, labels, options: dict[str, Any], exact_fn
) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) of ``op``'s ``quantity`` under ``options``; ``exact_fn`` is the plain reference
    (``reference.evaluate.exact``), used for the softmax and log-softmax elements."""
    validate(op, quantity, options)
    axis = int(options.get("class_axis", -1))
    x = np.asarray(logits).astype(np.float64)
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"class_axis {axis} is outside the logits' {x.ndim} axes")
    moved = np.moveaxis(x, axis, -1)
    if moved.shape[-1] == 0:
        raise ValueError(f"logits need a non-empty class axis, got shape {x.shape}")
    shards.validate(options, moved.shape[-1])  # the sharded loss is the unsharded one
    rows, lead = moved.reshape(-1, moved.shape[-1]), moved.shape[:-1]
    y = _labels(op, labels, x.shape, axis, lead, options)
    nan_row = np.isnan(rows).any(axis=1)
    if head.active(options):
        terms = head.head_rows(rows, options, lead, exact_fn)
        table = Rows(rows, y, terms.p, terms.lsm, nan_row)
    else:
        terms = None
        p, lsm = exact_fn("softmax", rows), exact_fn("log_softmax", rows)
        table = Rows(rows, y, _fractions(p.hi, p.lo), _fractions(lsm.hi, lsm.lo), nan_row)
    if quantity == "value" and op not in CROSS_ENTROPIES:
        if terms is not None:
            hi, lo = to_exact(_head_values(op, terms))
            return restore(hi, lo, op, quantity, options, axis, lead)
        plain = exact_fn(op, rows)
        return restore(plain.hi, plain.lo, op, quantity, options, axis, lead)
    hi, lo = to_exact(_compute(op, quantity, table, options, x.shape, axis, lead, terms))
    return restore(hi, lo, op, quantity, options, axis, lead)


def _head_values(op: str, terms: head.HeadRows) -> list:
    """Values of softmax, log_softmax or logsumexp of the head's transformed logits."""
    if op == "logsumexp":
        return list(terms.lse)
    return [v for row in (terms.p if op == "softmax" else terms.lsm) for v in row]


def _direction(name: str, options, shape, axis, lead, per_row: bool) -> list[list]:
    """The cotangent or tangent as rows of Fractions (ones when absent)."""
    classes = shape[axis]
    value = options.get(name)
    if value is None:
        count = int(np.prod(lead))
        return [[Fraction(1)] * (1 if per_row else classes) for _ in range(count)]
    array = np.asarray(value).astype(np.float64)
    expected = lead if per_row else shape
    if array.shape != tuple(expected):
        raise ValueError(f"{name} shape {array.shape}, expected {tuple(expected)}")
    array = array.reshape(-1, 1) if per_row else np.moveaxis(array, axis, -1).reshape(-1, classes)
    return [[Fraction(v) if math.isfinite(v) else v for v in row] for row in array.tolist()]


def _flat(name: str, options, shape: tuple[int, ...]) -> list:
    """A per-row (or scalar) option array as a flat list of Fractions; ones when absent."""
    value = options.get(name)
    if value is None:
        return [Fraction(1)] * int(np.prod(shape))
    array = np.asarray(value).astype(np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} shape {array.shape}, expected {shape}")
    return [Fraction(v) if math.isfinite(v) else v for v in array.ravel().tolist()]


def _compute(op, quantity, table: Rows, options, shape, axis, lead, terms=None) -> list:
    """The family's grad or jvp (or a cross-entropy's value); with the head's ``terms``, the
    tangent scaled by dz/dx before and the gradient by dz/dx after (the chain rule)."""
    slopes = None if terms is None else terms.slope
    if op in CROSS_ENTROPIES:
        reduced = options.get("reduction", "none") != "none"
        cotangent = tangent = z_loss = None
        if quantity == "grad":
            cotangent = _flat("cotangent", options, () if reduced else tuple(lead))
        if quantity == "jvp":
            tangent = _along(_direction("tangent", options, shape, axis, lead, False), slopes)
        if terms is not None and "z_loss" in options:
            z_loss = (Fraction(float(options["z_loss"])), terms.lse)
        out = options_math.cross_entropy(op, quantity, table, options, cotangent, tangent, z_loss)
    elif quantity == "grad":
        direction = _direction("cotangent", options, shape, axis, lead, op == "logsumexp")
        out = options_math.unlabelled(op, quantity, table, direction)
    else:
        direction = _along(_direction("tangent", options, shape, axis, lead, False), slopes)
        out = options_math.unlabelled(op, quantity, table, direction)
    if quantity == "grad" and slopes is not None:
        return options_math.scaled(out, [s for row in slopes for s in row])
    return out


def _along(direction: list[list], slopes: list[list] | None) -> list[list]:
    """A tangent in x as a tangent in the head's z: t_i dz_i/dx_i (as given without a head)."""
    if slopes is None:
        return direction
    return [options_math.scaled(t, s) for t, s in zip(direction, slopes, strict=True)]


def output_layout(op: str, quantity: str, options: dict[str, Any]) -> str:
    """'elements' (the logits' layout), 'rows' (one per row) or 'scalar' (reduced)."""
    if quantity == "grad" or (quantity == "value" and op in ("softmax", "log_softmax")):
        return "elements"
    if op == "softmax" or (op == "log_softmax" and quantity == "jvp"):
        return "elements"
    if op in CROSS_ENTROPIES and options.get("reduction", "none") != "none":
        return "scalar"
    return "rows"


def restore(hi, lo, op, quantity, options, axis, lead):
    """Rows back to the caller's layout: the class axis where it was, or the row shape."""
    layout = output_layout(op, quantity, options)
    if layout == "scalar":
        return hi.reshape(()), lo.reshape(())
    if layout == "rows":
        return hi.reshape(lead), lo.reshape(lead)
    shape = (*lead, -1)
    return (np.moveaxis(a.reshape(shape), -1, axis) for a in (hi, lo))


def _labels(op, labels, shape, axis, lead, options) -> np.ndarray | None:
    """Labels as rows: soft [R, C] moved like the logits, sparse [R] with ignored ids kept."""
    if op not in CROSS_ENTROPIES:
        return None
    if labels is None:
        raise ValueError(f"op {op} needs labels")
    labels = np.asarray(labels)
    classes = shape[axis]
    if op == "softmax_cross_entropy":
        if labels.shape != shape:
            raise ValueError(f"labels shape {labels.shape} does not match logits shape {shape}")
        if "ignore_index" in options:
            raise ValueError("ignore_index needs sparse labels")
        return np.moveaxis(labels.astype(np.float64), axis, -1).reshape(-1, classes)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"sparse labels must be integers, got dtype {labels.dtype}")
    if labels.shape != lead:
        raise ValueError(f"sparse labels shape {labels.shape} does not match {lead}")
    ids = labels.astype(np.int64).ravel()
    ignored = ids == int(options.get("ignore_index", -(2**62)))
    bad = ((ids < 0) | (ids >= classes)) & ~ignored
    if bad.any():
        raise ValueError(
            f"sparse label {ids[bad][0]} is outside [0, {classes}) "
            f"({int(bad.sum())} invalid labels)"
        )
    return ids
