"""One user function as a backend: what ``xentbench verify file.py:function`` checks.

The function takes the op's inputs as the canonical op defines them (logits ``[N, C]``, plus
labels where the op has them) as NumPy arrays, or torch / JAX tensors, and returns the op's
output (per row for the cross-entropies). Its gradient comes from the framework's autograd
(torch, JAX) or from a second function ``grad_fn(logits, [labels,] cotangent)`` returning
d/dlogits. Call options are passed as keyword arguments: the names the user declares
(``Target.options``, values from the catalog's options cases) and the values the user gives
(``Target.values``, every call, e.g. ``label_smoothing=0.1``).

The adapter is configured by the environment variable ``XENTBENCH_VERIFY`` (a JSON
``Target``), which ``xentbench verify`` gives the worker process it starts, so the runner's
process isolation, per-task timeout, crash records and resume apply to the function as to any
backend. It never fixes the function: what it returns is converted to NumPy, and a non-array,
another dtype or a call that outlasts ``timeout_s`` raises (an ``error`` verdict saying so);
after ``GIVE_UP_AFTER`` such calls in a row the function is no longer called.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xentbench.adapters import function_arrays
from xentbench.adapters.base import (
    COTANGENT_ONLY_OPS,
    DTYPES,
    GRADIENT_OPS,
    LABELLED_OPS,
    Adapter,
    Call,
    Implementation,
    PreparedCall,
)
from xentbench.reference.dtypes import BFLOAT16, numpy_dtype
from xentbench.reference.evaluate import output_shape

BACKEND = "verify"  # the reserved backend name (``adapters.registry.RESERVED``)
ENV_VAR = "XENTBENCH_VERIFY"
ARRAY_KINDS: tuple[str, ...] = ("numpy", "torch", "jax")
# After this many calls in a row outlast the timeout, the function is not called again in this
# worker (each later call an ``error`` saying so): a hanging kernel costs a few timeouts, not
# one per case.
GIVE_UP_AFTER = 3
# Call options a function may declare it takes (keyword arguments, values from the catalog's
# options family); the class axis, cotangents and tangents are not keyword arguments here.
KEYWORD_OPTIONS: tuple[str, ...] = (
    "reduction",
    "ignore_index",
    "label_smoothing",
    "class_weight",
    "sample_weight",
    "softcap",
    "temperature",
    "z_loss",
    "shards",
)


class TargetError(ValueError):
    """A target that cannot be loaded: the message names the bad value and the valid ones."""


class WrongOutput(TypeError):
    """The function returned something other than an array of the call's dtype."""


class CallTimedOut(Exception):
    """The function did not return within the per-call timeout."""


@dataclass(frozen=True)
class Target:
    """What to verify: ``spec`` (``path/to/file.py:function`` or ``module:function``), the op,
    the array kind, the gradient function's name ("" for autograd, None for no gradient), the
    keyword options it takes, the option values every call passes (name, scalar) pairs, its
    dtypes, and the seconds one call may take."""

    spec: str
    op: str
    array: str = "numpy"
    grad: bool = False
    grad_fn: str = ""
    options: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = DTYPES
    timeout_s: float = 30.0
    device: str = "cpu"
    values: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Target:
        fields = json.loads(text)
        for name in ("options", "dtypes"):
            fields[name] = tuple(fields[name])
        fields["values"] = tuple(tuple(pair) for pair in fields.get("values", ()))
        return cls(**fields)

    @property
    def function_name(self) -> str:
        return self.spec.rpartition(":")[2]


def _module_of(spec: str):
    """The module a spec names: a ``.py`` file (its folder on ``sys.path`` for its own
    imports) or an importable module."""
    where, colon, name = spec.rpartition(":")
    if not colon or not where or not name:
        raise TargetError(
            f"invalid target {spec!r}; valid: path/to/file.py:function or module:function"
        )
    if where.endswith(".py"):
        path = Path(where).resolve()
        if not path.is_file():
            raise TargetError(f"no file {where!r} (target {spec!r})")
        module_name = f"xentbench_verify_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
        if module_name in sys.modules:  # the gradient function's module: loaded once
            return sys.modules[module_name]
        sys.path.insert(0, str(path.parent))
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module
        loader.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path:  # as ``python -m``: modules of the current directory
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(where)


def load_function(spec: str, name: str = "") -> Callable[..., Any]:
    """The function ``spec`` names, or its module's function ``name`` (the gradient function);
    ``TargetError`` in one line for a missing file, module or function, or a failed import."""
    try:
        module = _module_of(spec)
    except TargetError:
        raise
    except Exception as exc:  # the user's module failed to import: say so in one line
        raise TargetError(
            f"cannot import {spec.rpartition(':')[0]!r}: {type(exc).__name__}: {exc}"
        ) from None
    wanted = name or spec.rpartition(":")[2]
    function = getattr(module, wanted, None)
    if not callable(function):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        where = spec.rpartition(":")[0]
        raise TargetError(
            f"no function {wanted!r} in {where!r}; valid: {', '.join(found) or 'none'}"
        )
    return function


