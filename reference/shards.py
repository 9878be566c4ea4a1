"""Vocabulary-parallel cross-entropy: the classes split into ``shards`` contiguous slices, as
Megatron's ``vocab_parallel_cross_entropy`` holds them on k tensor-parallel ranks.

The option changes the algorithm, not the maths: per shard a max and a sum of exponentials,
the global max and sum through partial reductions, the target logit from the shard holding the
label, label smoothing summed per shard. The exact value is the unsharded loss's, so the
reference computes that and only checks the count. The split is NumPy's ``array_split``: with
``C = q k + r``, the first ``r`` shards hold ``q + 1`` classes and the others ``q`` (uneven
splits allowed; Megatron pads V to a multiple of k instead), shard ``s`` holding the classes
``[start_s, start_s + size_s)``.
"""

from __future__ import annotations

import numbers
from typing import Any

OP = "sparse_softmax_cross_entropy"  # the op that takes the option (Megatron's: class ids)
SPLIT_RULE = (
    "numpy.array_split: C = q*k + r classes give the first r shards q + 1 classes and the "
    "others q, in order"
)


def bounds(classes: int, shards: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each shard's classes under ``SPLIT_RULE``."""
    quotient, remainder = classes // shards, classes % shards  # not divmod: torch.compile
    out, start = [], 0
    for index in range(shards):
        stop = start + quotient + (index < remainder)
        out.append((start, stop))
        start = stop
    return out


def validate(options: dict[str, Any], classes: int) -> None:
    """ValueError naming a shard count that is not an integer in ``[1, classes]``."""
    if "shards" not in options:
        return
    value = options["shards"]
    exact = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not exact or not 1 <= int(value) <= classes:
        raise ValueError(
            f"shards {value} is invalid: an integer from 1 to the {classes} classes "
            "(each shard holds at least one class)"
        )
