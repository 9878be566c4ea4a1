"""``xentbench check --op linear_cross_entropy``: the user's hidden, classifier and labels.

The linear op takes hidden states ``[N, d]`` (``--hidden``), the classifier matrix ``[C, d]``
(``--classifier``; ``--weights`` stays the class weights of the other ops) and integer labels
``[N]``, with an optional bias ``[C]`` and ``--ignore-index``. They are refused here (one line,
exit 2) when they cannot be the op's input, before any framework sees them; the arrays travel
as the accuracy suite's do: hidden in the logits' place, the rest in ``Call.options``.
"""

from __future__ import annotations

import numpy as np

from xentbench.adapters.base import DTYPES, LINEAR_OP
from xentbench.suites.cli.usage import UsageError

# check's option flags the linear op takes (reference.linear.OPTIONS), and those it does not.
TAKES = ("--classifier", "--bias", "--ignore-index", "--softcap", "--temperature", "--z-loss")
REFUSED = {
    "reduction": "--reduction",
    "label_smoothing": "--label-smoothing",
    "class_weight": "--weights",
    "sample_weight": "--sample-weights",
    "class_axis": "--class-axis",
    "cotangent": "--cotangent",
    "tangent": "--tangent",
    "shards": "--shards",
}


def _float_matrix(array: np.ndarray, flag: str, ndim: int) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind != "f" and array.dtype.name != "bfloat16":
        raise UsageError(
            f"{flag} has dtype {array.dtype}; valid: real floats ({', '.join(DTYPES)})"
        )
    if array.ndim != ndim or array.size == 0:
        shape = "[N, d]" if flag == "--hidden" else "[C, d]" if ndim == 2 else "[C]"
        raise UsageError(f"{flag} has shape {array.shape}; valid: a non-empty {shape} array")
    return array


def normalise_linear(hidden, classifier, bias, labels, ignore_index: int | None) -> tuple:
    """(hidden [N, d], int64 labels [N], options {weight, bias?, ignore_index?}), or UsageError."""
    if hidden is None or classifier is None:
        missing = "--hidden" if hidden is None else "--classifier"
        raise UsageError(
            f"{LINEAR_OP} needs {missing} (a .npy file); valid: --hidden X.npy "
            "--classifier W.npy --labels y.npy [--bias B.npy]"
        )
    hidden = _float_matrix(hidden, "--hidden", 2)
    weight = _float_matrix(classifier, "--classifier", 2)
    if weight.shape[1] != hidden.shape[1]:
        raise UsageError(
            f"--classifier of shape {weight.shape} does not match --hidden of shape "
            f"{hidden.shape}; valid: [C, {hidden.shape[1]}]"
        )
    options: dict[str, object] = {"weight": weight}
    if bias is not None:
        bias = _float_matrix(bias, "--bias", 1)
        if bias.shape != (weight.shape[0],):
            raise UsageError(f"--bias has shape {bias.shape}; valid: ({weight.shape[0]},)")
        options["bias"] = bias
    if ignore_index is not None:
        options["ignore_index"] = int(ignore_index)
    return hidden, _labels(labels, hidden.shape[0], weight.shape[0], ignore_index), options


def _labels(labels, rows: int, classes: int, ignore_index: int | None) -> np.ndarray:
    if labels is None:
        raise UsageError(
            f"{LINEAR_OP} needs --labels (a .npy file of {rows} class ids); none given"
        )
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.shape != (rows,):
        raise UsageError(
            f"--labels of dtype {labels.dtype} and shape {labels.shape}; valid: {rows} integer "
            f"class ids in [0, {classes})"
        )
    active = labels != ignore_index if ignore_index is not None else np.ones(rows, bool)
    bad = active & ((labels < 0) | (labels >= classes))
    if bad.any():
        extra = "" if ignore_index is None else f" or --ignore-index {ignore_index}"
        raise UsageError(
            f"label {labels[bad][0]} is outside [0, {classes}); valid: [0, {classes}){extra}"
        )
    return labels.astype(np.int64)


def refuse_other_options(options: dict) -> None:
    """One line naming an option the linear op does not take (reference.linear.OPTIONS)."""
    for name in options:
        if name in REFUSED:
            valid = ", ".join(TAKES)
            raise UsageError(f"{REFUSED[name]} is not an option of {LINEAR_OP}; valid: {valid}")
