"""NumPy and SciPy: the formulas users write by hand, their stable forms, and scipy.special.

NumPy has no autodiff, so every implementation here is value only. ``naive.*`` are the
textbook formulas exactly as people type them (``exp(x) / sum(exp(x))``): they overflow and
return NaN where they do, which is the point of measuring them. ``stable.*`` are the same
maths max-shifted, as a careful user writes it. Both compute in the input dtype with NumPy's
own ufuncs (for bfloat16, the ufuncs ml_dtypes registers, which round every step to bfloat16).
Sparse labels are picked with fancy indexing, ``x[np.arange(n), labels]``, as users do: in the
naive formulas a label past the last class raises IndexError and a negative label silently
wraps around (the lesson); the stable ones check the labels first and raise on either. The
stable soft cross-entropy forms a term whose ``x_i - max`` overflows (logits spanning more than
the dtype's range) as ``y_i (max + log s) - y_i x_i``, where both products are in range.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_dtypes
import numpy as np
import scipy
import scipy.special

from xentbench.adapters._table import TableAdapter
from xentbench.adapters.base import DTYPES, Call, Implementation, PreparedCall
from xentbench.adapters.numpy_head import HEAD_APIS, soft_cross_entropy

Function = Callable[..., np.ndarray]  # (logits, labels), and options for the LLM head


def _shift_by_max(x: np.ndarray) -> np.ndarray:
    """x minus its row max (minus 0 where the max is infinite, as SciPy does)."""
    row_max = np.max(x, axis=-1, keepdims=True)
    return x - np.where(np.isfinite(row_max), row_max, 0)


def _stable_logsumexp(x: np.ndarray) -> np.ndarray:
    row_max = np.max(x, axis=-1)
    shift = np.where(np.isfinite(row_max), row_max, 0)
    return shift + np.log(np.sum(np.exp(x - shift[..., None]), axis=-1))


def _stable_softmax(x: np.ndarray) -> np.ndarray:
    exps = np.exp(_shift_by_max(x))
    return exps / np.sum(exps, axis=-1, keepdims=True)


def _stable_log_softmax(x: np.ndarray) -> np.ndarray:
    # (x - m) - log(sum(exp(x - m))), not x - logsumexp(x): subtracting a rounded logsumexp
    # of 1e4 from x loses every digit below its ulp.
    shifted = _shift_by_max(x)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _checked_labels(labels: np.ndarray, classes: int) -> np.ndarray:
    """The class ids, IndexError for one outside [0, C): NumPy would wrap a negative one."""
    ids = np.asarray(labels)
    if ((ids < 0) | (ids >= classes)).any():
        raise IndexError(f"class ids must lie in [0, {classes})")
    return ids


def _stable_sparse_softmax_cross_entropy(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    ids = _checked_labels(labels, x.shape[-1])
    return -_stable_log_softmax(x)[np.arange(x.shape[0]), ids]


def _stable_sigmoid_cross_entropy(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0) - x * labels + np.log1p(np.exp(-np.abs(x)))


def _naive_softmax(x: np.ndarray) -> np.ndarray:
    exps = np.exp(x)
    return exps / np.sum(exps, axis=-1, keepdims=True)


def _naive_softmax_cross_entropy(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return -np.sum(labels * np.log(_naive_softmax(x)), axis=-1)


def _naive_sparse_softmax_cross_entropy(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return -np.log(_naive_softmax(x)[np.arange(x.shape[0]), labels])


def _naive_sigmoid_cross_entropy(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    sigmoid = 1 / (1 + np.exp(-x))
    return -(labels * np.log(sigmoid) + (1 - labels) * np.log(1 - sigmoid))


# api (as written after "numpy:") -> (op, function of (logits, labels), adaptation)
_APIS: dict[str, tuple[str, Function, str]] = {
    "stable.softmax": (
        "softmax",
        lambda x, _: _stable_softmax(x),
        "exp(x - m) / sum(exp(x - m)), m = row max",
    ),
    "stable.log_softmax": (
        "log_softmax",
        lambda x, _: _stable_log_softmax(x),
        "(x - m) - log(sum(exp(x - m))), m = row max",
    ),
    "stable.logsumexp": (
        "logsumexp",
        lambda x, _: _stable_logsumexp(x),
        "m + log(sum(exp(x - m))), m = row max",
    ),
    "stable.softmax_cross_entropy": (
        "softmax_cross_entropy",
        soft_cross_entropy,
        "-sum(y * log_softmax(x)), log_softmax max-shifted, y_i (m + log s) - y_i x_i where "
        "x_i - m overflows",
    ),
    "stable.sparse_softmax_cross_entropy": (
        "sparse_softmax_cross_entropy",
        _stable_sparse_softmax_cross_entropy,
        "-log_softmax(x)[arange(n), labels], log_softmax max-shifted, labels outside [0, C) "
        "refused",
    ),
    "stable.sigmoid_cross_entropy": (
        "sigmoid_cross_entropy",
        _stable_sigmoid_cross_entropy,
        "max(x, 0) - x * z + log1p(exp(-|x|))",
    ),
    "naive.softmax": ("softmax", lambda x, _: _naive_softmax(x), "exp(x) / sum(exp(x))"),
    "naive.log_softmax": (
        "log_softmax",
        lambda x, _: np.log(_naive_softmax(x)),
        "log(exp(x) / sum(exp(x)))",
    ),
    "naive.logsumexp": (
        "logsumexp",
        lambda x, _: np.log(np.sum(np.exp(x), axis=-1)),
        "log(sum(exp(x)))",
    ),
    "naive.softmax_cross_entropy": (
        "softmax_cross_entropy",
        _naive_softmax_cross_entropy,
        "-sum(y * log(softmax(x))), softmax = exp(x) / sum(exp(x))",
    ),
    "naive.sparse_softmax_cross_entropy": (
        "sparse_softmax_cross_entropy",
        _naive_sparse_softmax_cross_entropy,
        "-log(softmax(x)[arange(n), labels]), softmax = exp(x) / sum(exp(x))",
    ),
    "naive.sigmoid_cross_entropy": (
        "sigmoid_cross_entropy",
        _naive_sigmoid_cross_entropy,
        "-(z * log(s) + (1 - z) * log(1 - s)), s = 1 / (1 + exp(-x))",
    ),
    "scipy.special.softmax": ("softmax", lambda x, _: scipy.special.softmax(x, axis=-1), ""),
    "scipy.special.log_softmax": (
        "log_softmax",
        lambda x, _: scipy.special.log_softmax(x, axis=-1),
        "",
    ),
    "scipy.special.logsumexp": (
        "logsumexp",
        lambda x, _: scipy.special.logsumexp(x, axis=-1),
        "",
    ),
}


def _adaptation(api: str, formula: str) -> str:
    if api.startswith("scipy."):
        return ""
    kind = "naive" if api.startswith("naive.") else "max-shifted"
    return f"hand-written NumPy ({kind}): {formula}"


class NumpyAdapter(TableAdapter):
    """NumPy/SciPy formulas, value only, eager, CPU, every dtype NumPy (with ml_dtypes) has."""

    name = "numpy"

    def version(self) -> str:
        # bfloat16 arrays are ml_dtypes' type, which NumPy and SciPy code paths must accept.
        return (
            f"numpy {np.__version__}, scipy {scipy.__version__}, ml_dtypes {ml_dtypes.__version__}"
        )

    def entries(self) -> list[tuple[Implementation, Function]]:
        return [
            (
                Implementation(
                    name=f"numpy:{api}",
                    op=op,
                    dtypes=DTYPES,
                    adaptation=_adaptation(api, formula),
                    baseline=api.startswith("naive."),  # the naive formulas are the lesson
                ),
                function,
            )
            for api, (op, function, formula) in _APIS.items()
        ] + [
            (
                Implementation(
                    name=f"numpy:{api}",
                    op=op,
                    dtypes=("float32", "float64"),
                    adaptation=f"hand-written NumPy (LLM head, in the input dtype): {formula}",
                    options=options,
                ),
                function,
            )
            for api, (op, function, options, formula) in HEAD_APIS.items()
        ]

    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        """Bind the inputs; ``run`` evaluates the formula with floating-point warnings silenced."""
        function = self.function(call)
        head = call.implementation.api in HEAD_APIS  # the LLM head's compositions take options

        def run() -> np.ndarray:
            # Overflow and 0 * inf are what the naive formulas are measured on, not noise to print.
            with np.errstate(all="ignore"):
                return function(logits, labels, call.options) if head else function(logits, labels)

        return PreparedCall(run=run, to_numpy=np.asarray)
