"""``findings RUN --upstream-top N --out DIR``: which confirmed defects become upstream reports,
the index that keeps each one's tracker check by implementation (never by finding id), and the
command's one-line refusals of bad input."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_helpers import register_plugins

from xentbench.suites.cli import main
from xentbench.suites.findings import upstream_top
from xentbench.suites.findings.group import Finding, Sample
from xentbench.suites.findings.upstream_top import index, load_checks, pick, tracker_of

FLAWED = {"overflowing": "flawed.overflowing_softmax:OverflowingSoftmax"}
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def _finding(name: str, mode: str = "nan-for-finite", ratio: float = math.inf, **fields) -> Finding:
    backend = name.partition(":")[0]
    case = fields.pop("case", "softmax/extreme/near-max")
    base = {
        "id": f"xf-{abs(hash((name, mode, case, fields.get('quantity')))) % 16**8:08x}",
        "implementation": name, "backend": backend, "op": case.split("/")[0],
        "quantity": "value", "failure_mode": mode, "evaluations": 2, "dtypes": ["float32"],
        "modes": ["eager"], "devices": ["cpu"], "families": ["extreme"], "cases": [case],
        "worst_ratio": ratio, "worst_ulp_error": math.nan, "worst_abs_error": math.nan,
        "versions": ["1"], "sample": Sample(case, "float32", "cpu", "eager", 0, ""),
        "careful_ratio": 0.2, "careful_worst_ratio": 0.2, "worst_case": f"{case} float32",
    }  # fmt: skip
    finding = Finding(**{**base, **fields})
    finding.cause = fields.get("cause", finding.id)
    return finding


def test_each_framework_has_its_tracker_and_the_projects_own_code_has_none():
    assert tracker_of("torch:F.cross_entropy") == "pytorch/pytorch"
    assert tracker_of("jax:optax.softmax_cross_entropy") == "google-deepmind/optax"
    assert tracker_of("jax:jax.nn.softmax") == "jax-ml/jax"
    assert tracker_of("tensorflow:keras.losses.categorical_crossentropy") == "keras-team/keras"
    assert tracker_of("tensorflow:tf.nn.softmax") == "tensorflow/tensorflow"
    assert tracker_of("keras_jax:keras.losses.X") == "keras-team/keras"
    assert tracker_of("numpy:scipy.special.logsumexp") == "scipy/scipy"
    assert tracker_of("numpy:stable.softmax") == tracker_of("careful:softmax") == ""
    assert tracker_of("numpy:head.softmax") == tracker_of("numpy:naive.softmax") == ""


def test_only_confirmed_framework_defects_are_picked_one_per_cause_and_case_per_tracker():
    torch_nan = _finding("torch:torch.softmax", cause="c1", id="xf-00000001")
    jax_nan = _finding("jax:jax.nn.softmax", cause="c1", id="xf-00000002")  # another tracker
    torch_same_cause = _finding("torch:F.softmax", cause="c1", id="xf-00000003")
    # the same bug's gradient: another cause, but the same tracker, mode and case name
    torch_grad = _finding("torch:torch.softmax", quantity="grad", cause="c2", id="xf-00000004")
    catalogued = _finding("torch:torch.logsumexp", cause="c3", klass="upstream")
    unconfirmed = _finding("torch:torch.log_softmax", cause="c4", careful_worst_ratio=math.inf)
    own = _finding("torch:F.cross_entropy(softcapped)+z_loss", cause="c5")
    numpy = _finding("numpy:stable.softmax", cause="c6")
    slight = _finding("torch:F.log_softmax", "over-budget", 3.0, cause="c7", case="softmax/x/y")
    worse = _finding("torch:torch.nn.functional.softmax", "over-budget", 90.0, cause="c8")
    onnx = _finding("onnxruntime:Softmax", "over-budget", 2.0, cause="c9", case="softmax/a/b")
    everything = [slight, own, numpy, unconfirmed, catalogued, torch_grad, torch_same_cause]
    everything += [onnx, worse, jax_nan, torch_nan]
    # each tracker's most severe first, the wrong kind of number before any ratio; then seconds
    assert pick(everything, 10) == [torch_nan, jax_nan, onnx, worse, slight]
    assert pick(everything, 2) == [torch_nan, jax_nan]


def test_the_index_keeps_each_tracker_check_by_implementation_not_by_id(tmp_path):
    checks_file = tmp_path / "trackers.toml"
    checks_file.write_text(
        '[[checked]]\nimplementation = "torch:torch.softmax"\nquantity = "value"\n'
        'failure_mode = "nan-for-finite"\ntracker = "pytorch/pytorch"\ndate = "2026-12-06"\n'
        'url = "https://github.com/pytorch/pytorch/issues/1"\n'
        '[[checked]]\nimplementation = "jax:jax.nn.softmax"\nquantity = "value"\n'
        'failure_mode = "nan-for-finite"\ntracker = "jax-ml/jax"\ndate = "2026-12-06"\n'
        'note = "jax#2 is another case"\n'
    )
    checks = load_checks(checks_file)
    reported, absent, unchecked = (
        _finding("torch:torch.softmax", id="xf-00000001"),
        _finding("jax:jax.nn.softmax", id="xf-00000002"),
        _finding("onnxruntime:Softmax", id="xf-00000003"),
    )
    text = index([reported, absent, unchecked], checks)
    rows = {line.split("]")[0][3:]: line for line in text.splitlines() if line.startswith("| [")}
    reported_link = "**already reported**: https://github.com/pytorch/pytorch/issues/1"
    assert reported_link in rows["xf-00000001"]
    assert "not found in jax-ml/jax on 2026-12-06 (jax#2 is another case)" in rows["xf-00000002"]
    assert "not checked yet" in rows["xf-00000003"]
    renamed = _finding("torch:torch.softmax", id="xf-99999999")  # a re-rendered sample's new id
    assert "already reported" in index([renamed], checks)


def test_the_committed_tracker_checks_load():
    checks = load_checks(REPO / "reports" / "sample" / "upstream" / "trackers.toml")
    assert checks and all(c.tracker and c.date for c in checks.values())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--upstream-top", "0", "--out", "DIR"], "invalid --upstream-top 0; valid:"),
        (["--upstream-top", "-3", "--out", "DIR"], "invalid --upstream-top -3; valid:"),
        (["--upstream-top", "3"], "--upstream-top needs --out DIR"),
        (["--upstream-top", "3", "--upstream", "xf-1", "--out", "DIR"], "not both"),
    ],
)
def test_bad_input_is_refused_in_one_line_with_status_2(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / "out") if a == "DIR" else a for a in argv]
    assert main(["findings", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_malformed_tracker_file_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "trackers.toml").write_text('[[checked]]\nimplementation = "torch:x"\n')
    assert main(["findings", str(tmp_path), "--upstream-top", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "trackers.toml" in err and "lacks" in err and len(err.splitlines()) == 1


def test_the_command_writes_reports_whose_reproducers_fail_and_the_index(
    tmp_path, monkeypatch, capsys
):
    site = tmp_path / "site"
    register_plugins(site, monkeypatch, FLAWED, "xentbench-flawed-overflowing")
    monkeypatch.delenv("XENTBENCH_FLAW_FIXED", raising=False)
    monkeypatch.setitem(upstream_top._BACKEND_TRACKERS, "overflowing", "example/overflowing")
    run = tmp_path / "run"
    argv = ["run", "--suite", "accuracy", "--backend", "overflowing", "--jobs", "1"]
    argv += ["--dtype", "float32", "--cases", "softmax/extreme/magnitude-1e4", "--out", str(run)]
    assert main(argv) == 0
    out = tmp_path / "upstream"
    assert main(["findings", str(run), "--upstream-top", "5", "--out", str(out)]) == 0
    readme = (out / "README.md").read_text()
    ids = [line.split("]")[0][3:] for line in readme.splitlines() if line.startswith("| [")]
    assert ids and "example/overflowing" in readme and "not checked yet" in readme
    for finding_id in ids:
        assert (out / f"{finding_id}.md").read_text().startswith("# `softmax`")
        env = {"PYTHONPATH": f"{TESTS}:{site}:{REPO}", "PATH": "/usr/bin:/bin"}
        script = out / f"{finding_id}.py"
        result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True)
        assert result.returncode == 1, result.stdout + result.stderr
    assert "index:" in capsys.readouterr().out
