"""Across releases: the release list read from an index page, the bisection's search, the
version environments' build records, and the commands' one-line refusals (no network here
but in the one test marked slow)."""

from __future__ import annotations

import json
import math
import urllib.error
from pathlib import Path

import pytest
from packaging.tags import Tag

from xentbench.suites.cli import main
from xentbench.suites.cli.parser import build_parser
from xentbench.suites.cli.versions_command import check_argv
from xentbench.suites.versions import envs, releases
from xentbench.suites.versions.envs import STACKS, Env
from xentbench.suites.versions.oracle import check_oracle, literal
from xentbench.suites.versions.search import SameEnds, Trial, bisect

TAGS = [Tag("cp311", "cp311", "manylinux_2_17_x86_64"), Tag("py3", "none", "any")]
LINUX = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"


def _file(name: str, requires: str = "", yanked: bool = False) -> dict:
    return {"filename": name, "requires-python": requires, "yanked": yanked, "url": "x"}


JSON_PAGE = {
    "name": "scipy",
    "files": [
        _file("scipy-1.9.3-cp39-cp39-manylinux_2_17_x86_64.whl"),  # another Python only
        _file(f"scipy-1.10.1-{LINUX}.whl", ">=3.8"),
        _file("scipy-1.11.0.tar.gz"),  # an sdist only: nothing to install without building
        _file(f"scipy-1.11.1-{LINUX}.whl", yanked=True),
        _file(f"scipy-1.11.4-{LINUX}.whl", ">=3.9"),
        _file("scipy-1.11.4-cp311-cp311-win_amd64.whl", ">=3.9"),
        _file(f"scipy-1.12.0rc1-{LINUX}.whl", ">=3.9"),  # a pre-release
        _file(f"scipy-1.14.1-{LINUX}.whl", ">=3.12"),  # refuses this Python
        _file(f"scipy-1.15.0-{LINUX}.whl", ">=3.10"),
        _file("scipy-1.2.0-py3-none-any.whl"),
        _file(f"other-9.0-{LINUX}.whl"),  # another project's file
    ],
}


def test_release_list_keeps_installable_final_releases_oldest_first():
    files = releases.parse_page(
        "application/vnd.pypi.simple.v1+json", json.dumps(JSON_PAGE).encode()
    )
    found = releases.installable_versions("scipy", files, TAGS, "3.11.7")
    assert found == ["1.2.0", "1.10.1", "1.11.4", "1.15.0"]


def test_release_list_reads_an_html_index_page_too():
    page = (
        "<html><body>"
        f'<a href="a" data-requires-python="&gt;=3.9">scipy-1.11.4-{LINUX}.whl</a>'
        f'<a href="b" data-yanked="">scipy-1.11.3-{LINUX}.whl</a>'
        f'<a href="c" data-requires-python="&gt;=3.12">scipy-1.14.1-{LINUX}.whl</a>'
        "</body></html>"
    )
    files = releases.parse_page("text/html", page.encode())
    assert releases.installable_versions("scipy", files, TAGS, "3.11.7") == ["1.11.4"]


def test_release_list_asks_the_index_for_the_normalised_project_name(monkeypatch):
    asked = []

    def fetch(url):
        asked.append(url)
        return "application/vnd.pypi.simple.v1+json", json.dumps({"files": []}).encode()

    assert (
        releases.releases("Tensorflow_CPU", fetch=fetch, index="https://example.org/simple") == []
    )
    assert asked == ["https://example.org/simple/tensorflow-cpu/"]


def test_window_and_grid():
    versions = ["1.10.1", "1.11.4", "1.12.0", "1.13.0", "1.13.1", "1.14.1"]
    assert releases.window(versions, "1.11.4", "1.13.0") == ["1.11.4", "1.12.0", "1.13.0"]
    assert releases.window(versions, None, None) == versions
    with pytest.raises(ValueError, match=r"'1\.11\.0' is no installable release"):
        releases.window(versions, "1.11.0", None)
    with pytest.raises(ValueError, match="comes after"):
        releases.window(versions, "1.13.0", "1.11.4")
    assert releases.minor_latest(versions, 2) == ["1.13.1", "1.14.1"]


