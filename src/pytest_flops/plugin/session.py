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
   ``--flops-update`` never removes a file nor drops a measurement from one.
5. Session finish: stale snapshots are found on positive evidence only, each
   with its reason (:mod:`pytest_flops.snapshots.stale`); ``--flops-prune``
   alone removes them.

A measurement in the snapshot that the test did not take this time keeps its
baseline: when a subtest was skipped it is not compared (its subtest may have
taken it), and under ``--flops-update`` or ``--flops-prune`` it is stale
rather than a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_flops.plugin import marks, messages, selection
from pytest_flops.plugin.attempt import (
    ATTEMPT_KEY,
    PLAN_KEY,
    Attempt,
    ItemPlan,
    Outcome,
    TestResult,
    records,
)
from pytest_flops.plugin.settings import Settings
from pytest_flops.plugin.verdict import Verdict, judge, judge_budget
from pytest_flops.reports.records import MeasurementRecord, Status
from pytest_flops.snapshots.format import FlopsSnapshot
from pytest_flops.snapshots.stale import RunRecord, StaleSnapshot, prune
from pytest_flops.snapshots.store import SnapshotLookup, SnapshotStore, snapshot_path

if TYPE_CHECKING:
    from pytest_flops.counting.fixture import Flops

FIXTURE_NAME = "flops"


@dataclass(frozen=True, kw_only=True)
class RunEnd:
    """What the end of the run decided about snapshot files, once: pruning it, the
    summary and the exports all read this one value."""

    stale: tuple[StaleSnapshot, ...] = ()  # found on proof, with why
    pruned: tuple[StaleSnapshot, ...] = ()  # of those, what --flops-prune removed
    held_back: tuple[str, ...] = ()  # why none was judged, under --flops-update or -prune

    @property
    def kept(self) -> tuple[StaleSnapshot, ...]:
        return tuple(entry for entry in self.stale if entry not in self.pruned)


