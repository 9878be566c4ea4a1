"""Peak memory of one call: a fresh process per op on CPU, allocator statistics on a GPU."""

from __future__ import annotations

import pytest

from xentbench.suites.timing import memory


def request(batch: int, classes: int, implementation: str = "numpy:stable.softmax") -> dict:
    return {
        "backend": "numpy",
        "implementation": implementation,
        "dtype": "float32",
        "device": "cpu",
        "mode": "eager",
        "quantity": "value",
        "batch": batch,
        "classes": classes,
        "seed": 0,
    }


@pytest.mark.slow
def test_cpu_peak_covers_the_output_and_grows_with_the_input():
    """A softmax must write a new logits-sized output: the peak is at least that, and 4x the
    elements need about 4x the bytes (the kernel's RSS accounting is coarse below ~1 MB)."""
    small, why = memory.cpu_peak_bytes(request(64, 32000))
    large, why_large = memory.cpu_peak_bytes(request(256, 32000))
    assert why == why_large == ""
    output_bytes = 256 * 32000 * 4
    assert output_bytes <= large < 8 * output_bytes
    assert 3 * small <= large <= 5 * small


@pytest.mark.slow
def test_a_failing_measurement_says_why_instead_of_raising():
    peak, why = memory.cpu_peak_bytes(request(2, 3, implementation="numpy:no-such-thing"))
    assert peak is None and why.startswith("peak memory: process failed")


@pytest.mark.gpu
def test_cuda_peak_comes_from_the_allocator_statistics():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    n = 1 << 22

    def run():
        return torch.ones(n, device="cuda", dtype=torch.float32).sum()

    peak = memory.device_peak_bytes("torch", run, "cuda")
    assert 4 * n <= peak < 8 * n
