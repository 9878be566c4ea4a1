"""The text of a standalone reproducer script: literal input, embedded exact value, a check.

The script imports only the framework (through the snippet of ``suites.findings.snippets``) and
NumPy. It prints, per output element, got, the exact value, absolute, relative and ULP error and
the allowance, then exits 1 while the finding's failure mode is present and 0 once it is gone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_HEADER = '''#!/usr/bin/env python3
"""xentbench finding {id}: {implementation}, {quantity}: {failure_mode} [{klass}].

{evidence}
Seen with: {versions}.
Input: case {case_id} ({dtype}, seed {seed}), shrunk by xentbench from {original}
to {shrunk} (rows x classes) while the failure mode persisted.

Needs only {framework} and NumPy. Exits 1 while the problem is present, 0 once it is fixed.
"""

import sys

import numpy as np

FINDING = {id!r}
IMPLEMENTATION = {implementation!r}
FAILURE_MODE = {failure_mode!r}
DTYPE, DEVICE, MODE, QUANTITY = {dtype!r}, {device!r}, {mode!r}, {quantity!r}


def _floats(values, shape):
    return np.array([float.fromhex(v) for v in values], dtype=np.float64).reshape(shape)


# The input, exactly (float hex of the {dtype} values).
LOGITS = _floats({logits}, {shape})
LABELS = {labels}
SHIFTED_LOGITS = {shifted}
# The exact result (xentbench's arbitrary-precision reference) as hi + lo, the exact value
# rounded to {dtype} (TRUTH), its ULP, and the error allowance of xentbench's budget (absolute).
EXPECTED_HI = _floats({hi}, {out_shape})
EXPECTED_LO = _floats({lo}, {out_shape})
TRUTH = _floats({truth}, {out_shape})
ULP = _floats({ulp}, {out_shape})
ALLOWANCE = _floats({allowance}, {out_shape})
SUMS_TO_ONE_TOLERANCE = {tolerance!r}
'''

_CHECK = '''

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
        print(f"  {{index}}: got {{got_i!r}}, expected {{expected_i!r}}, "
              f"abs {{absolute[index]:.3g}}, rel {{relative[index]:.3g}}, "
              f"ULP error {{ulps[index]:.3g}} (allowed {{ALLOWANCE[index] / ULP[index]:.3g}})"
              + (f"  <- {{kinds[index]}}" if kinds[index] else ""))
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
    raise SystemExit(f"unknown invariant {{name}}")


def present():
    try:
        got = run(LOGITS, LABELS)
    except Exception as exc:
        print(f"raised {{type(exc).__name__}}: {{exc}}")
        return FAILURE_MODE in ("raises-on-valid-input", "shift-variant")
    if FAILURE_MODE == "answers-invalid-input":
        print(f"returned {{got!r}} for class ids {{LABELS!r}} outside [0, {{LOGITS.shape[-1]}})")
        return True
    if FAILURE_MODE == "raises-on-valid-input":
        print(f"returned without raising: {{got!r}}")
        return False
    if got.shape != EXPECTED_HI.shape:
        print(f"output shape {{got.shape}}, expected {{EXPECTED_HI.shape}}")
        return True
    kinds, ratio, failing = show(got, f"{{IMPLEMENTATION}} {{QUANTITY}} ({{DTYPE}}):")
    if FAILURE_MODE == "over-budget":
        right_kind = np.array([k is None for k in kinds.flat])
        return bool(np.nanmax(np.where(right_kind, ratio.ravel(), np.nan), initial=0) > 1)
    if FAILURE_MODE == "shift-variant":
        try:
            moved = run(SHIFTED_LOGITS, LABELS)
        except Exception as exc:
            print(f"on the shifted logits: raised {{type(exc).__name__}}: {{exc}}")
            return True
        title = "the same call on the logits shifted exactly by a constant:"
        _, _, moved_failing = show(moved, title)
        return moved_failing and not np.array_equal(got, moved, equal_nan=True)
    if FAILURE_MODE.startswith("invariant:"):
        return invariant_broken(FAILURE_MODE.split(":", 1)[1], got)
    return FAILURE_MODE in set(kinds.flat)


if __name__ == "__main__":
    still = present()
    print(f"{{FINDING}} {{FAILURE_MODE}}: {{'PRESENT' if still else 'gone'}}")
    sys.exit(1 if still else 0)
'''


def _hex_list(values: np.ndarray) -> str:
    return repr([float(v).hex() for v in np.asarray(values, dtype=np.float64).ravel()])


def _labels_literal(labels: np.ndarray | None) -> str:
    if labels is None:
        return "None"
    if labels.dtype.kind in "iu":
        return f"np.array({labels.astype(np.int64).tolist()!r}, dtype=np.int64)"
    return f"_floats({_hex_list(labels)}, {tuple(labels.shape)!r})"


def render(facts: dict[str, Any], run_source: str) -> str:
    """The script for ``facts`` (finding fields, input and exact arrays) and a ``run`` source."""
    arrays = ("hi", "lo", "truth", "ulp", "allowance")
    fields = {k: v for k, v in facts.items() if k not in (*arrays, "logits", "labels", "shifted")}
    shifted = facts.get("shifted")
    fields.update(
        shape=tuple(facts["logits"].shape),
        shrunk="x".join(map(str, facts["logits"].shape)),
        out_shape=tuple(facts["hi"].shape),
        logits=_hex_list(facts["logits"]),
        labels=_labels_literal(facts["labels"]),
        shifted="None"
        if shifted is None
        else f"_floats({_hex_list(shifted)}, {tuple(shifted.shape)!r})",
        **{name: _hex_list(facts[name]) for name in arrays},
    )
    return _HEADER.format(**fields) + run_source + _CHECK.format()
