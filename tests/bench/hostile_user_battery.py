"""A hostile but realistic user against ``check``, ``run``, ``report`` and ``compare``.

Tries 100+ invocations (bad files, bad arrays, bad options, tampered and corrupt run
directories, symlinks planted in run and report directories, two runs at once, Ctrl-C,
``kill -9`` then resume) and counts: handled cleanly (the expected exit status, and for bad
input one line on stderr), mishandled, tracebacks (must be 0: an internal error, exit 3, counts
as one too) and rows lost (must be 0). Each attempt runs ``suites.cli.main`` in a forked
process (the CLI's imports paid once); the concurrency, Ctrl-C and kill attempts run real
``python -m xentbench.suites.cli`` processes.

Run from the repository root: ``python tests/bench/hostile_user_battery.py [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from xentbench.suites.cli import main  # noqa: E402
from xentbench.suites.store.schema import KEYS, SCHEMA_VERSION  # noqa: E402

NARROW = ["--suite", "accuracy", "--backend", "numpy", "--dtype", "float64"]
NARROW += ["--impl", "numpy:stable.softmax", "--cases", "softmax/benign/*"]
SPARSE = "sparse_softmax_cross_entropy"


@dataclass
class Outcome:
    code: int
    out: str
    err: str


@dataclass
class Tally:
    attempts: int = 0
    clean: int = 0
    tracebacks: int = 0
    rows_lost: int = 0
    mishandled: list[str] = field(default_factory=list)


TALLY = Tally()


def invoke(argv: list[str], timeout_s: float = 900) -> Outcome:
    """``main(argv)`` in a forked child: its exit status, stdout and stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:
            _child(argv, out.fileno(), err.fileno())
        code = _wait(pid, timeout_s)
        out.seek(0)
        err.seek(0)
        return Outcome(
            code, out.read().decode(errors="replace"), err.read().decode(errors="replace")
        )


