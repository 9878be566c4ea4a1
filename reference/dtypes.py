"""The floating-point dtypes xentbench knows, by canonical name: the one place they are looked up.

bfloat16 comes from ml_dtypes (NumPy has none); ml_dtypes' ``finfo`` also knows it, which
``np.finfo`` does not. Everything that needs a dtype by name, adapters included, asks here.
"""

from __future__ import annotations

import math
from typing import Any

import ml_dtypes
import numpy as np

DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")
BFLOAT16: np.dtype = np.dtype(ml_dtypes.bfloat16)


def numpy_dtype(dtype: str | np.dtype | type) -> np.dtype:
    """The NumPy dtype for a canonical name (or a dtype, returned as it is)."""
    if isinstance(dtype, str):
        if dtype == "bfloat16":
            return BFLOAT16
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    return np.dtype(dtype)


def finfo(dtype: str | np.dtype) -> Any:
    """The float limits of a dtype by name or dtype, bfloat16 included."""
    return ml_dtypes.finfo(numpy_dtype(dtype))


def unit_roundoff(dtype: str | np.dtype) -> float:
    """u = 2^-p for p significand bits: 2^-11 f16, 2^-8 bf16, 2^-24 f32, 2^-53 f64."""
    return math.ldexp(1.0, -(finfo(dtype).nmant + 1))
