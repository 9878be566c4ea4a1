"""Time and peak memory of every linear_cross_entropy implementation at language-model shapes.

For each (implementation, mode, shape N x d x C, dtype, pass) a *fresh process* imports that
implementation's backend only, prepares the call through the adapter protocol (inputs
converted and on the device), runs it once (first call: lazy initialisation and compilation),
measures one later call's peak memory, then times it with the suite's harness
(``suites.timing.harness.measure``: warm-up, adaptive repetition, median, IQR). The parent
imports no framework: it lists each backend's implementations in a child of its own
(``--list BACKEND`` prints them as JSON), so that no process holds two backends and each is
measured alone, whatever their libraries do to one another (triton, which cut_cross_entropy
imports, loaded after TensorFlow aborts the process: "LLVM ERROR: inconsistency in registered
CommandLine options"; ``adapters.registry`` now loads triton first, see ``LOAD_FIRST``).
Children get the parent's ``sys.path`` (plugins registered on it are seen).

Peak memory is measured as ``suites.timing.memory`` does: on the CPU the resident high-water
mark is reset (``/proc/self/clear_refs``) just before a call and VmHWM after it minus VmRSS
before it is the peak (the process runs with glibc told to return freed memory,
``memory.ALLOCATOR_ENV``; peaks under 1 MiB print as "<1"); on CUDA the allocator's peak after
a reset (torch, TensorFlow; "n/a" for JAX). Two peaks per row: ``peak_mib``, one call after the
first (the steady state), and ``first_call_peak_mib``, the first call (its compilation working
memory, and the pool a JAX or TensorFlow allocator grows then and keeps, which hides later
calls' memory). ``--json FILE`` also writes the rows; files written before the first call's
peak was measured lack the field (shown as "—"). The forward pass is the ``value`` call;
forward+backward is the ``grad_weight`` call (the loss and its gradient with respect to the
classifier weight, which needs the whole logits gradient). ``--modes eager compiled`` also
measures torch.compile / jax.jit where an implementation declares the mode.

Run it on a quiet machine from the repository root, e.g.
    python tests/bench/linear_ce_benchmark.py --shapes 1024x1024x32000 1024x1024x128000 \
        --dtypes float32 bfloat16 --modes eager compiled
(default implementations: every declared linear_cross_entropy implementation of the torch, jax,
tensorflow and cut_cross_entropy backends that loads here; ``--backends`` to choose). Nothing is
timed by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from xentbench.adapters.base import numpy_dtype  # noqa: E402  (no framework: backends load in children)

OP = "linear_cross_entropy"
PASSES = {"forward": "value", "forward+backward": "grad_weight"}
BACKENDS = ("torch", "jax", "tensorflow", "cut_cross_entropy")


def _shape(text: str) -> tuple[int, int, int]:
    rows, hidden, classes = (int(part) for part in text.lower().split("x"))
    return rows, hidden, classes


def _inputs(shape: tuple[int, int, int], dtype: str, seed: int = 0):
    """hidden [N, d] ~ N(0, 1), weight [C, d] ~ N(0, 1/d) (logits ~ N(0, 1)), labels [N]."""
    rows, hidden, classes = shape
    rng = np.random.default_rng([seed, *shape])
    target = numpy_dtype(dtype)
    x = rng.standard_normal((rows, hidden), dtype=np.float32).astype(target)
    w = (rng.standard_normal((classes, hidden), dtype=np.float32) / np.sqrt(hidden)).astype(target)
    return x, w, rng.integers(0, classes, size=rows)


def _peak_bytes(backend: str, run, device: str) -> int | None:
    """Peak bytes of one ``run()`` beyond what was allocated before it (suites.timing.memory:
    the resident high-water mark reset just before the call on the CPU, the allocator's peak
    on CUDA); None where the framework offers no resettable statistic."""
    from xentbench.suites.timing import memory

    if device == "cpu":
        return memory.resident_peak_bytes(run)
    return memory.device_peak_bytes(backend, run, device)


def _mib(peak: int | None, device: str) -> float | None:
    """Bytes as MiB, None where not measured or (CPU) below what VmHWM resolves."""
    from xentbench.suites.timing.memory import MIN_RESOLVED_BYTES

    resolved = peak is not None and (device != "cpu" or peak >= MIN_RESOLVED_BYTES)
    return peak / 2**20 if resolved else None


def _first_call(backend: str, run, device: str) -> tuple[float, int | None]:
    """Seconds and peak bytes of the first ``run()``: lazy initialisation, compilation and the
    growth of a pooling allocator (JAX, TensorFlow keep that pool, so later calls show ~0)."""
    seconds: list[float] = []

    def timed_run():
        started = time.perf_counter()
        output = run()
        seconds.append(time.perf_counter() - started)
        return output

    peak = _peak_bytes(backend, timed_run, device)
    return seconds[0], peak


def measure_one(spec: dict) -> dict:
    """In this (fresh) process: prepare, run once (its peak), measure one later call's peak,
    time; one row. Only the implementation's own backend is imported."""
    from xentbench.adapters import registry
    from xentbench.adapters.base import Call, backend_and_api
    from xentbench.suites.timing.harness import measure

    backend, name = backend_and_api(spec["implementation"])[0], spec["implementation"]
    adapter = registry.load(backend)
    impl = adapter.implementation(name)
    x, w, labels = _inputs(tuple(spec["shape"]), spec["dtype"])
    mode, device = spec.get("mode", "eager"), spec["device"]
    call = Call(impl, spec["dtype"], device, mode, PASSES[spec["pass"]], {"weight": w})
    reason = adapter.unsupported_reason(call)
    if reason:
        return {**spec, "message": f"unsupported: {reason}"}
    prepared = adapter.prepare(call, x, labels)
    del x, w  # the prepared call holds its own (device) copies
    first_call_s, first_peak = _first_call(backend, prepared.run, device)
    peak = _peak_bytes(backend, prepared.run, device)
    measurement = measure(prepared.run, max_total_s=spec["max_total_s"])
    return {
        **spec,
        "median_ms": measurement.median_s * 1e3,
        "iqr_ms": measurement.iqr_s * 1e3,
        "first_call_ms": first_call_s * 1e3,
        "peak_mib": _mib(peak, device),
        "first_call_peak_mib": _mib(first_peak, device),
        "message": measurement.summary(),
    }


