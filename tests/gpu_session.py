"""The parts of ``nox -s gpu``: CUDA conformance of torch, JAX and TensorFlow, the triton paths
of the cut-cross-entropy and Liger-Kernel plugins (their whole accuracy catalog, with
cut-cross-entropy's ``softcap`` on the linear ``softcap-30`` case), and the timing grid at
language-model shapes, each under its own time limit, summarised in ``<run dir>/gpu.json``
and ``gpu.md``.

``python tests/gpu_session.py --probe`` exits 0 when ``nvidia-smi -L`` lists a GPU and 3 (with
the reason) when not; nox installs the CUDA environments only after a 0.
``python tests/gpu_session.py RUN_DIR [ENV=PYTHON ...]`` runs the parts with the interpreters
of the environments given; without a GPU every part is recorded ``unavailable`` with the
reason, nothing is imported or installed, and it exits 0. The limits add up to under eight
minutes (``TOTAL_LIMIT_S``); a part that fails or runs out of time makes the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Language-model heads: 4k tokens against 32k (Llama 2), 128k (Llama 3) and 256k (Gemma)
# vocabularies, in the dtypes training uses.
LM_SHAPES = ("4096x32000", "4096x128256", "2048x256000")
LM_DTYPES = ("bfloat16", "float32")
# The ops a training step calls at those shapes; eager only, so that no compile (torch.compile
# takes seconds per graph and shape) eats the time limit.
LM_OPS = ("log_softmax", "sparse_softmax_cross_entropy", "linear_cross_entropy")
PROBE_UNAVAILABLE = 3


@dataclass(frozen=True)
class Part:
    """One step: the environment whose interpreter runs it, its arguments after the
    interpreter (``{out}`` the run directory), and its time limit."""

    name: str
    environment: str
    arguments: tuple[str, ...]
    limit_s: int


def _conformance(name: str, backends: tuple[str, ...], environment: str, limit_s: int) -> Part:
    chosen = [argument for backend in backends for argument in ("--backend", backend)]
    junit = f"--junitxml={{out}}/gpu-{name}.xml"
    arguments = ("-m", "pytest", "tests/test_conformance.py", *chosen, "-m", "gpu", "-q")
    arguments += ("-n", "4", "-p", "no:cacheprovider", junit)
    return Part(name, environment, arguments, limit_s)


XENTBENCH = ("-m", "xentbench.suites.cli")
PARTS: tuple[Part, ...] = (
    _conformance("torch-conformance", ("torch",), "gpu-torch", 60),
    _conformance("jax-conformance", ("jax",), "gpu-jax", 75),
    _conformance("tensorflow-conformance", ("tensorflow",), "gpu-tensorflow", 75),
    _conformance(
        "plugins-conformance", ("cut_cross_entropy", "liger_kernel"), "gpu-torch", 45
    ),
    Part(
        "plugins-accuracy",
        "gpu-torch",
        (*XENTBENCH, "run", "--suite", "accuracy", "--backend", "cut_cross_entropy",
         "liger_kernel", "--device", "cuda", "--out", "{out}"),
        60,
    ),
    Part(
        "lm-timing",
        "gpu-torch",
        (*XENTBENCH, "run", "--suite", "timing", "--backend", "torch", "jax", "tensorflow",
         "cut_cross_entropy", "liger_kernel", "--python", "{python:gpu-jax}",
         "{python:gpu-tensorflow}", "--device", "cuda", "--dtype", *LM_DTYPES,
         "--op", *LM_OPS, "--mode", "eager", "--shapes", *LM_SHAPES, "--repeat-runs", "2",
         "--out", "{out}"),
        120,
    ),
    Part("report", "gpu-torch", (*XENTBENCH, "report", "{out}"), 30),
)  # fmt: skip
TOTAL_LIMIT_S = sum(part.limit_s for part in PARTS)


def no_gpu_reason() -> str | None:
    """Why no CUDA device can be used here (``nvidia-smi -L`` lists none), or None."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "no CUDA device: nvidia-smi is not on PATH (no NVIDIA driver installed)"
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no CUDA device: nvidia-smi -L failed ({exc})"
    if listed.returncode or not any(line.startswith("GPU ") for line in listed.stdout.splitlines()):
        said = (listed.stdout + listed.stderr).strip().splitlines()
        return f"no CUDA device: nvidia-smi -L lists none ({said[-1] if said else 'no output'})"
    return None


def _expand(part: Part, out: Path, pythons: dict[str, str]) -> list[str] | str:
    """The command line of ``part``, or why it cannot run (an environment not installed)."""
    needed = [part.environment] + [
        argument[len("{python:") : -1] for argument in part.arguments if "{python:" in argument
    ]
    missing = [name for name in needed if not Path(pythons.get(name, "")).is_file()]
    if missing:
        return f"environment {', '.join(missing)} not installed (see .nox/backend-*.log)"
    command = [pythons[part.environment]]
    for argument in part.arguments:
        if argument.startswith("{python:"):
            name = argument[len("{python:") : -1]
            argument = f"{name.removeprefix('gpu-')}={pythons[name]}"
        command.append(argument.replace("{out}", str(out)))
    return command


def run_part(part: Part, out: Path, pythons: dict[str, str], reason: str | None) -> dict:
    """Run one part (or record why not): its status, reason, seconds and command."""
    record = {"name": part.name, "environment": part.environment, "limit_s": part.limit_s}
    command = _expand(part, out, pythons) if reason is None else reason
    if isinstance(command, str):
        return {**record, "status": "unavailable", "reason": command, "seconds": 0.0}
    log = out / f"gpu-{part.name}.log"
    start = time.monotonic()
    with log.open("w") as output:
        try:
            code = subprocess.run(
                command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, timeout=part.limit_s
            ).returncode
            status, why = ("ok", "") if code == 0 else ("failed", f"exit status {code}")
        except subprocess.TimeoutExpired:
            status, why = "timed out", f"over its limit of {part.limit_s} s"
    seconds = round(time.monotonic() - start, 1)
    return {**record, "status": status, "reason": why, "seconds": seconds, "command": command}


def summary_markdown(records: list[dict], reason: str | None) -> str:
    lines = ["# GPU session", "", f"Device: {reason or 'CUDA (nvidia-smi -L lists a GPU)'}", ""]
    lines += ["| part | status | seconds | reason |", "| --- | --- | --- | --- |"]
    for r in records:
        lines.append(f"| {r['name']} | {r['status']} | {r['seconds']} | {r['reason']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", action="store_true", help="exit 0 if a GPU is usable, else 3")
    parser.add_argument("out", nargs="?", type=Path, help="the run directory")
    parser.add_argument("pythons", nargs="*", metavar="ENV=PYTHON", default=[])
    args = parser.parse_args(argv)
    reason = no_gpu_reason()
    if args.probe:
        print(reason or "a CUDA device is usable")
        return PROBE_UNAVAILABLE if reason else 0
    if args.out is None:
        parser.error("the run directory is required (or --probe)")
    pythons = dict(item.partition("=")[::2] for item in args.pythons)
    args.out.mkdir(parents=True, exist_ok=True)
    records = [run_part(part, args.out.resolve(), pythons, reason) for part in PARTS]
    document = {"reason": reason, "total_limit_s": TOTAL_LIMIT_S, "parts": records}
    (args.out / "gpu.json").write_text(json.dumps(document, indent=2) + "\n")
    markdown = summary_markdown(records, reason)
    (args.out / "gpu.md").write_text(markdown)
    print(markdown)
    return 1 if any(r["status"] in ("failed", "timed out") for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