def _oracle(versions: list[str], first_bad: int, calls: list[str], skipped=()):
    def test(version: str) -> Trial:
        calls.append(version)
        if version in skipped:
            return Trial(version, "skip", "not installable")
        return Trial(version, "bad" if versions.index(version) >= first_bad else "good")

    return test


@pytest.mark.parametrize("first_bad", [1, 2, 17, 40, 63])
def test_bisect_finds_the_first_bad_release_in_log2_steps(first_bad):
    versions = [f"1.{i}.0" for i in range(64)]
    calls: list[str] = []
    outcome = bisect(versions, _oracle(versions, first_bad, calls))
    assert (outcome.kind, outcome.first, outcome.last) == (
        "first bad",
        versions[first_bad],
        versions[first_bad - 1],
    )
    assert len(calls) <= 2 + math.ceil(math.log2(63))
    assert len(set(calls)) == len(calls)
    assert [t.version for t in outcome.trials] == calls


def test_bisect_names_the_first_fixed_release_when_the_oldest_is_bad():
    versions = [f"0.{i}" for i in range(10)]
    calls: list[str] = []

    def fixed_at_6(version):
        calls.append(version)
        return Trial(version, "good" if versions.index(version) >= 6 else "bad")

    outcome = bisect(versions, fixed_at_6)
    assert (outcome.kind, outcome.first, outcome.last, outcome.last_label) == (
        "first fixed",
        "0.6",
        "0.5",
        "last bad",
    )


def test_bisect_goes_on_past_releases_that_do_not_install():
    versions = [f"2.{i}" for i in range(16)]
    calls: list[str] = []
    skipped = {"2.0", "2.7", "2.8", "2.9"}  # an end and the first midpoints
    outcome = bisect(versions, _oracle(versions, 9, calls, skipped))
    # 2.9 (the first bad) could not be tested: the answer is the range around it.
    assert (outcome.first, outcome.last, outcome.untested) == ("2.10", "2.6", ["2.7", "2.8", "2.9"])
    assert calls[0] == "2.0" and calls[1] == "2.1"  # the oldest end moved inward


def test_bisect_preflight_refuses_ends_that_behave_alike():
    versions = ["1", "2", "3", "4"]
    calls: list[str] = []
    with pytest.raises(SameEnds, match="both ends are good") as refused:
        bisect(versions, _oracle(versions, 99, calls))
    assert calls == ["1", "4"]
    assert [t.verdict for t in refused.value.trials] == ["good", "good"]
    with pytest.raises(SameEnds, match="could be tested"):
        bisect(versions, _oracle(versions, 0, [], skipped=set(versions)))


def _fake_runner(fail_on: str | None, seen: list[list[str]]):
    def run(command, log):
        seen.append(command)
        if command[1] == "venv":
            Path(command[-1], "bin").mkdir(parents=True)
        if fail_on and fail_on in command:
            log.write("  x No solution found when resolving dependencies\n")
            return 1
        return 0

    return run


def test_an_environment_that_fails_to_build_is_recorded_and_not_kept(tmp_path):
    seen: list[list[str]] = []
    stack = STACKS["numpy"]
    env = envs.ensure(
        stack,
        "scipy",
        "1.9.3",
        {},
        cache=tmp_path,
        runner=_fake_runner("scipy==1.9.3", seen),
        uv="uv",
    )
    assert not env.ready and "No solution found" in env.failure
    assert not (tmp_path / "scipy-1.9.3").exists()  # no half-built environment
    record = json.loads((tmp_path / "scipy-1.9.3.failed.json").read_text())
    assert "scipy==1.9.3" in record["requirements"] and Path(record["log"]).exists()
    assert envs.cached(tmp_path) == [("scipy-1.9.3", "failed")]
    again = envs.ensure(stack, "scipy", "1.9.3", {}, cache=tmp_path, runner=None, uv="uv")
    assert again.failure == env.failure  # recorded: not tried again
    assert envs.prune(["scipy-1.9.3"], tmp_path) == ["scipy-1.9.3"]
    assert envs.cached(tmp_path) == []


