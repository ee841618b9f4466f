"""The pytest-flops session: every hook of :mod:`pytest_flops.plugin` hands off here.

Life of a measured test:

1. ``flops`` fixture (or ``limit_flops`` without it): measurements collect in
   the item's :class:`ItemState`, kept in ``item.stash``.
2. Call phase report (``pytest_runtest_makereport``): when the test passed up
   to there, :func:`judge` compares it with its snapshot and budget. A failed
   check turns the passing call report into a failure whose long_repr is the
   diagnosis, so the *test* fails (not its teardown, which would be an error).
3. Teardown report: the snapshot is written (``--flops-update``) only if every
   phase passed, and the test's :class:`MeasurementRecord` is kept.
4. Session finish: :func:`stale_snapshots` finds snapshot files whose tests are
   gone, in test files that ran whole; ``--flops-update`` removes them.

All writing and removing happens in :meth:`FlopsSession.finish_item` and
:meth:`FlopsSession.finish`; :func:`judge` decides what to write.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_flops import marks
from pytest_flops.fixture import Flops
from pytest_flops.measurement import Measurement, SnapshotFormatError, relative_change
from pytest_flops.records import DEFAULT_NAME, MeasurementRecord, Status
from pytest_flops.snapshot import (
    FlopsSnapshot,
    FlopsSnapshotExtension,
    name_in_module,
    snapshot_files,
    snapshot_path,
)

DEFAULT_DEPTH = 3
DEFAULT_RTOL = 0.0
MAX_DIFF_ROWS = 12
UPDATE_HINT = "Run `pytest --flops-update` to accept the new counts."


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The session-wide options, after CLI > ini > default."""

    update: bool = False
    rtol: float = DEFAULT_RTOL
    depth: int = DEFAULT_DEPTH


# -- per test -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What the comparison of one test decided."""

    statuses: Mapping[str, Status]  # per measurement name
    measurements: Mapping[str, Measurement]  # as compared and stored (depth applied)
    baseline: FlopsSnapshot | None  # the stored snapshot, when it could be read
    failure: str | None = None  # the long_repr that fails the test
    write: FlopsSnapshot | None = None  # what --flops-update stores once the test passed


@dataclass(kw_only=True)
class ItemState:
    """Per-item data, kept in ``item.stash[ITEM_KEY]``."""

    fixture: Flops | None = None  # the test's ``flops`` fixture
    whole_call: Flops | None = None  # limit_flops without the fixture: the call phase
    verdict: Verdict | None = None
    passed: bool = True  # every phase so far passed

    @property
    def counter(self) -> Flops | None:
        return self.fixture or self.whole_call


ITEM_KEY = pytest.StashKey[ItemState]()


# -- per test file ---------------------------------------------------------------------


