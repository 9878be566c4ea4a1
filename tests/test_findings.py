"""Findings: failure modes, grouping and stable ids, classification by the catalogue,
shrinking, and standalone reproducers, exercised through the public CLI with a flawed plugin."""

from __future__ import annotations

import ast
import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plugin_helpers import register_plugins

from xentbench.adapters import registry
from xentbench.adapters.base import Call
from xentbench.suites.cli import main
from xentbench.suites.findings import known
from xentbench.suites.findings.careful import triage
from xentbench.suites.findings.group import Finding, Sample, finding_id, group_findings
from xentbench.suites.findings.modes import row_modes, verdict_mode
from xentbench.suites.findings.repro import build_reproducer, write_reproducer
from xentbench.suites.findings.shrink import ddmin, observe, shrink
from xentbench.suites.findings.slicing import Input
from xentbench.suites.findings.tables import FindingsOfRuns, findings_of_runs
from xentbench.suites.report.glance import glance
from xentbench.suites.store.rows import load

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
FLAWED = {"overflowing": "flawed.overflowing_softmax:OverflowingSoftmax"}


@pytest.fixture
def flawed_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    register_plugins(site, monkeypatch, FLAWED, "xentbench-flawed-overflowing")
    monkeypatch.delenv("XENTBENCH_FLAW_FIXED", raising=False)
    return site


def _run(out: Path, seed: int, backend: str = "overflowing") -> None:
    argv = ["run", "--suite", "accuracy", "--backend", backend, "--dtype", "float32"]
    argv += ["--cases", "softmax/extreme/magnitude-*", "softmax/benign/normal-4x16", "--jobs", "1"]
    assert main([*argv, "--seed", str(seed), "--out", str(out)]) == 0


# ------------------------------------------------------------------ failure modes


@pytest.mark.parametrize(
    ("row", "mode"),
    [
        (
            {"verdict": "wrong", "got": math.nan, "expected": 0.5, "dtype": "float32"},
            "nan-for-finite",
        ),
        (
            {"verdict": "wrong", "got": math.nan, "expected": -math.inf, "dtype": "float32"},
            "nan-for-infinite",
        ),
        (
            {"verdict": "wrong", "got": math.inf, "expected": 1e38, "dtype": "float32"},
            "inf-for-finite",
        ),
        (
            {"verdict": "wrong", "got": 3.0, "expected": math.inf, "dtype": "float32"},
            "finite-for-nonfinite",
        ),
        (
            {"verdict": "wrong", "got": 3.0, "expected": math.nan, "dtype": "float32"},
            "finite-for-nonfinite",
        ),
        (
            {"verdict": "wrong", "message": "returned a result for invalid input: x"},
            "answers-invalid-input",
        ),
        ({"verdict": "error", "message": "raised ValueError: x"}, "raises-on-valid-input"),
        ({"verdict": "inaccurate"}, "over-budget"),
        ({"verdict": "pass"}, None),
    ],
)
def test_a_failing_row_has_the_failure_mode_its_worst_element_shows(row, mode):
    assert verdict_mode(row) == mode


def test_a_truth_beyond_the_dtype_range_is_compared_as_the_infinity_it_rounds_to():
    row = {"verdict": "wrong", "got": math.nan, "expected": 1e300, "dtype": "float32"}
    assert verdict_mode(row) == "nan-for-infinite"


def test_a_passing_row_yields_one_mode_per_broken_invariant():
    row = {"verdict": "pass", "invariant_failures": "sums_to_one,shift_invariance"}
    assert row_modes(row) == ["invariant:sums_to_one", "shift-variant"]
    assert row_modes({"verdict": "pass", "invariant_failures": math.nan}) == []


# ------------------------------------------------------------------ catalogue


def _finding(implementation="torch:torch.softmax", mode="nan-for-finite", cases=None):
    cases = cases or ["softmax/special/plus-inf"]
    sample = Sample(cases[0], "float32", "cpu", "eager", 0, "")
    return Finding(
        finding_id(implementation, "value", mode), implementation, "torch", "softmax", "value",
        mode, 1, ["float32"], ["eager"], ["cpu"], ["special"], cases, math.inf, math.nan,
        math.nan, ["1"], sample,
    )  # fmt: skip


