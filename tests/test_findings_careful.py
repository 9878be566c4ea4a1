"""Findings a maintainer acts on: the careful kernel beside every failure, the flushed-subnormal
mode, one cause for findings that share one, catalogue entries keyed by dtype, mode and device,
and the upstream-ready report, the last through the public CLI on a small run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from plugin_helpers import register_plugins
from sample_helpers import EVERY_CASE, sample_copy

from xentbench.suites.cli import main
from xentbench.suites.findings import known
from xentbench.suites.findings.careful import (
    careful_cell,
    careful_sentence,
    row_careful_ratio,
    triage,
)
from xentbench.suites.findings.causes import assign_causes
from xentbench.suites.findings.group import Finding, Sample
from xentbench.suites.findings.modes import verdict_mode
from xentbench.suites.findings.tables import findings_of_runs

FLAWED = {"overflowing": "flawed.overflowing_softmax:OverflowingSoftmax"}
TINY32 = float(np.finfo(np.float32).smallest_normal)


# ------------------------------------------------------------------ flushed-subnormal


@pytest.mark.parametrize(
    ("got", "expected", "dtype", "mode"),
    [
        (0.0, 2.897041e-39, "float32", "flushed-subnormal"),  # jax.nn.softmax on CPU
        (TINY32, 2.897041e-39, "float32", "flushed-subnormal"),
        (-0.0, -5.0e-41, "float32", "flushed-subnormal"),
        (0.0, 3.0e-6, "float16", "flushed-subnormal"),  # subnormal in float16
        (0.0, 3.0e-6, "float32", "over-budget"),  # normal in float32: plain over budget
        (0.0, 1.0e-46, "float32", "over-budget"),  # rounds to 0 in float32: no subnormal
        (1.0e-39, 2.897041e-39, "float32", "over-budget"),  # subnormal, not flushed
    ],
)
def test_a_subnormal_truth_answered_zero_or_the_smallest_normal_is_flushed(
    got, expected, dtype, mode
):
    row = {"verdict": "inaccurate", "got": got, "expected": expected, "dtype": dtype}
    assert verdict_mode(row) == mode


# ------------------------------------------------------------------ careful ratio


def _stored_row(case_id: str, op: str, dtype: str, worst_index: str, expected: float) -> dict:
    return {
        "op": op, "case_id": case_id, "dtype": dtype, "quantity": "value",
        "worst_index": worst_index, "expected": expected,
    }  # fmt: skip


def test_the_careful_kernel_passes_on_a_catalog_input_and_is_not_judged_on_a_drifted_one():
    from xentbench.suites.accuracy.suite import case_exact

    case_id = "softmax/benign/normal-4x16"
    exact = case_exact(case_id, "bfloat16", 0, "value")
    row = _stored_row(case_id, "softmax", "bfloat16", "(1, 3)", float(exact.hi[1, 3]))
    ratio = row_careful_ratio(row, seed=0)
    assert 0 < ratio <= 1
    drifted = {**row, "expected": float(exact.hi[1, 3]) * 1.5}  # the catalog changed since
    assert math.isnan(row_careful_ratio(drifted, seed=0))
    unknown = {**row, "case_id": "softmax/hunted/not-a-case"}
    assert math.isnan(row_careful_ratio(unknown, seed=0))
    raised = {**row, "worst_index": math.nan, "expected": math.nan}  # an error row, as stored
    assert row_careful_ratio(raised, seed=0) == ratio


def _finding(implementation: str, mode: str, ratio: float, careful: float, **fields) -> Finding:
    backend, _, api = implementation.partition(":")
    base = {
        "id": f"xf-{api[-8:]}", "implementation": implementation, "backend": backend,
        "op": "logsumexp", "quantity": "value", "failure_mode": mode, "evaluations": 2,
        "dtypes": ["bfloat16"], "modes": ["eager"], "devices": ["cpu"], "families": ["size"],
        "cases": ["logsumexp/size/classes-2"], "worst_ratio": ratio, "worst_ulp_error": 0.6,
        "worst_abs_error": 0.003, "versions": ["1"],
        "sample": Sample("logsumexp/size/classes-2", "bfloat16", "cpu", "eager", 0, ""),
        "careful_ratio": careful, "careful_worst_ratio": careful,
        "worst_case": "logsumexp/size/classes-2 bfloat16",
    }  # fmt: skip
    return Finding(**{**base, **fields})


def test_a_finding_says_how_many_times_the_careful_kernels_error_it_makes():
    finding = _finding("torch:torch.logsumexp", "over-budget", 90.0, 0.45)
    assert careful_sentence(finding) == "200 x the error of a careful float32 kernel"
    assert careful_cell(finding) == "200x (0.45)"
    fails_too = _finding("torch:torch.logsumexp", "over-budget", 3.0, 1.5)
    assert "the budget is wrong here" in careful_sentence(fails_too)
    right = _finding("torch:torch.logsumexp", "nan-for-finite", math.inf, 0.2)
    assert careful_sentence(right).startswith("a careful float32 kernel gets it right")


def test_a_defect_is_confirmed_only_where_the_careful_kernel_passes_on_its_inputs():
    assert triage(_finding("torch:torch.logsumexp", "over-budget", 90.0, 0.45)) == "confirmed"
    assert triage(_finding("torch:torch.logsumexp", "over-budget", 3.0, 1.5)) == "unexplained"
    assert triage(_finding("torch:torch.logsumexp", "over-budget", 3.0, math.nan)) == "unexplained"
    known = _finding("torch:torch.logsumexp", "over-budget", 3.0, math.nan, klass="upstream")
    assert triage(known) == "catalogued"


# ------------------------------------------------------------------ causes


def test_findings_with_one_mechanism_are_one_cause_with_their_members():
    same = [
        _finding(name, "over-budget", 90.66, 0.45)
        for name in ("torch:torch.logsumexp", "jax:jax.nn.logsumexp", "numpy:stable.logsumexp")
    ]
    other_ratio = _finding("tensorflow:tf.math.reduce_logsumexp", "over-budget", 12.0, 0.45)
    flushed = [
        _finding(name, "flushed-subnormal", 8e4, 0.2, op=op)
        for name, op in (("jax:jax.nn.softmax", "softmax"), ("jax:jax.nn.logsumexp", "logsumexp"))
    ]
    causes = assign_causes([*same, other_ratio, *flushed])
    assert [sorted(f.implementation for f in c.members) for c in causes] == [
        sorted(f.implementation for f in same),
        sorted(f.implementation for f in flushed),
    ]
    assert "every jax implementation" in causes[1].description
    assert len({f.cause for f in same}) == 1 and other_ratio.cause not in {same[0].cause, ""}


# ------------------------------------------------------------------ catalogue keys


def test_a_catalogue_entry_keyed_by_dtype_mode_and_device_explains_only_those(tmp_path):
    path = tmp_path / "known.toml"
    path.write_text(
        '[[known]]\nid = "ftz"\nclass = "convention"\nimplementations = ["jax:*"]\n'
        'failure_modes = ["flushed-subnormal"]\ndtypes = ["float32"]\nmodes = ["eager"]\n'
        'devices = ["cpu"]\nreason = "XLA on CPU flushes subnormals"\n'
    )
    entries = known.load_entries(path)
    row = {
        "implementation": "jax:jax.nn.softmax", "quantity": "value",
        "failure_mode": "flushed-subnormal", "case_id": "softmax/extreme/magnitude-1e2",
        "dtype": "float32", "mode": "eager", "device": "cpu",
    }  # fmt: skip
    assert known.cause_of(row, entries) == "ftz"
    for key, other in (("dtype", "float64"), ("mode", "compiled"), ("device", "cuda")):
        assert known.cause_of({**row, key: other}, entries) == ""
    finding = _finding("jax:jax.nn.softmax", "flushed-subnormal", 8e4, 0.2, dtypes=["float32"])
    mixed = _finding(
        "jax:jax.nn.softmax", "flushed-subnormal", 8e4, 0.2, dtypes=["float32", "float64"]
    )
    known.classify([finding, mixed], entries)
    assert (finding.klass, mixed.klass) == ("convention", "defect?")


# ------------------------------------------------------------------ through the CLI


@pytest.fixture(scope="module")
def small_run_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run of the NumPy backend and a flawed plugin on a few softmax cases, made once for
    the tests that only read it; returns the run and the plugin's site folder."""
    folder = tmp_path_factory.mktemp("small_run")
    with pytest.MonkeyPatch.context() as monkeypatch:
        register_plugins(folder / "site", monkeypatch, FLAWED, "xentbench-flawed-overflowing")
        monkeypatch.delenv("XENTBENCH_FLAW_FIXED", raising=False)
        out = folder / "run"
        argv = ["run", "--suite", "accuracy", "--backend", "overflowing", "numpy", "--jobs", "1"]
        argv += ["--dtype", "float32", "bfloat16", "--impl", "overflowing:*"]
        argv += ["numpy:stable.softmax", "--cases", "softmax/benign/normal-4x16"]
        argv += ["softmax/extreme/magnitude-1e4", "--out", str(out)]
        assert main(argv) == 0
    return out, folder / "site"


