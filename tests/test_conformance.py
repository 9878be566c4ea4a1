"""Conformance: every registered backend honours the adapter protocol of ``adapters/base.py``.

Modelled on data-apis/array-api-tests. The backends under test are chosen with ``--backend
NAME`` (repeatable; default every registered backend, built-in or entry point) and listed in
the pytest header. Cases are generated from what each adapter declares (implementations,
dtypes, modes, quantities, and only the devices it sees), so a new backend is tested without
editing this file; an unavailable backend is one skipped case carrying the reason.

On a small benign input ([3, 5] normal(0, 1) logits) every declared call must run twice
alike, return the right shape and a float dtype, and agree with ``reference.exact`` within
a loose tolerance. Accuracy proper (ULPs, edge cases) is the accuracy suite's job.

Cost: torch.compile takes seconds per graph, so torch's compiled mode runs one representative
call by default and its full matrix with ``--run-slow`` (``COMPILED_REPRESENTATIVE``); jax.jit
and XLA tf.function run every compiled call in float32 by default and in every dtype with
``--run-slow`` (``COMPILED_DTYPE``).
"""

from __future__ import annotations

import functools
import traceback
import warnings
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase as fnmatch
from pathlib import Path

import numpy as np
import pytest

from xentbench import reference
from xentbench.adapters import registry
from xentbench.adapters.base import (
    DEVICES,
    DTYPES,
    OPS,
    Adapter,
    Call,
    Implementation,
    backend_and_api,
    numpy_dtype,
)
from xentbench.reference.evaluate import output_shape

PROJECT_CODE = tuple(
    Path(__file__).resolve().parents[1] / name
    for name in ("reference", "adapters", "suites", "tests")
)
BUILTIN_BACKENDS = frozenset({"numpy", "torch", "tensorflow", "jax", "onnxruntime"})
BATCH, CLASSES = 3, 5
HIDDEN = 4  # the linear op's features: hidden [3, 4], weight [5, 4]
LINEAR_OP = "linear_cross_entropy"
SEED = 20250101
# Ops whose value drops the class axis; every other value, and every grad, is [batch, classes].
# |got - exact| <= tol * (1 + |exact|): loose, to catch wrong ops, not to grade accuracy.
TOLERANCE = {"float16": 2e-2, "bfloat16": 2e-2, "float32": 1e-4, "float64": 1e-10}
# Dtypes whose result must come back in the requested dtype (narrower ones may be upcast).
EXACT_DTYPES = frozenset({"float32", "float64"})
# Compiled modes too costly to run in full by default: backend -> (implementation, dtype,
# quantity) of the one compiled call that runs anyway; the rest is marked slow. torch.compile
# takes 2-20 s per graph here. jax.jit and XLA tf.function (~0.1-0.4 s each, a minute or two
# per backend in all) run every compiled implementation and quantity in COMPILED_DTYPE by
# default, and in their other dtypes with --run-slow; eager modes run in every dtype.
COMPILED_REPRESENTATIVE: dict[str, tuple[str, str, str]] = {
    "torch": ("torch:F.cross_entropy", "float32", "grad"),
    "keras_torch": (
        "keras_torch:keras.losses.sparse_categorical_crossentropy(from_logits=True)",
        "float32",
        "grad",
    ),
}
COMPILED_DTYPE = "float32"
# Disagreements on the benign input that are the framework's, measured and understood: call-id
# glob -> (the tolerance the cause explains, the cause). Within it a call is an expected failure
# naming the finding; beyond it, a failure like any other.
FLOAT32_INTERNALS = 1e-6
KNOWN_DISAGREEMENTS: dict[str, tuple[float, str]] = {
    "keras_torch:keras.losses.binary_crossentropy(*)-float64-*": (
        FLOAT32_INTERNALS,
        "Keras's mean over the trailing axis on torch computes float64 in float32 "
        "(keras.backend.result_type('float64', 'float32') is 'float32' in Keras 3.15)",
    ),
    "mlx:*-float64-*": (
        FLOAT32_INTERNALS,
        "MLX's CPU exponential of float64 is accurate to float32 only "
        "(mx.exp(0.1) is 1.1051709651947021 in float64)",
    ),
}


class DtypeChangedWarning(UserWarning):
    """A float16/bfloat16 call returned another dtype: a finding for the accuracy suite."""


# ---------------------------------------------------------------- parametrisation


def call_id(call: Call) -> str:
    """The pytest id of a call, e.g. ``torch:F.cross_entropy-float16-cpu-eager-grad``."""
    return "-".join((call.implementation.name, call.dtype, call.device, call.mode, call.quantity))