def _known_entries(tmp_path: Path, text: str) -> tuple[known.Entry, ...]:
    path = tmp_path / "known.toml"
    path.write_text(textwrap.dedent(text))
    return known.load_entries(path)


def test_a_finding_takes_the_class_and_evidence_of_the_first_entry_matching_all_its_cases(
    tmp_path,
):
    entries = _known_entries(
        tmp_path,
        """
        [[known]]
        id = "doc"
        class = "documented"
        implementations = ["torch:*"]
        failure_modes = ["nan-for-finite"]
        cases = ["*/special/plus-inf"]
        url = "https://example.org/doc"
        quote = "A +inf logit gives NaN."

        [[known]]
        id = "conv"
        class = "convention"
        implementations = ["*"]
        reason = "special values"
        """,
    )
    special = _finding()
    mixed = _finding(cases=["softmax/special/plus-inf", "softmax/extreme/near-max"])
    other_mode = _finding(mode="over-budget")
    unmatched = _finding(implementation="jax:jax.nn.softmax", mode="over-budget")
    ordered = known.classify([unmatched, special, mixed, other_mode], entries[:1])
    assert [f.klass for f in ordered] == ["defect?", "defect?", "defect?", "documented"]
    assert special.evidence == {
        "url": "https://example.org/doc",
        "quote": "A +inf logit gives NaN.",
    }
    assert mixed.klass == "defect?"  # one of its cases is not explained by the entry
    known.classify([mixed, unmatched], entries)
    assert (mixed.klass, mixed.entry, unmatched.klass) == ("convention", "conv", "convention")


def _failing_row(case_id: str) -> dict:
    """A stored accuracy row of a NaN gradient for a finite truth."""
    return {
        "run_id": "r", "implementation": "torch:torch.logsumexp", "backend": "torch",
        "op": "logsumexp", "quantity": "grad", "case_id": case_id, "family": "x",
        "dtype": "float32", "device": "cpu", "mode": "eager", "verdict": "wrong",
        "got": math.nan, "expected": 0.5, "n_elements": 8, "backend_version": "1",
        "max_ulp_error": math.nan, "shift_max_ulp_error": math.nan, "worst_ratio": math.inf,
    }  # fmt: skip


def test_evaluations_explained_by_different_entries_are_different_findings(tmp_path):
    entries = _known_entries(
        tmp_path,
        """
        [[known]]
        id = "masked"
        class = "upstream"
        implementations = ["torch:*"]
        cases = ["*/options/cotangent-zero-on-masked-rows"]
        url = "https://example.org/issue"
        state = "open"
        """,
    )
    cases = ["logsumexp/options/cotangent-zero-on-masked-rows", "logsumexp/special/plus-inf"]
    rows = pd.DataFrame([_failing_row(case) for case in cases])
    found = known.classify(
        group_findings(rows, {}, lambda row: known.cause_of(row, entries)), entries
    )
    assert [(f.klass, f.cases) for f in found] == [("defect?", cases[1:]), ("upstream", cases[:1])]
    unexplained, masked = found
    # The part holding the triple's first evaluation (the options case sorts first) keeps the
    # triple's id; the other adds its own first evaluation, never the entry.
    assert masked.id == finding_id("torch:torch.logsumexp", "grad", "nan-for-finite")
    anchor = "logsumexp/special/plus-inf float32 eager cpu"
    assert unexplained.id == finding_id("torch:torch.logsumexp", "grad", "nan-for-finite", anchor)
    assert masked.evidence["url"] == "https://example.org/issue"


_CASES = [
    "logsumexp/options/cotangent-zero-on-masked-rows",
    "logsumexp/special/plus-inf",
    "logsumexp/special/two-plus-inf",
    "logsumexp/extreme/near-max",
]