@pytest.fixture
def small_run(small_run_once: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """``small_run_once``'s run, with its flawed plugin registered for the test."""
    out, site = small_run_once
    register_plugins(site, monkeypatch, FLAWED, "xentbench-flawed-overflowing")
    monkeypatch.delenv("XENTBENCH_FLAW_FIXED", raising=False)
    return out


def test_findings_show_the_careful_kernel_and_write_an_upstream_report(small_run, tmp_path, capsys):
    assert main(["findings", str(small_run), "--format", "json"]) == 0
    records = {
        r["implementation"] + " " + r["failure_mode"]: r
        for r in json.loads(capsys.readouterr().out)["findings"]
    }
    over = records["numpy:stable.softmax over-budget"]
    assert 0 < over["careful_ratio"] <= 1 and over["careful"].endswith("careful float32 kernel")
    nan = records["overflowing:softmax nan-for-finite"]
    assert nan["careful"].startswith("a careful float32 kernel gets it right")
    assert main(["findings", str(small_run)]) == 0
    assert "vs careful kernel" in capsys.readouterr().out
    out = tmp_path / "upstream"
    assert main(["findings", str(small_run), "--upstream", nan["id"], "--out", str(out)]) == 0
    body = (out / f"{nan['id']}.md").read_text()
    assert body.startswith("# `softmax` returns NaN where the result is finite in float32 (")
    for heading in ("Summary", "Environment", "Expected against got",
                    "A careful kernel on the same input", "Minimal reproducer",
                    "Other implementations on the same input",
                    "Known behaviour it is not"):  # fmt: skip
        assert f"## {heading}" in body
    summary = body.split("## Summary")[1].split("## Environment")[0]
    # the shrunk input inline, got against the exact value and the careful kernel, one cause
    assert "- logits: `[[" in summary and "- `softmax` value returns: `[[" in summary
    assert "nan" in summary.split("returns: `")[1].split("`")[0]
    assert "- a careful kernel (float32 internals for 16-bit, one rounding) returns: `[[" in summary
    assert "Likely cause: an undefined intermediate" in summary
    assert "`numpy:stable.softmax`" in body.split("## Other implementations")[1]
    assert "| got | nan" in body and "```python" in body
    assert (out / f"{nan['id']}.py").read_text() in body


def test_the_triage_summary_counts_the_findings_grouped_from_the_stored_rows(small_run, capsys):
    assert main(["findings", str(small_run), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    states = {
        f["implementation"] + " " + f["failure_mode"]: f["triage"] for f in document["findings"]
    }
    # the flawed plugin's NaN: no catalogue entry, the careful kernel passes on its input
    assert states["overflowing:softmax nan-for-finite"] == "confirmed"
    # the project's own formula in bfloat16: a baseline of the catalogue
    assert states["numpy:stable.softmax over-budget"] == "catalogued"
    counted = {state: list(states.values()).count(state) for state in document["triage"]}
    assert document["triage"] == counted and sum(counted.values()) == len(states)
    assert main(["findings", str(small_run)]) == 0
    triaged = document["triage"]
    assert (
        f"Triage: {triaged['catalogued']} catalogued, {triaged['confirmed']} `defect?` confirmed"
        in capsys.readouterr().out
    )


def test_an_upstream_report_needs_an_output_directory(small_run, capsys):
    assert main(["findings", str(small_run), "--upstream", "xf-00000000"]) == 2
    assert "--out" in capsys.readouterr().err


@pytest.mark.xdist_group("committed-sample")  # with the other sample tests (test_nats_error)
@pytest.mark.parametrize("every_case", EVERY_CASE)
def test_the_committed_sample_names_one_cause_per_mechanism_and_the_careful_kernel_passes(
    tmp_path, every_case
):
    result = findings_of_runs([sample_copy(tmp_path / "sample", every_case)])
    wanted = ("jax:jax.nn.logsumexp", "value", "over-budget")  # at two classes, bfloat16
    sixteen_bit = next(
        f
        for f in result.findings
        if (f.implementation, f.quantity, f.failure_mode) == wanted and "bfloat16" in f.dtypes
    )
    assert careful_sentence(sixteen_bit).endswith("x the error of a careful float32 kernel")
    shared = next(c for c in result.causes if c.id == sixteen_bit.cause)
    assert {"torch:torch.logsumexp", "tensorflow:tf.math.reduce_logsumexp"} <= set(
        shared.implementations
    )
    assert {"jax", "numpy", "tensorflow", "torch"} <= set(shared.backends)
    flushed = [f for f in result.findings if f.failure_mode == "flushed-subnormal"]
    assert {"jax", "tensorflow"} <= {f.backend for f in flushed}
    on_purpose = [f for f in flushed if f.backend in ("jax", "tensorflow")]
    assert {f.entry for f in on_purpose} == {
        "jax-cpu-flushes-subnormals",
        "tensorflow-cpu-flushes-subnormals",
    }
    budget_wrong = [
        f.id for f in result.findings if 1 < f.careful_worst_ratio < math.inf
    ]  # the careful kernel over its allowance on a stored input: the budget would be wrong
    assert budget_wrong == []


@pytest.mark.xdist_group("committed-sample")
def test_an_upstream_report_of_an_exception_quotes_it_and_its_scipy_reproducer_has_no_helpers(
    tmp_path, capsys
):
    """SciPy's logsumexp raises TypeError on bfloat16 from 1.15 on (the sample's scipy 1.17.1):
    the report quotes the exception, not a table of NaNs, and the reproducer calls SciPy alone,
    without xentbench's NumPy formulas."""
    run = sample_copy(tmp_path / "sample", False, frozenset({"benign", "size"}))
    found = findings_of_runs([run]).findings
    raising = next(
        f
        for f in found
        if f.implementation == "numpy:scipy.special.logsumexp"
        and f.failure_mode == "raises-on-valid-input"
    )
    out = tmp_path / "upstream"
    assert main(["findings", str(run), "--upstream", raising.id, "--out", str(out)]) == 0
    body = (out / f"{raising.id}.md").read_text()
    table = body.split("## Expected against got")[1].split("\n## ")[0]
    assert "| got | `raised TypeError: dtype argument must be a NumPy dtype" in table
    assert "nan" not in table
    assert "Likely cause: the call raises instead of computing a valid input" in body
    script = (out / f"{raising.id}.py").read_text()
    assert "Needs only SciPy and NumPy." in script and "_stable_" not in script