def declared_calls(adapter: Adapter) -> Iterable[Call]:
    """Every call an adapter declares, on the devices it reports as visible."""
    for impl in adapter.implementations():
        for dtype in impl.dtypes:
            for device in (d for d in impl.devices if d in adapter.devices()):
                for mode in impl.modes:
                    if (device, mode, dtype) in impl.gaps:
                        continue
                    for quantity in impl.quantities:
                        options = benign_options(impl, dtype)
                        yield Call(impl, dtype, device, mode, quantity, options=options)


def compiled_by_default(backend: str, call: Call) -> bool:
    """Whether a compiled call runs without ``--run-slow``: the one of
    ``COMPILED_REPRESENTATIVE``, elsewhere every compiled call in ``COMPILED_DTYPE`` (or the
    implementation's first dtype without it)."""
    if backend not in COMPILED_REPRESENTATIVE:
        dtypes = call.implementation.dtypes
        return call.dtype == (COMPILED_DTYPE if COMPILED_DTYPE in dtypes else dtypes[0])
    return (call.implementation.name, call.dtype, call.quantity) == COMPILED_REPRESENTATIVE[backend]


def _call_param(backend: str, call: Call) -> pytest.ParameterSet:
    marks = [pytest.mark.gpu] if call.device == "cuda" else []
    if call.mode == "compiled" and not compiled_by_default(backend, call):
        marks.append(pytest.mark.slow)
    if call.mode == "compiled" and backend == "torch":  # inductor starts up once, on one worker
        marks.append(pytest.mark.xdist_group("torch-compile"))
    return pytest.param(backend, call, id=call_id(call), marks=marks)


def _undeclared_dtype_calls(adapter: Adapter) -> Iterable[Call]:
    for impl in adapter.implementations():
        for dtype in (d for d in DTYPES if d not in impl.dtypes):
            yield Call(impl, dtype, impl.devices[0], impl.modes[0])


def _invisible_cuda_calls(adapter: Adapter) -> Iterable[Call]:
    if "cuda" not in adapter.devices():
        for impl in adapter.implementations():
            yield Call(impl, impl.dtypes[0], "cuda", impl.modes[0])


# argument name -> its ``(backend, argument)`` params for one available backend
PARAMETERS: dict[str, Callable[[str, Adapter], Iterable[pytest.ParameterSet]]] = {
    "call": lambda name, adapter: (_call_param(name, call) for call in declared_calls(adapter)),
    "undeclared_dtype_call": lambda name, adapter: (
        pytest.param(name, call, id=f"{call.implementation.name}-{call.dtype}")
        for call in _undeclared_dtype_calls(adapter)
    ),
    "invisible_cuda_call": lambda name, adapter: (
        pytest.param(name, call, id=call.implementation.name)
        for call in _invisible_cuda_calls(adapter)
    ),
    "implementation": lambda name, adapter: (
        pytest.param(name, impl, id=impl.name) for impl in adapter.implementations()
    ),
    "adapter": lambda name, adapter: [pytest.param(name, adapter, id=name)],
}


def backend_params(argument: str, names: Iterable[str]) -> list[pytest.ParameterSet]:
    """``(backend, argument)`` params for the named backends; an unavailable one is a skip."""
    params: list[pytest.ParameterSet] = []
    for name in names:
        status = registry.status(name)
        if status.adapter is None:
            skip = pytest.mark.skip(reason=f"backend {name} {status.summary}")
            params.append(pytest.param(name, None, id=f"{name}:unavailable", marks=skip))
        else:
            params += PARAMETERS[argument](name, status.adapter)
    return params


def chosen_backends(config: pytest.Config) -> tuple[str, ...]:
    """The ``--backend`` choices (see conftest.py), or every registered backend."""
    return tuple(dict.fromkeys(config.getoption("backend"))) or registry.backend_names()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``backend`` with one argument of ``PARAMETERS`` over the chosen backends."""
    for argument in PARAMETERS:
        if argument in metafunc.fixturenames:
            names = chosen_backends(metafunc.config)
            metafunc.parametrize(f"backend,{argument}", backend_params(argument, names))
            return


# ---------------------------------------------------------------- inputs and helpers


@functools.cache
def _linear_arrays(dtype: str) -> dict[str, np.ndarray]:
    """The linear op's weight [5, 4] and bias [5] (logits ~N(0, 1)), read-only, in ``dtype``."""
    rng = np.random.default_rng([SEED, OPS.index(LINEAR_OP), 1])
    arrays = {
        "weight": (rng.normal(size=(CLASSES, HIDDEN)) / 2).astype(numpy_dtype(dtype)),
        "bias": rng.normal(size=CLASSES).astype(numpy_dtype(dtype)),
    }
    for array in arrays.values():
        array.setflags(write=False)
    return arrays


