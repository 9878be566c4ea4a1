"""The training configuration of the timing suite: who is timed in it, with which inputs, and
how its rows are keyed and stored (suites.timing.configs)."""

from __future__ import annotations

import numpy as np
import pytest
from test_timing import FAST

from xentbench.adapters import registry
from xentbench.adapters.base import HEAD_COMPOSITION, Adapter, Implementation, PreparedCall
from xentbench.reference.options import canonical
from xentbench.suites.catalog.selection import Selection
from xentbench.suites.store.rows import RowWriter, load, stored_keys
from xentbench.suites.timing import configs
from xentbench.suites.timing.suite import plan_timing

SPARSE = "sparse_softmax_cross_entropy"
TRAINING_LABEL = canonical(configs.TRAINING)


class OptionsAdapter(Adapter):
    """A sparse cross-entropy with every training option, one with only ignore_index, one with
    none, and a softmax; ``prepare`` records each call and its labels."""

    name = "opt"
    impls = (
        Implementation(
            "opt:full",
            SPARSE,
            ("float32",),
            gradient=True,
            options=("reduction", "ignore_index", "label_smoothing"),
            option_values=(("reduction", ("none", "mean")),),
        ),
        Implementation("opt:ignore-only", SPARSE, ("float32",), options=("ignore_index",)),
        Implementation("opt:plain", SPARSE, ("float32",)),
        Implementation("opt:softmax", "softmax", ("float32",)),
    )

    def __init__(self):
        self.prepared: list[tuple] = []

    def version(self) -> str:
        return "0"

    def implementations(self) -> tuple[Implementation, ...]:
        return self.impls

    def prepare(self, call, logits, labels) -> PreparedCall:
        self.prepared.append((call, logits.shape, None if labels is None else labels.copy()))
        return PreparedCall(run=lambda: np.exp(logits).sum(), to_numpy=np.asarray)


def rows_of(adapter: Adapter, shapes=((8, 5),)) -> dict[tuple, dict]:
    tasks = plan_timing(
        adapter, Selection(dtypes=("float32",), shapes=shapes), bandwidth_gbps=10.0, **FAST
    )
    return {task.key: task.evaluate() for task in tasks}


@pytest.mark.slow
def test_training_rows_only_for_sparse_cross_entropies_declaring_its_options():
    rows = rows_of(OptionsAdapter())
    training = {key[0]: row for key, row in rows.items() if row["options"]}
    assert set(training) == {"opt:full", "opt:ignore-only"}  # plain and softmax: left out
    full = [row for key, row in rows.items() if key[0] == "opt:full" and row["options"]]
    assert {row["pass"] for row in full} == {"forward", "forward+backward"}
    assert all(row["verdict"] == "ok" and row["options"] == TRAINING_LABEL for row in full)
    partial = training["opt:ignore-only"]
    assert partial["verdict"] == "unsupported"
    assert "label_smoothing" in partial["message"] and "reduction" in partial["message"]
    plain_keys = [key for key, row in rows.items() if not row["options"]]
    assert len(plain_keys) == 5  # full value+grad, ignore-only, plain, softmax: untouched


def test_an_implementation_limited_to_other_reductions_is_not_timed_in_it():
    adapter = OptionsAdapter()
    sum_only = Implementation(
        "opt:sum-only",
        SPARSE,
        ("float32",),
        options=("reduction", "ignore_index", "label_smoothing"),
        option_values=(("reduction", ("none", "sum")),),
    )
    adapter.impls = (sum_only,)
    (row,) = [row for row in rows_of(adapter).values() if row["options"]]
    assert row["verdict"] == "unsupported" and "reduction=mean" in row["message"]


def test_the_llm_head_is_timed_with_the_options_each_declares_and_compositions_only_so():
    """Soft-cap 30 and z-loss 1e-4 for the cross-entropies that declare them; a composition around
    another API is never timed plain (it would time that API again), the others are."""
    adapter = OptionsAdapter()
    head = ("softcap", "temperature", "z_loss")
    adapter.impls = (
        Implementation("opt:capped-ce", SPARSE, ("float32",), options=head),
        Implementation("opt:capped-softmax", "softmax", ("float32",), options=head[:2]),
        Implementation(
            "opt:composed", SPARSE, ("float32",), options=head, adaptation=HEAD_COMPOSITION + "x"
        ),
        Implementation(
            "opt:composed-softmax",
            "softmax",
            ("float32",),
            options=head[:2],
            adaptation=HEAD_COMPOSITION + "x",
        ),
        Implementation("opt:plain", SPARSE, ("float32",)),
    )
    rows = rows_of(adapter)
    configured = {(key[0], row["options"]) for key, row in rows.items()}
    both = canonical(configs.HEAD)
    assert configured == {
        ("opt:capped-ce", ""),
        ("opt:capped-ce", both),
        ("opt:capped-softmax", ""),
        ("opt:composed", both),
        ("opt:plain", ""),
    }
    assert all(row["verdict"] == "ok" for row in rows.values())
    seen = {
        (c.implementation.name, tuple(sorted(c.options.items()))) for c, _, _ in adapter.prepared
    }
    assert ("opt:composed", (("softcap", 30.0), ("z_loss", 1e-4))) in seen


