"""The pytest-flops session: every hook of :mod:`pytest_flops.plugin.hooks` hands off here.

Life of a measured test, one attempt at a time (a rerun or a repeat starts clean):

1. Collection: the test's markers are parsed into its :class:`ItemPlan`
   (``item.stash``; again when collection ends and when its setup ends, as
   hooks and fixtures add markers), and the :class:`~pytest_flops.snapshots.run_record.RunRecord`
   learns what was collected (:mod:`pytest_flops.plugin.recording`).
2. Setup starts an :class:`Attempt`; the ``flops`` fixture (or ``limit_flops``
   without it) measures into it.
3. The test's own call report (not a subtest's): when everything passed up to
   there, :func:`~pytest_flops.plugin.baseline.judge_attempt` compares the counts
   with the snapshot (read once per attempt) and budget; a failed check turns the
   report into a failure whose long_repr is the diagnosis, so the *test* fails.
4. The teardown report: the snapshot is written (``--flops-update``) only if
   every phase passed, and the test's :class:`TestResult` replaces any earlier
   attempt's (:mod:`pytest_flops.plugin.result`). A write that fails fails the
   test, naming the path.
   ``--flops-update`` never removes a file nor drops a measurement from one.
5. Session finish: stale snapshots are found on positive evidence only, each
   with its reason (:mod:`pytest_flops.snapshots.stale`); ``--flops-prune``
   alone removes them. That end is decided once
   (:class:`~pytest_flops.plugin.run_end.RunEnd`), and the summary and the
   exports read it.

A measurement in the snapshot that the test did not take this time keeps its
baseline: when a subtest was skipped it is not compared (its subtest may have
taken it), and under ``--flops-update`` or ``--flops-prune`` it is stale
rather than a failure.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_flops.plugin import messages, recording, selection
from pytest_flops.plugin.attempt import ATTEMPT_KEY, PLAN_KEY, Attempt, ItemPlan
from pytest_flops.plugin.run_end import RunEnd, summary_lines, write_exports
from pytest_flops.plugin.settings import Settings
from pytest_flops.snapshots.run_record import RunRecord
from pytest_flops.snapshots.store import SnapshotStore

if TYPE_CHECKING:
    from pytest_flops.counting.fixture import Flops
    from pytest_flops.plugin.result import TestResult
    from pytest_flops.reports.records import MeasurementRecord


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
        return cls(
            settings=Settings.from_config(config),
            rootpath=config.rootpath,
            run=selection.run_record(config),
        )

    # -- collection -----------------------------------------------------------------

    def collector_reported(self, collector: pytest.Collector, report: pytest.CollectReport) -> None:
        recording.collector_reported(self.run, collector, report, shown=self._shown)

    def python_object_seen(self, collector: pytest.Collector, name: str, obj: object) -> None:
        """A module or class collects ``obj`` (``--lf`` hands back stand-in reports)."""
        recording.python_object_seen(self.run, collector, name, obj)

    def item_collected(self, item: pytest.Item) -> None:
        item.stash[PLAN_KEY] = recording.item_collected(self.run, item)
        self.collected_items += 1

    def collection_finished(self, session: pytest.Session, *, is_worker: bool) -> bool:
        """Check the selected tests' markers; whether any test uses a FLOP feature.

        A bad marker stops the run with a usage error naming the test; an xdist
        worker cannot stop the run, so there the test errors at setup instead.
        """
        selected = [item for item in session.items if PLAN_KEY in item.stash]
        if len(session.items) < self.collected_items:
            self.run.narrow(f"{self.collected_items - len(session.items)} tests deselected")
        plans = [recording.with_current_marks(self.run, item) for item in selected]
        problem = next((plan.marks_error for plan in plans if plan.marks_error), None)
        if problem is not None and not is_worker:
            raise pytest.UsageError(problem)
        return any(plan.measures for plan in plans)

    # -- running --------------------------------------------------------------------

    def attempt_started(self, item: pytest.Item) -> None:
        item.stash[ATTEMPT_KEY] = Attempt()

    def check_marks(self, item: pytest.Item) -> None:
        """The markers as setup left them (a fixture may add one); a bad one errors the test
        at setup, under xdist (a worker cannot stop the run) or added by a fixture, with
        its message alone: the plugin's frames would hide it."""
        if PLAN_KEY in item.stash and ATTEMPT_KEY in item.stash:
            problem = recording.marks_problem(self.run, item, item.stash[ATTEMPT_KEY])
            if problem is not None:
                pytest.fail(problem, pytrace=False)

    def fixture(self, item: pytest.Item) -> Flops:
        from pytest_flops.counting.fixture import Flops

        plan, attempt = item.stash[PLAN_KEY], item.stash[ATTEMPT_KEY]
        if plan.hypothesis:
            pytest.fail(messages.hypothesis_test(item.nodeid), pytrace=False)
        attempt.fixture = Flops()
        return attempt.fixture

    def calling(self, item: pytest.Item) -> AbstractContextManager[None]:
        """The call phase: a ``limit_flops`` test without the fixture is counted whole."""
        return item.stash[ATTEMPT_KEY].calling(item.stash[PLAN_KEY])

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
        if report.when == "call" and ok:
            # the test may have added a marker: judged by the markers it ended with
            problem = recording.marks_problem(self.run, item, attempt)
            plan = item.stash[PLAN_KEY]  # marks_problem stored the plan with those markers
            if problem is not None:
                report.outcome, report.longrepr, ok = "failed", problem, False
        if report.when == "call" and ok and attempt.passed and attempt.counted is not None:
            # the verdict and the measurement layer load with the first test that counted
            from pytest_flops.plugin.baseline import judge_attempt

            attempt.verdict = judge_attempt(
                item.nodeid,
                plan,
                attempt,
                settings=self.settings,
                store=self.store,
                shown=self._shown,
            )
            if attempt.verdict is not None and attempt.verdict.failure is not None:
                report.outcome = "failed"
                report.longrepr = attempt.verdict.failure
                if hasattr(report, "wasxfail"):
                    del report.wasxfail  # a changed count is a failure, not an XPASS
                ok = False
        attempt.passed &= ok
        if report.when == "teardown":
            self._finish_attempt(item, plan, attempt, report)

    def _finish_attempt(
        self, item: pytest.Item, plan: ItemPlan, attempt: Attempt, report: pytest.TestReport
    ) -> None:
        recording.attempt_finished(self.run, plan, attempt)
        if (
            attempt.called
            and plan.uses_fixture
            and not (attempt.fixture and attempt.fixture.measured)
        ):
            self.idle.add(item.nodeid)
        else:
            self.idle.discard(item.nodeid)  # a rerun that measured
        self.results.pop(item.nodeid, None)  # an earlier attempt's
        if attempt.counted is None:  # it measured nothing: no result
            return
        from pytest_flops.plugin.result import result_of  # loads with the first test that counted

        result = result_of(
            item, plan, attempt, report, settings=self.settings, store=self.store, shown=self._shown
        )
        if result is not None:
            self.results[item.nodeid] = result

    # -- the end --------------------------------------------------------------------

    def finish(self, *, stopped: str | None) -> None:
        """Decide the run's end once (``stopped``: why it ended before its last test)."""
        if stopped is not None:
            self.run.narrow(stopped)
        self.end = RunEnd.decide(
            self.run, settings=self.settings, store=self.store, shown=self._shown
        )
        self.results = self.end.marked(self.results)

    @property
    def records(self) -> list[MeasurementRecord]:
        return [record for result in self.results.values() for record in result.records]

    @property
    def devices(self) -> set[str]:
        """The devices the measured models were on."""
        return {device for result in self.results.values() for device in result.devices}

    def write_exports(self) -> None:
        """The ``--flops-report-json``, ``-md`` and ``-html`` files asked for."""
        self.problems += write_exports(
            self.end,
            self.run,
            self.records,
            self.devices,
            settings=self.settings,
            shown=self._shown,
            saved=self.saved.append,
        )

    def summary_lines(self) -> list[str]:
        """``flops: 12 tests passed, 1 failed, 2 written, 1 removed`` and the stale files."""
        lines = summary_lines(
            self.end,
            self.results.values(),
            moved=self.settings.update,
            problems=self.problems,
            shown=self._shown,
        )
        idle = messages.measured_nothing_at_all(sorted(self.idle))
        return lines + idle + messages.saved(self.saved)

    # -- helpers ----------------------------------------------------------------------

    def _shown(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.rootpath))
        except ValueError:
            return os.fspath(path)
