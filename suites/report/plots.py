"""Report plots: error in ULPs against logit magnitude, time and throughput against classes.

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

from adapters.base import DTYPES, OPS

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


# Magnitudes span 0 to 1e308; on a doubly logarithmic axis, 1, 10, 1e4, 1e16 and 1e256 all
# get room (the interesting thresholds sit near exp overflow: 11, 88, 709).
_MAGNITUDE_TICKS = (0.0, 1.0, 10.0, 100.0, 1e4, 1e8, 1e16, 1e32, 1e64, 1e128, 1e256)


def _to_magnitude_axis(x):
    return np.log2(1.0 + np.log10(1.0 + np.abs(x)))


def _from_magnitude_axis(v):
    exponent = np.clip(np.exp2(v) - 1.0, 0.0, 308.0)
    return np.power(10.0, exponent) - 1.0


class _LogLabels(LogFormatter):
    """Log-axis labels written by ``text`` ("10 µs", "20") where matplotlib would label a tick."""

    def __init__(self, text) -> None:
        super().__init__(labelOnlyBase=False)
        self.text = text

    def __call__(self, x, pos=None) -> str:
        return self.text(x) if super().__call__(x, pos) else ""


def _style(labels: list[str]) -> dict[str, tuple[str, str]]:
    """A stable (colour, marker) per series label, shared by every panel of a figure."""
    return {label: (f"C{i % 10}", _MARKERS[i % len(_MARKERS)]) for i, label in enumerate(labels)}


def accuracy_plots(accuracy: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One figure per dtype: max ULP error against max |logit|, one panel per op."""
    measured = accuracy[accuracy["verdict"].isin(["pass", "inaccurate", "wrong"])]
    measured = measured.assign(series=series_labels(measured))
    paths = []
    for dtype in ordered(measured["dtype"], DTYPES):
        rows = measured[measured["dtype"] == dtype]
        paths.append(_accuracy_figure(dtype, rows, Path(out_dir) / f"accuracy-{dtype}.png"))
    return paths


def _wrong_band(rows: pd.DataFrame) -> float:
    """A y position above every finite error and budget, where wrong/non-finite results go."""
    finite = rows["max_ulp_error"][np.isfinite(rows["max_ulp_error"])]
    budgets = rows["budget_ulps"][np.isfinite(rows["budget_ulps"])]
    top = max([10.0, *finite.tolist(), *budgets.tolist()])
    # One decade above the top, but never beyond float64 (errors of float64 outputs near 0
    # and their budgets reach 1e308 ULPs).
    return 10.0 ** min(math.ceil(math.log10(top)) + 1, 307)


def _accuracy_figure(dtype: str, rows: pd.DataFrame, path: Path) -> Path:
    ops = ordered(rows["op"], OPS)
    ncols = min(3, len(ops))
    nrows = math.ceil(len(ops) / ncols)
    fig, axes = _figure(5.6 * ncols, 4.2 * nrows, (nrows, ncols))
    band = _wrong_band(rows)
    for ax, op in zip(axes.flat, ops, strict=False):
        _accuracy_panel(ax, rows[rows["op"] == op], band)
        ax.set_title(op, fontsize=10)
    for ax in axes.flat[len(ops) :]:
        ax.set_visible(False)
    fig.suptitle(f"{dtype}: worst error in ULPs against the largest finite |logit| of the case")
    return _save(fig, path)


def _accuracy_panel(ax, rows: pd.DataFrame, band: float) -> None:
    """Filled markers: value; hollow: grad; shaded top band: wrong or non-finite results."""
    _accuracy_axes(ax, rows, band)
    style = _style(sorted(rows["series"].unique()))
    for label, series in rows.groupby("series", sort=True):
        colour, marker = style[label]
        x = series["max_abs_logit"].fillna(0.0).abs()
        ulps = series["max_ulp_error"]
        wrong = series["verdict"].eq("wrong") | ~np.isfinite(ulps)
        for quantity, face in (("value", colour), ("grad", "none")):
            keep = ~wrong & series["quantity"].eq(quantity)
            ax.scatter(
                x[keep],
                ulps[keep],
                marker=marker,
                facecolors=face,
                edgecolors=colour,
                s=28,
                alpha=0.8,
                zorder=3,
                clip_on=False,
            )
        ax.scatter(
            x[wrong],
            np.full(int(wrong.sum()), band),
            marker=marker,
            color=colour,
            edgecolors="#a11",
            linewidths=1.2,
            s=40,
            zorder=4,
            clip_on=False,
        )
    handles = [_handle(*style[label], label) for label in style]
    handles.append(_handle("black", "o", "grad (hollow)", hollow=True))
    ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.8)


