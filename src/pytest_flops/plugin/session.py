"""The pytest-flops session: every hook of :mod:`pytest_flops.plugin.hooks` hands off here.

Life of a measured test, one attempt at a time (a rerun or a repeat starts clean):

1. Collection: the test's markers are parsed once into its :class:`ItemPlan`
   (``item.stash``), and :class:`~pytest_flops.snapshots.stale.RunRecord` learns what
   was collected.
2. Setup starts an :class:`Attempt`; the ``flops`` fixture (or ``limit_flops``
   without it) measures into it.
3. The test's own call report (not a subtest's): when everything passed up to
   there, :func:`~pytest_flops.plugin.verdict.judge` compares the counts with the
   snapshot and budget; a failed check turns the report into a failure whose
   long_repr is the diagnosis, so the *test* fails.
4. The teardown report: the snapshot is written (``--flops-update``) only if
   every phase passed, and the test's :class:`TestResult` replaces any earlier
   attempt's. A write that fails fails the test, naming the path.
5. Session finish: stale snapshots are found on positive evidence only
   (:mod:`pytest_flops.snapshots.stale`); ``--flops-update`` removes them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_flops.measurement import Measurement
from pytest_flops.plugin import marks, messages
from pytest_flops.plugin.settings import Settings
from pytest_flops.plugin.verdict import Stored, Verdict, judge, judge_budget
from pytest_flops.reports.records import MeasurementRecord, Status
from pytest_flops.snapshots.format import FlopsSnapshot
from pytest_flops.snapshots.stale import RunRecord
from pytest_flops.snapshots.store import SnapshotStore, legacy_snapshot_path, snapshot_path
from pytest_flops.validation import SnapshotFormatError

if TYPE_CHECKING:
    from pytest_flops.counting.fixture import Flops

FIXTURE_NAME = "flops"

# pytest-repeat runs a test N times as parametrized copies, "test_a[2-3]":
# repeats of one test are the same test, with one snapshot.
_REPEAT_PARAM = "__pytest_repeat_step_number"


@dataclass(frozen=True, kw_only=True)
class ItemPlan:
    """What collection learned of a test; kept in ``item.stash[PLAN_KEY]``."""

    name: str  # the test's name in its file, repeats folded: "TestLM::test_generate[cpu]"
    test_file: Path
    uses_fixture: bool
    marks: marks.ItemMarks
    marks_error: str | None = None  # the usage error of a bad marker argument

    @property
    def measures(self) -> bool:
        """Whether the test uses a FLOP feature (then torch is imported before it runs)."""
        return self.uses_fixture or self.marks.budget is not None


@dataclass(kw_only=True)
class Attempt:
    """One run of a test through setup, call and teardown; ``item.stash[ATTEMPT_KEY]``."""

    fixture: Flops | None = None  # the test's ``flops`` fixture
    whole_call: Flops | None = None  # limit_flops without the fixture: the call phase
    in_call: bool = False  # reports made now are a subtest's, not the test's
    passed: bool = True  # every phase (and subtest) so far passed
    verdict: Verdict | None = None

    @property
    def counted(self) -> Flops | None:
        return self.fixture or self.whole_call


PLAN_KEY = pytest.StashKey[ItemPlan]()
ATTEMPT_KEY = pytest.StashKey[Attempt]()


class Outcome(StrEnum):
    """What a test's FLOP check came to; the numbers of the ``flops:`` summary line."""

    PASSED = "passed"
    FAILED = "failed"
    WRITTEN = "written"
    REMOVED = "removed"
    NOT_COMPARED = "not compared (test failed)"


@dataclass(frozen=True, kw_only=True)
class TestResult:
    """The last attempt of one measured test."""

    __test__ = False  # not a test class, despite its name

    outcome: Outcome
    records: tuple[MeasurementRecord, ...]
    devices: tuple[str, ...] = ()
    legacy: bool = False  # its snapshot was read from the layout before 0.2

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "records": [record.to_dict() for record in self.records],
            "devices": list(self.devices),
            "legacy": self.legacy,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestResult:
        return cls(
            outcome=Outcome(data["outcome"]),
            records=tuple(
                MeasurementRecord.from_dict(record, where="xdist payload")
                for record in data["records"]
            ),
            devices=tuple(data["devices"]),
            legacy=data["legacy"],
        )


