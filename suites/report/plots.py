"""Report plots: accuracy heat maps (error ratio per implementation and case), and time and
throughput against bytes moved with the roofline.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot, no global state, no
display); each function writes PNG files into ``out_dir`` and returns their paths.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, LogFormatter

from xentbench.adapters.base import DTYPES, OPS
from xentbench.suites.judge.verdicts import SEVERITY, VERDICTS, verdict_for_result

_MARKERS = "osD^vP*Xh<>p"
_DPI = 100
# Columns that become part of a series label when they vary (several runs, devices, modes).
_LABEL_COLUMNS = ("run_id", "device", "mode")


def series_labels(frame: pd.DataFrame) -> pd.Series:
    """One legend label per row: the implementation, plus run/device/mode where those vary."""
    varying = [c for c in _LABEL_COLUMNS if c in frame and frame[c].nunique(dropna=False) > 1]
    labels = frame["implementation"].astype(str)
    if not varying:
        return labels
    suffix = frame[varying].astype(str).agg(", ".join, axis=1)
    return labels + " [" + suffix + "]"


def ordered(values: pd.Series, canonical: tuple[str, ...]) -> list[str]:
    """Unique values in canonical order first (DTYPES, OPS), then anything else sorted."""
    present = set(values.dropna())
    return [v for v in canonical if v in present] + sorted(present - set(canonical))


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=_DPI)
    return path


def _figure(width: float, height: float, shape: tuple[int, int], legend_in: float = 0.0):
    """A figure with fixed margins in inches (constrained layout doubles the drawing time).

    ``legend_in`` reserves that many inches on the right for a figure legend.
    """
    fig = Figure(figsize=(width + legend_in, height))
    axes = fig.subplots(*shape, squeeze=False)
    total = width + legend_in
    fig.subplots_adjust(
        left=0.9 / total,
        right=(width - 0.2) / total,
        bottom=0.7 / height,
        top=1 - 0.7 / height,
        hspace=0.5,
        wspace=0.3,
    )
    return fig, axes


def _legend_width(labels: list[str]) -> float:
    """Inches a legend of ``labels`` needs at 8 points."""
    return 0.6 + 0.07 * max((len(label) for label in labels), default=0)


# The verdict names come from suites.judge.verdicts: a result measured against its budget is
# pass or inaccurate (``verdict_for_result`` of a finite result within and beyond it); the
# evaluated verdicts beyond those (wrong, error: severity order) get a class of their own; the
# verdicts of nothing evaluated (unsupported) are the blank background.
_MEASURED = (verdict_for_result(0, 0), verdict_for_result(0, 1))
_BEYOND_RATIO = tuple(verdict for verdict in SEVERITY if verdict not in _MEASURED)
_NOT_EVALUATED = tuple(verdict for verdict in VERDICTS if verdict not in SEVERITY)
# Heat-map classes of the error ratio (worst error / allowance, ``worst_ratio``): where each
# (implementation, case) sits against its budget. Bounds are on log10 of the ratio.
_RATIO_BANDS = (
    ("≤ 0.1 of budget", "#1a7f37"),
    (f"≤ budget ({_MEASURED[0]})", "#8fd694"),
    ("≤ 10x budget", "#ffd166"),
    ("≤ 1000x budget", "#f4845f"),
    ("> 1000x budget", "#c0392b"),
)
_RATIO_BOUNDS = (-1.0, 0.0, 1.0, 3.0)
# What each of _BEYOND_RATIO means on the map, in its order, and its colour.
_BEYOND_RATIO_STYLE = (("wrong kind / shape", "#5b0a0a"), ("raised", "#000000"))
_RATIO_CLASSES = _RATIO_BANDS + tuple(
    (f"{verdict} ({meaning})", colour)
    for verdict, (meaning, colour) in zip(_BEYOND_RATIO, _BEYOND_RATIO_STYLE, strict=True)
)
_NOT_EVALUATED_LABEL = " / ".join(("not evaluated", *_NOT_EVALUATED))


def _ratio_class(verdict: str, ratio: float) -> float:
    """The heat-map class index of one result (NaN: not evaluated or unsupported); a measured
    result with an infinite ratio shows as a non-finite mismatch does (``verdict_for_result``)."""
    if verdict in _MEASURED and ratio == math.inf:
        verdict = verdict_for_result(1, 0)
    if verdict in _BEYOND_RATIO:
        return float(len(_RATIO_BANDS) + _BEYOND_RATIO.index(verdict))
    if verdict not in _MEASURED or not math.isfinite(ratio):
        return math.nan
    return float(np.searchsorted(_RATIO_BOUNDS, math.log10(max(ratio, 1e-300)), side="left"))


def accuracy_plots(accuracy: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One heat map per dtype: error ratio class per (implementation and quantity, case)."""
    judged = accuracy[accuracy["verdict"].isin(list(SEVERITY))]
    if judged.empty:
        return []
    ratio = judged.get("worst_ratio")
    if ratio is None or ratio.isna().all():  # runs from before worst_ratio: ULPs / budget
        ratio = judged["max_ulp_error"] / judged["budget_ulps"]
    classes = [_ratio_class(v, float(r)) for v, r in zip(judged["verdict"], ratio, strict=True)]
    judged = judged.assign(series=series_labels(judged), _class=classes)
    paths = []
    for dtype in ordered(judged["dtype"], DTYPES):
        rows = judged[judged["dtype"] == dtype]
        paths.append(_heat_map_figure(dtype, rows, Path(out_dir) / f"accuracy-{dtype}.png"))
    return paths


