"""``xentbench versions``, ``bisect`` and ``matrix``: the request checked (backend, package,
releases on the index, finding or test), environments built on demand, then the search or
the grid."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xentbench.suites.cli.params import check_cases, prepare_run_dir, selected_backends
from xentbench.suites.cli.usage import UsageError
from xentbench.suites.run import run_info
from xentbench.suites.versions import envs, releases
from xentbench.suites.versions.envs import Env, Stack


class Releases:
    """A backend's stack, the stepped package, its releases on the index and their
    environments (built on first use)."""

    def __init__(self, args):
        backend = selected_backends([args.backend])[0]
        if backend not in envs.STACKS:
            raise UsageError(
                f"no version environments for backend {backend!r}; valid: {', '.join(envs.STACKS)}"
            )
        self.stack: Stack = envs.STACKS[backend]
        self.package = args.package or self.stack.packages[0]
        if self.package not in self.stack.packages:
            raise UsageError(
                f"invalid --package {self.package!r} for {backend}; valid: "
                f"{', '.join(self.stack.packages)}"
            )
        given = args.index or envs.backend_index(backend)
        if self.stack.cost and not given:
            raise UsageError(f"{backend} versions are opt-in: {self.stack.cost}")
        self.pip_index = releases.index_url()
        self.index = (given or self.pip_index).rstrip("/")
        every = self._list(self.package)
        try:
            self.versions = releases.window(every, args.since, args.until)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        companions = self.stack.companions if self.package == self.stack.packages[0] else ()
        self._companions = {name: set(self._list(name)) for name in companions}
        self._built: dict[str, Env] = {}

    def _list(self, package: str) -> list[str]:
        try:
            found = releases.releases(package, index=self.index)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {package}'s releases from {self.index}: {exc}") from None
        if not found:
            raise UsageError(f"{self.index} lists no {package} wheel for this Python and platform")
        return found

    def env(self, version: str) -> Env:
        if version not in self._built:
            companions = {name: version in known for name, known in self._companions.items()}
            print(f"environment {self.package} {version} ...", file=sys.stderr, flush=True)
            self._built[version] = envs.ensure(
                self.stack,
                self.package,
                version,
                companions,
                index=self.pip_index,
                package_index=self.index,
                uv=_uv(),
            )
        return self._built[version]


def _uv() -> str:
    try:
        return envs.uv_command()
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


def versions_command(args, console) -> int:
    """List a backend's releases with their cached environments, or prune the cache."""
    if args.prune is not None:
        names = args.prune or [name for name, _ in envs.cached()]
        for name in envs.prune(names):
            print(f"removed {envs.cache_dir() / name}")
        return 0
    cached = dict(envs.cached())
    if not args.backend:
        names = list(cached)
    else:
        known = Releases(args)
        names = [envs.env_name(known.package, version) for version in known.versions]
    for name in names:
        print(f"{name:<28} {cached.get(name, '-'):<7} {_size(name, cached.get(name))}".rstrip())
    print(
        f"cache: {envs.cache_dir()} (xentbench versions --prune [NAME...] empties it; the "
        "wheels stay in uv's cache until `uv cache clean PACKAGE`)"
    )
    return 0


def _size(name: str, state: str | None) -> str:
    """A ready environment's disk: all of it, and what only it holds."""
    if state != "ready":
        return ""
    total, own = envs.disk_usage(envs.cache_dir() / name)
    return f"{total / 2**20:,.0f} MB, {own / 2**20:,.0f} MB not hard-linked from uv's cache"


