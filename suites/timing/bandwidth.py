"""The machine's sustainable memory bandwidth, the roofline that timings are read against.

Softmax and cross-entropy do a few flops per element, so at large sizes they are limited by
memory traffic, not arithmetic: the best an implementation can do is move its bytes at the
machine's memory bandwidth. We measure that bandwidth the way STREAM's "copy" kernel does: a
large array copy (``np.copyto``), far beyond the last-level cache so that every byte comes
from and goes to DRAM, counting bytes read plus bytes written. The op timings count bytes the
same way (inputs read plus outputs written), so ``roofline_fraction`` compares like with like.

On write-allocate caches the destination is also read before it is written, so the DRAM
traffic is really about 3x the array size; like STREAM we count 2x (the bytes the program
asks to move), which slightly underestimates the hardware's peak and is the usual convention.
"""

from __future__ import annotations

import functools
import time

import numpy as np

DEFAULT_COPY_BYTES = 256 * 2**20  # 256 MiB per array: 8x a 32 MiB L3, beyond any current LLC
DEFAULT_COPY_REPEATS = 5


def copy_bandwidth_gbps(n_bytes: int, repeats: int) -> float:
    """Best-of-``repeats`` bandwidth of copying ``n_bytes`` (read + write), in GB/s (1e9 B/s)."""
    source = np.ones(n_bytes // 8, dtype=np.float64)
    destination = np.zeros_like(source)  # zeros_like is lazily mapped: touch it first
    np.copyto(destination, source)  # warm-up: page faults are not bandwidth
    best_s = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(destination, source)
        best_s = min(best_s, time.perf_counter() - start)
    return 2 * source.nbytes / best_s / 1e9


@functools.cache
def memory_bandwidth_gbps() -> float:
    """Sustainable memory bandwidth of this machine in GB/s, measured once per process.

    Best of a few copies rather than the median: the roofline is the most the machine can
    do, and interference from other processes only ever lowers a single measurement.
    """
    return copy_bandwidth_gbps(DEFAULT_COPY_BYTES, DEFAULT_COPY_REPEATS)
