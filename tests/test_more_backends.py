"""The plugin backends shipped with their own extras (paddle, tinygrad, liger_kernel): how they
read without their framework, Liger-Kernel without a CUDA device, and ``nox -s gpu``'s parts
on a machine without a GPU. Their conformance runs in ``nox -s "conformance(backend='...')"``
(tests/test_conformance.py, which skips a backend that is not installed, with the reason).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path

import gpu_session
import pytest

from xentbench.adapters import registry
from xentbench.adapters.base import Call

EXTRAS = {"paddle": "paddle", "tinygrad": "tinygrad", "liger_kernel": "liger-kernel"}
MODULES = {"paddle": "paddle", "tinygrad": "tinygrad", "liger_kernel": "liger_kernel"}


@pytest.mark.parametrize("backend", sorted(EXTRAS))
def test_a_plugin_without_its_framework_reads_not_installed_with_its_extra(backend):
    if importlib.util.find_spec(MODULES[backend]) is not None:
        pytest.skip(f"{MODULES[backend]} is installed here")
    status = registry.status(backend)
    assert status.source.startswith("entry point")
    assert status.summary == f"not installed: pip install 'xentbench[{EXTRAS[backend]}]'"


@pytest.fixture
def stub_liger(monkeypatch: pytest.MonkeyPatch):
    """Liger-Kernel's functional module as a stub (the real one needs triton), and the
    adapter's module and the registry's cache cleared so that it is imported afresh."""
    pytest.importorskip("torch")
    functional = types.ModuleType("liger_kernel.transformers.functional")
    functional.liger_cross_entropy = functional.liger_fused_linear_cross_entropy = None
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, functional.__name__, functional)
    monkeypatch.delitem(sys.modules, "xentbench.adapters.liger_kernel_adapter", raising=False)
    monkeypatch.setattr(registry, "_loaded", {})


def test_liger_kernel_without_a_cuda_device_is_unavailable_with_the_reason(stub_liger):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    from xentbench.adapters.liger_kernel_adapter import NO_CUDA

    status = registry.status("liger_kernel")
    assert not status.available and status.install is None
    reason = f"RuntimeError: {NO_CUDA} (torch.cuda.is_available() is False)"
    assert status.summary == f"unavailable: {reason}"


def test_liger_kernel_declares_cuda_only_with_its_options(stub_liger, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    adapter = registry.load("liger_kernel")
    by_name = {impl.name: impl for impl in adapter.implementations()}
    cross_entropy = by_name["liger_kernel:liger_cross_entropy"]
    assert {"ignore_index", "label_smoothing", "softcap", "z_loss", "reduction"} <= set(
        cross_entropy.options
    )
    assert "liger_kernel:liger_cross_entropy(return_z_loss=True)" in by_name
    assert by_name["liger_kernel:liger_fused_linear_cross_entropy"].op == "linear_cross_entropy"
    for impl in by_name.values():
        assert impl.devices == ("cuda",)
        reason = adapter.unsupported_reason(Call(impl, "float32", "cpu"))
        assert reason == f"{impl.name} does not run on cpu"
    refused = Call(cross_entropy, "float32", "cuda", options={"reduction": "mean_over_valid"})
    assert "takes no reduction=mean_over_valid" in adapter.unsupported_reason(refused)


# ---------------------------------------------------------------- nox -s gpu


def _path_with(tmp_path: Path, smi: str | None) -> str:
    """A PATH holding only a fake ``nvidia-smi`` (the script ``smi``) or none at all."""
    folder = tmp_path / "bin"
    folder.mkdir()
    if smi is not None:
        (folder / "nvidia-smi").write_text(f"#!/bin/sh\n{smi}\n")
        (folder / "nvidia-smi").chmod(0o755)
    return str(folder)


def test_gpu_session_without_a_gpu_reports_every_part_unavailable_quickly(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_with(tmp_path, None))
    start = time.monotonic()
    code = gpu_session.main([str(tmp_path / "run")])
    assert time.monotonic() - start < 60
    assert code == 0
    document = json.loads((tmp_path / "run" / "gpu.json").read_text())
    assert [part["name"] for part in document["parts"]] == [p.name for p in gpu_session.PARTS]
    assert {part["status"] for part in document["parts"]} == {"unavailable"}
    assert all("nvidia-smi is not on PATH" in part["reason"] for part in document["parts"])
    assert "| lm-timing | unavailable |" in (tmp_path / "run" / "gpu.md").read_text()
    assert gpu_session.main(["--probe"]) == gpu_session.PROBE_UNAVAILABLE


def test_gpu_session_with_a_driver_that_lists_no_gpu_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_with(tmp_path, "echo 'No devices were found'; exit 6"))
    assert gpu_session.main(["--probe"]) == gpu_session.PROBE_UNAVAILABLE
    assert gpu_session.no_gpu_reason() == (
        "no CUDA device: nvidia-smi -L lists none (No devices were found)"
    )


def test_gpu_session_runs_each_part_in_its_environment_and_fails_on_a_failed_part(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("PATH", _path_with(tmp_path, "echo 'GPU 0: NVIDIA H100 (UUID: x)'"))
    assert gpu_session.no_gpu_reason() is None
    ok, failing = tmp_path / "ok-python", tmp_path / "failing-python"
    ok.write_text('#!/bin/sh\necho "$@"\n')
    failing.write_text("#!/bin/sh\nexit 4\n")
    for script in (ok, failing):
        script.chmod(0o755)
    pythons = [f"gpu-torch={ok}", f"gpu-jax={failing}"]  # gpu-tensorflow: not installed
    assert gpu_session.main([str(tmp_path / "run"), *pythons]) == 1
    parts = {p["name"]: p for p in json.loads((tmp_path / "run" / "gpu.json").read_text())["parts"]}
    assert parts["torch-conformance"]["status"] == "ok"
    assert parts["jax-conformance"] == {**parts["jax-conformance"], "status": "failed"}
    assert parts["jax-conformance"]["reason"] == "exit status 4"
    assert parts["tensorflow-conformance"]["status"] == "unavailable"
    assert "gpu-tensorflow not installed" in parts["lm-timing"]["reason"]
    log = (tmp_path / "run" / "gpu-torch-conformance.log").read_text()
    assert "--backend torch -m gpu" in log and os.fspath(tmp_path / "run") in log


def test_gpu_session_limits_add_up_to_under_eight_minutes():
    assert gpu_session.TOTAL_LIMIT_S < 8 * 60


def test_gpu_session_commands_parse_as_the_cli_and_pytest_read_them(tmp_path):
    from xentbench.suites.cli.parser import build_parser

    pythons = {name: sys.executable for name in ("gpu-torch", "gpu-jax", "gpu-tensorflow")}
    for part in gpu_session.PARTS:
        command = gpu_session._expand(part, tmp_path, pythons)
        assert isinstance(command, list), f"{part.name}: {command}"
        if command[1:3] == ["-m", "xentbench.suites.cli"]:
            parsed = build_parser().parse_args(command[3:])
            assert Path(parsed.run_dirs[0] if part.name == "report" else parsed.out) == tmp_path
        else:
            assert command[1:4] == ["-m", "pytest", "tests/test_conformance.py"]
            backends = command[command.index("--backend") + 1 :: 2][: command.count("--backend")]
            assert set(backends) <= set(registry.backend_names())
