"""Thread caps for workers that share the machine's cores.

Two workers that each start a thread per core oversubscribe the cores, and a framework whose
thread team spins while it waits (OpenMP in torch, Eigen in TensorFlow) then loses most of its
time to the other worker: torch's accuracy suite took 120 s beside JAX's on two cores, 21 s
with one thread each. Workers that run side by side (``run --jobs N``) therefore get
``cores // N`` threads each through the variables the frameworks read at start-up; a
variable the user set is left as it is. Timing workers run alone and are never capped.
"""

from __future__ import annotations

import os

# What each framework reads: OpenMP (torch, NumPy's BLAS built with it), MKL, OpenBLAS, and
# TensorFlow's intra-op pool (tensorflow/core/common_runtime/process_util.cc).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
THREAD_VARIABLES += ("TF_NUM_INTRAOP_THREADS",)


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity set where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def shared_core_caps(parallel: int) -> dict[str, str]:
    """The variables a worker gets when ``parallel`` workers share the cores: {} for one
    worker, else ``cores // parallel`` (at least 1) for each variable the user left unset."""
    if parallel <= 1:
        return {}
    threads = str(max(1, usable_cores() // parallel))
    return {name: threads for name in THREAD_VARIABLES if name not in os.environ}
