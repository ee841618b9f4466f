"""What one attempt of a measured test came to, once its teardown reported: its
:class:`TestResult`, with its records, as the summary counts them, the reports show them
and xdist workers send them.

The snapshot is written here, only if ``--flops-update`` asked for it and
every phase passed; a write that fails fails the test, naming the path. A
test that failed by itself keeps its record, compared with nothing, and its
snapshot is left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_flops.plugin import messages
from pytest_flops.plugin.attempt import Attempt, ItemPlan, Outcome
from pytest_flops.plugin.baseline import baseline_of
from pytest_flops.plugin.settings import Settings
from pytest_flops.reports.records import MeasurementRecord, Status
from pytest_flops.snapshots.format import FlopsSnapshot
from pytest_flops.snapshots.store import SnapshotStore, snapshot_path

if TYPE_CHECKING:
    from pytest_flops.counting.fixture import Flops
    from pytest_flops.measurement import Measurement

__all__ = ["TestResult", "result_of"]


@dataclass(frozen=True, kw_only=True)
class TestResult:
    """The last attempt of one measured test."""

    __test__ = False  # not a test class, despite its name

    outcome: Outcome
    records: tuple[MeasurementRecord, ...]
    devices: tuple[str, ...] = ()
    legacy: bool = False  # its snapshot was read from the layout before 0.2
    location: Path | None = None  # its snapshot file in the current layout
    flops_only: tuple[str, ...] = ()  # measurements compared on FLOPs alone (Verdict's)

    def pruned(self, names: frozenset[str] | None) -> TestResult:
        """This result once ``--flops-prune`` removed its file (None) or ``names`` from it."""
        return replace(
            self,
            records=tuple(
                replace(record, status=Status.REMOVED)
                if names is None or record.name in names
                else record
                for record in self.records
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "records": [record.to_dict() for record in self.records],
            "devices": list(self.devices),
            "legacy": self.legacy,
            "location": None if self.location is None else str(self.location),
            "flops_only": list(self.flops_only),
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
            location=None if data["location"] is None else Path(data["location"]),
            flops_only=tuple(data["flops_only"]),
        )


def result_of(
    item: pytest.Item,
    plan: ItemPlan,
    attempt: Attempt,
    report: pytest.TestReport,
    *,
    settings: Settings,
    store: SnapshotStore,
    shown: Callable[[Path], str],
) -> TestResult | None:
    """The attempt's outcome, after writing what ``--flops-update`` asked for."""
    devices = tuple(sorted(attempt.counted.devices)) if attempt.counted else ()
    verdict = attempt.verdict
    if verdict is None:
        if attempt.fixture is None or not attempt.fixture.measured:
            return None
        return _not_compared(
            item,
            plan,
            attempt,
            attempt.fixture,
            devices,
            settings=settings,
            store=store,
            shown=shown,
        )
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
            store.write(target, verdict.write)
            outcome = Outcome.WRITTEN
        except OSError as error:
            report.outcome = "failed"
            report.longrepr = messages.cannot_write(item.nodeid, shown(target), error)
            outcome = Outcome.FAILED
            statuses = dict.fromkeys(statuses, Status.NOT_WRITTEN)
    return TestResult(
        outcome=outcome,
        records=_records(
            item.nodeid, verdict.measurements, verdict.baseline, statuses, verdict.budget
        ),
        devices=devices,
        legacy=attempt.legacy,
        location=target if plan.uses_fixture else None,
        flops_only=tuple(sorted(verdict.flops_only)),
    )


def _not_compared(
    item: pytest.Item,
    plan: ItemPlan,
    attempt: Attempt,
    fixture: Flops,
    devices: tuple[str, ...],
    *,
    settings: Settings,
    store: SnapshotStore,
    shown: Callable[[Path], str],
) -> TestResult:
    """A measured test failed by itself: keep its record, leave its snapshot alone."""
    baseline = baseline_of(plan, attempt, settings=settings, store=store, shown=shown)
    stored = baseline.found.stored
    measurements = baseline.current(plan, fixture).measurements
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
        legacy=baseline.found.legacy,
        location=snapshot_path(plan.test_file, plan.name),
    )


def _records(
    nodeid: str,
    measurements: Mapping[str, Measurement],
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
