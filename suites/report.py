"""Reports from stored results: the sections of one structured document, and the report files.

The sections (``suites.render``'s document model) are built once from the results store
(``suites.results``), never from a live run, and rendered as markdown and as HTML.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from adapters.base import DTYPES, OPS
from suites import plots, results
from suites.render import Code, Image, Section, Table, anchor, render_html, render_markdown

SEVERITY: dict[str, int] = {"pass": 0, "inaccurate": 1, "wrong": 2, "error": 3}
FAILURES: tuple[str, ...] = ("inaccurate", "wrong", "error")
VERDICTS: tuple[str, ...] = (*SEVERITY, "unsupported")
FAMILY_ORDER: tuple[str, ...] = ("benign", "special", "extreme", "soft_labels", "sigmoid", "size")
# Non-pass rows shown per implementation; accuracy.csv always keeps every row.
MAX_FAILURES_SHOWN = 15
_MAX_CELL = 80


# ---------------------------------------------------------------- formatting


def format_ulps(value: float) -> str:
    if value is None or math.isnan(value):
        return "—"
    if math.isinf(value):
        return "inf"
    return f"{value:.2f}" if value < 100 else f"{value:.3g}"


def format_seconds(value: float) -> str:
    """A duration with three significant digits and a readable unit (ns, µs, ms, s)."""
    if value is None or math.isnan(value):
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def _number(value: float, spec: str = ".3g") -> str:
    return "—" if value is None or pd.isna(value) else format(value, spec)


def _percent(fraction: float) -> str:
    if fraction is None or pd.isna(fraction):
        return "—"
    return f"{100 * fraction:.0f}%" if fraction >= 0.1 else f"{100 * fraction:.2g}%"


def _short(text: Any, limit: int = _MAX_CELL) -> str:
    text = " ".join(str(text).split()) if text is not None and not pd.isna(text) else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing strings become "" so grouping never drops rows."""
    text = [
        c
        for c in frame.columns
        if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])
    ]
    return frame.fillna(dict.fromkeys(text, ""))


def run_columns(frame: pd.DataFrame) -> list[str]:
    """Provenance columns a table needs: run and host once rows come from several runs."""
    return ["run_id", "host"] if frame["run_id"].nunique() > 1 else []