def _heat_matrix(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows: implementation [quantity]; columns: case ids in catalog order; cells: class."""
    label = rows["series"] + np.where(rows["quantity"].eq("grad"), " (grad)", "")
    matrix = rows.assign(_row=label).pivot_table(
        index="_row", columns="case_id", values="_class", aggfunc="max"
    )
    return matrix.reindex(columns=list(dict.fromkeys(rows["case_id"])))


_HEAT_ROW_IN = 0.22  # inches per heat-map row
_HEAT_COLUMN_IN = 0.16
_HEAT_LABELS_IN = 1.7  # case names under each panel, and the panel title above it
_HEAT_TITLE_IN = 0.35
_HEAT_LEFT_IN = 3.3  # implementation names
_HEAT_LEGEND_IN = 2.4


def _heat_map_figure(dtype: str, rows: pd.DataFrame, path: Path) -> Path:
    """Panels stacked top to bottom, one per op, placed in inches so no label overlaps."""
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    ops = ordered(rows["op"], OPS)
    matrices = [_heat_matrix(rows[rows["op"] == op]) for op in ops]
    plot_width = _HEAT_COLUMN_IN * max(m.shape[1] for m in matrices)
    width = _HEAT_LEFT_IN + plot_width + _HEAT_LEGEND_IN
    panel_heights = [_HEAT_ROW_IN * max(m.shape[0], 2) for m in matrices]
    height = 0.8 + sum(h + _HEAT_TITLE_IN + _HEAT_LABELS_IN for h in panel_heights)
    fig = Figure(figsize=(width, height))
    colours = ListedColormap([colour for _, colour in _RATIO_CLASSES])
    norm = BoundaryNorm(np.arange(len(_RATIO_CLASSES) + 1) - 0.5, colours.N)
    top = height - 0.8
    for op, matrix, panel_height in zip(ops, matrices, panel_heights, strict=True):
        bottom = top - _HEAT_TITLE_IN - panel_height
        panel_width = _HEAT_COLUMN_IN * matrix.shape[1]
        ax = fig.add_axes(
            (_HEAT_LEFT_IN / width, bottom / height, panel_width / width, panel_height / height)
        )
        cells = np.ma.masked_invalid(matrix.to_numpy(float))
        ax.imshow(cells, cmap=colours, norm=norm, aspect="auto", interpolation="nearest")
        ax.set_facecolor("#eeeeee")  # not evaluated / unsupported
        ax.set_yticks(range(matrix.shape[0]), matrix.index, fontsize=7)
        names = [case.split("/", 1)[1] for case in matrix.columns]
        ax.set_xticks(range(matrix.shape[1]), names, fontsize=6, rotation=90)
        _family_separators(ax, names)
        ax.set_title(op, fontsize=10, loc="left")
        top = bottom - _HEAT_LABELS_IN
    legend = [Patch(color=colour, label=name) for name, colour in _RATIO_CLASSES]
    legend.append(Patch(color="#eeeeee", label=_NOT_EVALUATED_LABEL))
    anchor = ((_HEAT_LEFT_IN + plot_width + 0.2) / width, 1 - 0.8 / height)
    fig.legend(handles=legend, loc="upper left", bbox_to_anchor=anchor, fontsize=8)
    fig.suptitle(
        f"{dtype}: worst error against its allowance (worst_ratio), per implementation and case",
        y=1 - 0.25 / height,
    )
    return _save(fig, path)


def _family_separators(ax, names: list[str]) -> None:
    """Vertical lines between case families (the case name's first part)."""
    families = [name.split("/", 1)[0] for name in names]
    for index in range(1, len(families)):
        if families[index] != families[index - 1]:
            ax.axvline(index - 0.5, color="white", linewidth=2)


def _style(labels: list[str]) -> dict[str, tuple[str, str]]:
    """A stable (colour, marker) per series label, shared by every panel of a figure."""
    return {label: (f"C{i % 10}", _MARKERS[i % len(_MARKERS)]) for i, label in enumerate(labels)}


class _LogLabels(LogFormatter):
    """Log-axis labels written by ``text`` ("10 µs", "20") where matplotlib would label a tick."""

    def __init__(self, text) -> None:
        super().__init__(labelOnlyBase=False)
        self.text = text

    def __call__(self, x, pos=None) -> str:
        return self.text(x) if super().__call__(x, pos) else ""


def _y_labels(unit: str):
    return EngFormatter(unit="s", places=0) if unit == "seconds" else "{:g}".format


def _handle(colour: str, marker: str, label: str, hollow: bool = False) -> Line2D:
    face = "none" if hollow else colour
    return Line2D(
        [], [], color=colour, marker=marker, markerfacecolor=face, linestyle="", label=label
    )


def timing_plots(
    timing: pd.DataFrame, out_dir: Path, bandwidth_gbps: float | None = None
) -> list[Path]:
    """One figure per (op, pass): time and GB/s against bytes moved, one row per dtype.

    Bytes moved orders the shapes by the work they ask (classes alone zig-zags between batch
    sizes); colour and marker name the implementation, solid lines with filled markers are
    eager and dashed lines with hollow markers compiled; the dotted line is the roofline (the
    time, or the rate, of moving those bytes at the measured memory bandwidth); a red ring
    marks a contended measurement.
    """
    ok = timing[timing["verdict"].eq("ok") & (timing["median_s"] > 0)]
    ok = ok.assign(series=_timing_series(ok))
    paths = []
    for op in ordered(ok["op"], OPS):
        for pass_name in sorted(ok.loc[ok["op"] == op, "pass"].unique()):
            rows = ok[(ok["op"] == op) & (ok["pass"] == pass_name)]
            name = f"timing-{op}-{pass_name.replace('+', '-')}.png"
            paths.append(_timing_figure(op, pass_name, rows, bandwidth_gbps, Path(out_dir) / name))
    return paths


def _timing_series(frame: pd.DataFrame) -> pd.Series:
    """Series labels without the mode (drawn as the line style instead), with the call options
    of rows timed in the training configuration (their own series beside the plain call)."""
    labels = series_labels(frame.drop(columns=["mode"], errors="ignore"))
    if "options" not in frame:
        return labels
    options = frame["options"].fillna("")
    return labels.where(options.eq(""), labels + " [" + options + "]")


_MODE_STYLE = {"eager": ("-", True), "compiled": ("--", False)}  # line style, filled marker


def _timing_figure(
    op: str, pass_name: str, rows: pd.DataFrame, bandwidth_gbps: float | None, path: Path
) -> Path:
    dtypes = ordered(rows["dtype"], DTYPES)
    style = _style(sorted(rows["series"].unique()))
    legend = _timing_legend(style, rows, bandwidth_gbps)
    shape = (len(dtypes), 2)
    labels = [handle.get_label() for handle in legend]
    fig, axes = _figure(11, 3.4 * len(dtypes) + 0.6, shape, legend_in=_legend_width(labels))
    for (ax_time, ax_rate), dtype in zip(axes, dtypes, strict=True):
        of_dtype = rows[rows["dtype"] == dtype]
        for (label, mode), series in of_dtype.groupby(["series", "mode"], sort=True):
            _timing_series_lines(ax_time, ax_rate, series, style[label], mode)
        if bandwidth_gbps:
            _rooflines(ax_time, ax_rate, of_dtype["bytes"], bandwidth_gbps)
        _timing_axes(ax_time, f"{dtype}: median time per call", "seconds")
        _timing_axes(ax_rate, f"{dtype}: throughput", "GB/s")
    right = fig.subplotpars.right
    fig.legend(handles=legend, loc="center left", bbox_to_anchor=(right + 0.01, 0.5), fontsize=8)
    fig.suptitle(f"{op}, {pass_name}: against the bytes each call must move")
    return _save(fig, path)


def _timing_series_lines(ax_time, ax_rate, series, colour_marker, mode: str) -> None:
    colour, marker = colour_marker
    line, filled = _MODE_STYLE.get(mode, (":", True))
    series = series.sort_values("bytes")
    contended = series["contended"].eq(True) if "contended" in series else None
    for ax, column in ((ax_time, "median_s"), (ax_rate, "gbps")):
        ax.plot(
            series["bytes"],
            series[column],
            color=colour,
            marker=marker,
            markerfacecolor=colour if filled else "none",
            linestyle=line,
            markersize=5,
            linewidth=1.2,
        )
        if contended is not None and contended.any():
            ax.scatter(
                series.loc[contended, "bytes"],
                series.loc[contended, column],
                s=110,
                facecolors="none",
                edgecolors="#d00",
                linewidths=1.2,
                zorder=5,
            )


def _rooflines(ax_time, ax_rate, moved: pd.Series, bandwidth_gbps: float) -> None:
    """The memory-bound optimum: bytes / bandwidth on the time panel, the bandwidth on GB/s."""
    x = np.geomspace(moved.min(), moved.max(), 50)
    ax_time.plot(x, x / (bandwidth_gbps * 1e9), color="grey", linestyle=":", linewidth=1.2)
    ax_rate.axhline(bandwidth_gbps, color="grey", linestyle=":", linewidth=1.2)


def _timing_legend(style, rows: pd.DataFrame, bandwidth_gbps: float | None) -> list[Line2D]:
    handles = [_handle(*style[label], label) for label in style]
    modes = [mode for mode in _MODE_STYLE if mode in set(rows["mode"])]
    for mode in modes if len(modes) > 1 else []:
        line, filled = _MODE_STYLE[mode]
        handles.append(
            Line2D(
                [],
                [],
                color="black",
                linestyle=line,
                marker="o",
                label=mode,
                markerfacecolor="black" if filled else "none",
            )
        )
    if "contended" in rows and rows["contended"].eq(True).any():
        handles.append(
            Line2D(
                [],
                [],
                color="#d00",
                marker="o",
                markerfacecolor="none",
                linestyle="",
                markersize=9,
                label="contended",
            )
        )
    if bandwidth_gbps:
        handles.append(
            Line2D(
                [], [], color="grey", linestyle=":", label=f"roofline ({bandwidth_gbps:.3g} GB/s)"
            )
        )
    return handles


def _timing_axes(ax, title: str, unit: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(EngFormatter(unit="B", places=0))
    ax.yaxis.set_major_formatter(_LogLabels(_y_labels(unit)))
    ax.yaxis.set_minor_formatter(_LogLabels(_y_labels(unit)))
    ax.set_xlabel("bytes moved per call (inputs read + outputs written)")
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
