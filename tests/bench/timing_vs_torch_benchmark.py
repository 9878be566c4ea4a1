"""Cross-check the timing harness against ``torch.utils.benchmark`` on torch.softmax.

Times ``torch.softmax`` on float32 inputs with xentbench's harness (through the torch adapter
when it is available, so the adapter's ``run`` wrapper is included, else directly) and with
``torch.utils.benchmark.Timer.blocked_autorange`` in the same process, interleaving the two
a few times so that drift in machine load hits both. The medians should agree within 10%.

Run from the repository root: ``.venv/bin/python tests/bench/timing_vs_torch_benchmark.py``.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.utils.benchmark as torch_benchmark

from adapters.base import Call
from suites import timing
from suites.timing_suite import InputFactory

SHAPES = ((64, 1000), (256, 32000))


def harness_run(batch: int, classes: int) -> tuple[Callable[[], object], torch.Tensor, str]:
    """The callable our harness times, the same input as a tensor, and its source."""
    logits, _ = InputFactory(seed=0).inputs("softmax", batch, classes, "float32")
    tensor = torch.from_numpy(logits)
    try:
        from adapters import registry

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


def compare(batch: int, classes: int, rounds: int, min_run_time: float) -> float:
    """Print each round's two medians; return the ratio of their medians over rounds."""
    run, tensor, source = harness_run(batch, classes)
    ours, theirs = [], []
    for index in range(rounds):
        ours.append(timing.measure(run).median_s)
        theirs.append(torch_median_s(tensor, min_run_time))
        print(
            f"  round {index}: xentbench {ours[-1] * 1e6:10.1f} us"
            f"   torch.utils.benchmark {theirs[-1] * 1e6:10.1f} us"
        )
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(
        f"{batch}x{classes} float32 [{source}]: xentbench median "
        f"{statistics.median(ours) * 1e6:.1f} us, torch.utils.benchmark median "
        f"{statistics.median(theirs) * 1e6:.1f} us, ratio {ratio:.3f}"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-run-time", type=float, default=0.2)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; harness overhead "
        f"{timing.harness_overhead_s() * 1e9:.0f} ns per call"
    )
    ratios = [compare(b, c, args.rounds, args.min_run_time) for b, c in SHAPES]
    verdict = "agree" if all(abs(r - 1) <= 0.1 for r in ratios) else "DISAGREE"
    print(f"{verdict} within 10%: ratios {', '.join(f'{r:.3f}' for r in ratios)}")


if __name__ == "__main__":
    main()
