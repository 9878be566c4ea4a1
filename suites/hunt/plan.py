"""The hunt's plan: one task per target a selection wants, and one options task per target
whose implementation takes a hunted option configuration (what the worker runs)."""

from __future__ import annotations

from xentbench.adapters.base import Adapter
from xentbench.suites.catalog.selection import Selection
from xentbench.suites.hunt.candidates import SIGMOID, SOFT, SPARSE
from xentbench.suites.hunt.options_task import plan_options
from xentbench.suites.hunt.search import HuntSpec
from xentbench.suites.hunt.task import HuntTask

# The ops whose inputs are rows of logits (and labels): what candidates are. The linear op's
# inputs are hidden states and weight matrices (``reference.linear``), not hunted.
HUNTED_OPS = (SIGMOID, SOFT, SPARSE, "softmax", "log_softmax", "logsumexp")


def plan_hunt(adapter: Adapter, selection: Selection, spec: HuntSpec, run_dir: str) -> list:
    """One task per target the selection wants (ops in HUNTED_OPS), in the adapter's order,
    and one options task per target whose implementation takes a hunted option configuration."""
    tasks = []
    for impl in adapter.implementations():
        if impl.op not in HUNTED_OPS or not selection.wants_implementation(impl):
            continue
        quantities = tuple(q for q in impl.quantities if q in spec.quantities)
        calls = [c for c in selection.calls(impl, quantities) if not adapter.unsupported_reason(c)]
        tasks += [HuntTask(adapter, call, spec, selection.seed, run_dir) for call in calls]
        if spec.options:
            tasks += plan_options(adapter, calls, spec, selection.seed, run_dir)
    return tasks
