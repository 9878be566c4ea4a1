"""What a run evaluates: ops, dtypes, devices, modes, implementations, cases and shapes."""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass
from typing import Any

from xentbench.adapters.base import DTYPES, OPS, Call, Implementation

# Timing grid (batch, classes): from a single row to LLM-sized vocabularies.
DEFAULT_SHAPES: tuple[tuple[int, int], ...] = (
    (1, 1000),
    (64, 1000),
    (256, 32000),
    (32, 128000),
    (8, 256000),
)


@dataclass(frozen=True)
class Selection:
    """The filters of one run; every field is explicit (the CLI fills in the defaults)."""

    ops: tuple[str, ...] = OPS
    dtypes: tuple[str, ...] = DTYPES
    devices: tuple[str, ...] = ("cpu",)
    modes: tuple[str, ...] = ("eager",)
    implementations: tuple[str, ...] = ("*",)
    cases: tuple[str, ...] = ("*",)
    shapes: tuple[tuple[int, int], ...] = DEFAULT_SHAPES
    seed: int = 0
    # Call options every call passes, (name, scalar) pairs beneath a case's own options
    # (``xentbench verify --label-smoothing 0.1``); the reference takes the same values.
    options: tuple[tuple[str, Any], ...] = ()
    shard: tuple[int, int] = (1, 1)  # (I, N): this run evaluates part I of N (``in_shard``)

    def in_shard(self, key: tuple) -> bool:
        """Whether the task of ``key`` belongs to this run's shard: a stable hash of the key,
        so each task lands in the same part on every machine, whatever the plan's order."""
        return in_part(key, self.shard)

    def wants_implementation(self, impl: Implementation) -> bool:
        return impl.op in self.ops and any(
            fnmatch.fnmatchcase(impl.name, pattern) for pattern in self.implementations
        )

    def wants_case(self, case_id: str) -> bool:
        return any(fnmatch.fnmatchcase(case_id, pattern) for pattern in self.cases)

    def calls(self, impl: Implementation, quantities: tuple[str, ...]) -> list[Call]:
        """Every (dtype, device, mode, quantity) call of ``impl`` this selection asks for."""
        return [
            Call(impl, dtype, device, mode, quantity)
            for dtype in self.dtypes
            for device in self.devices
            for mode in self.modes
            for quantity in quantities
            if quantity in impl.quantities
        ]


def in_part(key: tuple, part: tuple[int, int], salt: str = "") -> bool:
    """Whether the task of ``key`` is in part I of N (``part``) by a stable hash of the key.
    A ``salt`` draws an independent split, so the parts of a shard are even too."""
    index, count = part
    if count == 1:
        return True
    text = "\x1f".join(map(str, (*key, salt) if salt else key)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") % count == index - 1
