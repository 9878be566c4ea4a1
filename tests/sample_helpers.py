"""The committed sample run, copied whole or cut to its small cases.

Reading the sample back computes the exact value of every stored call (the report's
trivial-output guard, the findings' careful kernel): minutes for its large cases on a cold
reference cache. The fast tier reads a copy cut to the cases of at most
``SMALL_CASE_ELEMENTS`` logits (most of the catalog, every op, dtype and backend); the slow
tier reads the whole sample. A test needing fewer rows names the case families it reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xentbench.suites.catalog.cases import find

SAMPLE = Path(__file__).resolve().parents[1] / "reports" / "sample"
SMALL_CASE_ELEMENTS = 20_000
# Every test of the sample takes both: the small cases by default, every case with --run-slow.
EVERY_CASE = [False, pytest.param(True, marks=pytest.mark.slow, id="every-case")]


def _kept(case_id: str, families: frozenset[str] | None) -> bool:
    if families is not None and case_id.split("/")[1] not in families:
        return False
    try:
        case = find(case_id)
    except KeyError:  # not a catalog case (a hunted input): small by construction
        return True
    return case.batch * case.classes <= SMALL_CASE_ELEMENTS


def sample_copy(
    destination: Path, every_case: bool, families: frozenset[str] | None = None
) -> Path:
    """A copy of the committed sample at ``destination``: whole, or its accuracy rows cut to
    the small cases (of ``families`` only, when given); timing rows and run.json as committed."""
    shutil.copytree(SAMPLE, destination)
    if not every_case:
        for path in destination.glob("accuracy-*.parquet"):
            table = pq.read_table(path)
            ids = table.column("case_id").to_pylist()
            pq.write_table(table.filter(pa.array([_kept(i, families) for i in ids])), path)
    return destination
