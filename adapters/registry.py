"""The registry: backend name -> adapter, imported lazily.

Built-in backends are listed once in ``BUILTIN_ADAPTERS``; third-party backends register an
entry point in the group ``xentbench.adapters`` (``name = "package.module:AdapterClass"``).
A backend whose framework cannot be imported is reported as unavailable with the reason,
never as an ImportError; where the framework is an optional extra of the distribution that
registers the backend, it reads as "not installed" with the ``pip install`` that adds it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import re
from dataclasses import dataclass
from importlib.metadata import Distribution, EntryPoint, entry_points

from xentbench.adapters.base import Adapter
from xentbench.adapters.import_noise import quiet_import

ENTRY_POINT_GROUP = "xentbench.adapters"

BUILTIN_ADAPTERS: dict[str, str] = {
    "numpy": "xentbench.adapters.numpy_adapter:NumpyAdapter",
    "torch": "xentbench.adapters.torch_adapter:TorchAdapter",
    "tensorflow": "xentbench.adapters.tensorflow_adapter:TensorflowAdapter",
    "jax": "xentbench.adapters.jax_adapter:JaxAdapter",
    "onnxruntime": "xentbench.adapters.onnxruntime_adapter:OnnxruntimeAdapter",
}


# Backends loaded by name only, never listed or run by default: ``verify`` is the user's function
# that ``xentbench verify`` configures (``adapters.function_adapter``); an entry point of that
# name is ignored.
RESERVED: dict[str, str] = {"verify": "xentbench.adapters.function_adapter:FunctionAdapter"}


class BackendUnavailable(RuntimeError):
    """The backend is registered but cannot be used in this process: ``reason``, and the
    ``pip install`` command that adds its missing framework where one is known."""

    def __init__(self, reason: str, install: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.install = install

    @property
    def summary(self) -> str:
        return unusable_summary(self.reason, self.install)


def unusable_summary(reason: str, install: str | None) -> str:
    """How an unusable backend reads to a user: a missing optional extra is "not installed"
    with its install command, anything else "unavailable" with the reason."""
    return f"not installed: {install}" if install else f"unavailable: {reason}"


@dataclass(frozen=True)
class BackendStatus:
    """What ``xentbench list`` shows for one registered backend."""

    name: str
    target: str
    source: str
    adapter: Adapter | None
    reason: str | None
    install: str | None = None  # the ``pip install`` that adds the missing framework

    @property
    def available(self) -> bool:
        return self.adapter is not None

    @property
    def summary(self) -> str:
        """The status in words: "available", or why not (``unusable_summary``)."""
        return "available" if self.available else unusable_summary(self.reason or "", self.install)


def registered() -> dict[str, tuple[str, str]]:
    """Every registered backend: name -> (``module:attribute`` target, source)."""
    targets = {name: (target, "builtin") for name, target in BUILTIN_ADAPTERS.items()}
    for name, entry in _plugins().items():
        targets[name] = (entry.value, f"entry point ({entry.dist.name if entry.dist else '?'})")
    return targets


def _plugins() -> dict[str, EntryPoint]:
    """The entry-point backends, by name (one named like a built-in or a reserved backend does
    not replace it)."""
    return {
        entry.name: entry
        for entry in entry_points(group=ENTRY_POINT_GROUP)
        if entry.name not in BUILTIN_ADAPTERS and entry.name not in RESERVED
    }


def backend_names() -> tuple[str, ...]:
    return tuple(registered())


_loaded: dict[str, Adapter] = {}

# Libraries bundling their own LLVM whose command-line options clash with TensorFlow's: loaded
# after TensorFlow, triton (which torch.compile, and F.linear_cross_entropy's chunked path,
# import when installed) aborts the process ("LLVM ERROR: inconsistency in registered
# CommandLine options"); loaded before it, both work. So they are imported before any backend.
LOAD_FIRST = ("triton",)


def _load_first() -> None:
    for module in LOAD_FIRST:
        if importlib.util.find_spec(module) is not None:
            with contextlib.suppress(Exception):  # a broken install: the backend will say so
                importlib.import_module(module)


def load(name: str) -> Adapter:
    """The adapter for ``name``; raises ``BackendUnavailable`` with the reason if it cannot load."""
    if name in _loaded:
        return _loaded[name]
    _load_first()
    targets = {**registered(), **{key: (t, "reserved") for key, t in RESERVED.items()}}
    if name not in targets:
        raise KeyError(f"unknown backend {name!r}; valid: {', '.join(targets)}")
    target, _ = targets[name]
    module_name, _, attribute = target.partition(":")
    try:
        with quiet_import():  # absl's import-time lines off an in-process command's terminal
            module = importlib.import_module(module_name)
            adapter = getattr(module, attribute)()
    except Exception as exc:  # an unusable framework is data, not a crash
        reason = f"{type(exc).__name__}: {exc}"
        raise BackendUnavailable(reason, _install_command(name, exc)) from exc
    if not isinstance(adapter, Adapter):
        raise BackendUnavailable(f"{target} is not an adapters.base.Adapter")
    names = [impl.name for impl in adapter.implementations()]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # results are keyed by implementation name: two would overwrite each other
        raise BackendUnavailable(f"{target} declares implementations twice: {', '.join(repeated)}")
    _loaded[name] = adapter
    return adapter


def status(name: str) -> BackendStatus:
    target, source = registered()[name]
    try:
        return BackendStatus(name, target, source, load(name), None)
    except BackendUnavailable as exc:
        return BackendStatus(name, target, source, None, exc.reason, exc.install)


def discover() -> list[BackendStatus]:
    """The status of every registered backend (this imports each framework)."""
    return [status(name) for name in registered()]


def _install_command(name: str, exc: Exception) -> str | None:
    """``pip install 'DIST[EXTRA]'`` when plugin ``name`` failed to import a module that an
    optional extra of its own distribution provides (read from that distribution's metadata),
    or, for a module named unlike its distribution (``paddle`` from ``paddlepaddle``), the
    extra named after the backend; None for anything else (a built-in, another error, a
    module no extra names)."""
    entry = _plugins().get(name)
    if not isinstance(exc, ModuleNotFoundError) or not exc.name or entry is None or not entry.dist:
        return None
    extra = extra_providing(entry.dist, exc.name.partition(".")[0], prefer=name)
    extra = extra or _extra_named(entry.dist, name)
    return f"pip install '{entry.dist.name}[{extra}]'" if extra else None


def _extra_named(dist: Distribution, backend: str) -> str | None:
    """The optional extra of ``dist`` named like ``backend`` (PEP 503 normalised), if any."""
    extras = dist.metadata.get_all("Provides-Extra") or []
    return next((e for e in extras if _normalised(e) == _normalised(backend)), None)


def extra_providing(dist: Distribution, module: str, prefer: str = "") -> str | None:
    """The extra of ``dist`` whose requirements (``Requires-Dist: NAME ...; extra == "X"``)
    include a distribution named like ``module`` (names compared as PEP 503 normalises them):
    the one named like ``prefer`` (the backend) if it is among them, else the first declared."""
    wanted = _normalised(module)
    extras: list[str] = []
    for requirement in dist.requires or ():
        spec, _, marker = requirement.partition(";")
        named = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        if named and _normalised(named.group(1)) == wanted:
            extras += re.findall(r"""\bextra\s*==\s*['"]([^'"]+)['"]""", marker)
    preferred = [extra for extra in extras if _normalised(extra) == _normalised(prefer)]
    return (preferred or extras or [None])[0]


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
