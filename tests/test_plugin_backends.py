"""The plugin backends shipped in this repository (MLX, Keras on JAX and on torch): registered
through entry points with extras of their own, kept out of ``all``, run by the main job in
environments of their own, and honest about Keras's one backend per process.

Loading a Keras backend fixes Keras for the whole process, so the checks that load one run in a
fresh interpreter each.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from xentbench.adapters import registry

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = {"mlx": "mlx", "keras_jax": "keras-jax", "keras_torch": "keras-torch"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _noxfile_constants() -> dict:
    """BACKENDS and EXTRAS as the noxfile defines them (read without importing nox)."""
    namespace: dict = {}
    source = (ROOT / "noxfile.py").read_text()
    start, end = source.index("BACKENDS = "), source.index("# The extras that bring torch")
    exec(source[start:end], namespace)  # two literals: a list and a dict
    return namespace


def test_each_plugin_has_an_entry_point_and_an_extra_of_its_own_outside_all():
    project = _pyproject()["project"]
    entry_points = project["entry-points"]["xentbench.adapters"]
    extras = project["optional-dependencies"]
    for backend, extra in PLUGINS.items():
        assert entry_points[backend].startswith("xentbench.adapters.")
        assert extra in extras
        assert extra not in extras["all"][0], f"{extra} must stay out of the tests environment"


def test_the_main_job_runs_each_plugin_in_its_own_environment_with_its_extra():
    nox = _noxfile_constants()
    for backend, extra in PLUGINS.items():
        assert backend in nox["BACKENDS"]
        assert nox["EXTRAS"][backend] == [extra]


def test_mlx_reads_not_installed_without_its_extra():
    if importlib.util.find_spec("mlx") is not None:
        pytest.skip("mlx is installed here")
    assert registry.status("mlx").summary == "not installed: pip install 'xentbench[mlx]'"


STATUSES = """
import json
from xentbench.adapters import registry
names = {names!r}
statuses = [registry.status(name) for name in names]
print(json.dumps({{
    s.name: {{"reason": s.reason, "keras": sorted(
        i.api for i in (s.adapter.implementations() if s.adapter else ()) if "keras" in i.api
    )}} for s in statuses
}}))
"""


@functools.cache  # one interpreter per order: the tests of KERAS_ORDERS read the same ones
def _statuses(*names: str) -> dict:
    """The registry's status of ``names``, loaded in this order in a new interpreter: per
    backend its reason (None when it loaded) and the Keras APIs it declares."""
    code = STATUSES.format(names=list(names))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _need(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed here")


# The tests that load Keras and TensorFlow in both orders share a worker, so each order's
# interpreter starts once.
KERAS_ORDERS = pytest.mark.xdist_group("keras-orders")


# The same mechanism (KERAS_BACKEND read once per process) on both: keras_jax represents it in
# the fast tier, keras_torch runs in the slow one too.
@KERAS_ORDERS
@pytest.mark.parametrize(
    "backend", ["keras_jax", pytest.param("keras_torch", marks=pytest.mark.slow)]
)
def test_a_keras_backend_loads_first_in_its_process_and_then_excludes_the_others(backend):
    _need("keras", "tensorflow", backend.removeprefix("keras_"))
    statuses = _statuses(backend, "tensorflow")
    assert statuses[backend]["reason"] is None
    loaded = backend.removeprefix("keras_")
    reason = statuses["tensorflow"]["reason"]
    assert reason and f"Keras runs on its {loaded} backend in this process" in reason


@KERAS_ORDERS
def test_a_keras_backend_is_unavailable_where_keras_was_loaded_for_tensorflow():
    _need("keras", "tensorflow", "jax")
    statuses = _statuses("tensorflow", "keras_jax")
    assert statuses["tensorflow"]["reason"] is None
    assert "Keras runs on its tensorflow backend in this process" in statuses["keras_jax"]["reason"]


@KERAS_ORDERS
def test_the_keras_losses_are_declared_alike_on_every_keras_backend():
    _need("keras", "tensorflow", "jax")
    tensorflow = _statuses("tensorflow", "keras_jax")["tensorflow"]["keras"]
    keras_jax = _statuses("keras_jax", "tensorflow")["keras_jax"]["keras"]
    # The LLM head's compositions (adapters/tensorflow_head.py) are declared for TensorFlow only.
    losses = [a for a in tensorflow if a.startswith("keras.losses.") and "softcapped" not in a]
    assert len(losses) == 8
    assert [api for api in keras_jax if api.startswith("keras.losses.")] == losses
    ops = {api for api in keras_jax if api.startswith("keras.ops.")}
    assert ops == {"keras.ops.softmax", "keras.ops.log_softmax", "keras.ops.logsumexp"}
