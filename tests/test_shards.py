"""Vocabulary-parallel cross-entropy (the ``shards`` option): the split rule, the reference
(the unsharded loss, the count checked), ``check --shards``, and the catalog's shard cases
judging the compositions and the careful and flawed sharded plugins."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flawed import sharded as flawed_sharded
from plugin_helpers import register_plugins

from xentbench.reference import exact
from xentbench.reference.shards import bounds
from xentbench.suites.catalog.cases import catalog
from xentbench.suites.catalog.head_tables import SHARD_CASES
from xentbench.suites.cli import main
from xentbench.suites.store.rows import load

SPARSE = "sparse_softmax_cross_entropy"
CASES = [f"{SPARSE}/options/{scenario.name}" for scenario in SHARD_CASES]
# The case of the catalog that exposes each mistake.
EXPOSED_BY = {
    "smoothing-over-local-v": "shards-3-smoothing",
    "sum-reduced-twice": "shards-2-boundaries",
    "boundary-off-by-one": "shards-8-smoothing",
}


@pytest.mark.parametrize(("classes", "shards"), [(51, 2), (50, 3), (100, 8), (7, 7), (5, 1)])
def test_the_split_is_numpy_array_split(classes, shards):
    parts = np.array_split(np.arange(classes), shards)
    assert bounds(classes, shards) == [(int(p[0]), int(p[-1]) + 1) for p in parts]


def test_the_sharded_reference_is_the_unsharded_loss():
    rng = np.random.default_rng(0)
    x, k = rng.normal(size=(4, 11)) * 4, np.array([0, 3, 4, 10])
    for quantity in ("value", "grad"):
        plain = exact(SPARSE, x, k, quantity=quantity, label_smoothing=0.1)
        for shards in (1, 3, 11):
            sharded = exact(SPARSE, x, k, quantity=quantity, label_smoothing=0.1, shards=shards)
            assert np.array_equal(sharded.hi, plain.hi) and np.array_equal(sharded.lo, plain.lo)


@pytest.mark.parametrize("bad", [0, -1, 12, 2.5, True])
def test_the_reference_refuses_a_count_the_classes_cannot_hold(bad):
    with pytest.raises(ValueError, match=f"shards {bad} is invalid"):
        exact(SPARSE, np.zeros((2, 11)), np.array([0, 1]), shards=bad)


def test_only_the_sparse_cross_entropy_takes_shards():
    with pytest.raises(ValueError, match="takes no option 'shards'"):
        exact("softmax_cross_entropy", np.zeros((1, 4)), np.full((1, 4), 0.25), shards=2)


def test_the_shard_cases_put_labels_on_every_boundary():
    for case in (c for c in catalog() if c.id in CASES):
        x, k = case.inputs("float32", 0)
        k_shards = dict(case.options)["shards"]
        assert x.shape[1] % k_shards, case.id  # the vocabulary is not divisible
        edges = {c for a, b in bounds(x.shape[1], k_shards) for c in (a, b - 1)}
        assert set(k.tolist()) == edges, case.id
    assert {dict(c.options)["shards"] for c in catalog() if c.id in CASES} == {2, 3, 8}


def _run(tmp_path, backends, dtypes):
    out = tmp_path / "run"
    argv = ["run", "--suite", "accuracy", "--backend", *backends, "--out", str(out)]
    assert main([*argv, "--cases", *CASES, "--dtype", *dtypes, "--jobs", "1"]) == 0
    rows = load([out], "accuracy")
    return rows[rows["verdict"] != "unsupported"]


@pytest.fixture
def sharded_plugins(tmp_path, monkeypatch):
    monkeypatch.setenv("XENTBENCH_CACHE", str(tmp_path / "cache"))
    register_plugins(tmp_path / "site", monkeypatch, flawed_sharded.ENTRY_POINTS, "sharded")


def test_the_careful_sharded_plugin_passes_every_shard_case(sharded_plugins, tmp_path):
    dtypes = ("float16", "bfloat16", "float32", "float64")
    measured = _run(tmp_path, ["sharded_careful"], dtypes)
    # the head's combined case is unsupported: the plugin takes no cap, temperature or z-loss
    assert len(set(measured["case_id"])) == len(CASES) - 1
    assert set(measured["verdict"]) == {"pass"}, measured[measured["verdict"] != "pass"]


def test_each_flawed_sharded_plugin_is_flagged_by_the_catalog(sharded_plugins, tmp_path):
    measured = _run(tmp_path, ["sharded_flawed"], ("float32",))
    for mistake, case in EXPOSED_BY.items():
        mine = measured[
            (measured["implementation"] == f"sharded_flawed:{mistake}")
            & (measured["case_id"] == f"{SPARSE}/options/{case}")
        ]
        assert set(mine["verdict"]) & {"wrong", "inaccurate"}, (mistake, mine)


@pytest.mark.parametrize("dtype", ["float32", pytest.param("float64", marks=pytest.mark.slow)])
def test_the_compositions_pass_every_shard_case(tmp_path, monkeypatch, dtype):
    """NumPy, torch and JAX simulating the shards in one process, in float32 (and float64 in the
    slow tier)."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    monkeypatch.setenv("XENTBENCH_CACHE", str(tmp_path / "cache"))
    measured = _run(tmp_path, ["numpy", "torch", "jax"], (dtype,))
    mine = measured[measured["implementation"].str.contains("vocab_parallel")]
    assert set(mine["implementation"].str.partition(":")[0]) == {"numpy", "torch", "jax"}
    assert set(mine["case_id"]) == set(CASES)
    assert set(mine["verdict"]) == {"pass"}, mine[mine["verdict"] != "pass"]


