"""Error-free matrix products by Ozaki splitting: the exact logits and gradients of the linear op.

Ozaki, Ogita, Oishi & Rump, "Error-free transformations of matrix multiplication by using fast
routines of matrix multiplication", Numer. Algorithms 59, 2012: every row of an operand is cut
into slices of beta bits on a grid set by the row's largest element, beta = floor((53 -
ceil(log2 d)) / 2), so each float64 BLAS product of two slices is exact (integers below 2^53 on
one grid per output element); the slice products are summed with TwoSum into hi + lo and a
rigorous bound on what is left (``Enclosure``). ``reference.linear`` builds on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import xentbench.reference.dd as dd

EXACT_SLICES = 200  # slices of an exact operand: stops when the remainder is zero
APPROX_SLICES = (6, 3)  # slices of G_hi and G_lo: remainder below 2^-100 of the row's max
BLOCK_ELEMENTS = 1 << 23  # columns of the right operand per block: bounded temporaries


@dataclass(frozen=True)
class Enclosure:
    """hi + lo with |true value - (hi + lo)| <= err, elementwise (float64 arrays)."""

    hi: np.ndarray
    lo: np.ndarray
    err: np.ndarray


def slice_bits(length: int) -> int:
    """beta with length * 2^(2 beta) <= 2^53: sums of slice products are exact in float64."""
    return (53 - math.ceil(math.log2(max(length, 2)))) // 2


def split_rows(a: np.ndarray, beta: int, limit: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Slices of a's rows and the remainder: a = sum(slices) + rest, exactly.

    Slice s of row r holds integers below 2^beta times 2^(top_r - beta s), top_r the exponent
    with max|a_r| < 2^top_r: rest / grid and trunc are exact, so is rest - piece.
    """
    top = np.frexp(np.abs(a).max(axis=1))[1]
    rest = np.array(a, dtype=np.float64, copy=True)
    slices = []
    for step in range(1, limit + 1):
        if not rest.any():
            break
        grid = np.ldexp(1.0, np.maximum(top - beta * step, -1074))[:, None]
        piece = np.trunc(rest / grid) * grid
        rest -= piece
        slices.append(piece)
    return slices, rest


class _ExactSum:
    """Sum of exact float64 arrays: hi by TwoSum (exact), lo collects the errors with a bound."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.hi, self.lo, self.err = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        self.count = 0

    def add(self, term: np.ndarray) -> None:
        self.hi, carry = dd.two_sum(self.hi, term)
        self.lo = self.lo + carry
        self.err += np.abs(self.lo) * dd.U  # RN error of lo + carry (2^-1075 more if subnormal)
        self.count += 1

    def result(self, extra: np.ndarray | float = 0.0) -> Enclosure:
        hi, lo = dd.two_sum(self.hi, self.lo)
        inflation = 1 + (self.count + 4) * 2.0**-52  # the bound's own float sums
        # The subnormal allowance is added once: subnormal arithmetic in the loop is ~100x slower.
        return Enclosure(hi, lo, (self.err + extra) * inflation + self.count * 2.0**-1074)


def _row_scale(a: np.ndarray) -> np.ndarray:
    """Per row, the exponent of a power of two bringing the row's max into [1/2, 1)."""
    return np.frexp(np.abs(a).max(axis=1))[1]


