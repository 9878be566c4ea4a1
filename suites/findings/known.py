"""Known behaviour (``known.toml``, its entries with their evidence) and findings classified by it.

Each entry names the findings it explains (implementation, quantity and failure-mode globs, and
optionally case, dtype, execution-mode and device globs that *every* evaluation of the finding
must match: "float32" and "eager" keys a behaviour of one dtype and mode apart) and carries its
evidence:

- ``documented``: the framework documents the behaviour or the precondition the input
  violates: ``url`` and the ``quote``d sentence;
- ``upstream``: a public issue or pull request: ``url`` and its ``state`` when checked;
- ``convention``: special-value semantics where libraries may reasonably differ: ``reason``;
- ``baseline``: a deliberately naive formula measured for contrast: ``reason``.

Entries are matched per evaluation (its implementation, quantity, failure mode and case): the
first entry that explains it is its cause, and findings are grouped by cause
(``suites.findings.group``), so each finding has one class; evaluations no entry explains form
the ``defect?`` findings.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from itertools import product
from pathlib import Path
from typing import Any

from xentbench.suites.findings.group import Finding

KNOWN_TOML = Path(__file__).with_name("known.toml")
UNMATCHED = "defect?"
# Classes in the order a report lists them: the unexplained first.
CLASSES: tuple[str, ...] = (UNMATCHED, "upstream", "documented", "convention", "baseline")
_REQUIRED = {
    "documented": ("url", "quote"),
    "upstream": ("url", "state"),
    "convention": ("reason",),
    "baseline": ("reason",),
}
_MATCH_FIELDS = ("implementations", "quantities", "failure_modes", "cases", "dtypes", "modes")
_MATCH_FIELDS += ("devices",)


@dataclass(frozen=True)
class Entry:
    """One known behaviour: what it matches and its evidence."""

    id: str
    klass: str
    implementations: tuple[str, ...]
    quantities: tuple[str, ...]
    failure_modes: tuple[str, ...]
    cases: tuple[str, ...]
    evidence: dict[str, str]
    dtypes: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()  # execution modes: eager, compiled
    devices: tuple[str, ...] = ()

    def explains(
        self,
        implementation: str,
        quantity: str,
        failure_mode: str,
        case: str,
        where: tuple[str, str, str] = ("", "", ""),
    ) -> bool:
        """Whether this entry explains one evaluation failing this way; ``where`` is its
        (dtype, mode, device), "" for one not known (matched only by an entry without globs)."""
        dtype, mode, device = where
        return (
            _any_glob(implementation, self.implementations)
            and _any_glob(quantity, self.quantities)
            and _any_glob(failure_mode, self.failure_modes)
            and _any_glob(case, self.cases)
            and _any_glob(dtype, self.dtypes)
            and _any_glob(mode, self.modes)
            and _any_glob(device, self.devices)
        )

    def matches(self, finding: Finding) -> bool:
        """Whether this entry explains every case, dtype, mode and device of ``finding``."""
        named = (finding.implementation, finding.quantity, finding.failure_mode)
        wheres = list(product(finding.dtypes, finding.modes, finding.devices)) or [("", "", "")]
        return all(self.explains(*named, case, where) for case in finding.cases for where in wheres)


def _any_glob(value: str, globs: tuple[str, ...]) -> bool:
    return not globs or any(fnmatchcase(value, g) for g in globs)


def cause_of(row: dict[str, Any], entries: tuple[Entry, ...] | None = None) -> str:
    """The id of the first entry explaining one (evaluation, failure mode) row, else ""."""
    entries = load_entries() if entries is None else entries
    fields = (row["implementation"], row["quantity"], row["failure_mode"], row["case_id"])
    where = tuple(str(row.get(key) or "") for key in ("dtype", "mode", "device"))
    return next((e.id for e in entries if e.explains(*fields, where)), "")


def _entry(raw: dict[str, Any], where: Path) -> Entry:
    name = raw.get("id", "?")
    klass = raw.get("class")
    if klass not in _REQUIRED:
        valid = ", ".join(_REQUIRED)
        raise ValueError(f"{where}: entry {name!r} has class {klass!r}; valid: {valid}")
    missing = [key for key in ("id", *_REQUIRED[klass]) if not str(raw.get(key, "")).strip()]
    if missing:
        raise ValueError(f"{where}: {klass} entry {name!r} lacks {', '.join(missing)}")
    if not raw.get("implementations"):
        raise ValueError(f"{where}: entry {name!r} names no implementations")
    evidence = {k: str(raw[k]) for k in ("url", "quote", "state", "reason") if raw.get(k)}
    return Entry(
        id=name,
        klass=klass,
        evidence=evidence,
        **{key: tuple(raw.get(key, ())) for key in _MATCH_FIELDS},
    )


@cache
def load_entries(path: Path = KNOWN_TOML) -> tuple[Entry, ...]:
    """The entries of ``known.toml``, in file order; a malformed entry raises ValueError."""
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    entries = tuple(_entry(raw, path) for raw in data.get("known", []))
    ids = [e.id for e in entries]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"{path}: entry ids repeated: {', '.join(repeated)}")
    return entries


def classify(findings: list[Finding], entries: tuple[Entry, ...] | None = None) -> list[Finding]:
    """Give each finding the class and evidence of its cause (``finding.entry``, as grouping by
    cause set it) or else of the first entry matching all its cases (else defect?), and return
    them ordered by class (defect? first), then implementation."""
    entries = load_entries() if entries is None else entries
    by_id = {e.id: e for e in entries}
    for finding in findings:
        entry = by_id.get(finding.entry) or next((e for e in entries if e.matches(finding)), None)
        finding.klass = entry.klass if entry else UNMATCHED
        finding.evidence = dict(entry.evidence) if entry else {}
        finding.entry = entry.id if entry else ""
    return sorted(
        findings,
        key=lambda f: (CLASSES.index(f.klass), f.implementation, f.quantity, f.failure_mode),
    )
