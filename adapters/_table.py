"""The one shape of a built-in adapter: a table of implementations, each with the function
that calls the framework, plus the compile cache the compiling backends share.

A module declares ``entries()``: ``(Implementation, function)`` pairs, the function taking the
framework's logits and labels and returning the op's output. ``TableAdapter`` answers
``implementations()`` from the table and finds a call's function by ``Implementation.api``;
``compiled`` wraps it once per key with the backend's compiler (``torch.compile``,
``jax.jit``, ``tf.function(jit_compile=True)``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from xentbench.adapters.base import DEVICES, DTYPES, MODES, Adapter, Call, Implementation

Function = Callable[[Any, Any], Any]

# Op names the adapters' tables use often.
SOFT_CE = "softmax_cross_entropy"
SPARSE_CE = "sparse_softmax_cross_entropy"
SIGMOID_CE = "sigmoid_cross_entropy"


def everywhere(backend: str, name: str, op: str, **fields: Any) -> Implementation:
    """``backend:name`` declared for every dtype, mode and device; ``fields`` add the rest."""
    return Implementation(
        name=f"{backend}:{name}", op=op, dtypes=DTYPES, modes=MODES, devices=DEVICES, **fields
    )


# One row of a plugin's API table: op, function, options, option values, adaptation.
ApiRow = tuple[str, Function, tuple[str, ...], tuple, str]


def api_table_entries(
    backend: str, apis: dict[str, ApiRow], dtypes: tuple[str, ...]
) -> list[tuple[Implementation, Function]]:
    """``apis`` declared for ``dtypes``, eager and compiled, with gradients: the table of a
    plugin whose every API takes the same dtypes and modes."""
    return [
        (
            Implementation(
                name=f"{backend}:{api}",
                op=op,
                dtypes=dtypes,
                modes=("eager", "compiled"),
                gradient=True,
                options=options,
                option_values=values,
                adaptation=adaptation,
            ),
            function,
        )
        for api, (op, function, options, values, adaptation) in apis.items()
    ]


class TableAdapter(Adapter):
    """An adapter whose implementations are a table ``api -> (Implementation, function)``."""

    def __init__(self) -> None:
        self._table = {impl.api: (impl, function) for impl, function in self.entries()}
        self._compiled: dict[tuple, Function] = {}

    @abstractmethod
    def entries(self) -> Iterable[tuple[Implementation, Function]]:
        """Every implementation with the function that calls it."""

    def implementations(self) -> tuple[Implementation, ...]:
        return tuple(impl for impl, _ in self._table.values())

    def function(self, call: Call) -> Function:
        """The function behind ``call``'s implementation, as declared (eager, value)."""
        return self._table[call.implementation.api][1]

    def compiled(self, key: tuple, function: Function, compile_: Callable[[Function], Function]):
        """``compile_(function)``, made once per ``key`` and reused after."""
        if key not in self._compiled:
            self._compiled[key] = compile_(function)
        return self._compiled[key]
