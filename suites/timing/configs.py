"""Timing configurations: the plain call, cross-entropy as LLM training calls it, and the LLM
head.

The plain configuration times each API with no options (per-row losses, the gradient of their
sum). LLM training calls sparse cross-entropy differently: ``reduction="mean"`` over the
non-ignored positions, padding labelled ``ignore_index`` (here a quarter of the rows, a
typical share of padding in packed-but-ragged batches) and ``label_smoothing=0.1``; the
optimiser wants the value and the gradient. ``TRAINING`` is that configuration. Only an
implementation that declares every one of its options, with these values, is timed in it
(``Adapter.unsupported_reason`` decides, the one place capabilities are checked); one that
declares some but not all gets an ``unsupported`` row naming what it lacks, and one that
declares none is left out. Nothing is emulated: a framework without label smoothing is not
timed with a hand-written smoothing around it.

``HEAD`` is the language-model head's loss as trained: the final logits soft-capped at 30
(Gemma 2) and a z-loss of 1e-4 (PaLM). Every cross-entropy declaring ``softcap`` is timed with
the ``HEAD`` options it declares. A composition of the head around another API
(``adapters.base.HEAD_COMPOSITION``) is never timed plain: that call is the API it wraps, timed
under the API's own name (so the softmax ops' compositions, which take no z-loss and whose
soft-cap costs what the loss's does, are not timed at all).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from xentbench.adapters.base import HEAD_COMPOSITION, Call, Implementation
from xentbench.reference.options import canonical

TRAINING_OP = "sparse_softmax_cross_entropy"
IGNORE_INDEX = -100  # torch's default ignore_index, as LLM code leaves it
IGNORED_SHARE = 0.25
TRAINING: dict[str, Any] = {
    "reduction": "mean",
    "ignore_index": IGNORE_INDEX,
    "label_smoothing": 0.1,
}
HEAD: dict[str, Any] = {"softcap": 30.0, "z_loss": 1e-4}
HEAD_OPS = ("softmax_cross_entropy", "sparse_softmax_cross_entropy")
_PADDING_STREAM = 7  # the seed stream of the padded rows, apart from inputs.py's input streams


def wants_training(impl: Implementation) -> bool:
    """Whether ``impl`` gets rows in the training configuration: the sparse cross-entropy
    declaring at least one of its options (rows it cannot take say ``unsupported``)."""
    return impl.op == TRAINING_OP and bool(set(TRAINING) & set(impl.options))


def training_calls(plain_calls: list[Call]) -> list[Call]:
    """The training-configuration twin of each plain call of a ``wants_training`` implementation."""
    return [
        dataclasses.replace(call, options=dict(TRAINING))
        for call in plain_calls
        if wants_training(call.implementation)
    ]


def head_options(impl: Implementation) -> dict[str, Any]:
    """The ``HEAD`` options a cross-entropy ``impl`` declares; {} for another op or where it
    declares no ``softcap``."""
    if impl.op not in HEAD_OPS or "softcap" not in impl.options:
        return {}
    return {name: value for name, value in HEAD.items() if name in impl.options}


def head_calls(plain_calls: list[Call]) -> list[Call]:
    """The head-configuration twin of each plain call of a cross-entropy declaring ``softcap``."""
    return [
        dataclasses.replace(call, options=head_options(call.implementation))
        for call in plain_calls
        if head_options(call.implementation)
    ]


def is_timed(call: Call) -> bool:
    """Whether a call is timed: every configured call, and the plain call of all but the head's
    compositions (the API they wrap, timed under its own name)."""
    return bool(call.options) or not call.implementation.adaptation.startswith(HEAD_COMPOSITION)


def options_label(call: Call) -> str:
    """The ``options`` column: ``reference.options.canonical`` of the call's options ("" plain)."""
    return canonical(call.options)


def reduces_rows(call: Call) -> bool:
    """Whether the call's value is one number for the batch (a reduction other than "none")."""
    return call.options.get("reduction", "none") != "none"


def padded(labels: np.ndarray, options: dict[str, Any], seed: int) -> np.ndarray:
    """``labels`` with ``IGNORED_SHARE`` of the rows (rounded down; chosen by a seeded
    permutation, so the same rows in every run) set to the call's ``ignore_index``; unchanged
    for a call without one."""
    if "ignore_index" not in options:
        return labels
    rows = labels.shape[0]
    rng = np.random.default_rng([seed, rows, _PADDING_STREAM])
    ignored = rng.permutation(rows)[: int(rows * IGNORED_SHARE)]
    labels = labels.copy()
    labels[ignored] = options["ignore_index"]
    return labels