def bisect_command(args, console) -> int:
    from xentbench.suites.versions.search import SameEnds, bisect, render, render_trials

    known = Releases(args)
    if args.finding_id is not None:
        oracle, out, what = _finding_test(args, known, console)
    else:
        oracle, out, what = _check_test(args, known)
    print(
        f"bisecting {what} over {len(known.versions)} {known.package} releases "
        f"{known.versions[0]}..{known.versions[-1]}",
        file=sys.stderr,
    )
    try:
        outcome = bisect(known.versions, oracle)
    except SameEnds as exc:
        print(render_trials(exc.trials))
        raise UsageError(str(exc)) from None
    text = render(outcome, known.package)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "test": what,
        "package": known.package,
        "kind": outcome.kind,
        "first": outcome.first,
        outcome.last_label.replace(" ", "_"): outcome.last,
        "untested": outcome.untested,
        "trials": [vars(trial) for trial in outcome.trials],
    }
    (out / "bisect.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"bisect.json: {out / 'bisect.json'}", file=sys.stderr)
    return 0


def _finding_test(args, known: Releases, console):
    from xentbench.suites.catalog import cases
    from xentbench.suites.findings.tables import findings_of_runs
    from xentbench.suites.versions.oracle import finding_oracle, finding_selection

    if not args.run:
        raise UsageError("bisect FINDING_ID needs --run RUN_DIR (the runs it comes from)")
    if args.op or args.logits:
        raise UsageError("give either FINDING_ID with --run, or --op/--impl/--logits; not both")
    from xentbench.suites.cli.params import existing_dir

    findings = findings_of_runs([existing_dir(path) for path in args.run], careful=False).findings
    chosen = next((f for f in findings if f.id == args.finding_id), None)
    if chosen is None:
        shown = ", ".join(f.id for f in findings[:10]) or "none"
        raise UsageError(f"no finding {args.finding_id!r} in the runs; valid: {shown}")
    if chosen.backend != known.stack.backend:
        raise UsageError(
            f"finding {chosen.id} is of backend {chosen.backend}; valid: --backend {chosen.backend}"
        )
    catalog = {case.id for case in cases.catalog()}
    case_ids = [case for case in chosen.cases if case in catalog]
    if not case_ids:
        raise UsageError(
            f"finding {chosen.id} comes only from hunted inputs, which no release can redraw; "
            "bisect them with --op/--impl/--logits (the arrays from `xentbench repro`)"
        )
    check_cases(tuple(case_ids), (chosen.op,))
    out = args.out or Path("reports", "runs", f"bisect-{chosen.id}")
    selection = finding_selection(chosen, case_ids, chosen.sample.seed)

    def run_dir_of(version: str) -> Path:
        run_dir = out / envs.env_name(known.package, version)
        pinned = run_info.pinned(selection.seed)
        prepare_run_dir(run_dir, new=args.new, pinned=pinned, say=console.print)
        return run_dir

    oracle = finding_oracle(chosen, selection, known.env, run_dir_of, console, args.timeout)
    return (
        oracle,
        out,
        f"{chosen.id} ({chosen.implementation} {chosen.quantity} {chosen.failure_mode})",
    )


def _check_test(args, known: Releases):
    from xentbench.suites.versions.oracle import check_oracle

    if not (args.op and args.impl):
        raise UsageError("bisect needs FINDING_ID with --run, or --op and --impl with the arrays")
    if args.run:
        raise UsageError("--run is for bisect FINDING_ID; with --op the arrays are the test")
    argv = ["--backend", known.stack.backend, *check_argv(args)]
    out = args.out or Path("reports", "runs", f"bisect-{args.op}-{args.impl.replace(':', '-')}")
    what = f"{args.impl} on {args.op} (check {' '.join(argv)})"
    if args.max_rel_error is not None and not args.max_rel_error >= 0:
        raise UsageError(f"invalid --max-rel-error {args.max_rel_error:g}; valid: a number >= 0")
    oracle = check_oracle(argv, args.impl, args.fail_on, known.env, args.max_rel_error)
    return oracle, out, what


def check_argv(args) -> list[str]:
    """``check``'s flags as given to ``bisect``, for the environments' own ``check``."""
    from xentbench.suites.cli.parser import check_flags

    template = argparse.ArgumentParser(add_help=False)
    check_flags(template, False)
    argv = []
    for action in template._actions:
        value = getattr(args, action.dest, None)
        if value is None or value == action.default or not action.option_strings:
            continue
        values = value if isinstance(value, list) else [value]
        argv += [
            action.option_strings[0],
            *(str(Path(v).resolve()) if isinstance(v, Path) else str(v) for v in values),
        ]
    return argv
