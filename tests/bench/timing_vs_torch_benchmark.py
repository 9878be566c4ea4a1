"""Cross-check the timing harness against ``torch.utils.benchmark`` on torch.softmax.

Times ``torch.softmax`` on float32 inputs with xentbench's harness (through the torch adapter
when it is available, so the adapter's ``run`` wrapper is included, else directly) and with
``torch.utils.benchmark.Timer.blocked_autorange`` in the same process, interleaving the two
a few times so that drift in machine load hits both. The medians should agree within 10%.
On a busy machine (load above the core count) compare the best rounds instead: other
processes only ever add time, so the least disturbed round of each is the comparable figure.

Run from the repository root: ``.venv/bin/python tests/bench/timing_vs_torch_benchmark.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable

import torch
import torch.utils.benchmark as torch_benchmark

from xentbench.adapters.base import Call
from xentbench.suites.timing import harness
from xentbench.suites.timing.inputs import InputFactory

SHAPES = ((64, 1000), (256, 32000))


def harness_run(batch: int, classes: int) -> tuple[Callable[[], object], torch.Tensor, str]:
    """The callable our harness times, the same input as a tensor, and its source."""
    logits, _ = InputFactory(seed=0).inputs("softmax", batch, classes, "float32")
    tensor = torch.from_numpy(logits)
    try:
        from xentbench.adapters import registry

        adapter = registry.load("torch")
        call = Call(adapter.implementation("torch:torch.softmax"), "float32")
        return adapter.prepare(call, logits, None).run, tensor, "torch adapter"
    except Exception as exc:  # the adapter is optional here; say why it was not used
        return (lambda: torch.softmax(tensor, dim=-1)), tensor, f"direct ({exc})"


def torch_median_s(tensor: torch.Tensor, min_run_time: float) -> float:
    """torch.utils.benchmark's median, with torch's own thread count (its default is 1)."""
    timer = torch_benchmark.Timer(
        stmt="torch.softmax(x, dim=-1)",
        globals={"x": tensor, "torch": torch},
        num_threads=torch.get_num_threads(),
    )
    return timer.blocked_autorange(min_run_time=min_run_time).median


def compare(batch: int, classes: int, rounds: int, min_run_time: float) -> tuple[float, float]:
    """Print each round's two medians; return (ratio of medians, ratio of best rounds)."""
    run, tensor, source = harness_run(batch, classes)
    ours, theirs = [], []
    for index in range(rounds):
        ours.append(harness.measure(run).median_s)
        theirs.append(torch_median_s(tensor, min_run_time))
        print(
            f"  round {index}: xentbench {ours[-1] * 1e6:10.1f} us"
            f"   torch.utils.benchmark {theirs[-1] * 1e6:10.1f} us"
        )
    ratio = statistics.median(ours) / statistics.median(theirs)
    best_ratio = min(ours) / min(theirs)
    print(
        f"{batch}x{classes} float32 [{source}]: median over rounds: xentbench "
        f"{statistics.median(ours) * 1e6:.1f} us, torch.utils.benchmark "
        f"{statistics.median(theirs) * 1e6:.1f} us, ratio {ratio:.3f}; best round: "
        f"{min(ours) * 1e6:.1f} us vs {min(theirs) * 1e6:.1f} us, ratio {best_ratio:.3f}"
    )
    return ratio, best_ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-run-time", type=float, default=0.2)
    parser.add_argument(
        "--threads", type=int, help="torch threads (fewer steadies a busy machine's timings)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; harness overhead "
        f"{harness.harness_overhead_s() * 1e9:.0f} ns per call"
    )
    ratios = [compare(b, c, args.rounds, args.min_run_time) for b, c in SHAPES]
    for what, index in (("medians", 0), ("best rounds", 1)):
        values = [pair[index] for pair in ratios]
        verdict = "agree" if all(abs(r - 1) <= 0.1 for r in values) else "DISAGREE"
        print(f"{what}: {verdict} within 10% (ratios {', '.join(f'{r:.3f}' for r in values)})")
    print(f"1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
