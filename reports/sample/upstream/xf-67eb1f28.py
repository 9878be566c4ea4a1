#!/usr/bin/env python3
"""xentbench finding xf-67eb1f28: numpy:scipy.special.logsumexp, value: raises-on-valid-input [defect?].

Class defect?: nothing in suites/findings/known.toml explains it.
Seen with: numpy 2.4.6, scipy 1.17.1, ml_dtypes 0.7.0.
Input: case logsumexp/size/classes-1 (bfloat16, seed 0), shrunk by xentbench from 4x1
to 1x1 (rows x classes) while the failure mode persisted.

Needs only SciPy and NumPy. Exits 1 while the problem is present, 0 once it is fixed.
"""

from __future__ import annotations

import base64
import sys

import numpy as np

FINDING = 'xf-67eb1f28'
IMPLEMENTATION = 'numpy:scipy.special.logsumexp'
FAILURE_MODE = 'raises-on-valid-input'
DTYPE, DEVICE, MODE, QUANTITY = 'bfloat16', 'cpu', 'eager', 'value'


def _floats(values, shape):
    return np.array([float.fromhex(v) for v in values], dtype=np.float64).reshape(shape)


def _packed(text, dtype, shape):
    """A large array, exactly: base64 of its raw little-endian bytes."""
    raw = np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype))
    return raw.reshape(shape).astype(np.float64 if raw.dtype.kind == "f" else np.int64)


# The input, exactly (float hex of the bfloat16 values).
LOGITS = _floats(['0x0.0p+0'], (1, 1))
LABELS = None
# The call's options, as the adapter passes them (arrays exact in bfloat16, held as float64).
OPTIONS = {}
SHIFTED_LOGITS = None
# The exact result (xentbench's arbitrary-precision reference) as hi + lo, the exact value
# rounded to bfloat16 (TRUTH), its ULP, and the error allowance of xentbench's budget (absolute).
EXPECTED_HI = _floats(['0x0.0p+0'], (1,))
EXPECTED_LO = _floats(['0x0.0p+0'], (1,))
TRUTH = _floats(['0x0.0p+0'], (1,))
ULP = _floats(['0x1.0000000000000p-133'], (1,))
ALLOWANCE = _floats(['0x1.c000000000000p-21'], (1,))
SUMS_TO_ONE_TOLERANCE = 0.007813334465026855

import scipy.special



def run(x, y):
    if DTYPE == "bfloat16":
        import ml_dtypes

        dtype = ml_dtypes.bfloat16
    else:
        dtype = np.dtype(DTYPE)
    x = x.astype(dtype)
    y = y if y is None or y.dtype.kind == "i" else y.astype(dtype)
    with np.errstate(all="ignore"):  # overflow and 0 * inf are what is being shown
        return np.asarray(scipy.special.logsumexp(x, axis=-1)).astype(np.float64)


def kind_mismatch(got, truth):
    """The failure mode of one element whose kind (NaN, infinity, finite) is wrong, or None."""
    if np.isnan(got):
        if np.isnan(truth):
            return None
        return "nan-for-finite" if np.isfinite(truth) else "nan-for-infinite"
    if np.isinf(got):
        if np.isfinite(truth):
            return "inf-for-finite"
        return None if got == truth else "wrong-infinity"
    return None if np.isfinite(truth) else "finite-for-nonfinite"


def measure(got):
    """Per element: kind mismatch, absolute, relative and ULP error, and error / allowance."""
    with np.errstate(all="ignore"):
        absolute = np.abs((got - EXPECTED_HI) - EXPECTED_LO)
        right = np.isfinite(got) & np.isfinite(TRUTH)
        absolute = np.where(right, absolute, np.nan)
        relative = absolute / np.abs(EXPECTED_HI)
        ulps = absolute / ULP
        ratio = absolute / ALLOWANCE
    kinds = np.vectorize(kind_mismatch, otypes=[object])(got, TRUTH)
    return kinds, absolute, relative, ulps, ratio


def show(got, title):
    kinds, absolute, relative, ulps, ratio = measure(got)
    print(title)
    def rank(i):
        return (kinds[i] is None, -np.nan_to_num(ratio[i], nan=-1))

    order = sorted(np.ndindex(got.shape), key=rank)
    for index in order[:8]:
        got_i, expected_i = float(got[index]), float(EXPECTED_HI[index])
        print(f"  {index}: got {got_i!r}, expected {expected_i!r}, "
              f"abs {absolute[index]:.3g}, rel {relative[index]:.3g}, "
              f"ULP error {ulps[index]:.3g} (allowed {ALLOWANCE[index] / ULP[index]:.3g})"
              + (f"  <- {kinds[index]}" if kinds[index] else ""))
    failing = any(k is not None for k in kinds.flat)
    return kinds, ratio, failing or bool(np.nanmax(ratio, initial=0) > 1)


def invariant_broken(name, got):
    rows = np.isfinite(LOGITS).all(axis=-1)
    if LABELS is not None and LABELS.dtype.kind == "f" and LABELS.shape == LOGITS.shape:
        rows &= np.isfinite(LABELS).all(axis=-1) & (LABELS >= 0).all(axis=-1)
    got, x = got[rows], LOGITS[rows]
    if name == "sums_to_one":
        off = np.abs(got.sum(axis=-1) - 1) > SUMS_TO_ONE_TOLERANCE
        return bool(off.any() or np.isnan(got).any())
    if name == "argmax_preserved":
        top = (x == x.max(axis=-1, keepdims=True)) & (got == got.max(axis=-1, keepdims=True))
        return not top.any(axis=-1).all()
    if name == "log_softmax_nonpositive":
        return not (got <= 0).all()
    if name == "nonnegative_loss":
        return not (got >= 0).all()
    raise SystemExit(f"unknown invariant {name}")


def present():
    try:
        got = run(LOGITS, LABELS)
    except Exception as exc:
        print(f"raised {type(exc).__name__}: {exc}")
        return FAILURE_MODE in ("raises-on-valid-input", "shift-variant")
    if FAILURE_MODE == "answers-invalid-input":
        print(f"returned {got!r} for class ids {LABELS!r} outside [0, {LOGITS.shape[-1]})")
        return True
    if FAILURE_MODE == "raises-on-valid-input":
        print(f"returned without raising: {got!r}")
        return False
    if got.shape != EXPECTED_HI.shape:
        print(f"output shape {got.shape}, expected {EXPECTED_HI.shape}")
        return True
    kinds, ratio, failing = show(got, f"{IMPLEMENTATION} {QUANTITY} ({DTYPE}):")
    if FAILURE_MODE in ("over-budget", "flushed-subnormal"):  # both: beyond the budget
        right_kind = np.array([k is None for k in kinds.flat])
        return bool(np.nanmax(np.where(right_kind, ratio.ravel(), np.nan), initial=0) > 1)
    if FAILURE_MODE == "shift-variant":
        try:
            moved = run(SHIFTED_LOGITS, LABELS)
        except Exception as exc:
            print(f"on the shifted logits: raised {type(exc).__name__}: {exc}")
            return True
        title = "the same call on the logits shifted exactly by a constant:"
        _, _, moved_failing = show(moved, title)
        return moved_failing and not np.array_equal(got, moved, equal_nan=True)
    if FAILURE_MODE.startswith("invariant:"):
        return invariant_broken(FAILURE_MODE.split(":", 1)[1], got)
    return FAILURE_MODE in set(kinds.flat)


if __name__ == "__main__":
    still = present()
    print(f"{FINDING} {FAILURE_MODE}: {'PRESENT' if still else 'gone'}")
    sys.exit(1 if still else 0)