def _ids(tmp_path: Path, catalogue: str) -> dict[str, str]:
    """case -> the id of the finding holding it, with ``catalogue`` as known.toml."""
    folder = tmp_path / f"catalogue-{abs(hash(catalogue))}"  # load_entries caches by path
    folder.mkdir(exist_ok=True)
    entries = _known_entries(folder, catalogue) if catalogue else ()
    rows = pd.DataFrame([_failing_row(case) for case in _CASES])
    found = known.classify(
        group_findings(rows, {}, lambda row: known.cause_of(row, entries)), entries
    )
    return {case: f.id for f in found for case in f.cases}


_ENTRY = """
[[known]]
id = "{id}"
class = "{klass}"
implementations = ["torch:*"]
cases = {cases}
reason = "r"
url = "https://example.org/x"
state = "open"
quote = "q"
"""


@pytest.mark.parametrize("klass", ["upstream", "documented", "convention"])
def test_cataloguing_a_finding_changes_no_id(tmp_path, klass):
    bare = _ids(tmp_path, "")
    assert len(set(bare.values())) == 1  # one triple, one finding
    whole = _ids(tmp_path, _ENTRY.format(id="all", klass=klass, cases='["*"]'))
    assert whole == bare
    special = _ENTRY.format(id="special", klass=klass, cases='["*/special/*"]')
    split = _ids(tmp_path, special)
    assert len(set(split.values())) == 2  # the catalogue split it: two distinct ids
    # which entry or class explains a part never changes its id
    renamed = _ids(tmp_path, special.replace('"special"', '"renamed"').replace(klass, "baseline"))
    assert renamed == split
    # explaining the remaining part as well changes no id
    rest = _ENTRY.format(id="rest", klass="convention", cases='["*"]')
    assert _ids(tmp_path, special + rest) == split
    assert split[_CASES[0]] == bare[_CASES[0]]  # the part holding the first evaluation keeps it


def test_findings_of_one_run_have_distinct_ids(tmp_path):
    catalogue = "".join(
        _ENTRY.format(id=f"e{n}", klass="convention", cases=f'["{case}"]')
        for n, case in enumerate(_CASES[1:])
    )
    ids = _ids(tmp_path, catalogue)
    assert len(set(ids.values())) == len(_CASES)


@pytest.mark.parametrize(
    ("klass", "fields", "missing"),
    [
        ("documented", 'url = "https://x"', "quote"),
        ("upstream", 'url = "https://x"', "state"),
        ("convention", "", "reason"),
    ],
)
def test_an_entry_without_its_evidence_is_refused(tmp_path, klass, fields, missing):
    text = f'[[known]]\nid = "e"\nclass = "{klass}"\nimplementations = ["*"]\n{fields}\n'
    with pytest.raises(ValueError, match=missing):
        _known_entries(tmp_path, text)


def test_the_repository_catalogue_cites_a_url_for_every_documented_and_upstream_entry():
    entries = known.load_entries()
    cited = [e for e in entries if e.klass in ("documented", "upstream")]
    assert cited and all(e.evidence["url"].startswith("https://") for e in cited)
    assert all(e.evidence.get("quote") for e in cited if e.klass == "documented")
    assert all(e.evidence.get("state") for e in cited if e.klass == "upstream")


# ------------------------------------------------------------------ shrinking


def test_ddmin_finds_the_two_items_a_failure_needs():
    assert ddmin(list(range(10)), lambda kept: 3 in kept and 7 in kept) == [3, 7]


def test_shrinking_keeps_the_failure_mode_and_drops_rows_and_classes(flawed_backend):
    adapter = registry.load("overflowing")
    call = Call(adapter.implementation("overflowing:softmax"), "float32")
    logits = np.random.default_rng(0).uniform(-1, 1, (4, 16)).astype(np.float32)
    logits[2, 5] = 200.0  # exp overflows here: inf / inf
    assert "nan-for-finite" in observe(adapter, call, Input(logits, None))
    shrunk = shrink(adapter, call, "nan-for-finite", Input(logits, None))
    assert shrunk.logits.shape == (1, 1)
    assert "nan-for-finite" in observe(adapter, call, shrunk.item)
    assert float(shrunk.logits[0, 0]) >= 128  # simplified to a power of two that still overflows