def _varying(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[str]:
    return [c for c in columns if frame[c].nunique() > 1]


def _rank(values: pd.Series, canonical: tuple[str, ...]) -> pd.Series:
    order = {v: i for i, v in enumerate(canonical)}
    return values.map(lambda v: order.get(v, len(order)))


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
_RUN_FACTS = (
    ("Reference", "reference", lambda ref: _reference_text(ref)),
    ("ULP budget", "ulp_budget_rule", str),
    ("Measured memory bandwidth", "memory_bandwidth_gbps", lambda v: f"{v:.3g} GB/s"),
    ("Harness overhead per call", "harness_overhead_s", format_seconds),
)


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


def verdict_counts(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Evaluations per backend (and run) by verdict; ``evaluated`` excludes unsupported."""
    keys = [*run_columns(accuracy), "backend", "backend_version"]
    counts = pd.crosstab([accuracy[k] for k in keys], accuracy["verdict"])
    counts = counts.reindex(columns=list(VERDICTS), fill_value=0)
    counts.insert(0, "evaluated", counts[list(SEVERITY)].sum(axis=1))
    counts.columns.name = None
    return counts.reset_index().rename(columns={"backend_version": "version"})


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


def _headline_dtype(ok: pd.DataFrame) -> str:
    return "float32" if (ok["dtype"] == "float32").any() else ok["dtype"].value_counts().index[0]


def fastest_table(timing: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """The fastest implementation per op, shape and pass in the headline dtype (and that dtype).

    Each cell names the fastest implementation, its median and how far ahead of the
    runner-up it is (runner-up median / fastest median).
    """
    ok = timing[timing["verdict"].eq("ok") & (timing["median_s"] > 0)]
    if ok.empty:
        return "", pd.DataFrame()
    dtype = _headline_dtype(ok)
    ok = ok[ok["dtype"] == dtype].assign(label=_timing_labels(ok))
    keys = [*run_columns(timing), *_varying(ok, ("device",)), "op", "n_elements", "shape"]
    cells = ok.sort_values("median_s").groupby([*keys, "pass"], sort=False, dropna=False)
    cells = cells.apply(lambda g: _fastest_cell(g["label"].tolist(), g["median_s"].tolist()))
    table = cells.unstack("pass").fillna("—").reset_index()
    table = table.assign(_op=_rank(table["op"], OPS)).sort_values(["_op", "n_elements"])
    table.columns.name = None
    return dtype, table.drop(columns=["_op", "n_elements"])


def _fastest_cell(labels: list[str], medians: list[float]) -> str:
    cell = f"{labels[0]} {format_seconds(medians[0])}"
    return cell + (f" ({medians[1] / medians[0]:.2f}× ahead)" if len(medians) > 1 else "")


def _timing_labels(frame: pd.DataFrame) -> pd.Series:
    """Implementation names, with the mode when several modes were timed."""
    if frame["mode"].nunique() > 1:
        return frame["implementation"] + " [" + frame["mode"] + "]"
    return frame["implementation"]


def summary_section(accuracy: pd.DataFrame, timing: pd.DataFrame) -> Section:
    blocks: list[Any] = [_findings(accuracy, timing)]
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


# ---------------------------------------------------------------- accuracy


def accuracy_matrix(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Implementation × case family: worst verdict, failing/evaluated, largest ULP error."""
    keys = [*run_columns(accuracy), "op", "implementation", *_varying(accuracy, ("device", "mode"))]
    cells = accuracy.groupby([*keys, "family"], dropna=False)[["verdict", "max_ulp_error"]].apply(
        _matrix_cell
    )
    table = cells.unstack("family").fillna("")
    families = [f for f in FAMILY_ORDER if f in table.columns]
    table = table[families + sorted(set(table.columns) - set(families))].reset_index()
    table = table.assign(_op=_rank(table["op"], OPS)).sort_values(["_op", "implementation"])
    table.columns.name = None
    return table.drop(columns="_op")


def _matrix_cell(rows: pd.DataFrame) -> str:
    evaluated = rows[rows["verdict"] != "unsupported"]
    if evaluated.empty:
        return "unsupported"
    worst = max(evaluated["verdict"], key=lambda v: SEVERITY.get(v, len(SEVERITY)))
    ulps = format_ulps(evaluated["max_ulp_error"].max())
    if worst == "pass":
        return f"pass {ulps}"
    failing = int(evaluated["verdict"].isin(FAILURES).sum())
    cell = f"{worst} {failing}/{len(evaluated)}"
    return cell + (f", {ulps} ulp" if worst == "inaccurate" else "")


def accuracy_sections(accuracy: pd.DataFrame, plot_paths: list[Path]) -> list[Section]:
    if accuracy.empty:
        return [Section("Accuracy", ["No accuracy results in these runs."])]
    intro = (
        "One table per dtype. Each cell covers every case of the family (values and "
        "gradients): `pass 0.50` = all pass, largest error 0.50 ULP; `wrong 3/12` = worst "
        "verdict wrong, 3 of 12 evaluations fail; empty = not evaluated."
    )
    sections = [Section("Accuracy", [intro])]
    for dtype in plots.ordered(accuracy["dtype"], DTYPES):
        matrix = accuracy_matrix(accuracy[accuracy["dtype"] == dtype])
        sections.append(Section(f"Accuracy matrix, {dtype}", [Table(matrix)], level=3))
    if plot_paths:
        sections.append(Section("Error against logit magnitude", _images(plot_paths), level=3))
    return sections


def failure_sections(accuracy: pd.DataFrame) -> list[Section]:
    """Every non-pass result (unsupported excluded), grouped by implementation, worst first."""
    failing = accuracy[accuracy["verdict"].isin(FAILURES)]
    if failing.empty:
        return [] if accuracy.empty else [Section("Failures", ["Every evaluation passes."])]
    failing = failing.assign(_severity=failing["verdict"].map(SEVERITY))
    failing = failing.sort_values(["_severity", "max_ulp_error"], ascending=False)
    intro = (
        f"{len(failing)} non-pass results, worst first; at most {MAX_FAILURES_SHOWN} per "
        "implementation are shown here, `accuracy.csv` holds all of them."
    )
    sections = [Section("Failures", [intro])]
    keys = [*run_columns(accuracy), "implementation"]
    extra = _varying(accuracy, ("device", "mode"))
    groups = sorted(failing.groupby(keys, sort=False), key=lambda item: -len(item[1]))
    for key, rows in groups:
        counts = rows["verdict"].value_counts()
        title = " ".join(key if isinstance(key, tuple) else [key])
        title += " (" + ", ".join(f"{n} {v}" for v, n in counts.items()) + ")"
        blocks: list[Any] = [Table(_failure_table(rows.head(MAX_FAILURES_SHOWN), extra))]
        if len(rows) > MAX_FAILURES_SHOWN:
            blocks.append(f"… and {len(rows) - MAX_FAILURES_SHOWN} more in `accuracy.csv`.")
        sections.append(Section(title, blocks, level=3))
    return sections


def _failure_table(rows: pd.DataFrame, extra: list[str]) -> pd.DataFrame:
    where = rows["worst_index"].map(lambda i: f" at [{i}]" if i else "")
    detail = (
        rows["message"]
        .where(rows["message"] != "", "invariants failed: " + rows["invariant_failures"])
        .where((rows["message"] != "") | (rows["invariant_failures"] != ""), "")
    )
    budget = rows["budget_ulps"].map(lambda b: f" (budget {b:g})" if pd.notna(b) else "")
    budget = budget.where(rows["max_ulp_error"].notna(), "")
    table = {
        "case": rows["case_id"],
        "dtype": rows["dtype"],
        **{column: rows[column] for column in extra},
        "quantity": rows["quantity"],
        "verdict": rows["verdict"],
        "input": (rows["worst_input"] + where).map(_short),
        "expected": rows["expected"].map(lambda v: _number(v, ".9g")),
        "got": rows["got"].map(lambda v: _number(v, ".9g")),
        "ULPs": rows["max_ulp_error"].map(format_ulps) + budget,
        "detail": detail.map(_short),
    }
    return pd.DataFrame(table)


# ---------------------------------------------------------------- timing


def with_ratio_to_fastest(timing: pd.DataFrame) -> pd.DataFrame:
    """Add ``ratio_to_fastest``: median over the best median for the same op/shape/pass/dtype."""
    ok = timing["verdict"].eq("ok") & (timing["median_s"] > 0)
    keys = [*run_columns(timing), "op", "shape", "pass", "dtype"]
    best = (
        timing["median_s"]
        .where(ok)
        .groupby([timing[k] for k in keys], dropna=False)
        .transform("min")
    )
    return timing.assign(ratio_to_fastest=(timing["median_s"] / best).where(ok))


def timing_sections(timing: pd.DataFrame, plot_paths: list[Path]) -> list[Section]:
    if timing.empty:
        return [Section("Timing", ["No timing results in these runs."])]
    unsupported = int(timing["verdict"].eq("unsupported").sum())
    intro = (
        "Median of the repeats with the interquartile range relative to the median; GB/s "
        "from the bytes each call must move; roofline = GB/s over the measured memory "
        f"bandwidth; × fastest = median over the best median for that op, shape, pass and "
        f"dtype. {unsupported} unsupported combinations are not listed."
    )
    sections = [Section("Timing", [intro])]
    timed = with_ratio_to_fastest(timing)
    timed = timed[timed["verdict"] != "unsupported"]
    for op in plots.ordered(timed["op"], OPS):
        table = _timing_table(timed[timed["op"] == op], timing)
        sections.append(Section(f"Timing, {op}", [Table(table)], level=3))
    if plot_paths:
        sections.append(Section("Time and throughput against classes", _images(plot_paths), 3))
    return sections


def _timing_table(rows: pd.DataFrame, timing: pd.DataFrame) -> pd.DataFrame:
    rows = rows.assign(_dtype=_rank(rows["dtype"], DTYPES))
    rows = rows.sort_values(["pass", "_dtype", "n_elements", "median_s"])
    ok = rows["verdict"].eq("ok")
    table = {
        **{column: rows[column] for column in run_columns(timing)},
        "pass": rows["pass"],
        "dtype": rows["dtype"],
        "shape": rows["shape"],
        "implementation": rows["implementation"],
        **{column: rows[column] for column in _varying(timing, ("device", "mode"))},
        "median": rows["median_s"].map(format_seconds).where(ok, rows["verdict"]),
        "IQR": (rows["iqr_s"] / rows["median_s"]).map(_percent),
        "GB/s": rows["gbps"].map(_number),
        "roofline": rows["roofline_fraction"].map(_percent),
        "× fastest": rows["ratio_to_fastest"].map(lambda r: _number(r, ".2f")),
    }
    if rows["compile_s"].notna().any():
        table["compile"] = rows["compile_s"].map(format_seconds)
    if (rows["message"] != "").any():
        table["note"] = rows["message"].map(_short)
    return pd.DataFrame(table)


def _images(paths: list[Path]) -> list[Image]:
    return [Image(Path(p), Path(p).stem.replace("-", " ")) for p in paths]


# ---------------------------------------------------------------- entry point


def build_report(run_dirs: list[Path], out_dir: Path) -> dict[str, Path]:
    """Write report.md, report.html, accuracy.csv, timing.csv and PNG plots into ``out_dir``.

    Returns the written files by name. Raises ``FileNotFoundError`` for a missing run
    directory and ``ValueError`` when the runs hold no results at all.
    """
    run_dirs = [Path(d) for d in run_dirs]
    missing = [str(d) for d in run_dirs if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"no such run directory: {', '.join(missing)}")
    accuracy = _clean(results.load(run_dirs, "accuracy"))
    timing = _clean(results.load(run_dirs, "timing"))
    if accuracy.empty and timing.empty:
        raise ValueError(f"no stored results in {', '.join(map(str, run_dirs))}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = _write_csvs(accuracy, timing, out_dir)
    infos = [(d, results.read_run_info(d)) for d in run_dirs]
    accuracy_plots = plots.accuracy_plots(accuracy, out_dir)
    timing_plots = plots.timing_plots(timing, out_dir, _bandwidth(infos))
    written.update({p.name: p for p in [*accuracy_plots, *timing_plots]})
    sections = [
        summary_section(accuracy, timing),
        *accuracy_sections(accuracy, accuracy_plots),
        *failure_sections(accuracy),
        *timing_sections(timing, timing_plots),
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
    return written


def _write_csvs(accuracy: pd.DataFrame, timing: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """The tidy tables as stored (timing with ``ratio_to_fastest`` added); absent suites skipped."""
    written = {}
    for name, frame in (("accuracy.csv", accuracy), ("timing.csv", with_ratio_to_fastest(timing))):
        if not frame.empty:
            frame.to_csv(out_dir / name, index=False)
            written[name] = out_dir / name
    return written


def _bandwidth(infos: list[tuple[Path, dict]]) -> float | None:
    """The measured bandwidth to draw on throughput plots, when all runs agree on one."""
    values = {info.get("memory_bandwidth_gbps") for _, info in infos}
    return values.pop() if len(values) == 1 else None