@dataclass(kw_only=True)
class ModuleRun:
    """What happened to the tests of one test file; stale detection reads it.

    Plain data, so xdist workers can ship theirs to the controller (:meth:`merge`).
    """

    tests: set[str] = field(default_factory=set)  # every test collected, deselected ones too
    ran: set[str] = field(default_factory=set)  # tests that ran through their teardown
    unmeasured: set[str] = field(default_factory=set)  # passed without measuring anything
    partial: bool = False  # narrowed to some tests (file.py::test) or failed to collect

    @property
    def ran_whole(self) -> bool:
        return not self.partial and self.tests <= self.ran

    def merge(self, other: ModuleRun) -> None:
        self.tests |= other.tests
        self.ran |= other.ran
        self.unmeasured |= other.unmeasured
        self.partial |= other.partial

    def to_dict(self) -> dict[str, Any]:
        return {
            "tests": sorted(self.tests),
            "ran": sorted(self.ran),
            "unmeasured": sorted(self.unmeasured),
            "partial": self.partial,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModuleRun:
        return cls(
            tests=set(data["tests"]),
            ran=set(data["ran"]),
            unmeasured=set(data["unmeasured"]),
            partial=bool(data["partial"]),
        )


def stale_snapshots(
    *, modules: Mapping[Path, ModuleRun], on_disk: Mapping[Path, Collection[Path]]
) -> list[Path]:
    """Snapshot files that no test of their file will use again.

    Only files that ran whole are judged: there, a snapshot is stale when no
    collected test maps to it, or when its test passed without measuring.
    ``on_disk`` maps a test file to the snapshot files stored for it.
    """
    stale: list[Path] = []
    for module, run in modules.items():
        if not run.ran_whole:
            continue
        wanted = {snapshot_path(module, test) for test in run.tests - run.unmeasured}
        stale += [path for path in on_disk.get(module, ()) if path not in wanted]
    return sorted(stale)


# -- the summary line ---------------------------------------------------------------------


@dataclass(kw_only=True)
class Counts:
    """The numbers of the ``flops: ...`` summary line, counted per test."""

    passed: int = 0  # matched their snapshot (or stayed within budget)
    failed: int = 0  # failed a FLOP check
    written: int = 0  # snapshot written or rewritten under --flops-update
    removed: int = 0  # stale snapshot removed under --flops-update
    not_compared: int = 0  # measured, but the test failed by itself

    def merge(self, other: Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> Counts:
        return cls(**data)

    def __bool__(self) -> bool:
        return any(self.to_dict().values())


# -- the session ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class FlopsSession:
    """Everything pytest-flops learns in one pytest session."""

    settings: Settings
    rootpath: Path
    extension: FlopsSnapshotExtension = field(default_factory=FlopsSnapshotExtension)
    records: list[MeasurementRecord] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    modules: dict[Path, ModuleRun] = field(default_factory=dict)
    stale: list[Path] = field(default_factory=list)  # reported, not removed
    removed: list[Path] = field(default_factory=list)
    narrowed: set[Path] = field(default_factory=set)  # files named with ::, e.g. f.py::test
    bad_marks: dict[str, str] = field(default_factory=dict)  # node id -> usage error
    devices: set[str] = field(default_factory=set)  # of measured models, for report metadata

    # -- collection --------------------------------------------------------------------

    def narrow(self, *, args: Iterable[str], invocation_dir: Path) -> None:
        """Remember files that the command line narrowed to some of their tests."""
        for arg in args:
            if "::" in arg:
                self.narrowed.add((invocation_dir / arg.split("::", 1)[0]).resolve())

    def collect_module(self, path: Path) -> None:
        run = self.modules.setdefault(path, ModuleRun())
        run.partial |= path.resolve() in self.narrowed

    def collect_incomplete(self, path: Path) -> None:
        """A collector in ``path`` failed or was skipped: some of its tests may be missing."""
        run = self.modules.get(path)
        if run is not None:
            run.partial = True

    def collect_item(self, item: pytest.Item) -> None:
        run = self.modules.get(item.path)
        if run is not None:
            run.tests.add(name_in_module(item.nodeid))

    def check_marks(self, items: Iterable[pytest.Item], *, stop: bool) -> None:
        """Find marker arguments that are wrong; a usage error naming the test.

        With ``stop`` the first one stops the run; otherwise the test errors at
        setup (:meth:`check_setup`).
        """
        for item in items:
            for mark_function in (marks.limit_flops, marks.flops):
                mark = item.get_closest_marker(mark_function.__name__)
                if mark is None:
                    continue
                try:
                    mark_function(*mark.args, **mark.kwargs)
                except (TypeError, ValueError) as error:
                    problem = f"{item.nodeid}: bad @pytest.mark.{mark.name} argument: {error}"
                    if stop:
                        raise pytest.UsageError(problem) from None
                    self.bad_marks[item.nodeid] = problem

    def check_setup(self, item: pytest.Item) -> None:
        problem = self.bad_marks.get(item.nodeid)
        if problem is not None:
            raise pytest.UsageError(problem)

    # -- running -------------------------------------------------------------------------

    def fixture(self, item: pytest.Item) -> Flops:
        state = item.stash.setdefault(ITEM_KEY, ItemState())
        state.fixture = Flops()
        return state.fixture

    @contextmanager
    def counting_call(self, item: pytest.Item) -> Iterator[None]:
        """Count the whole call of a ``limit_flops`` test that has no ``flops`` fixture."""
        uses_fixture = "flops" in getattr(item, "fixturenames", ())
        if uses_fixture or item.get_closest_marker("limit_flops") is None:
            yield
            return
        state = item.stash.setdefault(ITEM_KEY, ItemState())
        state.whole_call = Flops()
        with state.whole_call():
            yield

    def report(self, item: pytest.Item, report: pytest.TestReport) -> None:
        """Called with each phase's report of each test, before pytest logs it."""
        state = item.stash.setdefault(ITEM_KEY, ItemState())
        xfail = hasattr(report, "wasxfail")
        if report.when == "call" and report.passed and not xfail and state.passed:
            self._check_call(item, state, report)
        state.passed &= report.passed and not xfail
        if report.when == "teardown":
            self.finish_item(item, state)

    def _check_call(self, item: pytest.Item, state: ItemState, report: pytest.TestReport) -> None:
        counter = state.counter
        if counter is None or not counter.measured:
            return
        budget = _budget_check(item, counter.measurement)
        if state.fixture is None:
            status = Status.WITHIN_BUDGET if budget is None else Status.OVER_BUDGET
            measurements = {DEFAULT_NAME: counter.measurement.truncated(0)}
            state.verdict = Verdict(
                statuses={DEFAULT_NAME: status},
                measurements=measurements,
                baseline=None,
                failure=None if budget is None else _budget_failure(item.nodeid, budget),
            )
        else:
            rtol, depth = self._comparison(item)
            location = snapshot_path(item.path, name_in_module(item.nodeid))
            current = FlopsSnapshot(
                test=name_in_module(item.nodeid),
                depth=depth,
                measurements={name: m.truncated(depth) for name, m in counter.measurements.items()},
            )
            state.verdict = judge(
                nodeid=item.nodeid,
                shown_location=self._shown(location),
                current=current,
                stored=self._stored(location, test=current.test),
                rtol=rtol,
                update=self.settings.update,
                budget=budget,
            )
        if state.verdict.failure is not None:
            report.outcome = "failed"
            report.longrepr = state.verdict.failure

    def finish_item(self, item: pytest.Item, state: ItemState) -> None:
        """After teardown: write the snapshot if all went well, keep the records."""
        test = name_in_module(item.nodeid)
        if state.counter is not None:
            self.devices |= state.counter.devices
        run = self.modules.get(item.path)
        if run is not None:
            run.ran.add(test)
            if state.passed and not (state.counter and state.counter.measured):
                run.unmeasured.add(test)
        verdict = state.verdict
        if verdict is None:
            if state.fixture is not None and state.fixture.measured:
                self._not_compared(item, state.fixture)
            return
        statuses = dict(verdict.statuses)
        if verdict.failure is not None:
            self.counts.failed += 1
        elif verdict.write is not None and state.passed:
            self.extension.write(snapshot_path(item.path, test), verdict.write)
            self.counts.written += 1
        elif verdict.write is not None:
            statuses = dict.fromkeys(statuses, Status.NOT_COMPARED)
            self.counts.not_compared += 1
        else:
            self.counts.passed += 1
        stored = {} if verdict.baseline is None else verdict.baseline.measurements
        self.records += [
            MeasurementRecord(
                nodeid=item.nodeid,
                name=name,
                measurement=measurement,
                baseline=stored.get(name),
                status=statuses[name],
            )
            for name, measurement in verdict.measurements.items()
        ]

    def _not_compared(self, item: pytest.Item, fixture: Flops) -> None:
        """A measured test failed by itself: keep its record, leave its snapshot alone."""
        test = name_in_module(item.nodeid)
        baseline = self._stored(snapshot_path(item.path, test), test=test)
        if isinstance(baseline, SnapshotFormatError):
            baseline = None
        stored = {} if baseline is None else baseline.measurements
        _, depth = self._comparison(item)
        self.counts.not_compared += 1
        self.records += [
            MeasurementRecord(
                nodeid=item.nodeid,
                name=name,
                measurement=measurement.truncated(depth),
                baseline=stored.get(name),
                status=Status.NOT_COMPARED,
            )
            for name, measurement in fixture.measurements.items()
        ]

    # -- the end --------------------------------------------------------------------------

    def finish(self, *, remove: bool) -> None:
        """Find stale snapshots; remove them under ``--flops-update`` when ``remove``."""
        on_disk = {
            module: snapshot_files(module) for module, run in self.modules.items() if run.ran_whole
        }
        stale = stale_snapshots(modules=self.modules, on_disk=on_disk)
        if not (self.settings.update and remove):
            self.stale = stale
            return
        for path in stale:
            self.extension.remove(path)
            self.removed.append(path)
            self.counts.removed += 1

    def summary_lines(self) -> list[str]:
        """``flops: 12 passed, 1 failed, 2 written, 1 removed`` and the stale files."""
        if not self.counts and not self.stale:
            return []
        counts = self.counts
        line = (
            f"flops: {counts.passed} passed, {counts.failed} failed, "
            f"{counts.written} written, {counts.removed} removed"
        )
        if counts.not_compared:
            line += f", {counts.not_compared} not compared (test failed)"
        if self.stale:
            line += f", {len(self.stale)} stale"
        lines = [line]
        if self.stale:
            lines.append(
                "flops: stale snapshots (their tests no longer exist or no longer measure); "
                "`pytest --flops-update` removes them:"
            )
            lines += [f"  {self._shown(path)}" for path in self.stale]
        return lines

    # -- helpers ----------------------------------------------------------------------------

    def _comparison(self, item: pytest.Item) -> tuple[float, int]:
        """rtol and depth for ``item``: its @pytest.mark.flops, else the session's."""
        mark = item.get_closest_marker("flops")
        chosen = marks.flops(*mark.args, **mark.kwargs) if mark else marks.flops()
        rtol = self.settings.rtol if chosen.rtol is None else chosen.rtol
        depth = self.settings.depth if chosen.depth is None else chosen.depth
        return rtol, depth

    def _stored(self, location: Path, *, test: str) -> FlopsSnapshot | SnapshotFormatError | None:
        """The snapshot at ``location``, None if there is none, or why it is unreadable."""
        try:
            stored = self.extension.read(location, where=self._shown(location))
        except SnapshotFormatError as error:
            return error
        if stored is not None and stored.test != test:
            return SnapshotFormatError(
                f"{self._shown(location)}: holds the snapshot of test {stored.test!r}, "
                f"not of {test!r}"
            )
        return stored

    def _shown(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.rootpath))
        except ValueError:
            return os.fspath(path)


# -- deciding ----------------------------------------------------------------------------------


def judge(
    *,
    nodeid: str,
    shown_location: str,
    current: FlopsSnapshot,
    stored: FlopsSnapshot | SnapshotFormatError | None,
    rtol: float,
    update: bool,
    budget: marks.BudgetExceeded | None,
) -> Verdict:
    """Compare a test's counts with its stored snapshot and decide what happens.

    ``stored`` is what reading the snapshot gave: the snapshot, None when there
    is none, or the error that made it unreadable. Under ``update`` a test
    passes and its snapshot is (re)written when it differs, unless the test went
    over budget: then it fails and writes nothing.
    """
    names = current.measurements
    baseline = stored if isinstance(stored, FlopsSnapshot) else None
    changed = set() if baseline is None else _changed_names(baseline, current, rtol)
    if budget is not None:
        problems = [_budget_failure(nodeid, budget)]
        if not update:
            problems.append(_snapshot_problem(nodeid, shown_location, current, stored, changed))
        return Verdict(
            statuses=dict.fromkeys(names, Status.OVER_BUDGET),
            measurements=names,
            baseline=baseline,
            failure="\n\n".join(problem for problem in problems if problem),
        )
    if update:
        rewritten = set(names) if baseline is None else _text_changed(baseline, current)
        written = baseline is None or baseline.to_text() != current.to_text()
        fresh = Status.NEW if baseline is None else Status.UPDATED
        return Verdict(
            statuses={name: fresh if name in rewritten else Status.PASSED for name in names},
            measurements=names,
            baseline=baseline,
            write=current if written else None,
        )
    if baseline is None:
        status = Status.NO_SNAPSHOT if stored is None else Status.INVALID_SNAPSHOT
        statuses = dict.fromkeys(names, status)
    else:
        statuses = {name: Status.CHANGED if name in changed else Status.PASSED for name in names}
    return Verdict(
        statuses=statuses,
        measurements=names,
        baseline=baseline,
        failure=_snapshot_problem(nodeid, shown_location, current, stored, changed),
    )


def _changed_names(stored: FlopsSnapshot, current: FlopsSnapshot, rtol: float) -> set[str]:
    """Measurement names whose numbers differ beyond ``rtol`` (or that came or went)."""
    depth = min(stored.depth, current.depth)
    changed = set(stored.measurements) ^ set(current.measurements)
    for name in set(stored.measurements) & set(current.measurements):
        before = _numbers(stored.measurements[name].truncated(depth))
        after = _numbers(current.measurements[name].truncated(depth))
        if any(
            abs(after.get(key, 0) - before.get(key, 0)) > rtol * before.get(key, 0)
            for key in before.keys() | after.keys()
        ):
            changed.add(name)
    return changed


def _text_changed(stored: FlopsSnapshot, current: FlopsSnapshot) -> set[str]:
    """Names whose stored form differs at all (e.g. a new depth), rtol or not."""
    return {
        name
        for name, measurement in current.measurements.items()
        if name not in stored.measurements
        or stored.measurements[name].to_dict() != measurement.to_dict()
    } | (set(stored.measurements) - set(current.measurements))


def _numbers(measurement: Measurement) -> dict[tuple[str, str, str], int]:
    """Every number of a measurement, keyed so two measurements line up."""
    numbers: dict[tuple[str, str, str], int] = {}
    for path, counts in measurement.modules.items():
        numbers["module", path, "forward"] = counts.forward
        numbers["module", path, "backward"] = counts.backward
        for op, flops in counts.by_op.items():
            numbers["op", path, op] = flops
    for op, calls in measurement.unsupported.items():
        numbers["unsupported", "", op] = calls
    return numbers


def _budget_check(item: pytest.Item, measurement: Measurement) -> marks.BudgetExceeded | None:
    mark = item.get_closest_marker("limit_flops")
    if mark is None:
        return None
    return marks.limit_flops(*mark.args, **mark.kwargs, _measurement=measurement)


# -- messages ----------------------------------------------------------------------------------


def _budget_failure(nodeid: str, budget: marks.BudgetExceeded) -> str:
    return f"FLOP budget exceeded by {nodeid}: {budget.long_repr}"


def _snapshot_problem(
    nodeid: str,
    shown_location: str,
    current: FlopsSnapshot,
    stored: FlopsSnapshot | SnapshotFormatError | None,
    changed: set[str],
) -> str | None:
    """What is wrong on the snapshot side, if anything."""
    if isinstance(stored, SnapshotFormatError):
        return (
            f"Cannot read the FLOP snapshot of {nodeid}: {stored}\n"
            f"Run `pytest --flops-update` to rewrite {shown_location}."
        )
    if stored is None:
        total = sum(m.total for m in current.measurements.values())
        return (
            f"No FLOP snapshot for {nodeid} ({total:,} FLOP counted).\n"
            f"Run `pytest --flops-update` to write {shown_location}."
        )
    if not changed:
        return None
    return _mismatch(nodeid, shown_location, stored, current, changed)


def _mismatch(
    nodeid: str,
    shown_location: str,
    stored: FlopsSnapshot,
    current: FlopsSnapshot,
    changed: set[str],
) -> str:
    """Diagnosis first: totals before -> after, then what moved, then the hint."""
    depth = min(stored.depth, current.depth)
    sections: list[str] = []
    for name in sorted(changed, key=lambda n: (n != DEFAULT_NAME, n)):
        label = "" if name == DEFAULT_NAME else f" [{name}]"
        before = stored.measurements.get(name)
        after = current.measurements.get(name)
        if before is None or after is None:
            what = (
                f"is new: {after.total:,} FLOP, not in the snapshot"
                if after is not None
                else f"was not measured this time (the snapshot has {before.total:,} FLOP)"
                if before is not None
                else ""
            )
            sections.append(f"FLOP measurement {name!r} of {nodeid} {what}")
            continue
        before, after = before.truncated(depth), after.truncated(depth)
        lines = [
            f"FLOP count changed for {nodeid}{label}: total {_change(before.total, after.total)}",
            f"  forward   {_change(before.forward, after.forward)}",
            f"  backward  {_change(before.backward, after.backward)}",
        ]
        lines += _diff_table(before, after)
        sections.append("\n".join(lines))
    footer = f"Snapshot: {shown_location}\n{UPDATE_HINT}"
    return "\n\n".join([*sections, footer])


def _diff_table(before: Measurement, after: Measurement) -> list[str]:
    rows: list[tuple[str, ...]] = [
        (row.module, row.op, f"{row.before:,}", f"{row.after:,}", f"{row.delta:+,}")
        for row in before.diff(after).rows
    ]
    rows += [
        ("(no formula)", f"{op} calls", f"{before.unsupported.get(op, 0):,}", f"{calls:,}", "")
        for op, calls in sorted(after.unsupported.items())
        if before.unsupported.get(op, 0) != calls
    ]
    rows += [
        ("(no formula)", f"{op} calls", f"{calls:,}", "0", "")
        for op, calls in sorted(before.unsupported.items())
        if op not in after.unsupported
    ]
    if not rows:
        return []
    shown, left_out = rows[:MAX_DIFF_ROWS], len(rows) - MAX_DIFF_ROWS
    header = ("module", "operator", "before", "after", "Δ")
    widths = [max(len(row[i]) for row in [header, *shown]) for i in range(5)]
    lines = [""]
    for row in [header, *shown]:
        cells = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    if left_out > 0:
        lines.append(f"  ... {left_out} more changed row(s) not shown")
    return lines


def _change(before: int, after: int) -> str:
    if before == after:
        return f"{after:,} (unchanged)"
    ratio = relative_change(before, after)
    relative = "new" if ratio == float("inf") else f"{ratio:+.2%}"
    return f"{before:,} → {after:,} FLOP ({relative})"
