"""Peak memory of one call: what an implementation allocates beyond its inputs.

Fused and chunked cross-entropies are chosen for memory, so a timing row also says how many
bytes one call needs at its peak.

- **Accelerators**: the framework's allocator statistics (peak allocated since a reset, minus
  what was allocated before the call), in the timing worker itself; cheap, always on.
- **CPU** (opt-in, ``--memory``): allocators cache freed memory (glibc's heap, ONNX Runtime's
  arena), so a peak read in a long-lived worker can hide the op's allocations. Each op is run
  in a *fresh* process instead, with glibc told to map every allocation of 64 KiB or more
  separately and return it on free (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``),
  so the resident-set high-water mark (``VmHWM``) follows what the op touches. The process
  imports the framework, prepares the inputs and runs the op on a tiny input (lazy
  initialisation, code pages), and in compiled mode once at the real shape (compilation);
  then the high-water mark is reset (``/proc/self/clear_refs``) and one call runs: its peak
  is the high-water mark minus the resident set at the reset. The kernel keeps resident-set
  counts per CPU and folds them in batches (Linux 6.2+: up to 32 pages per CPU), so peaks
  under ``MIN_RESOLVED_BYTES`` are not resolved and are reported as unknown, with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from xentbench.adapters import registry
from xentbench.adapters.base import Call
from xentbench.suites.timing.configs import padded
from xentbench.suites.timing.inputs import OVERHEAD_SHAPE, InputFactory

_KIB = 1024
MEMORY_TIMEOUT_S = 300.0
_ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
ALLOCATOR_ENV = _ALLOCATOR_ENV  # for other fresh processes measured the same way
MIN_RESOLVED_BYTES = 1 << 20


def device_peak_bytes(backend: str, run, device: str) -> int | None:
    """Peak bytes one ``run()`` allocates on an accelerator, from the framework's allocator.

    None where the framework offers no resettable peak statistic (JAX: ``memory_stats`` has
    no reset) or no device is present.
    """
    if device == "cpu":
        return None
    if backend == "torch":
        import torch

        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        return int(torch.cuda.max_memory_allocated() - before)
    if backend == "tensorflow":
        import tensorflow as tf

        name = "GPU:0"
        tf.config.experimental.reset_memory_stats(name)
        before = tf.config.experimental.get_memory_info(name)["current"]
        run()
        return int(tf.config.experimental.get_memory_info(name)["peak"] - before)
    return None


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _reset_high_water_mark() -> None:
    """Set VmHWM to the current resident set (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def measure_in_this_process(request: dict[str, Any]) -> int:
    """Prepare, warm up and run the requested call once here; its peak resident growth."""
    adapter = registry.load(request["backend"])
    impl = adapter.implementation(request["implementation"])
    call = Call(
        impl,
        request["dtype"],
        request["device"],
        request["mode"],
        request["quantity"],
        options=request.get("options", {}),
    )
    tiny_logits, tiny_labels = InputFactory(request["seed"]).inputs(
        impl.op, *OVERHEAD_SHAPE, call.dtype
    )
    if tiny_labels is not None:
        tiny_labels = padded(tiny_labels, call.options, request["seed"])
    warm = adapter.prepare(call, tiny_logits, tiny_labels)
    warm.run()
    warm.run()
    logits, labels = InputFactory(request["seed"]).inputs(
        impl.op, request["batch"], request["classes"], call.dtype
    )
    if labels is not None:
        labels = padded(labels, call.options, request["seed"])
    prepared = adapter.prepare(call, logits, labels)
    if call.mode == "compiled":
        prepared.run()  # compiles for this shape: not the steady state's memory
    return resident_peak_bytes(prepared.run)


def resident_peak_bytes(run) -> int:
    """Peak resident growth of one ``run()`` in this process: the high-water mark is reset,
    then VmHWM after the call minus VmRSS just before it (run the process with
    ``ALLOCATOR_ENV`` so freed memory is returned and a later call's allocations show)."""
    _reset_high_water_mark()
    baseline_kib = _status_kib("VmRSS")
    output = run()
    peak_kib = _status_kib("VmHWM")
    del output
    return (peak_kib - baseline_kib) * _KIB


def child() -> None:
    """Entry point of the fresh process: a JSON request on stdin, ``{"peak_bytes": n}`` out."""
    import warnings

    warnings.simplefilter("ignore")
    request = json.loads(sys.stdin.read())
    print(json.dumps({"peak_bytes": measure_in_this_process(request)}))


def cpu_peak_bytes(request: dict[str, Any]) -> tuple[int | None, str]:
    """Peak bytes of one call measured in a fresh process: (bytes, "") or (None, why not)."""
    if not Path("/proc/self/clear_refs").exists():
        return None, "peak memory needs Linux /proc/self/clear_refs"
    env = {**os.environ, **_ALLOCATOR_ENV}
    env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    command = [sys.executable, "-c", "from xentbench.suites.timing.memory import child; child()"]
    try:
        done = subprocess.run(
            command,
            input=json.dumps(request),
            capture_output=True,
            text=True,
            env=env,
            timeout=MEMORY_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return None, f"peak memory: timed out after {MEMORY_TIMEOUT_S:g} s"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"peak memory: process failed ({last[:200]})"
    peak = int(json.loads(done.stdout.strip().splitlines()[-1])["peak_bytes"])
    if peak < MIN_RESOLVED_BYTES:
        return None, "peak memory under 1 MiB: below what the resident-set high-water mark resolves"
    return peak, ""
