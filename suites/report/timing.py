"""The report's timing sections: the fastest implementation per op and shape, full tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from xentbench.adapters.base import DTYPES, OPS
from xentbench.suites.report import plots
from xentbench.suites.report.format import (
    format_seconds,
    images,
    number,
    percent,
    rank,
    run_columns,
    short,
    varying,
)
from xentbench.suites.report.render import Section, Table


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
    keys = [*run_columns(timing), *varying(ok, ("device",)), "op", *_options(ok)]
    keys += ["n_elements", "shape"]
    cells = ok.sort_values("median_s").groupby([*keys, "pass"], sort=False, dropna=False)
    cells = cells.apply(lambda g: _fastest_cell(g["label"].tolist(), g["median_s"].tolist()))
    table = cells.unstack("pass").fillna("—").reset_index()
    table = table.assign(_op=rank(table["op"], OPS)).sort_values(["_op", "n_elements"])
    table.columns.name = None
    return dtype, table.drop(columns=["_op", "n_elements"])


def _fastest_cell(labels: list[str], medians: list[float]) -> str:
    cell = f"{labels[0]} {format_seconds(medians[0])}"
    return cell + (f" ({medians[1] / medians[0]:.2f}× ahead)" if len(medians) > 1 else "")


def _options(frame: pd.DataFrame) -> list[str]:
    """["options"] where some rows were timed with call options (the training configuration),
    so those rows are their own rows; [] for runs with plain calls only (or before schema 4)."""
    return ["options"] if "options" in frame and frame["options"].fillna("").ne("").any() else []


def _timing_labels(frame: pd.DataFrame) -> pd.Series:
    """Implementation names, with the mode when several modes were timed."""
    if frame["mode"].nunique() > 1:
        return frame["implementation"] + " [" + frame["mode"] + "]"
    return frame["implementation"]


def with_ratio_to_fastest(timing: pd.DataFrame) -> pd.DataFrame:
    """Add ``ratio_to_fastest``: median over the best median for the same op/shape/pass/dtype."""
    ok = timing["verdict"].eq("ok") & (timing["median_s"] > 0)
    keys = [*run_columns(timing), "op", *_options(timing), "shape", "pass", "dtype"]
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
        f"dtype. {unsupported} unsupported combinations are not listed. "
        "A median marked “(contended)” was measured while other processes took the CPU "
        "(other processes used more than a quarter of a core on the timed cores, or the "
        "process got less than half a core) even after retries: it is the "
        "machine's number, not the op's. Peak B/elem: the peak bytes one call allocates "
        "(``--memory`` on CPU) per logits element. Rows with options were timed as LLM "
        "training calls cross-entropy (mean over non-ignored rows, a quarter of the labels "
        "ignored, label smoothing 0.1), only for implementations that declare those options; "
        "× fastest compares them among themselves."
    )
    blocks = [intro]
    contended = int(timing.get("contended", pd.Series(dtype=object)).eq(True).sum())
    if contended:
        blocks.append(
            f"**{contended} of {int(timing['verdict'].eq('ok').sum())} timings are contended**; "
            "re-run them on an idle machine before reading them."
        )
    sections = [Section("Timing", blocks)]
    timed = with_ratio_to_fastest(timing)
    timed = timed[timed["verdict"] != "unsupported"]
    for op in plots.ordered(timed["op"], OPS):
        table = _timing_table(timed[timed["op"] == op], timing)
        sections.append(Section(f"Timing, {op}", [Table(table)], level=3))
    if plot_paths:
        sections.append(Section("Time and throughput against bytes moved", images(plot_paths), 3))
    return sections


def _timing_table(rows: pd.DataFrame, timing: pd.DataFrame) -> pd.DataFrame:
    rows = rows.assign(_dtype=rank(rows["dtype"], DTYPES))
    rows = rows.sort_values(["pass", *_options(rows), "_dtype", "n_elements", "median_s"])
    ok = rows["verdict"].eq("ok")
    table = {
        **{column: rows[column] for column in run_columns(timing)},
        "pass": rows["pass"],
        **{column: rows[column].fillna("") for column in _options(rows)},
        "dtype": rows["dtype"],
        "shape": rows["shape"],
        "implementation": rows["implementation"],
        **{column: rows[column] for column in varying(timing, ("device", "mode"))},
        "median": _median_text(rows).where(ok, rows["verdict"]),
        "IQR": (rows["iqr_s"] / rows["median_s"]).map(percent),
        "GB/s": rows["gbps"].map(number),
        "roofline": rows["roofline_fraction"].map(percent),
        "× fastest": rows["ratio_to_fastest"].map(lambda r: number(r, ".2f")),
    }
    if "peak_bytes" in rows and rows["peak_bytes"].notna().any():
        table["peak B/elem"] = (rows["peak_bytes"] / rows["n_elements"]).map(number)
    if rows["compile_s"].notna().any():
        table["compile"] = rows["compile_s"].map(format_seconds)
    if (rows["message"] != "").any():
        table["note"] = rows["message"].map(short)
    return pd.DataFrame(table)


def _median_text(rows: pd.DataFrame) -> pd.Series:
    """The median, marked when the measurement was contended (older runs: never marked)."""
    text = rows["median_s"].map(format_seconds)
    if "contended" not in rows:
        return text
    return text.where(~rows["contended"].eq(True), text + " (contended)")


def csv_frame(timing: pd.DataFrame) -> pd.DataFrame:
    """``timing`` for CSV: ``ratio_to_fastest`` added, list columns as space-separated numbers."""
    frame = with_ratio_to_fastest(timing)
    for column in ("times_s", "calibration_s"):
        if column in frame:
            frame[column] = frame[column].map(
                lambda values: " ".join(f"{v:.6g}" for v in values) if len(values) else ""
            )
    return frame