def _scaled(a: np.ndarray, exponent: np.ndarray, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """a * 2^-exponent per row, and what the scaling lost (subnormal results only)."""
    scaled = np.ldexp(a, -exponent[:, None])
    lost = np.abs(a - np.ldexp(scaled, exponent[:, None]))
    if exact and lost.any():
        raise ValueError("linear_cross_entropy inputs span too wide a range for exact products")
    return scaled, lost


def product(parts: list[np.ndarray], b: np.ndarray, a_err: np.ndarray | None = None) -> Enclosure:
    """sum(parts) @ b enclosed: parts approximate A ([M, K], absolute error a_err), b exact.

    Rows of A and columns of b are first scaled by powers of two to a max in [1/2, 1), so slice
    products neither underflow nor overflow (probabilities of e^-700 included); the results
    are scaled back. Exact parts (a_err None) are split until nothing is left; approximate ones
    into APPROX_SLICES, the remainder joining a_err. What is not multiplied exactly is bounded
    by (|rest| + a_err) @ |b|, inflated by gamma_K (Higham, Accuracy and Stability, Thm 3.5).
    """
    a_shape, length = parts[0].shape, b.shape[0]
    beta = slice_bits(length)
    exact_parts = a_err is None
    a_exponent = _row_scale(parts[0])
    # The loose part is kept in scaled units: subnormal arithmetic (and BLAS on it) is ~100x
    # slower. Scaling a bound down may round it: 2^-1074 more covers that.
    loose = np.zeros(a_shape)
    if not exact_parts:
        loose = np.ldexp(np.asarray(a_err, np.float64), -a_exponent[:, None]) + 2.0**-1074
    slices = []
    for index, part in enumerate(parts):
        limit = EXACT_SLICES if exact_parts else APPROX_SLICES[min(index, 1)]
        scaled, lost = _scaled(part, a_exponent, exact_parts)
        part_slices, rest = split_rows(scaled, beta, limit)
        slices += part_slices
        loose += np.abs(rest) + (np.ldexp(lost, -a_exponent[:, None]) if lost.any() else 0.0)
    columns = max(1, BLOCK_ELEMENTS // max(length, 1))
    out = [np.empty((a_shape[0], b.shape[1])) for _ in range(3)]
    for start in range(0, b.shape[1], columns):
        block = slice(start, start + columns)
        b_block = np.asarray(b[:, block], np.float64)
        b_exponent = _row_scale(b_block.T)
        b_scaled = _scaled(b_block.T, b_exponent, True)[0]
        b_slices, b_rest = split_rows(b_scaled, beta, EXACT_SLICES)
        if b_rest.any():
            raise ValueError("an exact operand did not split within EXACT_SLICES slices")
        _check_range(slices, b_slices, beta)
        total = _ExactSum((a_shape[0], b_block.shape[1]))
        for a_slice in slices:
            for b_slice in b_slices:
                total.add(a_slice @ b_slice.T)
        bound = loose @ np.abs(b_scaled.T) * (1 + (length + 2) * 2.0**-52)
        enclosed = total.result(bound)
        exponent = a_exponent[:, None] + b_exponent[None, :]
        hi, lo, err = (np.ldexp(v, exponent) for v in (enclosed.hi, enclosed.lo, enclosed.err))
        # Scaling back rounds only subnormal results (by at most 2^-1075 each: hi, lo, err).
        err += np.where(np.abs(hi) < 2.0**-1021, 2.0**-1072, 0.0)
        for target, array in zip(out, (hi, lo, err), strict=True):
            target[:, block] = array
    return Enclosure(*out)


def _check_range(a_slices: list[np.ndarray], b_slices: list[np.ndarray], beta: int) -> None:
    """Slice products must neither overflow nor reach below the float64 grid 2^-1074."""
    if not a_slices or not b_slices:
        return
    low = [np.frexp(np.abs(s[s != 0]).min())[1] for s in (a_slices[-1], b_slices[-1]) if s.any()]
    high = [np.frexp(np.abs(s).max())[1] for s in (a_slices[0], b_slices[0])]
    if sum(high) + 64 > 1023 or (len(low) == 2 and sum(low) - 2 * beta < -1074):
        raise ValueError("linear_cross_entropy inputs too large or too small for exact products")


def exact_logits(hidden: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> Enclosure:
    """z = X W^T + b enclosed (hi + lo within err ~ 2^-106 |z|; the products are exact)."""
    z = product([hidden], weight.T)
    if bias is None:
        return z
    total = _ExactSum(z.hi.shape)
    for term in (z.hi, z.lo, np.broadcast_to(bias, z.hi.shape)):
        total.add(term)
    return total.result(z.err)