def benign_options(impl: Implementation, dtype: str) -> dict[str, np.ndarray]:
    """The call options of the benign input: the linear op's weight, and its bias when the
    implementation takes one; none for the other ops."""
    if impl.op != LINEAR_OP:
        return {}
    return {k: v for k, v in _linear_arrays(dtype).items() if k in impl.options}


@functools.cache
def benign_inputs(op: str, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Read-only [3, 5] logits and the op's labels, rounded to ``dtype`` (cached); for the
    linear op the hidden [3, 4] in the logits' place (weight and bias: ``benign_options``)."""
    rng = np.random.default_rng([SEED, OPS.index(op)])
    float_dtype = numpy_dtype(dtype)
    width = HIDDEN if op == LINEAR_OP else CLASSES
    logits = rng.normal(size=(BATCH, width)).astype(float_dtype)
    labels = None
    if op == "softmax_cross_entropy":
        labels = rng.dirichlet(np.ones(CLASSES), size=BATCH).astype(float_dtype)
    elif op in ("sparse_softmax_cross_entropy", LINEAR_OP):
        labels = rng.integers(0, CLASSES, size=BATCH, dtype=np.int64)
    elif op == "sigmoid_cross_entropy":
        labels = rng.uniform(size=(BATCH, CLASSES)).astype(float_dtype)
    for array in (logits, labels):
        if array is not None:
            array.setflags(write=False)  # an adapter must not write into its inputs
    return logits, labels


def exact_result(call: Call) -> np.ndarray:
    """The reference (float64, correctly rounded) for the benign inputs of ``call``."""
    with_bias = "bias" in call.options
    return _exact_result(call.implementation.op, call.dtype, call.quantity, with_bias)


@functools.cache
def _exact_result(op: str, dtype: str, quantity: str, with_bias: bool) -> np.ndarray:
    logits, labels = benign_inputs(op, dtype)
    options = None
    if op == LINEAR_OP:
        options = {k: v for k, v in _linear_arrays(dtype).items() if with_bias or k != "bias"}
    return reference.exact(op, logits, labels, quantity, **(options or {})).hi


def expected_shape(call: Call) -> tuple[int, ...]:
    op = call.implementation.op
    logits_shape = (BATCH, HIDDEN if op == LINEAR_OP else CLASSES)
    return output_shape(op, call.quantity, logits_shape, call.options)


def is_float_dtype(dtype: np.dtype) -> bool:
    return dtype.kind == "f" or dtype == numpy_dtype("bfloat16")


def accepted_adapter(backend: str, call: Call) -> Adapter:
    """The backend's adapter, after checking it accepts ``call`` (skip for a known refusal)."""
    adapter = registry.load(backend)
    reason = adapter.unsupported_reason(call)
    assert reason is None, f"{call_id(call)} is declared but refused: {reason}"
    return adapter


def run_once(adapter: Adapter, call: Call) -> np.ndarray:
    """Prepare ``call`` on its benign inputs, run it, and return a copy of the output."""
    logits, labels = benign_inputs(call.implementation.op, call.dtype)
    prepared = adapter.prepare(call, logits, labels)
    return np.array(prepared.to_numpy(prepared.run()), copy=True)


def raised_in_framework(error: BaseException) -> bool:
    """Whether ``error`` was raised inside the framework's own code, not in this project's."""
    frames = traceback.extract_tb(error.__traceback__)
    innermost = Path(frames[-1].filename).resolve() if frames else PROJECT_CODE[0]
    return not any(innermost.is_relative_to(folder) for folder in PROJECT_CODE)


def harness_runs_wider_dtype(adapter: Adapter, call: Call) -> bool:
    """Whether the same implementation, mode and quantity runs in float32 or float64: then the
    adapter's plumbing is sound and a raise in a narrower dtype is the framework's own."""
    for dtype in ("float64", "float32"):
        if dtype != call.dtype and dtype in call.implementation.dtypes:
            options = benign_options(call.implementation, dtype)
            wider = Call(call.implementation, dtype, call.device, call.mode, call.quantity, options)
            try:
                run_once(adapter, wider)
            except Exception:
                return False
            return True
    return False


def run_or_report_finding(adapter: Adapter, call: Call) -> np.ndarray:
    """``run_once``; a framework that raises on this valid input, where the adapter runs the same
    call in a wider dtype, is a finding (``raises-on-valid-input``, with its versions), shown as an
    expected failure: the accuracy suite files it, and the harness is not at fault."""
    try:
        return run_once(adapter, call)
    except Exception as error:
        if raised_in_framework(error) and harness_runs_wider_dtype(adapter, call):
            pytest.xfail(
                f"finding raises-on-valid-input: {call_id(call)} with {adapter.version()}: "
                f"{type(error).__name__}: {error}"
            )
        raise


def reproduce(request: pytest.FixtureRequest, backend: str) -> str:
    return f"reproduce: pytest '{request.node.nodeid}' --backend {backend}"


# ---------------------------------------------------------------- per call


def test_prepared_call_runs_twice_alike_with_expected_shape_and_dtype(
    backend, call, request, record_property
):
    adapter = accepted_adapter(backend, call)
    first = run_or_report_finding(adapter, call)
    logits, labels = benign_inputs(call.implementation.op, call.dtype)
    prepared = adapter.prepare(call, logits, labels)
    second = prepared.to_numpy(prepared.run())
    how = reproduce(request, backend)
    assert first.shape == expected_shape(call), how
    assert is_float_dtype(first.dtype), f"{call_id(call)} returned dtype {first.dtype}; {how}"
    np.testing.assert_array_equal(second, first, err_msg=f"second run differs; {how}")
    if first.dtype != numpy_dtype(call.dtype):
        message = f"{call_id(call)} returned {first.dtype} for a {call.dtype} call"
        if call.dtype in EXACT_DTYPES:
            pytest.fail(f"{message}; {how}")
        record_property("returned_dtype", str(first.dtype))
        warnings.warn(message, DtypeChangedWarning, stacklevel=1)


def known_disagreement(identifier: str, error: np.ndarray, expected: np.ndarray) -> str | None:
    """The cause from ``KNOWN_DISAGREEMENTS`` when it names this call and explains every error
    (each within its tolerance), else None."""
    for glob, (tolerance, cause) in KNOWN_DISAGREEMENTS.items():
        if fnmatch(identifier, glob):
            return cause if (error <= tolerance * (1 + np.abs(expected))).all() else None
    return None


def test_agrees_with_exact_reference_on_benign_input(backend, call, request):
    adapter = accepted_adapter(backend, call)
    got = run_or_report_finding(adapter, call).astype(np.float64)
    expected = exact_result(call)
    assert got.shape == expected.shape, f"shape {got.shape}, expected {expected.shape}"
    tolerance = TOLERANCE[call.dtype]
    error = np.abs(got - expected)
    excess = np.nan_to_num(error - tolerance * (1 + np.abs(expected)), nan=np.inf)
    if (excess > 0).any():
        worst = tuple(int(i) for i in np.unravel_index(np.argmax(excess), excess.shape))
        finding = known_disagreement(call_id(call), error, expected)
        if finding:
            pytest.xfail(f"finding: {finding}; error {float(error[worst]):.3g}")
        pytest.fail(
            f"{call_id(call)} ({adapter.version()}) disagrees with the reference at {worst}: "
            f"got {float(got[worst])!r}, expected {float(expected[worst])!r}, error "
            f"{float(error[worst]):.3g} > {tolerance:g} * (1 + |expected|)\n"
            f"got:\n{got}\nexpected:\n{expected}\n{reproduce(request, backend)}"
        )


# ---------------------------------------------------------------- per implementation


def test_implementation_name_is_prefixed_by_its_adapter_name(backend, implementation):
    adapter = registry.load(backend)
    prefix, api = backend_and_api(implementation.name)
    assert prefix == adapter.name, f"{implementation.name} is served by adapter {adapter.name}"
    assert api, f"{implementation.name} names no API after the backend prefix"


def test_undeclared_dtype_is_unsupported_with_a_reason(backend, undeclared_dtype_call):
    reason = registry.load(backend).unsupported_reason(undeclared_dtype_call)
    assert isinstance(reason, str) and reason, f"{call_id(undeclared_dtype_call)} is accepted"


def test_invisible_cuda_is_unsupported_with_a_reason(backend, invisible_cuda_call):
    reason = registry.load(backend).unsupported_reason(invisible_cuda_call)
    assert isinstance(reason, str) and reason, f"{call_id(invisible_cuda_call)} is accepted"


# ---------------------------------------------------------------- per backend


def test_version_is_a_non_empty_string(backend, adapter):
    version = adapter.version()
    assert isinstance(version, str) and version.strip()


def test_adapter_name_is_its_registered_name(backend, adapter):
    assert adapter.name == backend


def test_devices_include_cpu_and_are_canonical(backend, adapter):
    assert "cpu" in adapter.devices()
    assert set(adapter.devices()) <= set(DEVICES)


def test_implementation_names_are_unique_across_backends(request):
    names = [
        impl.name
        for status in map(registry.status, chosen_backends(request.config))
        if status.adapter is not None
        for impl in status.adapter.implementations()
    ]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"implementation names used more than once: {duplicates}"


# ---------------------------------------------------------------- registry and harness

BOGUS_MODULE = "xentbench_bogus_framework_adapter"


@pytest.fixture
def bogus_builtin(monkeypatch: pytest.MonkeyPatch) -> str:
    """A built-in backend whose module (standing in for its framework) is not installed."""
    targets = {**registry.BUILTIN_ADAPTERS, "bogus": f"{BOGUS_MODULE}:BogusAdapter"}
    monkeypatch.setattr(registry, "BUILTIN_ADAPTERS", targets)
    return "bogus"


def test_discover_lists_every_builtin_backend():
    statuses = {status.name: status for status in registry.discover()}
    assert set(statuses) >= BUILTIN_BACKENDS
    assert {statuses[name].source for name in BUILTIN_BACKENDS} == {"builtin"}


def test_builtin_backend_with_missing_framework_is_unavailable_with_reason(bogus_builtin):
    status = registry.status(bogus_builtin)
    assert not status.available
    assert "ModuleNotFoundError" in status.reason and BOGUS_MODULE in status.reason
    assert bogus_builtin in {status.name for status in registry.discover()}


def test_unavailable_backend_is_parametrised_as_one_skip_with_its_reason(bogus_builtin):
    for argument in PARAMETERS:
        (param,) = backend_params(argument, [bogus_builtin])
        (mark,) = param.marks
        assert mark.name == "skip"
        assert BOGUS_MODULE in mark.kwargs["reason"]


def test_a_known_disagreement_explains_only_its_calls_and_only_within_its_tolerance():
    expected = np.array([2.0, 0.5])
    float32_error = np.array([3e-8, 1e-8])
    cause = KNOWN_DISAGREEMENTS["mlx:*-float64-*"][1]
    assert known_disagreement("mlx:mx.logsumexp-float64-cpu-eager-value", float32_error, expected)
    assert (
        known_disagreement("mlx:mx.logsumexp-float64-cpu-eager-value", float32_error, expected)
        == cause
    )
    assert (
        known_disagreement("mlx:mx.logsumexp-float32-cpu-eager-value", float32_error, expected)
        is None
    )
    assert (
        known_disagreement("jax:jax.nn.softmax-float64-cpu-eager-value", float32_error, expected)
        is None
    )
    worse = np.array([1e-3, 0.0])  # beyond what float32 internals explain: a plain failure
    assert known_disagreement("mlx:mx.logsumexp-float64-cpu-eager-value", worse, expected) is None


def test_call_id_reads_as_the_call():
    impl = Implementation("fake:F.cross_entropy", "sparse_softmax_cross_entropy", ("float16",))
    call = Call(impl, "float16", "cpu", "eager", "grad")
    assert call_id(call) == "fake:F.cross_entropy-float16-cpu-eager-grad"


def test_torch_compiled_mode_runs_one_call_by_default_and_the_rest_when_slow(request):
    if "torch" not in chosen_backends(request.config) or not registry.status("torch").available:
        pytest.skip("torch is not under test")
    calls = [c for c in declared_calls(registry.load("torch")) if c.mode == "compiled"]
    by_default = [
        call_id(c) for c in calls if c.device == "cpu" and compiled_by_default("torch", c)
    ]
    assert by_default == ["torch:F.cross_entropy-float32-cpu-compiled-grad"]
    assert len(calls) > 1


def test_other_compiled_modes_run_every_call_in_float32_by_default(request):
    """jax.jit and XLA tf.function keep every compiled implementation and quantity in the
    fast tier, in float32; their other dtypes are slow."""
    backends = [
        name
        for name in chosen_backends(request.config)
        if name not in COMPILED_REPRESENTATIVE and registry.status(name).available
    ]
    for backend in backends:
        calls = [c for c in declared_calls(registry.load(backend)) if c.mode == "compiled"]
        by_default = [c for c in calls if compiled_by_default(backend, c)]
        assert {(c.implementation.name, c.quantity) for c in by_default} == {
            (c.implementation.name, c.quantity) for c in calls
        }, backend
        for call in by_default:
            assert call.dtype == COMPILED_DTYPE or COMPILED_DTYPE not in call.implementation.dtypes
