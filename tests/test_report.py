"""The report builder: files, counts, fastest implementation, failures, several runs."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest

from xentbench.suites.report.accuracy import MAX_FAILURES_SHOWN
from xentbench.suites.report.build import build_report
from xentbench.suites.store.rows import RowWriter
from xentbench.suites.store.run_json import update_run_info

# The columns naming a row's run and call, shared by the accuracy and timing rows.
IDENTITY = {
    "run_id": "run-a",
    "host": "host-a",
    "backend": "numpy",
    "backend_version": "2.0.0",
    "implementation": "numpy:softmax",
    "op": "softmax",
    "dtype": "float32",
    "device": "cpu",
    "mode": "eager",
}


def accuracy_row(**values) -> dict:
    row = {
        **IDENTITY,
        "verdict": "pass",
        "message": "",
        "quantity": "value",
        "case_id": "softmax/benign/small",
        "family": "benign",
        "n_classes": 10,
        "n_elements": 40,
        "max_abs_logit": 3.0,
        "tier": "correctly rounded",
        "worst_ratio": 0.125,
        "ulp_error": 0.5,
        "abs_error": 1e-8,
        "allowance": 8e-8,
        "max_ulp_error": 0.5,
        "mean_ulp_error": 0.2,
        "max_rel_error": 3e-8,
        "budget_ulps": 4.0,
        "nonfinite_mismatches": 0,
        "worst_index": "1, 2",
        "worst_input": "logit=3",
        "expected": 0.25,
        "got": 0.25,
        "invariant_failures": "",
        "elapsed_s": 0.01,
    }
    return {**row, **values}


def timing_row(**values) -> dict:
    row = {
        **IDENTITY,
        "verdict": "ok",
        "message": "",
        "pass": "forward",
        "shape": "64x1000",
        "batch": 64,
        "n_classes": 1000,
        "n_elements": 64000,
        "median_s": 2e-3,
        "iqr_s": 1e-5,
        "min_s": 1.9e-3,
        "repeats": 20,
        "calls_per_repeat": 1,
        "compile_s": math.nan,
        "bytes": 512000,
        "gbps": 0.256,
        "roofline_fraction": 0.02,
        "overhead_s": 1e-6,
    }
    return {**row, **values}


def write_run(run_dir: Path, accuracy=(), timing=(), **info) -> Path:
    """Store rows through the real writer, one backend at a time, and a run.json."""
    for suite, rows in (("accuracy", accuracy), ("timing", timing)):
        for backend in sorted({row["backend"] for row in rows}):
            writer = RowWriter(run_dir, suite, backend)
            for row in rows:
                if row["backend"] == backend:
                    writer.write(row)
            writer.close()
    update_run_info(run_dir, {"run_id": run_dir.name, "host": "host-a", **info})
    return run_dir


TORCH = {"backend": "torch", "backend_version": "2.5.0", "implementation": "torch:F.softmax"}
ACCURACY = [
    accuracy_row(case_id="softmax/benign/small"),
    accuracy_row(case_id="softmax/benign/large", max_ulp_error=1.5),
    accuracy_row(
        case_id="softmax/extreme/magnitude-1e30",
        family="extreme",
        verdict="wrong",
        max_ulp_error=math.nan,
        worst_input="logit=1e+30",
        expected=0.125,
        got=math.inf,
    ),
    accuracy_row(case_id="softmax/special/nan", family="special", verdict="error", message="boom"),
    accuracy_row(case_id="softmax/benign/small", dtype="float16", verdict="unsupported"),
    accuracy_row(
        **TORCH,
        case_id="softmax/benign/small",
        verdict="inaccurate",
        tier="over budget",
        max_ulp_error=9.0,
        worst_ratio=2.25,
    ),
    accuracy_row(**TORCH, case_id="softmax/benign/large"),
]
TIMING = [
    timing_row(median_s=2e-3),
    timing_row(**TORCH, median_s=1e-3),
]
RUN_INFO = {
    "commands": ["xentbench run --suite accuracy --backends numpy,torch"],
    "reference": {"method": "flint arb", "precision": "256 bits"},
    "ulp_budget_rule": "rule-of-budgets",
    "backends": {"numpy": "2.0.0", "torch": "2.5.0"},
}


def _rows(markdown: str) -> list[str]:
    """Markdown table rows with the padding around cells removed: ``|a|b|``."""
    return [
        re.sub(r"\s*\|\s*", "|", line) for line in markdown.splitlines() if line.startswith("|")
    ]


@pytest.fixture(scope="module")
def single_report(tmp_path_factory) -> tuple[dict[str, Path], str]:
    root = tmp_path_factory.mktemp("single")
    run_dir = write_run(root / "run-a", ACCURACY, TIMING, **RUN_INFO)
    written = build_report([run_dir], root / "report")
    return written, written["report.md"].read_text(encoding="utf-8")


def test_report_writes_markdown_html_csvs_and_png_plots(single_report):
    written, _ = single_report
    for name in ("report.md", "report.html", "accuracy.csv", "timing.csv"):
        assert written[name].is_file(), name
    pngs = [path for name, path in written.items() if name.endswith(".png")]
    assert any(p.name.startswith("accuracy-") for p in pngs)
    assert any(p.name.startswith("timing-") for p in pngs)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_header_names_reference_budget_rule_and_commands(single_report):
    _, markdown = single_report
    assert "flint arb (precision: 256 bits)" in markdown
    assert "rule-of-budgets" in markdown
    assert "xentbench run --suite accuracy --backends numpy,torch" in markdown
    assert "numpy 2.0.0" in markdown and "torch 2.5.0" in markdown


def test_summary_counts_each_verdict_per_backend(single_report):
    _, markdown = single_report
    rows = _rows(markdown)
    # backend, version, evaluated, pass, inaccurate, wrong, error, unsupported
    assert "|numpy|2.0.0|4|2|0|1|1|1|" in rows
    assert "|torch|2.5.0|2|1|1|0|0|0|" in rows


def test_summary_names_the_fastest_implementation_and_its_lead(single_report):
    _, markdown = single_report
    summary = markdown.split("## Accuracy")[0]
    assert "torch:F.softmax 1 ms (2.00× ahead)" in summary


def test_non_pass_results_list_case_expected_and_got(single_report):
    _, markdown = single_report
    failures = markdown.split("## Failures")[1].split("## Timing")[0]
    wrong = [row for row in _rows(failures) if "softmax/extreme/magnitude-1e30" in row]
    assert len(wrong) == 1
    assert "|wrong|logit=1e+30 at [1, 2]|0.125|inf|" in wrong[0]
    assert "boom" in failures
    assert "softmax/benign/small|float16" not in failures  # unsupported is not a failure


def test_accuracy_matrix_shows_worst_verdict_and_ulps_per_family(single_report):
    _, markdown = single_report
    matrix = markdown.split("### Accuracy matrix, float32")[1].split("###")[0]
    assert "|softmax|numpy:softmax|pass 1.50|wrong 1/1|error 1/1|" in _rows(matrix)
    assert any(
        r.startswith("|softmax|torch:F.softmax|inaccurate 1/2, 2.25× allowance|")
        for r in _rows(matrix)
    )


def test_timing_table_gives_ratio_to_the_fastest(single_report):
    _, markdown = single_report
    timing = markdown.split("### Timing, softmax")[1]
    assert "|forward|float32|64x1000|numpy:softmax|2 ms|0.5%|0.256|2%|2.00|" in _rows(timing)


def test_html_is_self_contained_and_carries_the_same_findings(single_report):
    written, markdown = single_report
    page = written["report.html"].read_text(encoding="utf-8")
    assert "data:image/png;base64," in page
    assert not re.search(r'src="(?!data:)', page)
    assert "torch:F.softmax 1 ms (2.00× ahead)" in page
    assert "softmax/extreme/magnitude-1e30" in page and "softmax/extreme/magnitude-1e30" in markdown


def test_csv_keeps_every_row(single_report):
    written, _ = single_report
    with open(written["accuracy.csv"], newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(ACCURACY)


def test_long_failure_lists_are_capped_but_csv_keeps_all(tmp_path):
    extra = 4
    rows = [
        accuracy_row(case_id=f"softmax/size/c{i}", family="size", verdict="inaccurate")
        for i in range(MAX_FAILURES_SHOWN + extra)
    ]
    written = build_report([write_run(tmp_path / "run", rows)], tmp_path / "out")
    markdown = written["report.md"].read_text(encoding="utf-8")
    assert f"… and {extra} more in `accuracy.csv`." in markdown
    with open(written["accuracy.csv"], newline="") as handle:
        assert len(list(csv.DictReader(handle))) == MAX_FAILURES_SHOWN + extra


def test_accuracy_only_run_builds_without_timing(tmp_path):
    written = build_report([write_run(tmp_path / "run", ACCURACY[:2])], tmp_path / "out")
    assert "timing.csv" not in written
    assert "No timing results in these runs." in written["report.md"].read_text(encoding="utf-8")


def test_timing_only_run_builds_without_accuracy(tmp_path):
    written = build_report([write_run(tmp_path / "run", timing=TIMING)], tmp_path / "out")
    assert "accuracy.csv" not in written
    markdown = written["report.md"].read_text(encoding="utf-8")
    assert "No accuracy results in these runs." in markdown
    assert "torch:F.softmax 1 ms (2.00× ahead)" in markdown


def test_several_runs_merge_and_tables_gain_run_and_host(tmp_path):
    base = write_run(tmp_path / "run-a", ACCURACY[:2])
    newer = [
        accuracy_row(**{**TORCH, "backend_version": "2.6.0"}, run_id="run-b", host="host-b"),
    ]
    second = write_run(tmp_path / "run-b", newer, host="host-b")
    written = build_report([base, second], tmp_path / "out")
    markdown = written["report.md"].read_text(encoding="utf-8")
    assert "**host-a**" in markdown and "**host-b**" in markdown
    rows = _rows(markdown)
    assert "|run_id|host|backend|version|evaluated|pass|inaccurate|wrong|error|unsupported|" in rows
    assert "|run-a|host-a|numpy|2.0.0|2|2|0|0|0|0|" in rows
    assert "|run-b|host-b|torch|2.6.0|1|1|0|0|0|0|" in rows


def test_versions_that_differ_between_runs_are_shown_per_run(tmp_path):
    first = write_run(tmp_path / "run-a", [accuracy_row(**TORCH)])
    upgraded = {**TORCH, "backend_version": "2.6.0", "run_id": "run-b"}
    second = write_run(tmp_path / "run-b", [accuracy_row(**upgraded)])
    markdown = build_report([first, second], tmp_path / "out")["report.md"].read_text()
    assert "torch 2.5.0 (`run-a`), 2.6.0 (`run-b`)" in markdown


def test_missing_run_directory_and_empty_run_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        build_report([tmp_path / "absent"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no stored results"):
        build_report([tmp_path / "empty"], tmp_path / "out")


def test_float64_errors_near_the_top_of_the_range_still_plot(tmp_path):
    """ULP errors of float64 outputs near 0 reach 1e308 (a real run's data broke the plot)."""
    rows = [
        accuracy_row(dtype="float64", max_ulp_error=3e307, budget_ulps=1.7976931348623157e308),
        accuracy_row(dtype="float64", case_id="softmax/benign/other", max_ulp_error=0.5),
    ]
    paths = build_report([write_run(tmp_path / "run", accuracy=rows)], tmp_path / "out")
    assert paths["accuracy-float64.png"].stat().st_size > 0


def test_invariant_breaks_are_listed_even_when_the_verdict_passes(tmp_path):
    rows = [
        accuracy_row(case_id="softmax/extreme/quantised-1000", shift=2.0**20),
        accuracy_row(
            case_id="softmax/extreme/quantised-1000",
            implementation="numpy:naive.softmax",
            shift=2.0**20,
            shift_verdict="wrong",
            shift_max_ulp_error=math.nan,
            invariant_failures="shift_invariance",
        ),
        accuracy_row(case_id="softmax/benign/small", implementation="numpy:naive.softmax"),
    ]
    run = write_run(tmp_path / "run-a", accuracy=rows)
    text = build_report([run], tmp_path / "out")["report.md"].read_text()
    section = text.split("## Invariants", 1)[1].split("\n## ", 1)[0]
    assert "checked on 2 evaluations" in section
    pattern = r"numpy:naive\.softmax\s*\|\s*shift_invariance\s*\|\s*float32\s*\|\s*1\s*\|"
    assert re.search(pattern, section)
    assert "1 wrong" in section
