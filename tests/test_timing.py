"""Tests of the timing harness, the bandwidth probe and timing task planning.

Wall-clock tests (marked ``timing``) use busy-waits of known length and generous tolerances so
they hold on a noisy 2-core machine; the logic of the harness (calibration, repeat budget,
compile time) is tested deterministically with a fake clock.
"""

from __future__ import annotations

import os
import statistics
import time
from types import SimpleNamespace

import numpy as np
import pytest

from xentbench.adapters import registry
from xentbench.adapters.base import Adapter, Call, Implementation, PreparedCall, numpy_dtype
from xentbench.suites.catalog.selection import Selection
from xentbench.suites.store.rows import RowWriter, load, stored_rows
from xentbench.suites.store.schema import KEYS, TIMING_SCHEMA, key_of
from xentbench.suites.timing import bandwidth, harness
from xentbench.suites.timing.inputs import InputFactory
from xentbench.suites.timing.suite import plan_timing

SPIN_S = 0.002
# Short windows and no contention retries: these tests check what the rows hold, not the
# figures (the harness's retries have tests of their own).
FAST = {"min_repeat_s": 1e-4, "repeats": 3, "max_total_s": 0.01, "max_retries": 0}


def spin(duration_s: float) -> None:
    """Busy-wait: occupies the CPU for ``duration_s`` (sleep would yield and overshoot)."""
    end = time.perf_counter() + duration_s
    while time.perf_counter() < end:
        pass


class FakeClock:
    """A ``time`` stand-in whose clock moves only when a fake call does work."""

    def __init__(self, call_durations):
        self.now = 0.0
        self.calls = 0
        self._durations = call_durations

    def perf_counter(self) -> float:
        return self.now

    def run(self) -> None:
        self.now += self._durations(self.calls)
        self.calls += 1