def test_a_built_environment_is_reused_while_its_requirements_hold(tmp_path):
    seen: list[list[str]] = []
    env = envs.ensure(
        STACKS["numpy"],
        "scipy",
        "1.15.0",
        {},
        cache=tmp_path,
        runner=_fake_runner(None, seen),
        uv="uv",
    )
    assert env.ready and env.python == tmp_path / "scipy-1.15.0" / "bin" / "python"
    assert seen[-1][-1] == envs.SMOKE  # it must import xentbench's worker to count
    again = envs.ensure(
        STACKS["numpy"], "scipy", "1.15.0", {}, cache=tmp_path, runner=None, uv="uv"
    )
    assert again.ready


def test_companions_move_together_and_numpy_bounds_are_the_resolvers():
    jax = envs.requirements(STACKS["jax"], "jax", "0.4.35", {"jaxlib": True})
    assert jax[:2] == ["jax==0.4.35", "jaxlib==0.4.35"]
    assert any(r.startswith("optax") for r in jax) and "numpy" in jax and "scipy" in jax
    unmatched = envs.requirements(STACKS["jax"], "jax", "0.4.36", {"jaxlib": False})
    assert not any(r.startswith("jaxlib") for r in unmatched)  # jax's own requirement decides
    # jaxlib before 0.4.26 imports NumPy 1 only without saying so: the bound goes with it
    assert "numpy<2" in envs.requirements(STACKS["jax"], "jax", "0.4.25", {"jaxlib": True})
    assert "scipy<1.13" in envs.requirements(STACKS["jax"], "jax", "0.4.23", {"jaxlib": False})
    assert "numpy<2" not in jax
    scipy = envs.requirements(STACKS["numpy"], "scipy", "1.11.4", {})
    assert scipy[0] == "scipy==1.11.4" and "numpy" in scipy
    assert not any(r.startswith("scipy>") for r in scipy)


def test_a_release_that_did_not_install_is_a_skip_and_the_search_goes_on():
    versions = ["1.0", "1.1", "1.2", "1.3"]
    broken = Env("scipy-1.1", Path("/nonexistent"), failure="uv pip install exited 1: no wheel")
    envs_of = {v: broken if v == "1.1" else None for v in versions}
    oracle = check_oracle(["--op", "logsumexp"], "numpy:x", "inaccurate", envs_of.__getitem__)
    assert oracle("1.1").verdict == "skip" and "not installable" in oracle("1.1").detail


def test_check_flags_given_to_bisect_reach_check_unchanged(tmp_path):
    logits = tmp_path / "x.npy"
    args = build_parser().parse_args(
        [
            *("bisect", "--op", "logsumexp", "--impl", "numpy:x", "--backend", "numpy"),
            *("--logits", str(logits), "--dtype", "float32", "float64", "--max-rel-error", "1e-15"),
        ]
    )
    argv = check_argv(args)
    assert argv == [
        "--op",
        "logsumexp",
        "--logits",
        str(logits.resolve()),
        "--dtype",
        "float32",
        "float64",
    ]
    check = build_parser().parse_args(["check", "--backend", "numpy", *argv])
    assert check.dtype == ["float32", "float64"] and check.logits == logits.resolve()


def test_literal_globs_match_only_the_name():
    import fnmatch

    name = "numpy:head.logsumexp[softcap]*"
    assert fnmatch.fnmatchcase(name, literal(name))
    assert not fnmatch.fnmatchcase("numpy:head.logsumexp[softcap]x", literal(name))