# ------------------------------------------------------------------ through the CLI


def test_findings_keep_their_ids_across_runs_and_compare_reports_new_ones(
    flawed_backend, tmp_path, capsys, monkeypatch
):
    first, second, clean = tmp_path / "first", tmp_path / "second", tmp_path / "clean"
    _run(first, seed=0)
    _run(second, seed=1)
    found = findings_of_runs([first]).findings
    assert found and {f.id for f in found} == {f.id for f in findings_of_runs([second]).findings}
    nan = next(f for f in found if f.failure_mode == "nan-for-finite")
    assert (nan.implementation, nan.klass) == ("overflowing:softmax", "defect?")
    assert nan.id == finding_id("overflowing:softmax", "value", "nan-for-finite")
    monkeypatch.setenv("XENTBENCH_FLAW_FIXED", "1")  # the runner's workers inherit it
    _run(clean, seed=0)
    monkeypatch.delenv("XENTBENCH_FLAW_FIXED")
    capsys.readouterr()
    main(["compare", str(clean), str(first), "--format", "json"])
    comparison = json.loads(capsys.readouterr().out)
    assert nan.id in {row["id"] for row in comparison["new_findings"]}
    assert comparison["vanished_findings"] == []


def test_findings_json_has_the_documented_fields_and_the_report_opens_with_them(
    flawed_backend, tmp_path, capsys
):
    _run(tmp_path / "run", seed=0)
    capsys.readouterr()
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")]) == 0
    _check_summary(tmp_path / "run", tmp_path / "report", capsys.readouterr().out)
    report = (tmp_path / "report" / "report.md").read_text()
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Findings" and "overflowing:softmax" in report.split(headings[1])[0]
    capsys.readouterr()
    assert main(["findings", str(tmp_path / "run"), "--format", "json"]) == 0
    record = json.loads(capsys.readouterr().out)["findings"][0]
    for field in (
        "id", "implementation", "op", "quantity", "failure_mode", "class", "evidence_url",
        "dtypes", "cases", "evaluations", "worst_ratio", "worst_ulp_error", "versions",
    ):  # fmt: skip
        assert field in record


def _check_summary(run: Path, report: Path, printed: str) -> None:
    """``xentbench report`` prints summary.txt: one screen whose counts are the run's, and which
    lists first the defect? findings the careful kernel passes on."""
    summary = (report / "summary.txt").read_text()
    assert printed.startswith(summary)
    lines = summary.splitlines()
    assert len(lines) <= 60, summary
    # prose filled to 100 columns (a path longer than that alone on its line); the commands to
    # copy stay whole
    wide = [line for line in lines if len(line) > 100 and len(line.split()) > 1]
    assert all(":   xentbench " in line or ":  xentbench " in line for line in wide), wide
    rows = load([run], "accuracy")
    counts = rows["verdict"].value_counts()
    table_row = next(line.split() for line in lines if line.strip().startswith("overflowing "))
    evaluated = int(counts.drop("unsupported", errors="ignore").sum())
    assert table_row[1:4] == [
        f"{evaluated:,}",
        f"{counts.get('pass', 0):,}",
        f"{counts.get('inaccurate', 0):,}",
    ]
    found = findings_of_runs([run]).findings
    confirmed = {f.id for f in found if triage(f) == "confirmed"}
    assert confirmed, [(f.id, f.careful_worst_ratio) for f in found]
    look_first = summary.split("Look first:")[1].split("\n\n")[0]
    listed = set(re.findall(r"\bxf-[0-9a-f]{8}\b", look_first))
    assert listed and listed <= confirmed, (listed, confirmed)
    assert f"Full report: {report / 'report.html'}" in summary.replace("\n    ", " ")
    first = re.findall(r"\bxf-[0-9a-f]{8}\b", look_first)[0]
    assert f"xentbench repro {first} --run {run}" in summary