@pytest.fixture
def quiet_cpu() -> None:
    """Skip when runnable processes outnumber cores: a busy-wait then measures the scheduler."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores + 0.5:
        pytest.skip(f"machine oversubscribed (1-min load {load:.1f} on {cores} cores)")


def least_disturbed(measure_once, attempts: int = 3) -> harness.Measurement:
    """The attempt with the lowest median: other processes only ever add time to a busy-wait."""
    return min((measure_once() for _ in range(attempts)), key=lambda m: m.median_s)


def fake_clock(monkeypatch, call_durations) -> FakeClock:
    """Install a fake clock; contention probes read nothing (the fake calls use no CPU)."""
    clock = FakeClock(call_durations)
    monkeypatch.setattr(harness, "time", clock)
    monkeypatch.setattr(harness.contention, "snapshot", lambda: harness.contention.NO_USAGE)
    return clock


def measure_with_clock(monkeypatch, call_durations, **options) -> harness.Measurement:
    clock = fake_clock(monkeypatch, call_durations)
    options.setdefault("min_window_s", 0.0)  # exact repeat counts; the window has its own test
    return harness.measure(clock.run, **options)


class AsyncDevice:
    """A mock accelerator: ``launch`` queues work and returns at once; ``sync`` waits for it."""

    def __init__(self, work_s: float):
        self.work_s = work_s
        self.busy_until = time.perf_counter()

    def launch(self) -> None:
        self.busy_until = max(self.busy_until, time.perf_counter()) + self.work_s

    def sync(self) -> None:
        spin(self.busy_until - time.perf_counter())


# --- harness, wall clock ---------------------------------------------------------------


@pytest.mark.timing
@pytest.mark.usefixtures("quiet_cpu")
def test_median_of_a_busy_wait_is_its_duration():
    m = least_disturbed(
        lambda: harness.measure(lambda: spin(SPIN_S), min_repeat_s=0.01, repeats=5, max_total_s=0.2)
    )
    assert m.min_s >= SPIN_S
    assert m.median_s == pytest.approx(SPIN_S, rel=0.05)


@pytest.mark.timing
@pytest.mark.usefixtures("quiet_cpu")
def test_async_work_is_timed_only_when_run_synchronises():
    device = AsyncDevice(work_s=SPIN_S)

    def run() -> None:  # the adapter contract: run() launches and synchronises
        device.launch()
        device.sync()

    prepared = PreparedCall(run=run, to_numpy=np.asarray)
    options = {"min_repeat_s": 0.01, "repeats": 5, "max_total_s": 0.2}
    synced = least_disturbed(lambda: harness.measure(prepared.run, **options))
    launch_only = harness.measure(AsyncDevice(work_s=SPIN_S).launch, **options)
    assert synced.median_s == pytest.approx(SPIN_S, rel=0.05)
    assert launch_only.median_s < SPIN_S / 10


@pytest.mark.timing
def test_summary_statistics_agree_with_the_per_repeat_times():
    m = harness.measure(
        lambda: sum(range(100)), min_repeat_s=0.002, repeats=9, max_total_s=5, min_window_s=0
    )
    q1, _median, q3 = statistics.quantiles(m.times_s, n=4, method="inclusive")
    assert len(m.times_s) == m.repeats == 9
    assert m.median_s == pytest.approx(statistics.median(m.times_s))
    assert m.iqr_s == pytest.approx(q3 - q1)
    assert m.min_s == min(m.times_s) <= m.median_s
    assert m.calls_per_repeat * m.median_s > 0.002 / 4  # far more than one call per repeat


@pytest.mark.timing
def test_harness_overhead_is_positive_and_far_below_a_microsecond_op():
    assert 0 < harness.harness_overhead_s() < 1e-6


# --- harness, fake clock ---------------------------------------------------------------


def test_calls_per_repeat_doubles_until_a_repeat_lasts_min_repeat_s(monkeypatch):
    m = measure_with_clock(monkeypatch, lambda i: 0.001, min_repeat_s=0.01, repeats=5)
    assert m.calls_per_repeat == 16  # 8 calls last 8 ms < 10 ms; 16 calls last 16 ms
    assert m.repeats == 5 and m.note == ""
    assert m.median_s == pytest.approx(0.001)


def test_first_call_is_reported_as_compile_time(monkeypatch):
    m = measure_with_clock(monkeypatch, lambda i: 1.5 if i == 0 else 0.001)
    assert m.first_call_s == pytest.approx(1.5)
    assert m.compile_s == pytest.approx(1.5 - 0.001)
    assert m.median_s == pytest.approx(0.001)


def test_slow_call_cuts_repeats_to_the_minimum_and_says_so(monkeypatch):
    clock = fake_clock(monkeypatch, lambda i: 0.2)
    m = harness.measure(clock.run, repeats=7, max_total_s=0.25)
    assert m.repeats == harness.MIN_REPEATS == 3
    assert clock.calls == 1 + 3  # the first call, then the repeats: no warm-up for a slow op
    assert m.calls_per_repeat == 1
    assert "cut from 7 to 3" in m.note


def test_noisy_repeats_are_flagged_as_high_variance(monkeypatch):
    one_call_per_repeat = {"min_repeat_s": 1e-9, "repeats": 5}
    noisy = measure_with_clock(
        monkeypatch, lambda i: 0.001 * (1 + 2 * (i % 2)), **one_call_per_repeat
    )
    steady = measure_with_clock(monkeypatch, lambda i: 0.002, **one_call_per_repeat)
    assert noisy.calls_per_repeat == 1 and {round(t, 9) for t in noisy.times_s} == {1e-3, 3e-3}
    assert noisy.high_variance and "high variance" in noisy.summary()
    assert not steady.high_variance and steady.summary() == ""


def test_fewer_than_three_repeats_is_refused():
    with pytest.raises(ValueError, match="at least 3"):
        harness.measure(lambda: None, repeats=2)


# --- bandwidth -------------------------------------------------------------------------


def test_copy_bandwidth_counts_bytes_read_and_written(monkeypatch):
    ticks = iter(np.arange(0.0, 100.0, 0.005))  # every clock reading is 5 ms after the last
    monkeypatch.setattr(bandwidth, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    n_bytes = 8 * 2**20
    gbps = bandwidth.copy_bandwidth_gbps(n_bytes, repeats=3)
    assert gbps == pytest.approx(2 * n_bytes / 0.005 / 1e9)


# --- planning ----------------------------------------------------------------------------


class FakeAdapter(Adapter):
    """Three implementations; ``prepare`` records its inputs and runs a trivial NumPy op."""

    name = "fake"
    impls = (
        Implementation("fake:softmax", "softmax", ("float32", "float64")),
        Implementation(
            "fake:sparse",
            "sparse_softmax_cross_entropy",
            ("float32",),
            ("eager", "compiled"),
            gradient=True,
        ),
        Implementation("fake:broken", "sigmoid_cross_entropy", ("float32",)),
    )

    def __init__(self):
        self.prepared: list[tuple[Call, np.ndarray, np.ndarray | None]] = []

    def version(self) -> str:
        return "0"

    def implementations(self) -> tuple[Implementation, ...]:
        return self.impls

    def prepare(self, call, logits, labels) -> PreparedCall:
        self.prepared.append((call, logits, labels))
        if call.implementation.name == "fake:broken":
            raise RuntimeError("boom")
        return PreparedCall(run=lambda: np.exp(logits).sum(), to_numpy=np.asarray)


def evaluate_all(adapter: Adapter, selection: Selection) -> list[dict]:
    return [
        task.evaluate() for task in plan_timing(adapter, selection, bandwidth_gbps=10.0, **FAST)
    ]


def test_plan_has_one_task_per_pass_dtype_and_shape():
    selection = Selection(dtypes=("float32", "float16"), shapes=((2, 3), (4, 5)))
    tasks = plan_timing(FakeAdapter(), selection, bandwidth_gbps=10.0, **FAST)
    expected = {
        (impl, shape, dtype, "cpu", "eager", pass_, "")
        for shape in ("2x3", "4x5")
        for dtype in ("float32", "float16")
        for impl, pass_ in (
            ("fake:softmax", "forward"),
            ("fake:sparse", "forward"),
            ("fake:sparse", "forward+backward"),
            ("fake:broken", "forward"),
        )
    }
    shapes = [task.key[1] for task in tasks]
    assert shapes == sorted(shapes)  # shape by shape, so consecutive tasks share inputs
    assert {task.key for task in tasks} == expected and len(tasks) == len(expected)
    assert all("fake:" in task.label for task in tasks)


def test_rows_carry_verdicts_reasons_and_every_schema_column(tmp_path):
    selection = Selection(
        dtypes=("float32", "float16"), modes=("eager", "compiled"), shapes=((2, 3),)
    )
    rows = evaluate_all(FakeAdapter(), selection)
    by_key = {key_of("timing", row): row for row in rows}
    runner_columns = {"run_id", "host", "backend_version", "harness_error"}
    assert all(set(row) == set(TIMING_SCHEMA.names) - runner_columns for row in rows)
    half = by_key[("fake:softmax", "2x3", "float16", "cpu", "eager", "forward", "")]
    assert half["verdict"] == "unsupported" and "float16" in half["message"]
    no_compiled = by_key[("fake:softmax", "2x3", "float32", "cpu", "compiled", "forward", "")]
    assert no_compiled["verdict"] == "unsupported" and "compiled" in no_compiled["message"]
    broken = by_key[("fake:broken", "2x3", "float32", "cpu", "eager", "forward", "")]
    assert broken["verdict"] == "error" and broken["message"] == "RuntimeError: boom"
    compiled = by_key[("fake:sparse", "2x3", "float32", "cpu", "compiled", "forward+backward", "")]
    eager = by_key[("fake:sparse", "2x3", "float32", "cpu", "eager", "forward", "")]
    assert compiled["verdict"] == eager["verdict"] == "ok"
    assert compiled["compile_s"] >= 0 and eager["compile_s"] is None
    writer = RowWriter(tmp_path, "timing", "fake")  # the rows fit the stored schema
    for row in rows:
        writer.write({**row, "run_id": "r", "host": "h", "backend_version": "0"})
    writer.close()
    assert len(load([tmp_path], "timing")) == len(rows)


def test_bytes_throughput_and_roofline_follow_the_memory_bound_model():
    selection = Selection(dtypes=("float32",), shapes=((4, 5),))
    rows = {key_of("timing", r): r for r in evaluate_all(FakeAdapter(), selection)}
    softmax = rows[("fake:softmax", "4x5", "float32", "cpu", "eager", "forward", "")]
    grad = rows[("fake:sparse", "4x5", "float32", "cpu", "eager", "forward+backward", "")]
    assert softmax["bytes"] == 80 + 80  # logits read, probabilities written
    assert grad["bytes"] == 80 + 4 * 8 + 16 + 80  # logits, int64 labels, losses, gradient
    for row in (softmax, grad):
        assert row["gbps"] == pytest.approx(row["bytes"] / row["median_s"] / 1e9)
        assert row["roofline_fraction"] == pytest.approx(row["gbps"] / 10.0)
        assert row["n_elements"] == 20 and row["repeats"] >= 3


def test_overhead_is_measured_once_per_signature_on_a_tiny_input():
    adapter = FakeAdapter()
    selection = Selection(dtypes=("float32",), shapes=((2, 3), (4, 5)))
    rows = evaluate_all(adapter, selection)
    tiny = [call for call, logits, _ in adapter.prepared if logits.shape == (1, 2)]
    signatures = {(c.implementation.name, c.quantity) for c in tiny}
    assert len(tiny) == len(signatures) == 3  # softmax value, sparse value and grad
    ok = [row for row in rows if row["verdict"] == "ok"]
    assert ok and all(row["overhead_s"] > 0 for row in ok)


def test_inputs_follow_the_spec_and_the_seed():
    factory = InputFactory(seed=7)
    logits, sparse = factory.inputs("sparse_softmax_cross_entropy", 64, 10, "bfloat16")
    _, soft = factory.inputs("softmax_cross_entropy", 64, 10, "float64")
    _, sigmoid = factory.inputs("sigmoid_cross_entropy", 64, 10, "float32")
    assert logits.dtype == numpy_dtype("bfloat16") and logits.shape == (64, 10)
    assert 2 < float(np.std(logits.astype(np.float64))) < 6  # normal(0, 4)
    assert (
        sparse.dtype == np.int64
        and sparse.shape == (64,)
        and 0 <= sparse.min() <= sparse.max() < 10
    )
    np.testing.assert_allclose(soft.sum(axis=-1), 1.0)
    assert (
        soft.min() > 0 and sigmoid.dtype == np.float32 and 0 <= sigmoid.min() <= sigmoid.max() <= 1
    )
    again, _ = InputFactory(seed=7).inputs("softmax", 64, 10, "bfloat16")
    other, _ = InputFactory(seed=8).inputs("softmax", 64, 10, "bfloat16")
    assert np.array_equal(again, logits) and not np.array_equal(other, logits)
    assert factory.inputs("softmax", 64, 10, "float32")[1] is None


# --- rounds, raw samples, calibration, schema ------------------------------------------------


@pytest.mark.slow
def test_rounds_interleave_the_whole_grid_and_pool_samples_under_one_key(tmp_path):
    selection = Selection(dtypes=("float32",), shapes=((2, 3), (4, 5)))
    tasks = plan_timing(FakeAdapter(), selection, bandwidth_gbps=10.0, rounds=3, **FAST)
    one_round = plan_timing(FakeAdapter(), selection, bandwidth_gbps=10.0, **FAST)
    n = len(one_round)
    # Round-robin: every key once per round, in the same order, never back to back.
    assert [task.key for task in tasks] == [task.key for task in one_round] * 3
    assert tasks[0].label.startswith("[1/3] ") and tasks[-1].label.startswith("[3/3] ")
    writer = RowWriter(tmp_path, "timing", "fake")
    rows = []
    for task in tasks:
        rows.append(task.evaluate())
        writer.write({**rows[-1], "run_id": "r", "host": "h", "backend_version": "0"})
    writer.close()
    key = ("fake:softmax", "4x5", "float32", "cpu", "eager", "forward", "")
    per_round = [row for row in rows if key_of("timing", row) == key]
    assert [row["rounds"] for row in per_round] == [1, 2, 3]
    sizes = [len(row["times_s"]) for row in per_round]
    assert sizes[0] >= 3 and sizes == sorted(sizes) and sizes[2] == per_round[2]["repeats"]
    assert per_round[1]["times_s"][: sizes[0]] == per_round[0]["times_s"]  # pooled, not replaced
    assert len(per_round[2]["calibration_s"]) == 6  # before and after, every round
    # Each round's median, from that round's own samples (the pooled list's new slice).
    for index, row in enumerate(per_round):
        start = sizes[index - 1] if index else 0
        own = row["times_s"][start : sizes[index]]
        assert row["round_medians_s"][-1] == pytest.approx(statistics.median(own))
        assert row["round_medians_s"][:index] == per_round[index - 1]["round_medians_s"][:index]
    stored = load([tmp_path], "timing")
    assert len(stored) == n  # one row per key: the last round's, with every sample
    row = stored.set_index(list(KEYS["timing"])).loc[key]
    assert list(row["times_s"]) == per_round[2]["times_s"] and row["rounds"] == 3
    assert list(row["round_medians_s"]) == per_round[2]["round_medians_s"]
    assert row["median_s"] == pytest.approx(statistics.median(row["times_s"]))


def _round(tmp_path, adapter: Adapter, selection: Selection, round_: int, rounds: int):
    """One round as a fresh worker runs it: planned with the store's rows, rows stored."""
    stored = stored_rows(tmp_path, "timing", "fake") if round_ > 1 else None
    tasks = plan_timing(
        adapter,
        selection,
        bandwidth_gbps=10.0,
        rounds=rounds,
        only_round=round_,
        stored=stored,
        **FAST,
    )
    writer = RowWriter(tmp_path, "timing", "fake")
    rows = [task.evaluate() for task in tasks]
    for row in rows:
        writer.write({**row, "run_id": "r", "host": "h", "backend_version": "0"})
    writer.close()
    return tasks, {key_of("timing", row): row for row in rows}


