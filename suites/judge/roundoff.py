"""The constants of the error analysis that every bound of the budget uses: the probabilistic
sum's lambda, the safety factor K, the internals' unit roundoff and the per-row constant sigma.

The plain ops' bounds (``suites.judge.budget``), the linear op's (``suites.judge.linear_budget``),
the options' (``suites.judge.option_budget``) and the invariants' tolerances import them from here.
"""

from __future__ import annotations

import math

import numpy as np

from xentbench.reference.dtypes import numpy_dtype, unit_roundoff

# Higham & Mary (2019), Thm 2.4: a product of n factors (1 + delta_k) with independent,
# mean-zero |delta_k| <= u is 1 + theta, |theta| <= lambda*sqrt(n)*u + O(u^2), with probability
# at least 1 - 2 exp(-lambda^2 / 2): lambda = 4 fails with probability 6.7e-4 per sum.
LAMBDA = 4.0
# Safety factor on the first-order analysis: library exp/log/log1p are faithful (< 1 ULP)
# rather than correctly rounded (0.5 ULP), which doubles their terms; it also covers O(u^2).
K = 2.0

# Internals of a good implementation for each output dtype: float32 for the 16-bit dtypes.
ACCUMULATION_DTYPE = {"float16": "float32", "bfloat16": "float32"}


def accumulation_roundoff(dtype: str | np.dtype) -> float:
    """u_acc: the unit roundoff of the internals a good implementation uses for ``dtype``."""
    name = numpy_dtype(dtype).name
    return unit_roundoff(ACCUMULATION_DTYPE.get(name, name))


def sigma(n_classes: int) -> float:
    """The per-row error constant of the shifted algorithms, in units of u.

    lambda*sqrt(C): the sum s of C exponentials (probabilistic bound); ln C: the roundings of
    the shifted logits carried through exp into s, as sum_j p_j |d_j| = H(p) - log s <= ln C;
    ln C: the rounding of log s, with 0 <= log s <= ln C; 3: exp, log and division, one each.
    """
    return LAMBDA * math.sqrt(n_classes) + 2 * math.log(n_classes) + 3