def _accuracy_axes(ax, rows: pd.DataFrame, band: float) -> None:
    """Scales and limits first (autoscaling past a 1e308 logit overflows symlog), band, budgets."""
    x_top = float(rows["max_abs_logit"].abs().max())
    x_top = max(x_top if math.isfinite(x_top) else 1.0, 100.0)
    ax.set_xscale("function", functions=(_to_magnitude_axis, _from_magnitude_axis))
    ax.set_xlim(0, min(x_top * 10, 1e308))
    ticks = [t for t in _MAGNITUDE_TICKS if t <= x_top * 10]
    ax.set_xticks(ticks, [f"{t:g}" if t < 1e4 else f"1e{math.log10(t):.0f}" for t in ticks])
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(0, band * 3)
    ax.set_xlabel("largest finite |logit| (doubly logarithmic axis)")
    ax.set_ylabel("max error (ULPs)")
    ax.grid(True, which="major", alpha=0.3)
    on_y = ax.get_yaxis_transform()
    ax.axhspan(band / 3, band * 3, color="#fde2e2", zorder=0)
    ax.text(0.01, band, "wrong / non-finite", transform=on_y, fontsize=8, va="center", color="#a11")
    for budget in sorted(rows["budget_ulps"].dropna().unique())[:3]:
        ax.axhline(budget, color="grey", linestyle="--", linewidth=0.8, zorder=1)
        ax.text(
            0.99,
            budget,
            f"budget {budget:g}",
            transform=on_y,
            fontsize=7,
            ha="right",
            va="bottom",
            color="grey",
        )


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
    """One figure per (op, pass): median time and GB/s against classes, one row per dtype."""
    ok = timing[timing["verdict"].eq("ok") & (timing["median_s"] > 0)]
    ok = ok.assign(series=series_labels(ok))
    paths = []
    for op in ordered(ok["op"], OPS):
        for pass_name in sorted(ok.loc[ok["op"] == op, "pass"].unique()):
            rows = ok[(ok["op"] == op) & (ok["pass"] == pass_name)]
            name = f"timing-{op}-{pass_name.replace('+', '-')}.png"
            paths.append(_timing_figure(op, pass_name, rows, bandwidth_gbps, Path(out_dir) / name))
    return paths


def _timing_figure(
    op: str, pass_name: str, rows: pd.DataFrame, bandwidth_gbps: float | None, path: Path
) -> Path:
    dtypes = ordered(rows["dtype"], DTYPES)
    style = _style(sorted(rows["series"].unique()))
    shape = (len(dtypes), 2)
    fig, axes = _figure(11, 3.4 * len(dtypes) + 0.6, shape, legend_in=_legend_width(list(style)))
    for (ax_time, ax_rate), dtype in zip(axes, dtypes, strict=True):
        for label, series in rows[rows["dtype"] == dtype].groupby("series", sort=True):
            series = series.sort_values(["n_classes", "batch"])
            colour, marker = style[label]
            for ax, column in ((ax_time, "median_s"), (ax_rate, "gbps")):
                ax.plot(
                    series["n_classes"],
                    series[column],
                    color=colour,
                    marker=marker,
                    markersize=5,
                    linewidth=1.2,
                )
        if bandwidth_gbps:
            ax_rate.axhline(bandwidth_gbps, color="grey", linestyle="--", linewidth=0.8)
            ax_rate.text(
                0.01,
                bandwidth_gbps,
                "measured memory bandwidth",
                fontsize=7,
                transform=ax_rate.get_yaxis_transform(),
                va="bottom",
                color="grey",
            )
        _timing_axes(ax_time, f"{dtype}: median time", "seconds")
        _timing_axes(ax_rate, f"{dtype}: throughput", "GB/s")
    handles = [_handle(*style[label], label) for label in style]
    right = fig.subplotpars.right
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(right + 0.01, 0.5), fontsize=8)
    fig.suptitle(f"{op}, {pass_name} (points at the same class count differ in batch size)")
    return _save(fig, path)


def _timing_axes(ax, title: str, unit: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis, text in ((ax.xaxis, "{:,.0f}".format), (ax.yaxis, _y_labels(unit))):
        axis.set_major_formatter(_LogLabels(text))
        axis.set_minor_formatter(_LogLabels(text))
    ax.set_xlabel("classes")
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
