"""Reports from stored results: the sections of one structured document, and the report files.

The sections (``suites.report.render``'s document model) are built once from the results store
(``suites.store``), never from a live run, and rendered as markdown and as HTML. The
accuracy and timing sections live in ``suites.report.accuracy`` and ``suites.report.timing``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from xentbench.suites.judge.budget import BUDGET_RULE
from xentbench.suites.judge.verdicts import FAILURES, SEVERITY
from xentbench.suites.report.accuracy import (
    accuracy_sections,
    baseline_sections,
    failure_sections,
    invariant_sections,
    is_baseline,
    verdict_counts,
)
from xentbench.suites.report.findings import findings_section, report_findings
from xentbench.suites.report.format import clean, format_seconds
from xentbench.suites.report.glance import glance
from xentbench.suites.report.hunt import hunt_sections
from xentbench.suites.report.linear import benchmark_rows
from xentbench.suites.report.render import (
    Code,
    Section,
    Table,
    anchor,
    render_html,
    render_markdown,
)
from xentbench.suites.report.run_time import PlotJobs, run_time_section
from xentbench.suites.report.timing import csv_frame as timing_csv_frame
from xentbench.suites.report.timing import fastest_table, timing_sections
from xentbench.suites.report.trivial import trivial_frame, trivial_sections, write_trivial_csv
from xentbench.suites.store.rows import load
from xentbench.suites.store.run_json import read_run_info
from xentbench.suites.store.schema import KEYS

# The seconds of the latest ``build_report`` (wall, plots, the rest), for ``xentbench report``
# to record in the run's time breakdown.
REPORT_SECONDS: dict[str, float] = {}

# ---------------------------------------------------------------- header and summary


def header_section(infos: list[tuple[Path, dict]], frames: list[pd.DataFrame]) -> Section:
    """What the report is based on: runs, machines, devices, versions, reference, commands."""
    rows = pd.concat([f[["run_id", "device", "backend", "backend_version"]] for f in frames])
    built = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    bullets = [_run_bullet(run_dir, info) for run_dir, info in infos]
    bullets.append("Devices evaluated: " + (", ".join(sorted(set(rows["device"]) - {""})) or "—"))
    bullets.append("Backend versions: " + _versions(infos, rows))
    for label, key, text in _RUN_FACTS:
        bullets.append(f"{label}: " + _per_run(infos, key, text))
    blocks: list[Any] = [f"Built {built} from the stored results of {len(infos)} run(s).", bullets]
    commands = [
        (f"# {info.get('run_id', run_dir.name)}\n" if len(infos) > 1 else "") + "\n".join(cmds)
        for run_dir, info in infos
        if (cmds := info.get("commands"))
    ]
    if commands:
        blocks += ["Commands that produced these results:", Code("\n".join(commands))]
    return Section("xentbench report", blocks, level=1)


# run.json facts shown once when every run agrees, per run otherwise.


# run.json facts shown once when every run agrees, per run otherwise.
_RUN_FACTS = (
    ("Reference", "reference", lambda ref: _reference_text(ref)),
    (
        "Error budget",
        "ulp_budget_rule",
        lambda r: "as under Error budget" if r == BUDGET_RULE else r,
    ),
    ("Measured memory bandwidth", "memory_bandwidth_gbps", lambda v: f"{v:.3g} GB/s"),
    ("Harness overhead per call", "harness_overhead_s", format_seconds),
    ("Timing profile", "timing_profile", lambda p: _profile_text(p)),
)


def _profile_text(profile: Any) -> str:
    """The timing profile a run recorded (``suites.timing.profiles``)."""
    if isinstance(profile, dict):
        return str(profile.get("description") or profile.get("name") or "unknown")
    return str(profile)


def _reference_text(reference: Any) -> str:
    if not isinstance(reference, dict):
        return str(reference)
    return f"{reference.get('method', '?')} (precision: {reference.get('precision', '?')})"


def _run_bullet(run_dir: Path, info: dict) -> str:
    parts = [f"Run `{info.get('run_id', run_dir.name)}` on **{info.get('host', '?')}**"]
    for key in ("cpu", "gpu", "platform", "python"):
        if info.get(key):
            parts.append(f"{key} {info[key]}")
    if info.get("git_commit"):
        parts.append(f"git `{str(info['git_commit'])[:12]}`")
    if info.get("seed") is not None:
        parts.append(f"seed {info['seed']}")
    if info.get("shard"):
        parts.append(f"shard {info['shard']}")
    if info.get("started"):
        parts.append(f"{info['started']} → {info.get('finished') or 'unfinished'}")
    return ", ".join(parts)


def _per_run(infos: list[tuple[Path, dict]], key: str, text: Callable[[Any], str]) -> str:
    """One value when every run agrees, else ``value (run)`` per run."""
    values = {}
    for run_dir, info in infos:
        value = info.get(key)
        values[info.get("run_id", run_dir.name)] = "unknown" if value in (None, "") else text(value)
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return "; ".join(f"{value} (`{run}`)" for run, value in values.items())


def _versions(infos: list[tuple[Path, dict]], rows: pd.DataFrame) -> str:
    """Backend versions from the rows (the truth), then run.json for backends without rows."""
    seen: dict[str, dict[str, list[str]]] = {}
    pairs = rows[["backend", "backend_version", "run_id"]].drop_duplicates().itertuples(index=False)
    for backend, version, run_id in pairs:
        seen.setdefault(backend, {}).setdefault(version or "?", []).append(run_id)
    for run_dir, info in infos:
        for backend, version in (info.get("backends") or {}).items():
            if backend not in seen:
                seen[backend] = {str(version): [info.get("run_id", run_dir.name)]}
    parts = []
    for backend, versions in sorted(seen.items()):
        each = [f"{v} (`{'`, `'.join(runs)}`)" for v, runs in versions.items()]
        text = next(iter(versions)) if len(versions) == 1 else ", ".join(each)
        # Some versions name the backend themselves ("jax 0.10.0, optax 0.2.8").
        parts.append(text if text.startswith(backend) else f"{backend} {text}")
    return "; ".join(parts) or "—"


def _findings(accuracy: pd.DataFrame, timing: pd.DataFrame) -> list[str]:
    """The headline sentences a reader should see first."""
    findings = []
    if not accuracy.empty:
        counts = accuracy["verdict"].value_counts()
        evaluated = sum(int(counts.get(v, 0)) for v in SEVERITY)
        failing = accuracy[accuracy["verdict"].isin(FAILURES)]
        detail = ", ".join(f"{int(counts.get(v, 0))} {v}" for v in reversed(FAILURES))
        findings.append(
            f"**{len(failing)} of {evaluated}** accuracy evaluations fail ({detail}); "
            f"{int(counts.get('unsupported', 0))} unsupported combinations are not counted."
        )
        if not failing.empty:
            findings.append("Most failures: " + _worst_implementations(failing))
            families = failing["family"].value_counts()
            findings.append(
                "Failing case families: " + ", ".join(f"{f} ({n})" for f, n in families.items())
            )
    if not timing.empty:
        counts = timing["verdict"].value_counts()
        findings.append(
            f"{int(counts.get('ok', 0))} timings of {timing['implementation'].nunique()} "
            f"implementations; {int(counts.get('error', 0))} raised an error, "
            f"{int(counts.get('unsupported', 0))} unsupported."
        )
    return findings or ["No stored results."]


def _worst_implementations(failing: pd.DataFrame, limit: int = 5) -> str:
    table = pd.crosstab(failing["implementation"], failing["verdict"])
    table = table.reindex(columns=list(reversed(FAILURES)), fill_value=0)
    severe = table["error"] + table["wrong"]
    table = table.assign(_severe=severe, _all=table.sum(axis=1))
    table = table.sort_values(["_severe", "_all"], ascending=False).head(limit)
    table = table.drop(columns=["_severe", "_all"])
    return "; ".join(
        f"`{impl}` " + ", ".join(f"{n} {v}" for v, n in row.items() if n)
        for impl, row in table.iterrows()
    )


def summary_section(accuracy: pd.DataFrame, timing: pd.DataFrame) -> Section:
    """Headline and counts; baselines (``is_baseline``) are left to their own section."""
    baselines = is_baseline(accuracy) if not accuracy.empty else None
    if baselines is not None and baselines.any():
        accuracy = accuracy[~baselines]
    blocks: list[Any] = [_findings(accuracy, timing)]
    if baselines is not None and baselines.any():
        blocks[0].append(f"{int(baselines.sum())} evaluations of baselines are under Baselines.")
    if not accuracy.empty:
        blocks += ["Accuracy evaluations per backend, by verdict:", Table(verdict_counts(accuracy))]
    dtype, fastest = fastest_table(timing)
    if not fastest.empty:
        blocks.append(
            f"Fastest implementation per op and shape ({dtype}; every dtype is under Timing). "
            "“× ahead” is the runner-up's median over the fastest's."
        )
        blocks.append(Table(fastest))
    return Section("Summary", blocks)


# ---------------------------------------------------------------- entry point


def build_report(run_dirs: list[Path], out_dir: Path) -> dict[str, Path]:
    """Write report.md, report.html, summary.txt (the report at a glance), accuracy.csv,
    timing.csv and PNG plots into ``out_dir``.

    Returns the written files by name. Raises ``FileNotFoundError`` for a missing run
    directory and ``ValueError`` when the runs hold no results at all. A run given twice (or
    two copies of one run) counts once. The files are written into a private directory first
    and renamed into ``out_dir``: a symlink planted there is replaced, never written through.
    """
    run_dirs = list({Path(d).resolve(): Path(d) for d in run_dirs}.values())
    missing = [str(d) for d in run_dirs if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"no such run directory: {', '.join(missing)}")
    accuracy = clean(_once_per_run(load(run_dirs, "accuracy"), "accuracy"))
    timing = clean(_once_per_run(load(run_dirs, "timing"), "timing"))
    if accuracy.empty and timing.empty:
        raise ValueError(f"no stored results in {', '.join(map(str, run_dirs))}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".report-"))
    try:
        written = _build_into(run_dirs, accuracy, timing, staging, out_dir)
        return {name: _move_into(path, out_dir) for name, path in written.items()}
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _once_per_run(frame: pd.DataFrame, suite: str) -> pd.DataFrame:
    """One row per run and key: a run directory given twice, or copied, is not counted twice."""
    return frame.drop_duplicates(subset=["run_id", *KEYS[suite]], keep="last")


def _move_into(path: Path, out_dir: Path) -> Path:
    """Rename a staged file into ``out_dir`` (replacing a symlink there, not its target)."""
    target = out_dir / path.relative_to(path.parent)
    if target.is_dir() and not target.is_symlink():
        raise ValueError(f"{target} is a directory; the report cannot be written over it")
    os.replace(path, target)
    return target


def _build_into(
    run_dirs: list[Path], accuracy, timing, out_dir: Path, final_dir: Path
) -> dict[str, Path]:
    """Every report file, written into ``out_dir`` (to be moved into ``final_dir``, which the
    summary names); the plots drawn beside the findings."""
    started = time.perf_counter()
    infos = [(d, read_run_info(d)) for d in run_dirs]
    drawing = PlotJobs(accuracy, timing, out_dir, _bandwidth(infos))
    try:
        written = _write_csvs(accuracy, timing, out_dir)
        guard = trivial_frame(accuracy, run_dirs)
        written.update(write_trivial_csv(guard, out_dir))
        result = report_findings(accuracy, run_dirs) if not accuracy.empty else None
        findings = [findings_section(result)] if result is not None else []
        accuracy_plots, timing_plots = drawing.result("accuracy"), drawing.result("timing")
    finally:
        drawing.close()
    written.update({p.name: p for p in [*accuracy_plots, *timing_plots]})
    sections = [
        *findings,
        summary_section(accuracy, timing),
        *accuracy_sections(accuracy, accuracy_plots, _with_benchmarks(timing, run_dirs)),
        *failure_sections(_without_baselines(accuracy)),
        *(baseline_sections(accuracy) if not accuracy.empty else []),
        *invariant_sections(accuracy),
        *trivial_sections(guard),
        *hunt_sections(accuracy),
        *timing_sections(timing, timing_plots),
        *filter(None, [run_time_section(infos)]),
    ]
    contents = " · ".join(f"[{s.title}](#{anchor(s.title)})" for s in sections if s.level == 2)
    header = header_section(infos, [f for f in (accuracy, timing) if not f.empty])
    header.blocks.insert(1, f"Contents: {contents}")
    sections.insert(0, header)
    for name, text in (
        ("report.md", render_markdown(sections)),
        ("report.html", render_html(sections)),
    ):
        (out_dir / name).write_text(text, encoding="utf-8")
        written[name] = out_dir / name
    summary = glance(infos, accuracy, timing, result, final_dir, [*written, "summary.txt"])
    (out_dir / "summary.txt").write_text(summary, encoding="utf-8")
    written["summary.txt"] = out_dir / "summary.txt"
    wall_s = time.perf_counter() - started
    REPORT_SECONDS.update(
        wall_s=wall_s, plots_s=drawing.seconds, tables_s=max(0.0, wall_s - drawing.waited)
    )
    return written


def _without_baselines(accuracy: pd.DataFrame) -> pd.DataFrame:
    return accuracy if accuracy.empty else accuracy[~is_baseline(accuracy)]


def _with_benchmarks(timing: pd.DataFrame, run_dirs: list[Path]) -> pd.DataFrame:
    """The timing rows plus the linear benchmark's, for the linear section's cost columns."""
    benchmark = benchmark_rows(run_dirs)
    return timing if benchmark.empty else pd.concat([timing, benchmark], ignore_index=True)


def _write_csvs(accuracy: pd.DataFrame, timing: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """The tidy tables as stored (timing with ``ratio_to_fastest`` added); absent suites skipped."""
    written = {}
    for name, frame in (("accuracy.csv", accuracy), ("timing.csv", timing_csv_frame(timing))):
        if not frame.empty:
            frame.to_csv(out_dir / name, index=False)
            written[name] = out_dir / name
    return written


def _bandwidth(infos: list[tuple[Path, dict]]) -> float | None:
    """The measured bandwidth to draw on throughput plots, when all runs agree on one."""
    values = {info.get("memory_bandwidth_gbps") for _, info in infos}
    return values.pop() if len(values) == 1 else None