def _child(argv: list[str], out_fd: int, err_fd: int) -> None:
    """The forked child: like ``python -m xentbench.suites.cli``, an uncaught error prints a
    traceback."""
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _wait(pid: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -999  # a hang
        time.sleep(0.02)


def attempt(name: str, argv: list[str], expected: int | set[int], check=None) -> Outcome:
    """Run one attempt and count it; ``check(outcome)`` returns a problem or None."""
    result = invoke(argv)
    record(name, result, expected, check)
    return result


def record(name: str, result: Outcome, expected, check=None) -> None:
    TALLY.attempts += 1
    expected = {expected} if isinstance(expected, int) else expected
    problems = []
    if "Traceback (most recent call last)" in result.err or result.code == 3:
        TALLY.tracebacks += 1
        problems.append("traceback/internal error")
    if result.code not in expected:
        problems.append(f"exit {result.code}, expected {sorted(expected)}")
    if result.code == 2:  # one line: the error (a run may have shown progress before it)
        lines = [line for line in result.err.strip().splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("xentbench ")]
        if len(errors) != 1 or not lines[-1].startswith("xentbench ") or "error" not in lines[-1]:
            problems.append(f"{len(errors)} error lines of {len(lines)} on stderr")
    if check is not None and not problems:
        problem = check(result)
        if problem:
            problems.append(problem)
    if problems:
        last = (result.err.strip().splitlines() or [""])[-1][:160]
        TALLY.mishandled.append(f"{name}: {'; '.join(problems)} | {last}")
    else:
        TALLY.clean += 1


def rows_of(run_dir: Path) -> set[tuple]:
    from xentbench.suites.store.rows import load

    frame = load([run_dir], "accuracy")
    return set(frame[list(KEYS["accuracy"])].itertuples(index=False, name=None))


def lost(expected: set[tuple], run_dir: Path) -> str | None:
    got = rows_of(run_dir)
    missing = expected - got
    TALLY.rows_lost += len(missing)
    return f"{len(missing)} rows lost" if missing else None


# ---------------------------------------------------------------- check


def check_attempts(tmp: Path) -> None:
    def save(name: str, array) -> str:
        path = tmp / name
        np.save(path, array, allow_pickle=True)
        return str(path)

    logits = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], dtype=np.float32)
    good = save("good.npy", logits)
    ok_labels = save("labels.npy", np.array([0, 2]))
    base = ["check", "--backend", "numpy"]

    def ck(name, op, x, y=None, expected=2, extra=()):
        argv = [*base, "--op", op, "--logits", x, *(["--labels", y] if y else []), *extra]
        attempt(f"check {name}", argv, expected)

    (tmp / "empty.npy").write_bytes(b"")
    (tmp / "text.npy").write_text("1,2,3\n")
    (tmp / "header.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    archive = tmp / "arrays.npz"
    np.savez(archive, logits=logits, labels=np.array([0, 2]))
    (tmp / "bad.npz").write_bytes(b"PK\x03\x04broken")
    ck("missing file", "softmax", str(tmp / "nosuch.npy"))
    ck("directory as file", "softmax", str(tmp))
    ck("empty file", "softmax", str(tmp / "empty.npy"))
    ck("text file", "softmax", str(tmp / "text.npy"))
    ck("garbage header", "softmax", str(tmp / "header.npy"))
    ck("object array (pickle)", "softmax", save("obj.npy", np.array([{"a": 1}], dtype=object)))
    ck("npz without a name", "softmax", str(archive))
    ck("npz with a wrong name", "softmax", f"{archive}:nosuch")
    ck("npz by name", SPARSE, f"{archive}:logits", f"{archive}:labels", expected=0)
    ck("npy with a name", "softmax", f"{good}:logits")
    ck("broken npz", "softmax", f"{tmp / 'bad.npz'}:logits")
    ck("0-d logits", "softmax", save("scalar.npy", np.float32(1)))
    ck("0 rows", "softmax", save("rows0.npy", np.zeros((0, 3), np.float32)))
    ck("0 classes", "softmax", save("cls0.npy", np.zeros((2, 0), np.float32)))
    ck("empty 1-d", "logsumexp", save("e1.npy", np.zeros(0, np.float32)))
    ck("complex64", "softmax", save("c64.npy", np.ones((2, 3), np.complex64)))
    ck("complex128", "log_softmax", save("c128.npy", np.ones((2, 3), np.complex128)))
    ck("bool logits", "softmax", save("b.npy", np.ones((2, 3), bool)))
    ck("string logits", "softmax", save("s.npy", np.array([["a", "b"]])))
    ck("datetime logits", "softmax", save("d.npy", np.array(["2020-01-01"], "datetime64[D]")))
    ck("int logits, no --dtype", "softmax", save("i.npy", np.ones((2, 3), np.int64)))
    ck(
        "int logits with --dtype",
        "softmax",
        str(tmp / "i.npy"),
        expected=0,
        extra=("--dtype", "float32"),
    )
    ck("float16 logits", "softmax", save("h.npy", logits.astype(np.float16)), expected=0)
    ck("1-d logits", "softmax", save("one.npy", np.array([1.0, 2.0])), expected=0)
    ck("4-d logits", "log_softmax", save("four.npy", np.ones((2, 2, 2, 3))), expected=0)
    ck(
        "NaN and inf logits",
        "softmax",
        save("naninf.npy", np.array([[np.nan, 1.0], [np.inf, 0.0]])),
        expected=0,
    )
    ck("huge logits", "logsumexp", save("huge.npy", np.array([[1e308, -1e308]])), expected=0)
    ck("labels for softmax", "softmax", good, ok_labels)
    ck("sparse, no labels", SPARSE, good)
    ck("soft, no labels", "softmax_cross_entropy", good)
    ck("sigmoid, no labels", "sigmoid_cross_entropy", good)
    ck("float sparse labels", SPARSE, good, save("fl.npy", np.array([0.0, 1.0])))
    ck("NaN sparse labels", SPARSE, good, save("nl.npy", np.array([0.0, np.nan])))
    ck("bool sparse labels", SPARSE, good, save("bl.npy", np.array([True, False])))
    ck("int8 sparse labels", SPARSE, good, save("i8.npy", np.array([0, 2], np.int8)), expected=0)
    int32, uint64 = (save(f"{kind}.npy", np.array([0, 2], kind)) for kind in ("int32", "uint64"))
    with_torch = ("--backend", "numpy", "torch")
    ck("int32 sparse labels, torch", SPARSE, good, int32, expected=0, extra=with_torch)
    ck("uint64 sparse labels", SPARSE, good, uint64, expected=0)
    ck("uint64 too big", SPARSE, good, save("u64b.npy", np.array([0, 2**64 - 1], np.uint64)))
    ck("label -1 (invalid input)", SPARSE, good, save("neg.npy", np.array([0, -1])), expected=0)
    ck("label = C (invalid input)", SPARSE, good, save("big.npy", np.array([0, 3])), expected=0)
    ck("sparse labels too many", SPARSE, good, save("l3.npy", np.array([0, 1, 2])))
    ck("sparse labels 2-d", SPARSE, good, save("l12.npy", np.array([[0, 1]])))
    ck(
        "3-d logits, matching labels, torch",
        SPARSE,
        save("x3.npy", np.ones((2, 4, 3), "f4")),
        save("y3.npy", np.zeros((2, 4), np.int64)),
        expected=0,
        extra=("--backend", "torch"),
    )
    ck("soft labels wrong shape", "softmax_cross_entropy", good, save("s22.npy", np.ones((2, 2))))
    ck(
        "soft labels complex",
        "softmax_cross_entropy",
        good,
        save("sc.npy", np.ones((2, 3), np.complex64)),
    )
    ck(
        "sigmoid labels bool",
        "sigmoid_cross_entropy",
        good,
        save("sb.npy", np.ones((2, 3), bool)),
        expected=0,
    )
    ck(
        "sigmoid labels wrong shape",
        "sigmoid_cross_entropy",
        good,
        save("s32.npy", np.ones((3, 2))),
    )
    ck("unknown op", "softmaxx", good)
    ck("unknown dtype", "softmax", good, extra=("--dtype", "float8"))
    ck("unknown backend", "softmax", good, extra=("--backend", "nosuch"))
    ck("same backend twice", "softmax", good, extra=("--backend", "numpy", "numpy"))
    ck("unknown device", "softmax", good, extra=("--device", "tpu"))
    ck("unknown format", "softmax", good, extra=("--format", "yaml"))


# ---------------------------------------------------------------- run


def run_attempts(tmp: Path, base_run: Path) -> None:
    def rn(name, *extra, out=None, expected=2, check=None):
        out = out or tmp / f"run-{TALLY.attempts}"
        return attempt(f"run {name}", ["run", *NARROW, "--out", str(out), *extra], expected, check)

    for value in ("0", "-3", "abc"):
        rn(f"--jobs {value}", "--jobs", value)
    for value in ("0", "-1", "nan", "inf", "abc"):
        rn(f"--timeout {value}", "--timeout", value)
    rn("--cases matching nothing", "--cases", "nosuch/*")
    rn("--impl matching nothing", "--impl", "numpy:nosuch*")
    rn("an empty selection", "--op", "softmax", "--impl", "numpy:*cross*")
    rn("same backend twice", "--backend", "numpy", "numpy")
    rn("unknown backend", "--backend", "nosuch")
    rn("--seed abc", "--seed", "abc")
    rn("--shapes 0x5", "--suite", "timing", "--shapes", "0x5")
    rn("--shapes abc", "--suite", "timing", "--shapes", "abc")
    rn("--python nonsense", "--python", "numpy=/no/such/python")
    rn("--dtype float8", "--dtype", "float8")
    rn("--mode nosuch", "--mode", "nosuch")
    rn("--fail-on nosuch", "--fail-on", "nosuch")
    file = tmp / "a-file"
    file.write_text("")
    rn("--out is a file", out=file)
    rn("--out under a file", out=file / "below")
    rn("--out read-only", out=Path("/sys/xentbench-battery"))
    precious = tmp / "precious.txt"
    precious.write_text("keep me")
    for planted in ("run.lock", "run.json", "parts"):
        run_dir = tmp / f"planted-{planted}"
        run_dir.mkdir()
        (run_dir / planted).symlink_to(precious if planted != "parts" else tmp)
        rn(
            f"{planted} symlinked",
            out=run_dir,
            check=lambda r: None if precious.read_text() == "keep me" else "target changed",
        )
    expected = rows_of(base_run)
    copy = tmp / "copy"
    shutil.copytree(base_run, copy)
    rn("resume a finished run", out=copy, expected=0, check=lambda r: lost(expected, copy))
    rn("--seed 1 into a seed-0 run", "--seed", "1", out=copy)
    rn(
        "--seed 1 --new",
        "--seed",
        "1",
        "--new",
        out=copy,
        expected=0,
        check=lambda r: lost(expected, copy),
    )
    broken = tmp / "broken-json"
    shutil.copytree(base_run, broken)
    (broken / "run.json").write_text("{oops")
    rn("corrupt run.json", out=broken)
    harness = tmp / "harness-error"
    shutil.copytree(base_run, harness)
    _mark_harness_error(harness)
    rn(
        "a harness-error row is retried",
        out=harness,
        expected=0,
        check=lambda r: _no_errors(harness) or lost(expected, harness),
    )


def _mark_harness_error(run_dir: Path) -> None:
    from xentbench.suites.store.rows import RowWriter, load

    row = load([run_dir], "accuracy").iloc[0].to_dict()
    writer = RowWriter(run_dir, "accuracy", "numpy")
    writer.write({**row, "verdict": "error", "harness_error": "timed out after 0 s"})
    writer.close()


def _no_errors(run_dir: Path) -> str | None:
    from xentbench.suites.store.rows import load

    rows = load([run_dir], "accuracy")
    return "error rows remain" if (rows["verdict"] == "error").any() else None


# ---------------------------------------------------------------- report and compare


def report_attempts(tmp: Path, base_run: Path) -> None:
    def rp(name, *args, expected=2, check=None):
        attempt(f"report {name}", ["report", *map(str, args)], expected, check)

    empty = tmp / "empty"
    empty.mkdir()
    only_json = tmp / "only-json"
    only_json.mkdir()
    (only_json / "run.json").write_text('{"run_id": "x"}')
    a_file = tmp / "plain-file"
    a_file.write_text("")
    rp("missing directory", tmp / "nosuch")
    rp("empty directory", empty)
    rp("only run.json", only_json)
    rp("a file as run directory", a_file)
    rp("--out is a file", base_run, "--out", a_file)
    rp("--out under a file", base_run, "--out", a_file / "x")
    rp("--out read-only", base_run, "--out", "/sys/xentbench-report")
    rp("a valid run", base_run, "--out", tmp / "r1", expected=0)

    def same_count(result):
        import pandas as pd

        once = len(pd.read_csv(tmp / "r1" / "accuracy.csv"))
        twice = len(pd.read_csv(tmp / "r2" / "accuracy.csv"))
        return None if once == twice else f"{twice} rows for a run given twice, {once} once"

    rp("the same run twice", base_run, base_run, "--out", tmp / "r2", expected=0, check=same_count)
    out = tmp / "r3"
    out.mkdir()
    victim = tmp / "victim.md"
    victim.write_text("keep me")
    (out / "report.md").symlink_to(victim)
    rp(
        "report.md symlinked",
        base_run,
        "--out",
        out,
        expected=0,
        check=lambda r: None if victim.read_text() == "keep me" else "wrote through a symlink",
    )
    for name, damage in _damaged_runs(tmp, base_run).items():
        rp(name, damage)


def _damaged_runs(tmp: Path, base_run: Path) -> dict[str, Path]:
    """Copies of a good run, each damaged in one way a disk, a user or a tool might."""
    damaged = {}

    def copy(name: str) -> Path:
        path = tmp / f"damaged-{len(damaged)}"
        shutil.copytree(base_run, path)
        damaged[name] = path
        return path

    parquet = base_run / "accuracy-numpy.parquet"
    data = parquet.read_bytes()
    (copy("truncated parquet") / parquet.name).write_bytes(data[: len(data) // 2])
    (copy("garbage parquet") / parquet.name).write_bytes(b"x" * 100)
    (copy("empty parquet") / parquet.name).write_bytes(b"")
    (copy("corrupt run.json") / "run.json").write_text("{oops")
    (copy("run.json is a list") / "run.json").write_text("[1, 2]")
    (copy("newer schema") / "run.json").write_text(f'{{"schema_version": {SCHEMA_VERSION + 1}}}')
    target = copy("results symlinked")
    (target / parquet.name).rename(tmp / "moved.parquet")
    (target / parquet.name).symlink_to(tmp / "moved.parquet")
    return damaged


def compare_attempts(tmp: Path, base_run: Path) -> None:
    def cp(name, *args, expected=2, check=None):
        attempt(f"compare {name}", ["compare", *map(str, args)], expected, check)

    cp("missing base", tmp / "nosuch", base_run)
    cp("missing new", base_run, tmp / "nosuch")
    cp("empty new", base_run, tmp / "empty")
    cp("only run.json new", base_run, tmp / "only-json")
    cp("a file as new", base_run, tmp / "plain-file")
    cp("the same run", base_run, base_run, expected=0)
    link = tmp / "link-to-base"
    link.symlink_to(base_run, target_is_directory=True)
    cp("the run through a symlinked path", base_run, link, expected=0)
    vanished = tmp / "vanished"
    _write_without_first_row(base_run, vanished)
    cp(
        "vanished evaluations",
        base_run,
        vanished,
        expected=1,
        check=lambda r: None if "Removed" in r.out else "vanished evaluations not listed",
    )
    cp("vanished, json", base_run, vanished, "--format", "json", expected=1)
    regressed = tmp / "regressed"
    _write_without_first_row(base_run, regressed, regress=True)
    cp("a regression", base_run, regressed, expected=1)
    cp("the improvement direction", regressed, base_run, expected=0)
    for value in ("0.5", "nan", "abc", "inf"):
        cp(f"--ulp-threshold {value}", base_run, base_run, "--ulp-threshold", value)
    for value in ("-1", "nan"):
        cp(f"--time-threshold {value}", base_run, base_run, "--time-threshold", value)
    for index, (name, damage) in enumerate(_damaged_runs(tmp / "c", base_run).items()):
        cp(name, base_run, damage)
        if index % 2:
            cp(f"{name} as base", damage, base_run)


def _write_without_first_row(base_run: Path, out: Path, regress: bool = False) -> None:
    from xentbench.suites.store.rows import RowWriter, load
    from xentbench.suites.store.run_json import update_run_info

    rows = load([base_run], "accuracy").to_dict("records")
    writer = RowWriter(out, "accuracy", "numpy")
    for row in rows[1:]:
        writer.write(row)
    if regress:
        writer.write({**rows[0], "verdict": "wrong"})
    writer.close()
    update_run_info(out, {"run_id": out.name, "host": "h"})


# ---------------------------------------------------------------- real processes


def process_attempts(tmp: Path, base_run: Path) -> None:
    """Two runs at once, Ctrl-C, kill -9 of the runner then resume: real processes."""
    from reliability_helpers import CASES, SELECTION, install_slowpoke, start, xentbench

    site = install_slowpoke(tmp / "site")
    args = ["run", *SELECTION, *CASES, "--jobs", "1"]
    whole = tmp / "whole"
    done = xentbench(site, *args, "--out", str(whole))
    record("run slowpoke uninterrupted", Outcome(done.returncode, done.stdout, done.stderr), 0)
    expected = rows_of(whole)
    together = tmp / "together"
    first = start(site, *args, "--out", str(together), SLOWPOKE_SLEEP="0.3")
    _wait_for_lock(together, first)
    second = xentbench(site, *args, "--out", str(together))
    record("run two at once (the second)", Outcome(second.returncode, "", second.stderr), 2)
    out, err = first.communicate(timeout=600)
    record(
        "run two at once (the first)",
        Outcome(first.returncode, out, err),
        0,
        lambda r: lost(expected, together),
    )
    interrupted = tmp / "interrupted"
    running = start(site, *args, "--out", str(interrupted), SLOWPOKE_SLEEP="0.5")
    _wait_for_lock(interrupted, running)
    time.sleep(4)
    running.send_signal(signal.SIGINT)
    out, err = running.communicate(timeout=60)
    record(
        "run Ctrl-C",
        Outcome(running.returncode, out, err),
        130,
        lambda r: (
            _no_errors(interrupted)
            if (interrupted / "parts").exists() or list(interrupted.glob("*.parquet"))
            else None
        ),
    )
    resumed = xentbench(site, *args, "--out", str(interrupted))
    record(
        "run resume after Ctrl-C",
        Outcome(resumed.returncode, "", resumed.stderr),
        0,
        lambda r: lost(expected, interrupted),
    )
    killed = tmp / "killed"
    for delay in (3.0, 6.0):
        running = start(site, *args, "--out", str(killed), SLOWPOKE_SLEEP="0.1")
        time.sleep(delay)
        running.kill()
        running.communicate()
    resumed = xentbench(site, *args, "--out", str(killed))
    record(
        "run resume after kill -9 (twice)",
        Outcome(resumed.returncode, "", resumed.stderr),
        0,
        lambda r: lost(expected, killed),
    )


def _wait_for_lock(run_dir: Path, process: subprocess.Popen, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and process.poll() is None:
        lock = run_dir / "run.lock"
        if lock.exists() and str(process.pid) in lock.read_text():
            return
        time.sleep(0.1)


# ---------------------------------------------------------------- entry point


def main_battery() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--no-processes", action="store_true", help="skip the real-process part")
    options = parser.parse_args()
    tmp = options.keep or Path(tempfile.mkdtemp(prefix="xb-battery-"))
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XENTBENCH_CACHE", str(tmp / "cache"))
    base_run = tmp / "base-run"
    assert invoke(["run", *NARROW, "--out", str(base_run)]).code == 0, "the base run failed"
    sections: list[tuple[str, Callable[[], None]]] = [
        ("check", lambda: check_attempts(tmp / "check")),
        ("run", lambda: run_attempts(tmp / "run", base_run)),
        ("report", lambda: report_attempts(tmp / "report", base_run)),
        ("compare", lambda: compare_attempts(tmp / "report", base_run)),
    ]
    if not options.no_processes:
        sections.append(("processes", lambda: process_attempts(tmp / "processes", base_run)))
    for name, run in sections:
        started, before = time.monotonic(), TALLY.attempts
        (tmp / name).mkdir(parents=True, exist_ok=True)
        run()
        print(
            f"{name}: {TALLY.attempts - before} attempts in {time.monotonic() - started:.0f} s",
            flush=True,
        )
    print(f"attempts: {TALLY.attempts}")
    print(f"handled cleanly: {TALLY.clean}")
    print(f"mishandled: {len(TALLY.mishandled)}")
    print(f"tracebacks: {TALLY.tracebacks}")
    print(f"rows lost: {TALLY.rows_lost}")
    for line in TALLY.mishandled:
        print(f"  MISHANDLED {line}")
    if not options.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if not TALLY.mishandled and not TALLY.rows_lost else 1


if __name__ == "__main__":
    sys.exit(main_battery())