def list_backend(backend: str) -> dict:
    """In this (fresh) process: the backend's linear_cross_entropy implementations, or why it
    is unavailable. Only that backend is imported (no process of the benchmark holds two)."""
    from xentbench.adapters import registry

    if backend not in registry.backend_names():
        return {"backend": backend, "unavailable": "not registered"}
    status = registry.status(backend)
    if not status.available:
        return {"backend": backend, "unavailable": status.reason}
    found = [i for i in status.adapter.implementations() if i.op == OP]
    return {
        "backend": backend,
        "implementations": [
            {"name": i.name, "modes": list(i.modes), "devices": list(i.devices)} for i in found
        ],
    }


def _child_env() -> dict[str, str]:
    """The parent's environment, its import path (plugins registered on it are seen) and
    glibc told to return freed memory (each call's peak shows)."""
    from xentbench.suites.timing.memory import ALLOCATOR_ENV

    env = {**os.environ, **ALLOCATOR_ENV}
    env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    return env


def _run_script(arguments: list[str], timeout_s: float) -> tuple[dict | None, str]:
    """This script in a fresh process: its last JSON line, or (None, why there is none)."""
    command = [sys.executable, __file__, *arguments]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, env=_child_env()
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout_s:.0f} s"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return None, f"exit {done.returncode}: {done.stderr.strip()[-200:]}"
    return json.loads(lines[-1]), ""


def implementations(
    patterns: list[str] | None, backends=BACKENDS, timeout_s: float = 600.0
) -> list[dict]:
    """Each backend's linear implementations (name, modes, devices), listed in one child
    process per backend; this process imports none of them."""
    found = []
    for backend in backends:
        listed, why = _run_script(["--list", backend], timeout_s)
        if listed is None or "unavailable" in listed:
            why = why or listed["unavailable"]
            print(f"skipped backend {backend}: {why}", file=sys.stderr, flush=True)
            continue
        found += listed["implementations"]
    return [i for i in found if not patterns or any(p in i["name"] for p in patterns)]


def _run_child(spec: dict, timeout_s: float) -> dict:
    row, why = _run_script(["--child", json.dumps(spec)], timeout_s)
    return row if row is not None else {**spec, "message": why}


def _mib_cell(row: dict, key: str) -> str:
    """A peak in MiB; "<1" below what the CPU resolves, "n/a" where the device has no
    statistic, "—" where the row (an older file) has no such field."""
    if key not in row:
        return "—"
    if row[key] is None:
        return "<1" if row.get("device", "cpu") == "cpu" else "n/a"
    return f"{row[key]:.0f}"


HEADER = (
    "implementation",
    "mode",
    "N x d x C",
    "dtype",
    "pass",
    "median ms",
    "IQR ms",
    "peak MiB",
    "first-call peak MiB",
)


def table_lines(rows: list[dict]) -> list[str]:
    """The rows as a markdown table (peaks: one call after the first, and the first call)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(" --- " for _ in HEADER) + "|"]
    for row in rows:
        shape = "x".join(str(v) for v in row["shape"])
        cells = [row["implementation"], row.get("mode", "eager"), shape, row["dtype"], row["pass"]]
        if "median_ms" in row:
            cells += [f"{row['median_ms']:.2f}", f"{row['iqr_ms']:.2f}"]
            cells += [_mib_cell(row, "peak_mib"), _mib_cell(row, "first_call_peak_mib")]
        else:
            cells += ["-", "-", "-", row.get("message", "")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def specs(impls: list[dict], args: argparse.Namespace) -> list[dict]:
    """One measurement per (implementation, declared mode asked for, shape, dtype, pass), for
    implementations that declare the device."""
    return [
        {
            "implementation": impl["name"],
            "mode": mode,
            "shape": list(shape),
            "dtype": dtype,
            "pass": pass_,
            "device": args.device,
            "max_total_s": args.max_total_s,
        }
        for impl in impls
        if args.device in impl["devices"]
        for mode in args.modes
        if mode in impl["modes"]
        for shape in args.shapes
        for dtype in args.dtypes
        for pass_ in args.passes
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", type=_shape, default=[(1024, 1024, 32000)])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--passes", nargs="+", choices=PASSES, default=list(PASSES))
    parser.add_argument("--impl", nargs="+", help="substrings of implementation names")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument(
        "--modes", nargs="+", choices=("eager", "compiled"), default=["eager"],
        help="modes to measure, each where the implementation declares it (default: eager)",
    )  # fmt: skip
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--max-total-s", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--list", metavar="BACKEND", help="print BACKEND's implementations")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        print(json.dumps(list_backend(args.list)))
        return 0
    if args.child:
        print(json.dumps(measure_one(json.loads(args.child))))
        return 0
    rows = []
    for spec in specs(implementations(args.impl, args.backends, args.timeout), args):
        rows.append(_run_child(spec, args.timeout))
        what = " ".join(str(spec[k]) for k in ("implementation", "mode", "shape", "dtype", "pass"))
        print(f"done: {what}", file=sys.stderr, flush=True)
    print("\n".join(table_lines(rows)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