@dataclass(kw_only=True)
class FlopsSession:
    """Everything pytest-flops learns in one pytest session."""

    settings: Settings
    rootpath: Path
    store: SnapshotStore = field(default_factory=SnapshotStore)
    run: RunRecord = field(default_factory=RunRecord)
    results: dict[str, TestResult] = field(default_factory=dict)  # by node id
    stale: list[Path] = field(default_factory=list)  # found; removed under --flops-update
    removed: int = 0  # stale snapshots removed
    problems: list[str] = field(default_factory=list)  # for the summary
    collected_items: int = 0

    @classmethod
    def start(cls, config: pytest.Config) -> FlopsSession:
        session = cls(settings=Settings.from_config(config), rootpath=config.rootpath)
        session.run.roots = _roots(config)
        for test_file in _files_named_with_tests(config):
            # ``file.py::test``: the file's other tests are not collected
            session.run.file(test_file).complete = False
        for reason in _narrowing_options(config):
            session.run.narrow(reason)
        return session

    # -- collection -----------------------------------------------------------------

    def collector_reported(self, collector: pytest.Collector, report: pytest.CollectReport) -> None:
        if report.failed:
            self.run.narrow("a collection error")
        elif isinstance(collector, pytest.Directory):
            if report.passed:
                self.run.directories.add(collector.path)
            else:
                self.run.narrow(f"{self._shown(collector.path)} was skipped at collection")
        elif report.skipped:
            # importorskip at module level: the tests it hid are not gone
            self.run.file(collector.path).complete = False
        elif isinstance(collector, pytest.File) and not isinstance(collector, pytest.Module):
            # doctest and other files: collected when they gave items
            self.run.file(collector.path).walked |= bool(report.result)

    def module_walked(self, module: pytest.Module) -> None:
        """A module's own collection ran (``--lf`` hands back empty stand-in reports)."""
        self.run.file(module.path).walked = True

    def item_collected(self, item: pytest.Item) -> None:
        name = _test_name(item)
        try:
            item_marks, error = marks.read(item), None
        except marks.MarkerError as problem:
            item_marks, error = marks.ItemMarks(), str(problem)
        item.stash[PLAN_KEY] = ItemPlan(
            name=name,
            test_file=item.path,
            uses_fixture=FIXTURE_NAME in getattr(item, "fixturenames", ()),
            marks=item_marks,
            marks_error=error,
        )
        self.run.file(item.path).tests.add(name)
        self.collected_items += 1

    def collection_finished(self, session: pytest.Session, *, is_worker: bool) -> bool:
        """Check the selected tests' markers; whether any test uses a FLOP feature.

        A bad marker stops the run with a usage error naming the test; an xdist
        worker cannot stop the run, so there the test errors at setup instead.
        """
        selected = [item for item in session.items if PLAN_KEY in item.stash]
        if len(session.items) < self.collected_items:
            self.run.narrow(f"{self.collected_items - len(session.items)} tests deselected")
        for item in selected:
            problem = item.stash[PLAN_KEY].marks_error
            if problem is not None and not is_worker:
                raise pytest.UsageError(problem)
        return any(item.stash[PLAN_KEY].measures for item in selected)

    # -- running --------------------------------------------------------------------

    def attempt_started(self, item: pytest.Item) -> None:
        item.stash[ATTEMPT_KEY] = Attempt()

    def check_marks(self, item: pytest.Item) -> None:
        """Under xdist a bad marker errors its test at setup (a worker cannot stop the run)."""
        plan = item.stash.get(PLAN_KEY, None)
        if plan is not None and plan.marks_error is not None:
            raise pytest.UsageError(plan.marks_error)

    def fixture(self, item: pytest.Item) -> Flops:
        from pytest_flops.counting.fixture import Flops

        attempt = item.stash[ATTEMPT_KEY]
        attempt.fixture = Flops()
        return attempt.fixture

    @contextmanager
    def calling(self, item: pytest.Item) -> Iterator[None]:
        """The call phase: a ``limit_flops`` test without the fixture is counted whole."""
        plan, attempt = item.stash[PLAN_KEY], item.stash[ATTEMPT_KEY]
        attempt.in_call = True
        try:
            if plan.uses_fixture or plan.marks.budget is None:
                yield
            else:
                from pytest_flops.counting.fixture import Flops

                attempt.whole_call = Flops()
                with attempt.whole_call():
                    yield
        finally:
            attempt.in_call = False
            if attempt.fixture is not None:
                attempt.fixture._close(
                    "the test was compared with its snapshot when its call ended"
                )

    def phase_report(self, item: pytest.Item, report: pytest.TestReport) -> None:
        """Called with each report of each test, before pytest logs it."""
        attempt = item.stash.get(ATTEMPT_KEY, None)
        plan = item.stash.get(PLAN_KEY, None)
        if attempt is None or plan is None:
            return
        ok = report.passed and not hasattr(report, "wasxfail")
        if report.when == "call" and attempt.in_call:
            # A subtest's report (the test's own comes after the call): a failed
            # subtest fails the test, so it is not compared and writes nothing.
            attempt.passed &= not report.failed
            return
        if report.when == "call" and ok and attempt.passed:
            attempt.verdict = self._judge(item, plan, attempt)
            if attempt.verdict is not None and attempt.verdict.failure is not None:
                report.outcome = "failed"
                report.longrepr = attempt.verdict.failure
                ok = False
        attempt.passed &= ok
        if report.when == "teardown":
            self._finish_attempt(item, plan, attempt, report)

    def _judge(self, item: pytest.Item, plan: ItemPlan, attempt: Attempt) -> Verdict | None:
        if attempt.fixture is None:
            if attempt.whole_call is None or plan.marks.budget is None:
                return None
            return judge_budget(item.nodeid, attempt.whole_call.measurement, plan.marks.budget)
        rtol, _ = self._comparison(plan)
        location, stored, legacy = self._stored(plan)
        current = self._current(plan, attempt.fixture) if attempt.fixture.measured else None
        return judge(
            nodeid=item.nodeid,
            location=self._shown(location),
            current=current,
            stored=stored,
            rtol=rtol,
            bytes_rtol=self._bytes_rtol(plan, rtol),
            update=self.settings.update,
            budget=plan.marks.budget,
            must_write=legacy,
        )

    def _finish_attempt(
        self, item: pytest.Item, plan: ItemPlan, attempt: Attempt, report: pytest.TestReport
    ) -> None:
        collected = self.run.file(plan.test_file)
        collected.ran.add(plan.name)
        counted = attempt.counted
        if counted is not None and counted.measured:
            collected.measured.add(plan.name)
        elif attempt.passed:
            collected.unmeasured.add(plan.name)
        result = self._result(item, plan, attempt, report)
        if result is None:
            self.results.pop(item.nodeid, None)
        else:
            self.results[item.nodeid] = result

    def _result(
        self, item: pytest.Item, plan: ItemPlan, attempt: Attempt, report: pytest.TestReport
    ) -> TestResult | None:
        """The attempt's outcome, after writing or removing what ``--flops-update`` asked for."""
        devices = tuple(sorted(attempt.counted.devices)) if attempt.counted else ()
        verdict = attempt.verdict
        if verdict is None:
            if attempt.fixture is None or not attempt.fixture.measured:
                return None
            return self._not_compared(item, plan, attempt.fixture, devices)
        location, _, legacy = self._stored(plan)
        outcome = Outcome.PASSED
        statuses = dict(verdict.statuses)
        if verdict.failure is not None:
            outcome = Outcome.FAILED
        elif (verdict.write is not None or verdict.remove) and not attempt.passed:
            outcome = Outcome.NOT_COMPARED
            statuses = dict.fromkeys(statuses, Status.NOT_COMPARED)
        elif verdict.write is not None or verdict.remove:
            target = snapshot_path(plan.test_file, plan.name)
            try:
                if verdict.write is not None:
                    self.store.write(target, verdict.write)
                    outcome = Outcome.WRITTEN
                else:
                    self.store.remove(target)
                    outcome = Outcome.REMOVED
                if legacy:
                    self.store.remove(location)
            except OSError as error:
                report.outcome = "failed"
                report.longrepr = messages.cannot_write(item.nodeid, self._shown(target), error)
                outcome = Outcome.FAILED
                statuses = dict.fromkeys(statuses, Status.NOT_WRITTEN)
        return TestResult(
            outcome=outcome,
            records=_records(
                item.nodeid, verdict.measurements, verdict.baseline, statuses, verdict.budget
            ),
            devices=devices,
            legacy=legacy,
        )

    def _not_compared(
        self, item: pytest.Item, plan: ItemPlan, fixture: Flops, devices: tuple[str, ...]
    ) -> TestResult:
        """A measured test failed by itself: keep its record, leave its snapshot alone."""
        _, stored, legacy = self._stored(plan)
        measurements = self._current(plan, fixture).measurements
        return TestResult(
            outcome=Outcome.NOT_COMPARED,
            records=_records(
                item.nodeid,
                measurements,
                stored if isinstance(stored, FlopsSnapshot) else None,
                dict.fromkeys(measurements, Status.NOT_COMPARED),
                None if plan.marks.budget is None else plan.marks.budget.text,
            ),
            devices=devices,
            legacy=legacy,
        )

    # -- the end --------------------------------------------------------------------

    def finish(self, *, stopped: str | None) -> None:
        """Find stale snapshots; ``--flops-update`` removes them.

        ``stopped`` says why the run ended before its last test, if it did.
        """
        if stopped is not None:
            self.run.narrow(stopped)
        self.stale = self.run.stale_snapshots()
        if not self.settings.update:
            return
        for path in self.stale:
            try:
                self.store.remove(path)
                self.removed += 1
            except OSError as error:
                self.problems.append(messages.cannot_remove(self._shown(path), error))

    @property
    def records(self) -> list[MeasurementRecord]:
        return [record for result in self.results.values() for record in result.records]

    @property
    def devices(self) -> set[str]:
        """The devices the measured models were on."""
        return {device for result in self.results.values() for device in result.devices}

    def write_exports(self) -> None:
        """The ``--flops-report-json``, ``-md`` and ``-html`` files asked for."""
        settings = self.settings
        if (
            settings.report_json is None
            and settings.report_md is None
            and settings.report_html is None
        ):
            return
        from pytest_flops.reports.export import Export, RunMetadata, write_exports

        export = Export(
            records=tuple(self.records),
            metadata=RunMetadata.collect(self.devices).to_dict(),
            snapshots=self.run.evidence(stale=self.stale, shown=self._shown),
        )
        self.problems += write_exports(
            export,
            json_path=settings.report_json,
            markdown_path=settings.report_md,
            html_path=settings.report_html,
        )

    def summary_lines(self) -> list[str]:
        """``flops: 12 tests passed, 1 failed, 2 written, 1 removed`` and the stale files."""
        tally = dict.fromkeys(Outcome, 0)
        for result in self.results.values():
            tally[result.outcome] += 1
        tally[Outcome.REMOVED] += self.removed
        return messages.summary_lines(
            counts=[(outcome.value, tally[outcome]) for outcome in Outcome],
            stale=[] if self.settings.update else [self._shown(path) for path in self.stale],
            held_back=self.run.narrowed if self.settings.update else [],
            legacy=sum(result.legacy for result in self.results.values()),
            moved=self.settings.update,
            problems=self.problems,
        )

    # -- xdist ------------------------------------------------------------------------

    def to_worker_payload(self) -> str:
        """This worker's part of the session, as one JSON string (exact integers of any size)."""
        return json.dumps(
            {
                "results": {nodeid: result.to_dict() for nodeid, result in self.results.items()},
                "run": self.run.to_dict(),
            }
        )

    def merge(self, payload: str) -> None:
        """Add a worker's :meth:`to_worker_payload` to this (the controller's) session."""
        data = json.loads(payload)
        for nodeid, result in data["results"].items():
            self.results[nodeid] = TestResult.from_dict(result)
        self.run.merge(RunRecord.from_dict(data["run"]))

    # -- helpers ----------------------------------------------------------------------

    def _current(self, plan: ItemPlan, fixture: Flops) -> FlopsSnapshot:
        """What the test measured, as its snapshot would store it (at its depth)."""
        _, depth = self._comparison(plan)
        measured = FlopsSnapshot(test=plan.name, depth=depth, measurements=fixture.measurements)
        return measured.at_depth(depth)

    def _bytes_rtol(self, plan: ItemPlan, rtol: float) -> float | None:
        """The tolerance of bytes accessed (the marker's, the session's, else ``rtol``);
        None when their gate is off."""
        chosen, settings = plan.marks.comparison, self.settings
        if not (settings.bytes_gate if chosen.bytes is None else chosen.bytes):
            return None
        if chosen.bytes_rtol is not None:
            return chosen.bytes_rtol
        return rtol if settings.bytes_rtol is None else settings.bytes_rtol

    def _comparison(self, plan: ItemPlan) -> tuple[float, int]:
        """rtol and depth of a test: its @pytest.mark.flops, else the session's."""
        chosen = plan.marks.comparison
        rtol = self.settings.rtol if chosen.rtol is None else chosen.rtol
        depth = self.settings.depth if chosen.depth is None else chosen.depth
        return rtol, depth

    def _stored(self, plan: ItemPlan) -> tuple[Path, Stored, bool]:
        """Where the test's snapshot is, what reading it gave, and whether that was the
        layout before 0.2 (read when the current layout has no file for the test)."""
        location = snapshot_path(plan.test_file, plan.name)
        stored = self._read(location, test=plan.name)
        if stored is None and plan.test_file.suffix == ".py":
            legacy = legacy_snapshot_path(plan.test_file, plan.name)
            stored_there = self._read(legacy, test=plan.name)
            if stored_there is not None:
                return legacy, stored_there, True
        return location, stored, False

    def _read(self, location: Path, *, test: str) -> Stored:
        try:
            stored = self.store.read(location, where=self._shown(location))
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


