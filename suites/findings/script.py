"""The text of a standalone reproducer script: literal input, embedded exact value, a check.

The script imports only the framework (through the snippet of ``suites.findings.snippets``) and
NumPy. It prints, per output element, got, the exact value, absolute, relative and ULP error and
the allowance, then exits 1 while the finding's failure mode is present and 0 once it is gone.
"""

from __future__ import annotations

import base64
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

from __future__ import annotations

import base64
import sys

import numpy as np

FINDING = {id!r}
IMPLEMENTATION = {implementation!r}
FAILURE_MODE = {failure_mode!r}
DTYPE, DEVICE, MODE, QUANTITY = {dtype!r}, {device!r}, {mode!r}, {quantity!r}


def _floats(values, shape):
    return np.array([float.fromhex(v) for v in values], dtype=np.float64).reshape(shape)


def _packed(text, dtype, shape):
    """A large array, exactly: base64 of its raw little-endian bytes."""
    raw = np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype))
    return raw.reshape(shape).astype(np.float64 if raw.dtype.kind == "f" else np.int64)


# The input, exactly (float hex of the {dtype} values).
LOGITS = {logits}
LABELS = {labels}
# The call's options, as the adapter passes them (arrays exact in {dtype}, held as float64).
OPTIONS = {options}
SHIFTED_LOGITS = {shifted}
# The exact result (xentbench's arbitrary-precision reference) as hi + lo, the exact value
# rounded to {dtype} (TRUTH), its ULP, and the error allowance of xentbench's budget (absolute).
EXPECTED_HI = {hi}
EXPECTED_LO = {lo}
TRUTH = {truth}
ULP = {ulp}
ALLOWANCE = {allowance}
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
    if FAILURE_MODE in ("over-budget", "flushed-subnormal"):  # both: beyond the budget
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


# Arrays with more elements than this are embedded packed (base64 of the raw bytes).
MAX_LITERAL = 1024


def _hex_list(values: np.ndarray) -> str:
    return repr([float(v).hex() for v in np.asarray(values, dtype=np.float64).ravel()])


def _packed(values: np.ndarray) -> str:
    """``_packed(...)`` of a large array: float64 values narrowed to float32 or float16 when
    that is exact, so a float32 weight costs 4 bytes an element."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        narrow = values.astype("<i8")
    else:
        values = values.astype(np.float64)
        narrow = next(
            (values.astype(d) for d in ("<f2", "<f4") if _exact_in(values, d)), values.astype("<f8")
        )
    text = base64.b64encode(narrow.tobytes()).decode("ascii")
    return f"_packed({text!r}, {narrow.dtype.str!r}, {tuple(values.shape)!r})"


def _exact_in(values: np.ndarray, dtype: str) -> bool:
    with np.errstate(over="ignore"):
        return bool(np.array_equal(values.astype(dtype).astype(np.float64), values, equal_nan=True))


def array_literal(values: np.ndarray | None) -> str:
    """Python source that rebuilds ``values`` exactly: ints, float hex, or packed bytes."""
    if values is None:
        return "None"
    values = np.asarray(values)
    if values.size > MAX_LITERAL:
        return _packed(values)
    if values.dtype.kind in "iu":
        ints = values.astype(np.int64).tolist()
        return f"np.array({ints!r}, dtype=np.int64).reshape({values.shape!r})"
    return f"_floats({_hex_list(values)}, {tuple(values.shape)!r})"


def _labels_literal(labels: np.ndarray | None) -> str:
    return array_literal(labels)


def options_literal(options: dict[str, Any]) -> str:
    """The ``OPTIONS`` dict: scalars as they are, arrays as ``array_literal``."""
    if not options:
        return "{}"
    items = []
    for name, value in options.items():
        if isinstance(value, np.ndarray):
            items.append(f"    {name!r}: {array_literal(value)},")
        elif isinstance(value, (np.integer, np.floating)):
            items.append(f"    {name!r}: {value.item()!r},")
        else:
            items.append(f"    {name!r}: {value!r},")
    return "{\n" + "\n".join(items) + "\n}"


def render(facts: dict[str, Any], run_source: str) -> str:
    """The script for ``facts`` (finding fields, input and exact arrays) and a ``run`` source."""
    arrays = ("hi", "lo", "truth", "ulp", "allowance")
    skip = (*arrays, "logits", "labels", "shifted", "options")
    fields = {k: v for k, v in facts.items() if k not in skip}
    fields.update(
        logits=array_literal(facts["logits"]),
        shrunk=facts.get("shrunk", "x".join(map(str, facts["logits"].shape))),
        labels=_labels_literal(facts["labels"]),
        shifted=array_literal(facts.get("shifted")),
        options=options_literal(facts.get("options") or {}),
        **{name: array_literal(np.asarray(facts[name], dtype=np.float64)) for name in arrays},
    )
    return _HEADER.format(**fields) + run_source + _CHECK.format()