@pytest.mark.slow
def test_a_round_in_a_fresh_process_pools_with_the_rows_the_earlier_rounds_stored(tmp_path):
    selection = Selection(dtypes=("float32",), shapes=((2, 3), (4, 5)))
    first_tasks, first = _round(tmp_path, FakeAdapter(), selection, 1, 2)
    second_tasks, second = _round(tmp_path, FakeAdapter(), selection, 2, 2)
    assert [task.key for task in second_tasks] == [task.key for task in first_tasks]
    assert second_tasks[0].label.startswith("[2/2] ")
    measured = [key for key, row in first.items() if row["verdict"] == "ok"]
    assert measured and {second[key]["verdict"] for key in second} == {"ok", "error"}
    for key in measured:
        before, after = first[key], second[key]
        assert after["rounds"] == 2 and len(after["round_medians_s"]) == 2
        assert after["times_s"][: before["repeats"]] == list(before["times_s"])  # pooled
        assert after["repeats"] == len(after["times_s"]) > before["repeats"]
        assert after["round_medians_s"][0] == before["round_medians_s"][0]
        assert len(after["calibration_s"]) == 4 and after["wall_s"] > before["wall_s"]
        assert after["overhead_s"] == before["overhead_s"]  # measured once per key and run
        if key[4] == "compiled":  # the first round's first call: its compilation
            assert after["compile_s"] is not None
    # A later round's crash must not take the earlier rounds with it: its template is them.
    templates = {task.key: task.template for task in second_tasks}
    assert all(templates[key]["verdict"] == "ok" for key in measured)
    stored = load([tmp_path], "timing")
    assert len(stored) == len(first) and set(stored["rounds"].dropna()) == {2}