def source_hash(spec: str) -> str:
    """A short hash of the target's file (or module file): a changed kernel is a new version."""
    where = spec.rpartition(":")[0]
    path = Path(where) if where.endswith(".py") else None
    if path is None:
        found = importlib.util.find_spec(where)
        path = Path(found.origin) if found and found.origin else None
    if path is None or not path.is_file():
        return "unknown"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise ``CallTimedOut`` in this (main) thread after ``seconds`` (a hang in Python code;
    the runner's task timeout kills a worker stuck in native code)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def expire(signum, frame):
        raise CallTimedOut(f"the call did not return within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class FunctionAdapter(Adapter):
    """The backend ``verify``: one implementation, ``verify:<function>``, the user's function."""

    name = BACKEND

    def __init__(self, target: Target | None = None) -> None:
        if target is None:
            text = os.environ.get(ENV_VAR)
            if not text:
                raise TargetError(
                    f"backend {BACKEND!r} is configured by xentbench verify ({ENV_VAR} unset)"
                )
            target = Target.from_json(text)
        self.target = target
        self.function = load_function(target.spec)
        self.grad_function = load_function(target.spec, target.grad_fn) if target.grad_fn else None
        self.arrays = function_arrays.kind(target.array)
        self.hung = 0  # calls in a row that outlasted the timeout (``GIVE_UP_AFTER``)

    def version(self) -> str:
        """The file's content hash, the array kind and the option values: rows of another
        version of the kernel, or of other values, are never mixed in one run directory."""
        target = self.target
        values = "".join(f", {name}={value}" for name, value in target.values)
        return f"{target.spec} sha256:{source_hash(target.spec)} ({target.array}{values})"

    def devices(self) -> tuple[str, ...]:
        return self.arrays.devices()

    def implementations(self) -> tuple[Implementation, ...]:
        target = self.target
        gradient = target.grad and (target.op in GRADIENT_OPS or target.op in COTANGENT_ONLY_OPS)
        cotangent = ("cotangent",) if gradient else ()
        return (
            Implementation(
                name=f"{BACKEND}:{target.function_name}",
                op=target.op,
                dtypes=target.dtypes,
                devices=(target.device,),
                gradient=gradient,
                options=tuple(dict.fromkeys((*target.options, *dict(target.values), *cotangent))),
            ),
        )

    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        op = call.implementation.op
        to = self.arrays.to_array
        x = to(logits, call.device)
        inputs = [x] + ([to(labels, call.device)] if op in LABELLED_OPS else [])
        keywords = {
            name: to(value, call.device) if isinstance(value, np.ndarray) else value
            for name, value in call.options.items()
            if name != "cotangent"
        }
        cotangent = call.options.get("cotangent")
        if call.quantity == "grad" and cotangent is None:
            shape = output_shape(op, "value", logits.shape, call.options)
            cotangent = np.ones(shape, dtype=logits.dtype)
        run = self._runner(call, inputs, keywords, cotangent)
        limit = self.target.timeout_s

        def timed() -> Any:
            if self.hung >= GIVE_UP_AFTER:
                raise CallTimedOut(
                    f"not called: the function did not return within {limit:g} s on "
                    f"{self.hung} calls in a row before this one"
                )
            try:
                with deadline(limit):
                    out = run()
            except CallTimedOut:
                self.hung += 1
                raise
            self.hung = 0
            return out

        return PreparedCall(run=timed, to_numpy=lambda out: self._checked(out, call.dtype))

    def _runner(self, call: Call, inputs: list, keywords: dict, cotangent) -> Callable[[], Any]:
        """The value call, or the gradient through ``grad_fn`` or the framework's autograd."""
        if call.quantity != "grad":
            return lambda: self.function(*inputs, **keywords)
        g = self.arrays.to_array(cotangent, call.device)
        if self.grad_function is not None:
            return lambda: self.grad_function(*inputs, g, **keywords)
        return lambda: self.arrays.vjp(self.function, inputs, keywords, g)

    def _checked(self, out: Any, dtype: str) -> np.ndarray:
        """The output as NumPy, refused (raised) when it is not an array of the call's dtype."""
        array = self.arrays.to_numpy(out)
        if array is None:
            raise WrongOutput(f"the function returned a {type(out).__name__}, not an array")
        if array.dtype != numpy_dtype(dtype):
            shown = "bfloat16" if array.dtype == BFLOAT16 else array.dtype.name
            raise WrongOutput(f"the function returned {shown} for {dtype} inputs")
        return array
