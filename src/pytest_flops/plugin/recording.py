"""What the run record learns from pytest's reports: collection, and each attempt's end.

This is the evidence that stale snapshots are judged on
(:mod:`pytest_flops.snapshots.stale`): which files were collected whole, which
tests were collected, ran, measured or passed without measuring. Anything
that hid tests from this run (a collector skipped, a class pytest could not
collect) marks their file incomplete, so that their snapshots are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_flops.plugin import marks, selection
from pytest_flops.plugin.attempt import PLAN_KEY, Attempt, ItemPlan
from pytest_flops.snapshots.run_record import RunRecord

__all__ = [
    "FIXTURE_NAME",
    "attempt_finished",
    "collector_reported",
    "item_collected",
    "marks_problem",
    "python_object_seen",
    "with_current_marks",
]

FIXTURE_NAME = "flops"


def collector_reported(
    run: RunRecord,
    collector: pytest.Collector,
    report: pytest.CollectReport,
    *,
    shown: Callable[[Path], str],
) -> None:
    if report.failed:
        run.narrow("a collection error")
    elif isinstance(collector, pytest.Directory):
        if report.passed:
            run.directories.add(collector.path)
        else:
            run.narrow(f"{shown(collector.path)} was skipped at collection")
    elif report.skipped:
        # importorskip at module level: the tests it hid are not gone
        run.file(collector.path).complete = False
    elif isinstance(collector, pytest.File) and not (
        isinstance(collector, pytest.Module) and collector.path.suffix == ".py"
    ):
        # doctest text files (a Module to pytest) and other files: collected when they
        # gave items; a Python module is walked when it collects its objects, below
        run.file(collector.path).walked |= bool(report.result)
    elif (
        isinstance(collector, pytest.Class)
        and not report.result
        and selection.uncollectable(collector.obj)
    ):
        # pytest warned that it cannot collect the class (it has __init__ or
        # __new__: a TestCase under -p no:unittest): its tests are not gone
        run.file(collector.path).complete = False


def python_object_seen(run: RunRecord, collector: pytest.Collector, name: str, obj: object) -> None:
    if isinstance(collector, pytest.Module):
        run.file(collector.path).walked = True
    if selection.uncollectable_function(collector, name, obj):
        # pytest warned that it cannot collect the function (a decorator made it
        # another callable), or it says __test__ = False: its test is not gone
        run.file(collector.path).complete = False
    hidden_class = selection.skipped_test_class(collector, name, obj)
    if hidden_class is not None:
        run.file(collector.path).hidden_classes.add(hidden_class)


def item_collected(run: RunRecord, item: pytest.Item) -> ItemPlan:
    """The test's plan, with its markers as collected; the run record learns of the test."""
    name = selection.name_in_file(item)
    if selection.respelled(item, name):
        run.narrow("test ids are not escaped (disable_test_id_escaping_...)")
    item_marks, error = _read_marks(item)
    plan = ItemPlan(
        name=name,
        test_file=item.path,
        uses_fixture=_requests_the_fixture(item),
        marks=item_marks,
        marks_error=error,
        hypothesis=bool(getattr(getattr(item, "obj", None), "is_hypothesis_test", False)),
    )
    collected = run.file(item.path)
    collected.tests.add(name)
    if selection.is_unittest(item):
        collected.unittest_classes.add(name.split("::")[0])
    if plan.measures:
        collected.measuring.add(name)
    return plan


def with_current_marks(run: RunRecord, item: pytest.Item) -> ItemPlan:
    """The test's plan (``item.stash``), updated to its markers as they are now.

    Markers are added after a test is collected: by ``pytest_collection_modifyitems``
    hooks (a conftest marking tests in bulk) and by fixtures (``request.applymarker``).
    A budget or tolerance added there applies as if it were written on the test.
    """
    plan = item.stash[PLAN_KEY]
    item_marks, error = _read_marks(item)
    if (item_marks, error) == (plan.marks, plan.marks_error):
        return plan
    plan = item.stash[PLAN_KEY] = replace(plan, marks=item_marks, marks_error=error)
    if plan.measures:
        run.file(plan.test_file).measuring.add(plan.name)
    return plan


def marks_problem(run: RunRecord, item: pytest.Item, attempt: Attempt) -> str | None:
    """The test's markers read again (a fixture in setup, or the test in its call, may
    have added one): the usage error of a bad one, or of a budget added during a call
    that nothing counted, as the test has no ``flops`` fixture."""
    plan = with_current_marks(run, item)
    if plan.marks_error is not None:
        return plan.marks_error
    if attempt.called and plan.marks.budget is not None and attempt.counted is None:
        return (
            f"{item.nodeid}: @pytest.mark.limit_flops was added during the test's call, "
            "after counting would have started: add it in a fixture or on the test, or "
            "measure with the flops fixture"
        )
    return None


def _read_marks(item: pytest.Item) -> tuple[marks.ItemMarks, str | None]:
    """The test's markers, or the usage error of a bad one."""
    try:
        return marks.read(item), None
    except marks.MarkerError as problem:
        return marks.ItemMarks(), str(problem)


def attempt_finished(run: RunRecord, plan: ItemPlan, attempt: Attempt) -> None:
    """The run record learns what an attempt of the test ran and measured."""
    collected = run.file(plan.test_file)
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
    if attempt.passed and not attempt.partial and attempt.kept:
        # it ran whole and passed without them: stale, not gone with a skipped part
        collected.dropped.setdefault(plan.name, set()).update(attempt.kept)


def _requests_the_fixture(item: pytest.Item) -> bool:
    """The test asks for the ``flops`` fixture: an argument named ``flops`` that
    ``@pytest.mark.parametrize`` fills is a value, not the fixture."""
    callspec = getattr(item, "callspec", None)
    parametrized = callspec is not None and FIXTURE_NAME in callspec.params
    return FIXTURE_NAME in getattr(item, "fixturenames", ()) and not parametrized