class _FailingLater(FakeAdapter):
    """Measures in the first round, then every call fails (a device lost, memory gone)."""

    def prepare(self, call, logits, labels) -> PreparedCall:
        raise RuntimeError("out of memory")


def test_a_round_that_errors_keeps_the_earlier_rounds_and_says_so(tmp_path):
    selection = Selection(dtypes=("float32",), shapes=((4, 5),))
    _, first = _round(tmp_path, FakeAdapter(), selection, 1, 2)
    _, second = _round(tmp_path, _FailingLater(), selection, 2, 2)
    for key, before in first.items():
        if before["verdict"] != "ok":
            continue
        after = second[key]
        assert after["verdict"] == "ok" and after["rounds"] == 1
        assert after["times_s"] == list(before["times_s"])
        assert "round 2: RuntimeError: out of memory" in after["message"]


def test_a_round_is_planned_only_within_the_rounds():
    selection = Selection(dtypes=("float32",), shapes=((4, 5),))
    with pytest.raises(ValueError, match=r"only_round must be in 1\.\.3, got 4"):
        plan_timing(FakeAdapter(), selection, bandwidth_gbps=1.0, rounds=3, only_round=4)


def test_rows_record_what_the_process_got():
    rows = evaluate_all(FakeAdapter(), Selection(dtypes=("float32",), shapes=((4, 5),)))
    ok = [row for row in rows if row["verdict"] == "ok"]
    for row in ok:
        assert row["wall_s"] > 0 and row["cpu_s"] >= 0 and row["involuntary_switches"] >= 0
        assert row["threads"] >= 1 and row["contended"] in (True, False) and row["retries"] >= 0
        assert row["calls_per_repeat"] >= 1 and row["repeats"] == len(row["times_s"]) >= 3
        assert all(t > 0 for t in row["calibration_s"]) and len(row["calibration_s"]) == 2
        assert row["peak_bytes"] is None  # CPU peak memory is opt-in (--memory)


