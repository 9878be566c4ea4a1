"""The report's linear section: loss/dX/dW/db verdicts with each implementation's time and
peak memory from the run's timing rows of the op, "not timed" where there are none."""

from __future__ import annotations

import json

import pandas as pd

from xentbench.suites.report.linear import (
    BENCHMARK_FILE,
    NOT_TIMED,
    benchmark_rows,
    linear_matrix,
    linear_sections,
    with_costs,
)

OP = "linear_cross_entropy"


def _accuracy() -> pd.DataFrame:
    rows = []
    for impl in ("torch:plain", "torch:fused"):
        for quantity in ("value", "grad_hidden", "grad_weight"):
            rows.append(
                {
                    "run_id": "r",
                    "host": "h",
                    "op": OP,
                    "implementation": impl,
                    "dtype": "float32",
                    "device": "cpu",
                    "mode": "eager",
                    "quantity": quantity,
                    "verdict": "pass",
                    "max_ulp_error": 0.5,
                    "worst_ratio": 0.1,
                }
            )
    return pd.DataFrame(rows)


def _timing() -> pd.DataFrame:
    base = {
        "op": OP,
        "implementation": "torch:plain",
        "dtype": "float32",
        "verdict": "ok",
        "shape": "256x512x8192",
    }
    return pd.DataFrame(
        [
            {**base, "pass": "forward", "median_s": 0.012, "peak_bytes": 16 * 2**20},
            {**base, "pass": "forward+backward", "median_s": 0.040, "peak_bytes": 48 * 2**20},
            {**base, "dtype": "bfloat16", "pass": "forward", "median_s": 9.0, "peak_bytes": 1},
        ]
    )


def test_time_and_peak_memory_sit_beside_the_verdicts():
    table = with_costs(linear_matrix(_accuracy()), _timing(), "float32").set_index("implementation")
    assert list(table.columns) == ["loss", "dX", "dW", "time", "peak memory"]
    assert table.loc["torch:plain", "time"] == "12 ms / 40 ms (256x512x8192)"
    assert table.loc["torch:plain", "peak memory"] == "16 MiB / 48 MiB"
    assert table.loc["torch:fused", "time"] == NOT_TIMED
    assert table.loc["torch:fused", "peak memory"] == NOT_TIMED


def test_without_timing_rows_every_cell_says_not_timed():
    sections = linear_sections(_accuracy(), None)
    table = sections[1].blocks[0].frame
    assert set(table["time"]) == {NOT_TIMED} and set(table["peak memory"]) == {NOT_TIMED}


def test_the_linear_benchmark_output_in_a_run_directory_fills_the_cost_cells(tmp_path):
    rows = [
        {"implementation": "torch:fused", "shape": [1024, 1024, 32000], "dtype": "float32",
         "pass": p, "median_ms": ms, "peak_mib": mib}
        for p, ms, mib in (("forward", 290.0, 130.0), ("forward+backward", 650.0, 260.0))
    ] + [{"implementation": "torch:fused", "shape": [1, 1, 1], "dtype": "float32",
          "pass": "forward", "message": "timed out after 600 s"}]  # fmt: skip
    (tmp_path / BENCHMARK_FILE).write_text(json.dumps(rows))
    table = with_costs(linear_matrix(_accuracy()), benchmark_rows([tmp_path]), "float32")
    fused = table.set_index("implementation").loc["torch:fused"]
    assert fused["time"] == "290 ms / 650 ms (1024x1024x32000)"
    assert fused["peak memory"] == "130 MiB / 260 MiB"
    assert benchmark_rows([tmp_path / "elsewhere"]).empty