def _save(tmp_path):
    rng = np.random.default_rng(5)
    logits, labels = tmp_path / "x.npy", tmp_path / "k.npy"
    np.save(logits, (rng.normal(size=(6, 40)) * 5).astype(np.float32))
    np.save(labels, np.array([0, 13, 14, 26, 27, 39]))  # the boundaries of 3 shards of 40
    return ["check", "--op", SPARSE, "--logits", str(logits), "--labels", str(labels)]


@pytest.mark.parametrize("bad", ["0", "-3", "41"])
def test_check_refuses_a_bad_shard_count_naming_it(tmp_path, capsys, bad):
    assert main([*_save(tmp_path), f"--shards={bad}", "--backend", "numpy"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"shards {bad} is invalid" in err and "40 classes" in err
    assert len(err.splitlines()) == 1


def test_check_refuses_shards_on_another_op(tmp_path, capsys):
    argv = ["check", "--op", "softmax", "--logits", str(_save(tmp_path)[4]), "--shards", "2"]
    assert main([*argv, "--backend", "numpy"]) == 2
    assert "takes no option 'shards'" in capsys.readouterr().err


def test_check_judges_sharded_plugins_on_given_inputs(sharded_plugins, tmp_path, capsys):
    argv = [*_save(tmp_path), "--shards", "3", "--label-smoothing", "0.1", "--format", "json"]
    assert main([*argv, "--backend", "sharded_careful", "sharded_flawed"]) == 0
    records = json.loads(capsys.readouterr().out)
    verdicts = {(r["implementation"], r["quantity"]): r["verdict"] for r in records}
    assert verdicts[("sharded_careful:internals", "value")] == "pass"
    assert verdicts[("sharded_careful:internals", "grad")] == "pass"
    for mistake in flawed_sharded.MISTAKES:
        assert verdicts[(f"sharded_flawed:{mistake}", "value")] in ("wrong", "inaccurate")


def test_the_compiled_compositions_pass_on_two_vocabulary_sizes(tmp_path, monkeypatch):
    """torch.compile's second shape recompiles with dynamic shapes: the split stays static."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    monkeypatch.setenv("XENTBENCH_CACHE", str(tmp_path / "cache"))
    out, cases = tmp_path / "run", CASES[:2]
    argv = ["run", "--suite", "accuracy", "--backend", "torch", "jax", "--out", str(out)]
    argv += ["--cases", *cases, "--dtype", "float32", "--mode", "compiled", "--jobs", "1"]
    assert main(argv) == 0
    rows = load([out], "accuracy")
    mine = rows[rows["implementation"].str.contains("vocab_parallel")]
    assert len(mine) == 2 * 2 * 2  # two backends, two cases, value and grad
    assert set(mine["verdict"]) == {"pass"}, mine[["case_id", "verdict", "message"]]