def test_runs_from_schema_version_2_still_load_with_the_new_columns_null(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    old_columns = [f for f in TIMING_SCHEMA if f.name not in ("times_s", "contended")]
    old_columns = [f for f in old_columns if f.name not in ("calibration_s", "peak_bytes")]
    old_columns = [f for f in old_columns if f.name not in ("options", "others_cpu_s")]
    schema = pa.schema(old_columns).with_metadata({b"xentbench.schema_version": b"2"})
    row = {"implementation": "fake:softmax", "shape": "2x3", "dtype": "float32"}
    row |= {"device": "cpu", "mode": "eager", "pass": "forward", "verdict": "ok", "median_s": 1e-3}
    table = pa.table({f.name: [row.get(f.name)] for f in schema}, schema=schema)
    pq.write_table(table, tmp_path / "timing-fake.parquet")
    loaded = load([tmp_path], "timing")
    assert loaded["median_s"].tolist() == [1e-3]
    assert loaded["times_s"].isna().all() and loaded["contended"].isna().all()
    assert loaded["options"].tolist() == [""]  # a plain call, keyed as today's plain rows
    assert loaded["others_cpu_s"].isna().all()


def test_timing_plans_only_value_and_plain_gradients_of_every_builtin_backend():
    """Forward-mode and VJP-only quantities (jvp, softmax's cotangent gradient) have no plain
    timing; planning must skip them rather than fail (every built-in adapter declares some)."""
    from xentbench.adapters.base import GRADIENT_OPS

    for name in ("torch", "jax"):
        adapter = registry.load(name)
        selection = Selection(shapes=((2, 8),), implementations=(f"{name}:*",))
        tasks = plan_timing(adapter, selection, bandwidth_gbps=10.0)
        quantities = {(task.template["op"], task.template["pass"]) for task in tasks}
        assert all(p == "forward" or op in GRADIENT_OPS for op, p in quantities)
        assert ("logsumexp", "forward+backward") in quantities