@pytest.fixture
def offline_index(monkeypatch):
    """The releases every command sees, without asking any index."""
    listed = {"scipy": ["1.11.4", "1.13.1", "1.14.1", "1.15.0"], "jax": ["0.4.35"]}
    monkeypatch.setattr(releases, "releases", lambda package, index=None: listed.get(package, []))
    monkeypatch.setenv("PIP_INDEX_URL", "https://example.org/simple")


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--since", "1.11.0"], "--since '1.11.0' is no installable release"),
        (["--since", "1.15.0", "--until", "1.13.1"], "--since 1.15.0 comes after --until 1.13.1"),
        (["--package", "pandas"], "invalid --package 'pandas' for numpy; valid: scipy, numpy"),
    ],
)
def test_bisect_bad_releases_exit_2_in_one_line(offline_index, tmp_path, capsys, argv, named):
    run = tmp_path / "run"
    run.mkdir()
    code = main(["bisect", "xf-00000000", "--run", str(run), "--backend", "numpy", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and named in err and len(err.splitlines()) == 1


def test_bisect_unknown_finding_exits_2_in_one_line(offline_index, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    code = main(["bisect", "xf-00000000", "--run", str(run), "--backend", "numpy"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no finding 'xf-00000000' in the runs" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["bisect", "--backend", "numpy"], "needs FINDING_ID with --run, or --op and --impl"),
        (["bisect", "--backend", "nope", "--op", "softmax"], "unknown backend 'nope'"),
        (["bisect", "--backend", "torch", "--op", "softmax"], "torch versions are opt-in"),
        (["matrix", "--backend", "numpy", "--versions", "9.9"], "--versions '9.9' is no"),
        (["matrix", "--backend", "numpy", "--minors", "0"], "invalid --minors 0"),
    ],
)
def test_other_bad_requests_exit_2_in_one_line(offline_index, capsys, argv, named):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and named in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_the_real_index_lists_scipy_releases():
    try:
        found = releases.releases("scipy")
    except (OSError, urllib.error.URLError) as exc:
        pytest.skip(f"no index reachable: {exc}")
    assert {"1.14.1", "1.15.0"} <= set(found)
    assert found == sorted(found, key=lambda v: tuple(int(p) for p in v.split(".")))


def test_a_matrix_cell_names_the_findings_verdict_pass_absent_or_not_evaluated():
    import pandas as pd

    from xentbench.suites.versions.matrix import cell

    rows = pd.DataFrame(
        {
            "implementation": ["numpy:x", "numpy:x", "numpy:x", "numpy:y"],
            "quantity": ["value", "value", "grad", "value"],
            "case_id": ["a", "b", "a", "a"],
            "verdict": ["pass", "inaccurate", "wrong", "pass"],
        }
    )
    assert cell(rows, None, "numpy:x", "value", ["a"]) == "pass"
    assert cell(rows, None, "numpy:x", "value", ["a", "b"]) == "absent"
    assert cell(rows, None, "numpy:x", "value", ["c"]) == "-"
    assert cell(rows, None, "numpy:z", "value", ["a"]) == "-"


def test_a_release_that_did_not_install_has_its_column_and_reason(tmp_path):
    from xentbench.suites.versions.matrix import Column, write_matrix

    broken = Env("jax-0.4.1", tmp_path / "jax-0.4.1", failure="no jaxlib wheel for cp311")
    path = write_matrix(tmp_path, "jax", [Column("0.4.1", broken, tmp_path / "x")], "all")
    text = path.read_text()
    assert "- jax 0.4.1: no jaxlib wheel for cp311" in text
    state = json.loads((tmp_path / "matrix.json").read_text())
    assert state["releases"]["0.4.1"]["failure"] == "no jaxlib wheel for cp311"


def test_the_merged_matrix_has_a_column_per_release(tmp_path):
    """Three releases of one backend: a real run (naive logsumexp overflows near the float32
    maximum), a stand-in for a release that fixed it (the same run with the naive
    implementation's rows replaced by SciPy's, judged on the same cases), and one that did
    not install. The merged table names the finding once, with each release's cell."""
    from xentbench.suites.store.rows import RowWriter, load
    from xentbench.suites.versions.matrix import NOT_INSTALLABLE, Column, write_matrix

    naive, fixed = "numpy:naive.logsumexp", "numpy:scipy.special.logsumexp"
    old, new = tmp_path / "numpy-1.0", tmp_path / "numpy-2.0"
    argv = [
        *("run", "--suite", "accuracy", "--backend", "numpy", "--op", "logsumexp"),
        *("--dtype", "float32", "--cases", "logsumexp/extreme/near-max*", "--jobs", "1"),
        *("--impl", naive, fixed, "--out", str(old)),
    ]
    assert main(argv) == 0
    rows = load([old], "accuracy")
    wrong = int(((rows["implementation"] == naive) & (rows["verdict"] == "wrong")).sum())
    assert wrong > 0 and set(rows[rows["implementation"] == fixed]["verdict"]) == {"pass"}
    new.mkdir()
    (new / "run.json").write_text((old / "run.json").read_text())
    writer = RowWriter(new, "accuracy", "numpy")
    relabelled = rows[rows["implementation"] == fixed].assign(implementation=naive)
    for frame in (rows[rows["implementation"] == fixed], relabelled):
        for row in frame.to_dict("records"):
            writer.write(row)
    writer.close()
    broken = Env("numpy-3.0", tmp_path / "numpy-3.0", failure="no wheel for cp311")
    columns = [
        Column("1.0", Env("numpy-1.0", old), old),
        Column("2.0", Env("numpy-2.0", new), new),
        Column("3.0", broken, tmp_path / "numpy-3.0"),
    ]
    text = write_matrix(tmp_path, "numpy", columns, "logsumexp float32").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| finding"))
    assert [c.strip() for c in header.strip("|").split("|")][-3:] == ["1.0", "2.0", "3.0"]
    found = json.loads((tmp_path / "matrix.json").read_text())["findings"]
    mine = [f for f in found if f["implementation"] == naive]
    assert len(mine) == 1, found
    assert mine[0]["1.0"] == f"wrong ({wrong})"
    assert mine[0]["2.0"] == "pass" and mine[0]["3.0"] == NOT_INSTALLABLE
    assert all(f["implementation"] != fixed for f in found)


def test_a_backends_configured_index_lists_its_releases_and_serves_its_package(
    monkeypatch, tmp_path, capsys
):
    """XENTBENCH_INDEX_TORCH stands for --index: the release list is read from it and the
    environment installs torch from it ahead of pip's index (no network: both are faked)."""
    cpu = "https://cpu.example.org/whl/cpu"
    asked: list[tuple[str, str | None]] = []

    def listed(package, index=None):
        asked.append((package, index))
        return ["2.12.0", "2.13.0"]

    monkeypatch.setattr(releases, "releases", listed)
    monkeypatch.setenv("PIP_INDEX_URL", "https://pypi.example.org/simple")
    monkeypatch.setenv("XENTBENCH_VERSIONS_DIR", str(tmp_path))
    monkeypatch.setenv("XENTBENCH_INDEX_TORCH", cpu + "/")
    assert main(["versions", "--backend", "torch"]) == 0
    assert asked == [("torch", cpu)]
    assert "torch-2.13.0" in capsys.readouterr().out
    seen: list[list[str]] = []
    env = envs.ensure(
        STACKS["torch"],
        "torch",
        "2.13.0",
        {},
        cache=tmp_path,
        index="https://pypi.example.org/simple",
        package_index=cpu,
        runner=_fake_runner(None, seen),
        uv="uv",
    )
    install = next(c for c in seen if c[1:3] == ["pip", "install"] and "torch==2.13.0" in c)
    assert env.ready
    assert install[install.index("--index-url") + 1] == "https://pypi.example.org/simple"
    assert install[install.index("--extra-index-url") + 1] == cpu
    # --index wins over the variable; without either, torch is refused in one line
    asked.clear()
    assert main(["versions", "--backend", "torch", "--index", "https://other.example/simple"]) == 0
    assert asked == [("torch", "https://other.example/simple")]
    monkeypatch.delenv("XENTBENCH_INDEX_TORCH")
    assert main(["versions", "--backend", "torch"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "XENTBENCH_INDEX_TORCH" in err