@pytest.mark.slow
def test_training_calls_get_the_options_and_a_quarter_of_the_labels_ignored():
    adapter = OptionsAdapter()
    rows_of(adapter, shapes=((8, 5), (16, 5)))
    training = [(c, s, y) for c, s, y in adapter.prepared if c.options]
    assert training and all(c.options == configs.TRAINING for c, _, _ in training)
    for _, shape, labels in training:
        ignored = labels == configs.IGNORE_INDEX
        assert ignored.sum() == int(shape[0] * configs.IGNORED_SHARE)  # 0 on the [1, 2] probe
        assert ((labels[~ignored] >= 0) & (labels[~ignored] < shape[1])).all()
    big = [y for c, s, y in training if s == (16, 5)]
    assert all(np.array_equal(y, big[0]) for y in big)  # the same rows padded every time
    plain = [y for c, s, y in adapter.prepared if not c.options and y is not None]
    assert all((y >= 0).all() for y in plain)


@pytest.mark.slow
def test_training_rows_move_one_output_value_and_fit_the_store(tmp_path):
    rows = rows_of(OptionsAdapter())
    key = ("opt:full", "8x5", "float32", "cpu", "eager")
    plain, training = rows[(*key, "forward", "")], rows[(*key, "forward", TRAINING_LABEL)]
    assert plain["bytes"] == 160 + 8 * 8 + 8 * 4  # logits, int64 labels, one loss per row
    assert training["bytes"] == 160 + 8 * 8 + 4  # ... one mean in all
    writer = RowWriter(tmp_path, "timing", "opt")
    for row in rows.values():
        writer.write({**row, "run_id": "r", "host": "h", "backend_version": "0"})
    writer.close()
    loaded = load([tmp_path], "timing")
    assert len(loaded) == len(rows)  # the options tell plain and training rows apart
    assert set(loaded["options"]) == {"", TRAINING_LABEL}
    assert stored_keys(tmp_path, "timing", "opt") == set(rows)  # resume skips them all


def test_padding_is_deterministic_and_leaves_plain_calls_alone():
    labels = np.arange(12, dtype=np.int64) % 5
    assert configs.padded(labels, {}, 0) is labels
    once = configs.padded(labels, configs.TRAINING, 3)
    assert np.array_equal(once, configs.padded(labels, configs.TRAINING, 3))
    assert (once == -100).sum() == 3 and (labels >= 0).all()  # the input is not modified


def test_torch_cross_entropy_is_timed_in_the_training_configuration():
    """The built-in that declares all three options runs them (eager, tiny shape); F.nll_loss,
    which has no label_smoothing, gets an unsupported row instead."""
    adapter = registry.load("torch")
    selection = Selection(
        dtypes=("float32",),
        shapes=((8, 16),),
        implementations=("torch:F.cross_entropy", "torch:F.nll_loss*"),
    )
    tasks = plan_timing(adapter, selection, bandwidth_gbps=10.0, **FAST)
    rows = [task.evaluate() for task in tasks if task.template["options"]]
    verdicts = {(row["implementation"], row["pass"]): row["verdict"] for row in rows}
    assert verdicts == {
        ("torch:F.cross_entropy", "forward"): "ok",
        ("torch:F.cross_entropy", "forward+backward"): "ok",
        ("torch:F.nll_loss(F.log_softmax)", "forward"): "unsupported",
        ("torch:F.nll_loss(F.log_softmax)", "forward+backward"): "unsupported",
    }


def test_the_report_shows_training_rows_as_their_own_rows(tmp_path):
    from test_report import timing_row, write_run

    from xentbench.suites.report.build import build_report

    torch = {"backend": "torch", "op": SPARSE, "implementation": "torch:F.cross_entropy"}
    plain = timing_row(**torch, median_s=1e-3)
    slower = timing_row(**{**torch, "implementation": "torch:F.nll_loss"}, median_s=2e-3)
    training = timing_row(**torch, options=TRAINING_LABEL, median_s=3e-3)
    run = write_run(tmp_path / "run", timing=[plain, slower, training])
    markdown = build_report([run], tmp_path / "out")["report.md"].read_text(encoding="utf-8")
    table = markdown.split(f"### Timing, {SPARSE}")[1].split("###")[0]
    lines = [line.replace(" ", "") for line in table.splitlines() if "torch:F." in line]
    assert "|forward||float32|64x1000|torch:F.cross_entropy|1ms|" in lines[0]
    assert lines[0].endswith("|1.00|") and lines[1].endswith("|2.00|")
    # The training row: its options in their own column, compared only with training rows.
    assert f"|forward|{TRAINING_LABEL}|float32|64x1000|torch:F.cross_entropy|3ms|" in lines[2]
    assert lines[2].endswith("|1.00|")


def test_baselines_are_timed_only_when_named():
    """The default grid leaves out baselines (their time pays for the training rows)."""
    adapter = OptionsAdapter()
    naive = Implementation("opt:naive", "softmax", ("float32",), baseline=True)
    adapter.impls = (*OptionsAdapter.impls, naive)
    default = plan_timing(
        adapter, Selection(dtypes=("float32",), shapes=((2, 3),)), bandwidth_gbps=1.0
    )
    assert "opt:naive" not in {task.key[0] for task in default}
    named = Selection(dtypes=("float32",), shapes=((2, 3),), implementations=("opt:*",))
    assert "opt:naive" in {task.key[0] for task in plan_timing(adapter, named, bandwidth_gbps=1.0)}
