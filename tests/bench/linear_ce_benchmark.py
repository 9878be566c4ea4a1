"""Time and peak memory of every linear_cross_entropy implementation at language-model shapes.

For each (implementation, shape N x d x C, dtype, pass) a *fresh process* prepares the call
through the adapter protocol (inputs converted and on the device), records the memory
high-water mark, runs the call once (first call: compilation included), then times it with the
suite's harness (``suites.timing.harness.measure``: warm-up, adaptive repetition, median, IQR).
Peak memory is that of one call after the first, measured as ``suites.timing.memory`` does:
on the CPU the resident high-water mark is reset (``/proc/self/clear_refs``) just before the
call and VmHWM after it minus VmRSS before it is the peak (the process runs with glibc told to
return freed memory, ``memory.ALLOCATOR_ENV``; peaks under 1 MiB print as "<1"); on CUDA the
allocator's peak after a reset (torch, TensorFlow). ``--json FILE`` also writes the rows.
The forward pass is the ``value`` call; forward+backward is the ``grad_weight`` call (the loss
and its gradient with respect to the classifier weight, which needs the whole logits gradient).

Run it on a quiet machine from the repository root, e.g.
    python tests/bench/linear_ce_benchmark.py --shapes 1024x1024x32000 1024x1024x128000 \
        --dtypes float32 bfloat16
(default implementations: every declared linear_cross_entropy implementation of the torch, jax,
tensorflow and cut_cross_entropy backends that loads here). Nothing is timed by the tests.
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

from adapters import registry  # noqa: E402
from adapters.base import Call, numpy_dtype  # noqa: E402

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
    from suites.timing import memory

    if device == "cpu":
        return memory.resident_peak_bytes(run)
    return memory.device_peak_bytes(backend, run, device)


def measure_one(spec: dict) -> dict:
    """In this (fresh) process: prepare, run once, measure one call's peak, time; one row."""
    from suites.timing.harness import measure
    from suites.timing.memory import MIN_RESOLVED_BYTES

    backend, name = spec["implementation"].split(":", 1)[0], spec["implementation"]
    adapter = registry.load(backend)
    impl = adapter.implementation(name)
    x, w, labels = _inputs(tuple(spec["shape"]), spec["dtype"])
    call = Call(impl, spec["dtype"], spec["device"], "eager", PASSES[spec["pass"]], {"weight": w})
    reason = adapter.unsupported_reason(call)
    if reason:
        return {**spec, "message": f"unsupported: {reason}"}
    prepared = adapter.prepare(call, x, labels)
    del x, w  # the prepared call holds its own (device) copies
    started = time.perf_counter()
    prepared.run()  # first call: lazy initialisation, compilation for this shape
    first_call_s = time.perf_counter() - started
    peak = _peak_bytes(backend, prepared.run, spec["device"])
    measurement = measure(prepared.run, max_total_s=spec["max_total_s"])
    resolved = peak is not None and (spec["device"] != "cpu" or peak >= MIN_RESOLVED_BYTES)
    return {
        **spec,
        "median_ms": measurement.median_s * 1e3,
        "iqr_ms": measurement.iqr_s * 1e3,
        "first_call_ms": first_call_s * 1e3,
        "peak_mib": peak / 2**20 if resolved else None,
        "message": measurement.summary(),
    }


def _implementations(patterns: list[str] | None) -> list[str]:
    names = []
    for backend in BACKENDS:
        status = registry.status(backend) if backend in registry.backend_names() else None
        if status is None or not status.available:
            continue
        names += [i.name for i in status.adapter.implementations() if i.op == OP]
    return [n for n in names if not patterns or any(p in n for p in patterns)]


def _run_child(spec: dict, timeout_s: float) -> dict:
    from suites.timing.memory import ALLOCATOR_ENV

    command = [sys.executable, __file__, "--child", json.dumps(spec)]
    env = {**os.environ, **ALLOCATOR_ENV}  # freed memory returned: each call's peak shows
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {**spec, "message": f"timed out after {timeout_s:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {**spec, "message": f"exit {done.returncode}: {done.stderr.strip()[-200:]}"}
    return json.loads(lines[-1])


def _print_table(rows: list[dict]) -> None:
    header = ("implementation", "N x d x C", "dtype", "pass", "median ms", "IQR ms", "peak MiB")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        shape = "x".join(str(v) for v in row["shape"])
        cells = [row["implementation"], shape, row["dtype"], row["pass"]]
        if "median_ms" in row:
            peak = "<1" if row["peak_mib"] is None else f"{row['peak_mib']:.0f}"
            cells += [f"{row['median_ms']:.2f}", f"{row['iqr_ms']:.2f}", peak]
        else:
            cells += ["-", "-", row.get("message", "")]
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", type=_shape, default=[(1024, 1024, 32000)])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--passes", nargs="+", choices=PASSES, default=list(PASSES))
    parser.add_argument("--impl", nargs="+", help="substrings of implementation names")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--max-total-s", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_one(json.loads(args.child))))
        return 0
    rows = []
    for name in _implementations(args.impl):
        for shape in args.shapes:
            for dtype in args.dtypes:
                for pass_ in args.passes:
                    spec = {
                        "implementation": name,
                        "shape": list(shape),
                        "dtype": dtype,
                        "pass": pass_,
                        "device": args.device,
                        "max_total_s": args.max_total_s,
                    }
                    rows.append(_run_child(spec, args.timeout))
                    print(f"done: {name} {shape} {dtype} {pass_}", file=sys.stderr, flush=True)
    _print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
