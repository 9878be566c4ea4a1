"""Small NumPy helpers shared by adapters whose framework cannot take ml_dtypes.bfloat16 arrays."""

from __future__ import annotations

import numpy as np

from xentbench.reference.dtypes import BFLOAT16


def is_bfloat16(array: np.ndarray) -> bool:
    """Whether ``array`` holds ml_dtypes.bfloat16 values."""
    return array.dtype == BFLOAT16


def widen_bfloat16(array: np.ndarray) -> np.ndarray:
    """bfloat16 -> float32 (exact: every bfloat16 is a float32); other dtypes unchanged."""
    return array.astype(np.float32) if is_bfloat16(array) else array


def narrow_to_bfloat16(array: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16, exact for values that were bfloat16 (a framework's bfloat16 output)."""
    return array.astype(BFLOAT16)


def bfloat16_from_bits(bits: np.ndarray) -> np.ndarray:
    """Reinterpret raw uint16 bit patterns as bfloat16 (for buffers read as plain bytes)."""
    return bits.astype(np.uint16, copy=False).view(BFLOAT16)