def test_the_summary_lists_framework_and_plugin_defects_first_not_xentbenchs_own_code():
    """A careful kernel confirms all three; the summary's "Look first" names the framework's and
    the plugin's, most severe first, and leaves out xentbench's own NumPy formula."""
    own, plugin, framework = (
        _finding("numpy:stable.softmax"),
        _finding("mybackend:softmax", "inf-for-finite"),
        _finding("torch:torch.softmax", "wrong-infinity"),
    )
    plugin.evaluations = 5  # as severe (the wrong kind of number), in more evaluations
    for finding in (own, plugin, framework):
        finding.careful_worst_ratio = finding.careful_ratio = 0.5
    result = FindingsOfRuns([own, plugin, framework], ["run"], 3, 0)
    text = glance([], pd.DataFrame(), pd.DataFrame(), result, Path("out"), [])
    look_first = text.split("Look first:")[1]
    assert look_first.index(plugin.id) < look_first.index(framework.id)
    assert own.id not in text and "Look first: 2 `defect?` findings" in text


def test_a_reproducer_fails_while_the_flaw_lives_and_passes_once_fixed(
    flawed_backend, tmp_path, capsys
):
    run, out = tmp_path / "run", tmp_path / "repro"
    _run(run, seed=0)
    nan_id = finding_id("overflowing:softmax", "value", "nan-for-finite")
    assert main(["repro", nan_id, "--run", str(run), "--out", str(out)]) == 0
    script = out / f"{nan_id}.py"
    text = script.read_text()
    assert "float.fromhex" in text and "suites" not in text.split('"""', 2)[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(flawed_backend), str(REPO)]),
    }
    present = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert present.returncode == 1, present.stdout + present.stderr
    assert "got nan" in present.stdout and "nan-for-finite" in present.stdout
    fixed = {**env, "XENTBENCH_FLAW_FIXED": "1"}
    gone = subprocess.run([sys.executable, str(script)], env=fixed, capture_output=True, text=True)
    assert gone.returncode == 0, gone.stdout + gone.stderr


def test_an_unknown_finding_id_is_a_usage_error(flawed_backend, tmp_path, capsys):
    _run(tmp_path / "run", seed=0)
    assert main(["repro", "xf-nothere", "--run", str(tmp_path / "run")]) == 2
    assert "no finding 'xf-nothere'" in capsys.readouterr().err


def test_a_builtin_reproducer_imports_only_the_framework_and_numpy(tmp_path):
    finding = _finding("numpy:stable.softmax", cases=["softmax/special/plus-inf"])
    finding.backend = "numpy"
    reproducer = build_reproducer(finding)
    assert reproducer.shape[0] == 1 and reproducer.size <= 4
    script = write_reproducer(reproducer, tmp_path)
    imported = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "base64", "sys", "numpy", "scipy", "ml_dtypes"}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr


def test_only_option_calls_no_snippet_renders_are_declined():
    """Options, tangents, the linear op and hunted inputs are reproducible; NumPy and ONNX
    Runtime calls with options (no snippet renders them) are declined with a reason."""
    from types import SimpleNamespace

    from xentbench.suites.findings.repro import NotReproducible, build_reproducer, reproducible

    def finding(implementation: str, quantity: str, case_id: str) -> SimpleNamespace:
        return SimpleNamespace(
            id="xf-0",
            implementation=implementation,
            quantity=quantity,
            sample=SimpleNamespace(case_id=case_id, run_dir=""),
        )

    assert (
        reproducible(finding("torch:torch.softmax", "grad", "softmax/options/cotangent-extreme"))
        is None
    )
    assert (
        reproducible(finding("jax:jax.nn.softmax", "jvp", "softmax/options/tangent-masked")) is None
    )
    assert reproducible(finding("flawed-hunt:x", "value", "hunt/softmax/0123456789ab")) is None
    linear = "linear_cross_entropy/linear/normal"
    assert reproducible(finding("tensorflow:tf.matmul+x", "grad_weight", linear)) is None
    declined = finding(
        "onnxruntime:SoftmaxCrossEntropyLoss",
        "value",
        "sparse_softmax_cross_entropy/options/ignore-90pct",
    )
    assert "onnxruntime" in reproducible(declined)
    with pytest.raises(NotReproducible, match="xf-0"):
        build_reproducer(declined)
