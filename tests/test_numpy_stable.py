"""The project's own max-shifted NumPy formulas (``numpy:stable.*``, ``numpy:head.*``) are the
maths a careful user writes: finite where the truth is finite, and a class id outside [0, C)
refused rather than wrapped around by NumPy's negative indexing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xentbench.adapters.base import Call
from xentbench.adapters.numpy_adapter import NumpyAdapter
from xentbench.suites.cli import main
from xentbench.suites.store.rows import load

ADAPTER = NumpyAdapter()


def _call(name: str, dtype: str, logits, labels, options=None) -> np.ndarray:
    call = Call(ADAPTER.implementation(name), dtype, options=dict(options or {}))
    return ADAPTER.prepare(call, logits, labels)()


@pytest.mark.parametrize(
    "name", ["numpy:stable.softmax_cross_entropy", "numpy:head.softmax_cross_entropy"]
)
def test_soft_cross_entropy_on_logits_spanning_the_range_is_finite(name):
    big = float(np.finfo(np.float32).max)
    logits = np.array([[0.9 * big, -0.9 * big, 0.0]], np.float32)
    labels = np.array([[0.5, 0.25, 0.25]], np.float32)
    # 0.25 (L + 0.9 max) + 0.25 L with L = 0.9 max - x_0 (= 0): 0.25 * 1.8 max + 0.25 * 0.9 max
    np.testing.assert_allclose(_call(name, "float32", logits, labels), [0.675 * big], rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "options"),
    [("numpy:stable.sparse_softmax_cross_entropy", None),
     ("numpy:head.sparse_softmax_cross_entropy", {"temperature": 2.0})],
)  # fmt: skip
def test_a_negative_or_too_large_class_id_raises_instead_of_wrapping(name, options):
    logits = np.arange(8, dtype=np.float32).reshape(2, 4)
    for labels in (np.array([0, -1]), np.array([4, 0])):
        with pytest.raises(IndexError, match=r"\[0, 4\)"):
            _call(name, "float32", logits, labels, options)
    assert np.isfinite(_call(name, "float32", logits, np.array([3, 0]), options)).all()


def test_the_stable_formulas_pass_near_max_and_refuse_a_label_of_minus_one(tmp_path: Path):
    out = tmp_path / "run"
    argv = ["run", "--suite", "accuracy", "--backend", "numpy", "--out", str(out), "--impl"]
    argv += ["numpy:stable.softmax_cross_entropy", "numpy:stable.sparse_softmax_cross_entropy"]
    argv += ["--cases", "softmax_cross_entropy/extreme/near-max"]
    argv += ["sparse_softmax_cross_entropy/soft_labels/label-minus-one"]
    assert main(argv) == 0
    rows = load([out], "accuracy")
    assert set(rows["dtype"]) == {"float16", "bfloat16", "float32", "float64"}
    assert len(rows) == 8 and "wrong" not in set(rows["verdict"])
    # Rounded to float16 or bfloat16 at every step, a 16-bit result may exceed the allowance
    # (float32 internals); in float32 and float64 the formulas pass.
    near_max = rows["case_id"] == "softmax_cross_entropy/extreme/near-max"
    wide = rows[rows["dtype"].isin(["float32", "float64"]) | ~near_max]
    assert (wide["verdict"] == "pass").all(), wide[["case_id", "dtype", "verdict"]]
