"""Hunt tasks for the options family: one per (implementation, dtype, device, mode, quantity)
of an implementation that declares cross-entropy options (``suites.hunt.options``).

Each batch is judged once, against ``reference.exact`` itself, so the rows kept (per
configuration, its most severe batch: worst verdict, then largest ``worst_ratio``) are stored
as judged, not judged again. A kept batch is saved like a plain hunted input
(``suites.hunt.task.save_input``) plus ``<hash>-options.npz`` (the call options, arrays in the
dtype's values), and stored with ``source = "hunt"``, the ``options`` column
(``reference.options.canonical``) and the case id ``hunt/<op>/<hash>``.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xentbench.adapters.base import Adapter, Call
from xentbench.reference.options import canonical
from xentbench.suites.hunt import options as family
from xentbench.suites.hunt.candidates import input_hash
from xentbench.suites.hunt.hunted import hunted_files
from xentbench.suites.hunt.search import HuntSpec, target_seed
from xentbench.suites.hunt.task import HuntTask, cpu_text, save_input
from xentbench.suites.judge.verdicts import SEVERITY


@dataclass
class Kept:
    """A configuration's most severe batch so far, as judged, and when it was found."""

    batch: family.Batch
    judged: dict[str, Any]
    when: str
    truth: Any  # the exact value it was judged against (or the reference's ValueError)

    @property
    def rank(self) -> tuple[int, float]:
        ratio = family.ratio_of(self.judged)
        return SEVERITY.get(self.judged["verdict"], 0), -math.inf if ratio != ratio else ratio


@dataclass
class OptionsFound:
    kept: dict[str, Kept] = field(default_factory=dict)  # by configuration name
    candidates: int = 0
    first_failure: str = ""
    started: float = field(default_factory=time.perf_counter)

    def now(self) -> str:
        return f"{time.perf_counter() - self.started:.2f} s, {self.candidates} candidates"


def hunt_options(adapter: Adapter, call: Call, spec: HuntSpec, seed: int) -> OptionsFound:
    """Search the option configurations ``call``'s implementation takes, within the budget."""
    op, dtype = call.implementation.op, call.dtype
    rng = target_seed(seed + 1, call)  # its own stream, apart from the plain target's
    configs = family.supported_configs(adapter, call)
    found = OptionsFound()
    if not configs:
        return found
    deadline = found.started + spec.budget_s
    elite: list[tuple[float, family.Batch]] = []
    for batch in family.first_batches(rng, op, dtype, configs):
        if found.candidates >= spec.max_evals or time.perf_counter() >= deadline:
            return found
        _take(adapter, call, batch, found, elite)
    while found.candidates < spec.max_evals and time.perf_counter() < deadline:
        parent = elite[_rank_weighted(rng, len(elite))][1]
        child = family.mutate_batch(rng, parent, op, dtype, configs)
        _take(adapter, call, child, found, elite)
    return found


def _rank_weighted(rng: np.random.Generator, count: int) -> int:
    weights = 1.0 / (1.0 + np.arange(count))
    return int(rng.choice(count, p=weights / weights.sum()))


def _take(adapter, call, batch: family.Batch, found: OptionsFound, elite) -> None:
    judged, _, _, _, truth = family.judge_batch(adapter, call, batch)
    found.candidates += 1
    severity = SEVERITY.get(judged["verdict"], 0)
    if severity >= SEVERITY["inaccurate"] and not found.first_failure:
        found.first_failure = found.now()
    score = Kept(batch, judged, found.now(), truth)
    known = found.kept.get(batch.config.name)
    if known is None or score.rank > known.rank:
        found.kept[batch.config.name] = score
    ratio = family.ratio_of(judged)
    fitness = math.inf if severity >= SEVERITY["wrong"] else ratio
    if fitness == fitness:
        elite.append((fitness, batch))
        elite.sort(key=lambda item: -item[0])
        del elite[family.ELITE :]
    if not elite:
        elite.append((-math.inf, batch))


class OptionsHuntTask(HuntTask):
    """Hunt the option configurations of one target; rows of what each kept (the plain hunt
    task's fields, template and key; case id ``hunt/<op>/options-target``)."""

    TARGET = "options-target"
    LABEL = "hunt options"

    def evaluate(self) -> list[dict[str, Any]]:
        cpu = time.process_time()
        found = hunt_options(self.adapter, self.call, self.spec, self.seed)
        search_cpu = time.process_time() - cpu
        rows = [self._row(kept, found) for kept in found.kept.values()]
        cpu_note = cpu_text(search_cpu, time.process_time() - cpu - search_cpu)
        return [{**row, "message": f"{row['message']}; {cpu_note}"} for row in rows]

    def _row(self, kept: Kept, found: OptionsFound) -> dict[str, Any]:
        op, dtype = self.call.implementation.op, self.call.dtype
        logits, labels, options = family.as_call_inputs(kept.batch, op, dtype, self.call.quantity)
        truth = kept.truth  # judged once, against reference.exact itself: nothing to redo
        digest = hashlib.sha256(f"{input_hash(logits, labels)}|{canonical(options)}".encode())
        name = digest.hexdigest()[:12]
        save_input(Path(self.run_dir), name, logits, labels, truth)
        save_options(Path(self.run_dir), name, options)
        finite = np.abs(logits.astype(np.float64))
        finite = finite[np.isfinite(finite)]
        notes = [
            kept.judged.get("message") or "",
            f"hunted options ({kept.batch.config.name}): {kept.batch.origin}",
            f"found after {kept.when}",
            f"first failure after {found.first_failure}" if found.first_failure else "",
            f"{found.candidates} batches in {found.now().split(',')[0]}",
        ]
        return {
            **self.template,
            **kept.judged,
            "case_id": f"hunt/{op}/{name}",
            "options": canonical(options),
            "n_classes": kept.batch.classes,
            "n_elements": int(logits.size),
            "max_abs_logit": float(finite.max()) if finite.size else math.nan,
            "invariant_failures": "",
            "message": "; ".join(note for note in notes if note),
        }


def save_options(run_dir: Path, name: str, options: dict[str, Any]) -> None:
    """The call options beside the input: arrays as the dtype's values (bfloat16 as float32),
    scalars as 0-d arrays."""
    path = hunted_files(run_dir, name)["options"]
    arrays = {}
    for key, value in options.items():
        value = np.asarray(value)
        arrays[key] = value.astype(np.float32) if value.dtype.name == "bfloat16" else value
    np.savez(path, **arrays)


def plan_options(adapter: Adapter, calls: list[Call], spec: HuntSpec, seed: int, run_dir: str):
    """One options task per call whose implementation takes a hunted configuration."""
    return [
        OptionsHuntTask(adapter, call, spec, seed, run_dir)
        for call in calls
        if call.implementation.op in family.OPTION_OPS and family.supported_configs(adapter, call)
    ]
