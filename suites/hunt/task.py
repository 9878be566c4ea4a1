"""Hunt tasks for the worker: one target each, hunted, its findings saved and turned into rows.

A ``HuntTask`` is a ``suites.run.worker.Task``: the worker runs it in the backend's own process,
so a framework that crashes loses only its target (the runner records an ``error`` row with
the template's case id ``hunt/<op>/target``). Each input a hunt keeps is judged again on its
own by ``suites.judge.call.judge`` (that row is the one stored), saved under
``<run>/hunt/<hash>-logits.npy`` (and ``-labels.npy``, ``-exact.npz`` with the exact ``hi``
and ``lo``), and written as an accuracy row with ``source = "hunt"`` and the stable case id
``hunt/<op>/<hash>`` (the hash of the input's bytes).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xentbench.adapters.base import Adapter, Call
from xentbench.suites.hunt.candidates import input_hash
from xentbench.suites.hunt.hunted import hunted_files
from xentbench.suites.hunt.oracle import Clock, Score, judge_alone
from xentbench.suites.hunt.search import Found, HuntSpec, catalog_seeds, hunt
from xentbench.suites.judge.call import call_columns
from xentbench.suites.judge.verdicts import SEVERITY
from xentbench.suites.store.schema import key_of

FAMILY = "hunt"


@dataclass
class HuntTask:
    """Hunt one (implementation, dtype, device, mode, quantity) target."""

    adapter: Adapter
    call: Call
    spec: HuntSpec
    seed: int
    run_dir: str

    TARGET = "target"  # the template's case id: hunt/<op>/<TARGET>
    LABEL = "hunt"  # how the progress bar and harness errors name the task

    @property
    def template(self) -> dict[str, Any]:
        return {
            **call_columns(self.adapter, self.call),
            "case_id": f"hunt/{self.call.implementation.op}/{self.TARGET}",
            "family": FAMILY,
            "source": "hunt",
        }

    @property
    def key(self) -> tuple:
        return key_of("accuracy", self.template)

    @property
    def label(self) -> str:
        c = self.call
        return f"{self.LABEL} {c.implementation.name} {c.dtype} {c.mode} {c.quantity}"

    def evaluate(self) -> list[dict[str, Any]]:
        """The rows of what the hunt kept: the broken input and the worst finite one."""
        op = self.call.implementation.op
        extra = () if self.spec.from_scratch else catalog_seeds(op, self.call.dtype, self.seed)
        cpu = time.process_time()
        found = hunt(self.adapter, self.call, self.spec, self.seed, extra)
        search_cpu = time.process_time() - cpu
        kept = [*found.broken.values(), *([found.worst] if found.worst else [])]
        rows = [self._row(score, found) for score in kept]
        cpu_note = cpu_text(search_cpu, time.process_time() - cpu - search_cpu)
        return [{**row, "message": f"{row['message']}; {cpu_note}"} for row in rows]

    def _row(self, score: Score, found: Found) -> dict[str, Any]:
        judged, _, logits, labels, truth = judge_alone(
            self.adapter, self.call, [score.candidate], Clock(), proven=True
        )
        name = input_hash(logits, labels)
        op = self.call.implementation.op
        save_input(Path(self.run_dir), name, logits, labels, truth)
        finite = np.abs(logits.astype(np.float64))
        finite = finite[np.isfinite(finite)]
        notes = [
            judged.get("message") or "",
            f"hunted: {score.candidate.origin}",
            _batch_note(score, judged),
            f"found after {found.when.get(id(score), '?')}",
            f"first failure after {found.first_failure}" if found.first_failure else "",
            found.clock.split(),
        ]
        return {
            **self.template,
            **judged,
            "case_id": f"hunt/{op}/{name}",
            "n_classes": score.candidate.classes,
            "n_elements": int(logits.size),
            "max_abs_logit": float(finite.max()) if finite.size else math.nan,
            "invariant_failures": "",
            "message": "; ".join(note for note in notes if note),
        }


def cpu_text(search_s: float, final_s: float) -> str:
    """The target's CPU seconds (this process): the search and the final judging of what it
    kept; what the default budget's arithmetic (``suites.hunt.search.DEFAULT_BUDGET_S``) uses."""
    return f"cpu: search {search_s:.2f} s, final judging {final_s:.2f} s"


def _batch_note(score: Score, judged: dict[str, Any]) -> str:
    """Said when the row on its own is judged less severely than within its batch."""
    alone = SEVERITY.get(judged["verdict"], 0)
    if alone < SEVERITY.get(score.verdict, 0):
        return f"within a batch it was {score.verdict} (ratio {score.ratio:.3g}); alone it is not"
    return ""


def load_input(run_dir: Path, case_id: str, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The inputs of a hunted row (case id ``hunt/<op>/<hash>``) in ``dtype``, as evaluated:
    for reproducers and re-checks, like ``Case.inputs`` for a catalog case."""
    from xentbench.reference.dtypes import numpy_dtype

    paths = hunted_files(run_dir, case_id.rsplit("/", 1)[-1])
    logits = np.load(paths["logits"], allow_pickle=False).astype(numpy_dtype(dtype))
    if not paths["labels"].exists():
        return logits, None
    labels = np.load(paths["labels"], allow_pickle=False)
    return logits, labels if labels.dtype.kind in "iu" else labels.astype(numpy_dtype(dtype))


def save_input(run_dir: Path, name: str, logits, labels, truth) -> None:
    """The input (.npy, the dtype's own numbers) and its exact value (hi, lo) or its error."""
    paths = hunted_files(run_dir, name)
    paths["logits"].parent.mkdir(parents=True, exist_ok=True)
    # np.save cannot name bfloat16 (it reads back as raw bytes): bfloat16 is kept as its exact
    # float32 values; every other dtype as itself.
    np.save(
        paths["logits"], logits.astype(np.float32) if logits.dtype.name == "bfloat16" else logits
    )
    if labels is not None:
        bf16 = labels.dtype.name == "bfloat16"
        np.save(paths["labels"], labels.astype(np.float32) if bf16 else labels)
    if isinstance(truth, ValueError):
        np.savez(paths["exact"], invalid=str(truth))
    else:
        np.savez(paths["exact"], hi=truth.hi, lo=truth.lo)