def _records(
    nodeid: str,
    measurements: dict[str, Measurement] | Any,
    baseline: FlopsSnapshot | None,
    statuses: dict[str, Status],
    budget: str | None,
) -> tuple[MeasurementRecord, ...]:
    stored = {} if baseline is None else baseline.measurements
    return tuple(
        MeasurementRecord(
            nodeid=nodeid,
            name=name,
            measurement=measurement,
            baseline=stored.get(name),
            status=statuses[name],
            budget=budget,
        )
        for name, measurement in measurements.items()
    )


def _test_name(item: pytest.Item) -> str:
    """The test's name inside its file, without pytest-repeat's ``N-M`` id."""
    name = item.nodeid.split("::", 1)[1] if "::" in item.nodeid else item.nodeid
    callspec = getattr(item, "callspec", None)
    if callspec is not None and _REPEAT_PARAM in callspec.params:
        step = callspec.params[_REPEAT_PARAM] + 1
        name = re.sub(rf"(\[|-){step}-\d+\]$", lambda m: "]" if m[1] == "-" else "", name)
    return name


def _narrowing_options(config: pytest.Config) -> list[str]:
    """Command-line choices that leave some tests out of the run."""
    option = config.option
    reasons = [
        flag
        for flag, given in (
            ("-k", getattr(option, "keyword", "")),
            ("-m", getattr(option, "markexpr", "")),
            ("--deselect", getattr(option, "deselect", None)),
            ("--lf", getattr(option, "lf", False)),
            ("--sw", getattr(option, "stepwise", False) or getattr(option, "stepwise_skip", False)),
            ("--collect-only", getattr(option, "collectonly", False)),
        )
        if given
    ]
    if any("::" in arg for arg in config.args):
        reasons.append("tests named on the command line")
    return reasons


def _files_named_with_tests(config: pytest.Config) -> Iterator[Path]:
    for arg in config.args:
        if "::" in arg:
            yield Path(os.path.abspath(config.invocation_params.dir / arg.split("::", 1)[0]))


def _roots(config: pytest.Config) -> tuple[Path, ...]:
    """The directories the command line (or ``testpaths``) names whole."""
    roots = []
    for arg in config.args:
        if "::" in arg:
            continue
        path = Path(os.path.abspath(config.invocation_params.dir / arg))
        if path.is_dir():
            roots.append(path)
    return tuple(roots)