@dataclass(kw_only=True)
class FlopsSession:
    """Everything pytest-flops learns in one pytest session."""

    settings: Settings
    rootpath: Path
    store: SnapshotStore = field(default_factory=SnapshotStore)
    run: RunRecord = field(default_factory=RunRecord)
    results: dict[str, TestResult] = field(default_factory=dict)  # by node id
    end: RunEnd = field(default_factory=RunEnd)  # decided at session finish
    problems: list[str] = field(default_factory=list)  # for the summary
    idle: set[str] = field(default_factory=set)  # asked for the fixture, measured nothing
    saved: list[Path] = field(default_factory=list)  # the report files written
    collected_items: int = 0

    @classmethod
    def start(cls, config: pytest.Config) -> FlopsSession:
        session = cls(settings=Settings.from_config(config), rootpath=config.rootpath)
        session.run.roots = selection.roots(config)
        session.run.rules = selection.collection_rules(config)
        for test_file in selection.files_named_with_tests(config):
            # ``file.py::test``: the file's other tests are not collected
            session.run.file(test_file).complete = False
        for reason in selection.narrowing_options(config):
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
        elif (
            isinstance(collector, pytest.Class)
            and not report.result
            and selection.uncollectable(collector.obj)
        ):
            # pytest warned that it cannot collect the class (it has __init__ or
            # __new__: a TestCase under -p no:unittest): its tests are not gone
            self.run.file(collector.path).complete = False

    def module_walked(self, module: pytest.Module) -> None:
        """A module's own collection ran (``--lf`` hands back empty stand-in reports)."""
        self.run.file(module.path).walked = True

    def item_collected(self, item: pytest.Item) -> None:
        name = selection.name_in_file(item)
        try:
            item_marks, error = marks.read(item), None
        except marks.MarkerError as problem:
            item_marks, error = marks.ItemMarks(), str(problem)
        item.stash[PLAN_KEY] = ItemPlan(
            name=name,
            test_file=item.path,
            uses_fixture=_requests_the_fixture(item),
            marks=item_marks,
            marks_error=error,
            hypothesis=bool(getattr(getattr(item, "obj", None), "is_hypothesis_test", False)),
        )
        collected = self.run.file(item.path)
        collected.tests.add(name)
        if selection.is_unittest(item):
            collected.unittest_classes.add(name.split("::")[0])
        if item.stash[PLAN_KEY].measures:
            collected.measuring.add(name)
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

        plan, attempt = item.stash[PLAN_KEY], item.stash[ATTEMPT_KEY]
        if plan.hypothesis:
            pytest.fail(messages.hypothesis_test(item.nodeid), pytrace=False)
        attempt.fixture = Flops()
        return attempt.fixture

    @contextmanager
    def calling(self, item: pytest.Item) -> Iterator[None]:
        """The call phase: a ``limit_flops`` test without the fixture is counted whole."""
        plan, attempt = item.stash[PLAN_KEY], item.stash[ATTEMPT_KEY]
        attempt.in_call = attempt.called = True
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
        # an XPASS (a non-strict xfail test that passed) passed, and is compared
        ok = report.passed
        if report.when == "call" and attempt.in_call:
            # A subtest's report (the test's own comes after the call): a failed
            # subtest fails the test, so it is not compared and writes nothing; a
            # skipped one may have held measurements, whose baselines are kept.
            attempt.passed &= not report.failed
            attempt.partial |= report.skipped
            return
        if report.when == "call" and ok and attempt.passed:
            attempt.verdict = self._judge(item, plan, attempt)
            if attempt.verdict is not None and attempt.verdict.failure is not None:
                report.outcome = "failed"
                report.longrepr = attempt.verdict.failure
                if hasattr(report, "wasxfail"):
                    del report.wasxfail  # a changed count is a failure, not an XPASS
                ok = False
        attempt.passed &= ok
        if report.when == "teardown":
            self._finish_attempt(item, plan, attempt, report)

    def _judge(self, item: pytest.Item, plan: ItemPlan, attempt: Attempt) -> Verdict | None:
        if attempt.fixture is None:
            if attempt.whole_call is None or plan.marks.budget is None:
                return None
            return judge_budget(item.nodeid, attempt.whole_call.measurement, plan.marks.budget)
        measured = attempt.fixture.measured
        if attempt.partial and not measured:
            return None  # every block was in a skipped subtest: nothing to compare
        rtol, depth = self._comparison(plan)
        found = self._stored(plan)
        stored, attempt.location, attempt.legacy = found.stored, found.location, found.legacy
        current = self._current(plan, depth, attempt.fixture) if measured else None
        settings = self.settings
        if (
            current is not None
            and isinstance(stored, FlopsSnapshot)
            and (attempt.partial or settings.update or settings.prune)
        ):
            # a measurement not taken this time keeps its baseline
            current, attempt.kept = _with_kept(current, stored)
        bytes_rtol, compare_bytes = settings.bytes_comparison(plan.marks.comparison)
        verdict = judge(
            nodeid=item.nodeid,
            location=self._shown(attempt.location),
            current=current,
            stored=stored,
            rtol=rtol,
            bytes_rtol=bytes_rtol,
            compare_bytes=compare_bytes,
            # a test that stopped measuring is stale under --flops-prune, not a failure
            update=settings.update or (settings.prune and current is None),
            budget=plan.marks.budget,
            must_write=attempt.legacy,
        )
        if verdict is None:
            return None
        if verdict.remove:
            # --flops-update never removes: the snapshot stays, reported stale
            return replace(
                verdict,
                remove=False,
                statuses=dict.fromkeys(verdict.statuses, Status.KEPT),
            )
        return replace(
            verdict,
            statuses={
                name: Status.KEPT if name in attempt.kept and status is Status.PASSED else status
                for name, status in verdict.statuses.items()
            },
        )

    def _finish_attempt(
        self, item: pytest.Item, plan: ItemPlan, attempt: Attempt, report: pytest.TestReport
    ) -> None:
        collected = self.run.file(plan.test_file)
        if attempt.called or attempt.passed:
            # a test whose setup errored did not run: its parametrized ids (or what
            # it measures) are unknown, so its file's snapshots are no one's proof
            collected.ran.add(plan.name)
        counted = attempt.counted
        if counted is not None and counted.measured:
            collected.measured.add(plan.name)
            collected.taken.setdefault(plan.name, set()).update(counted.measurements)
        elif attempt.passed and attempt.called and not attempt.partial:
            collected.unmeasured.add(plan.name)
        if plan.uses_fixture and not (attempt.fixture and attempt.fixture.measured):
            self.idle.add(item.nodeid)
        else:
            self.idle.discard(item.nodeid)  # a rerun that measured
        result = self._result(item, plan, attempt, report)
        if attempt.passed and not attempt.partial and attempt.kept:
            # it ran whole and passed without them: stale, not gone with a skipped part
            collected.dropped.setdefault(plan.name, set()).update(attempt.kept)
        if result is None:
            self.results.pop(item.nodeid, None)
        else:
            self.results[item.nodeid] = result

    def _result(
        self, item: pytest.Item, plan: ItemPlan, attempt: Attempt, report: pytest.TestReport
    ) -> TestResult | None:
        """The attempt's outcome, after writing what ``--flops-update`` asked for."""
        devices = tuple(sorted(attempt.counted.devices)) if attempt.counted else ()
        verdict = attempt.verdict
        if verdict is None:
            if attempt.fixture is None or not attempt.fixture.measured:
                return None
            return self._not_compared(item, plan, attempt.fixture, devices)
        outcome = Outcome.PASSED
        statuses = dict(verdict.statuses)
        target = snapshot_path(plan.test_file, plan.name)
        if verdict.failure is not None:
            outcome = Outcome.FAILED
        elif verdict.write is not None and not attempt.passed:
            outcome = Outcome.NOT_COMPARED
            statuses = dict.fromkeys(statuses, Status.NOT_COMPARED)
        elif verdict.write is not None:
            try:
                # a snapshot read from the layout before 0.2 is copied; the old
                # file stays until --flops-prune
                self.store.write(target, verdict.write)
                outcome = Outcome.WRITTEN
            except OSError as error:
                report.outcome = "failed"
                report.longrepr = messages.cannot_write(item.nodeid, self._shown(target), error)
                outcome = Outcome.FAILED
                statuses = dict.fromkeys(statuses, Status.NOT_WRITTEN)
        return TestResult(
            outcome=outcome,
            records=records(
                item.nodeid, verdict.measurements, verdict.baseline, statuses, verdict.budget
            ),
            devices=devices,
            legacy=attempt.legacy,
            location=target if plan.uses_fixture else None,
        )

    def _not_compared(
        self, item: pytest.Item, plan: ItemPlan, fixture: Flops, devices: tuple[str, ...]
    ) -> TestResult:
        """A measured test failed by itself: keep its record, leave its snapshot alone."""
        found = self._stored(plan)
        stored, legacy = found.stored, found.legacy
        _, depth = self._comparison(plan)
        measurements = self._current(plan, depth, fixture).measurements
        return TestResult(
            outcome=Outcome.NOT_COMPARED,
            records=records(
                item.nodeid,
                measurements,
                stored if isinstance(stored, FlopsSnapshot) else None,
                dict.fromkeys(measurements, Status.NOT_COMPARED),
                None if plan.marks.budget is None else plan.marks.budget.text,
            ),
            devices=devices,
            legacy=legacy,
            location=snapshot_path(plan.test_file, plan.name),
        )

    # -- the end --------------------------------------------------------------------

    def finish(self, *, stopped: str | None) -> None:
        """Decide the run's end once: the stale snapshots, with why, and what
        ``--flops-prune`` removed of them.

        ``stopped`` says why the run ended before its last test, if it did.
        """
        if stopped is not None:
            self.run.narrow(stopped)
        stale = tuple(self.run.stale_snapshots())
        pruned: list[StaleSnapshot] = []
        if self.settings.prune:
            pruned, failures = prune(stale, self.store, shown=self._shown)
            self.problems += [
                messages.cannot_remove(self._shown(path), error) for path, error in failures
            ]
            self._mark_pruned(pruned)
        self.end = RunEnd(
            stale=stale,
            pruned=tuple(pruned),
            held_back=tuple(self.run.narrowed)
            if self.settings.update or self.settings.prune
            else (),
        )

    def _mark_pruned(self, pruned: list[StaleSnapshot]) -> None:
        """The records of the tests whose snapshots (or measurements) were pruned say so."""
        by_path: dict[Path, frozenset[str] | None] = {}
        for entry in pruned:
            if entry.measurement is None:
                by_path[entry.path] = None
            else:
                names = by_path.get(entry.path, frozenset())
                if names is not None:
                    by_path[entry.path] = names | {entry.measurement}
        for nodeid, result in self.results.items():
            if result.location in by_path:
                self.results[nodeid] = result.pruned(by_path[result.location])

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
            snapshots=self.run.evidence(stale=self.end.stale, shown=self._shown),
        )
        self.problems += write_exports(
            export,
            json_path=settings.report_json,
            markdown_path=settings.report_md,
            html_path=settings.report_html,
            saved=self.saved.append,
        )

    def summary_lines(self) -> list[str]:
        """``flops: 12 tests passed, 1 failed, 2 written, 1 removed`` and the stale files."""
        tally = dict.fromkeys(Outcome, 0)
        for result in self.results.values():
            tally[result.outcome] += 1
        tally[Outcome.REMOVED] += len(self.end.pruned)
        lines = messages.summary_lines(
            counts=[(outcome.value, tally[outcome]) for outcome in Outcome],
            stale=[(entry.shown(self._shown), entry.reason.value) for entry in self.end.kept],
            held_back=self.end.held_back,
            legacy=sum(result.legacy for result in self.results.values()),
            moved=self.settings.update,
            problems=self.problems,
        )
        idle = messages.measured_nothing_at_all(sorted(self.idle))
        return lines + idle + messages.saved(self.saved)

    # -- helpers ----------------------------------------------------------------------

    def _current(self, plan: ItemPlan, depth: int, fixture: Flops) -> FlopsSnapshot:
        """What the test measured, as its snapshot would store it (at its depth)."""
        measured = FlopsSnapshot(test=plan.name, depth=depth, measurements=fixture.measurements)
        return measured.at_depth(depth)

    def _comparison(self, plan: ItemPlan) -> tuple[float, int]:
        """rtol and depth of a test: its @pytest.mark.flops, else the session's."""
        chosen = plan.marks.comparison
        rtol = self.settings.rtol if chosen.rtol is None else chosen.rtol
        depth = self.settings.depth if chosen.depth is None else chosen.depth
        return rtol, depth

    def _stored(self, plan: ItemPlan) -> SnapshotLookup:
        return self.store.lookup(plan.test_file, plan.name, shown=self._shown)

    def _shown(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.rootpath))
        except ValueError:
            return os.fspath(path)


def _with_kept(
    current: FlopsSnapshot, stored: FlopsSnapshot
) -> tuple[FlopsSnapshot, frozenset[str]]:
    """``current`` with the stored measurements it did not take, and their names."""
    kept = frozenset(stored.measurements) - frozenset(current.measurements)
    if not kept:
        return current, kept
    baselines = stored.at_depth(current.depth).measurements
    return replace(
        current,
        measurements={**current.measurements, **{name: baselines[name] for name in kept}},
    ), kept


def _requests_the_fixture(item: pytest.Item) -> bool:
    """The test asks for the ``flops`` fixture: an argument named ``flops`` that
    ``@pytest.mark.parametrize`` fills is a value, not the fixture."""
    callspec = getattr(item, "callspec", None)
    parametrized = callspec is not None and FIXTURE_NAME in callspec.params
    return FIXTURE_NAME in getattr(item, "fixturenames", ()) and not parametrized
