"""The comparison of one test's counts with its snapshot and budget: a pure decision.

:func:`judge` reads no file and writes none: it gets what was measured and
what was stored, and returns a :class:`Verdict` saying each measurement's
status, the failure (if any) and what ``--flops-update`` should store.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

from pytest_flops.codec import Tolerance
from pytest_flops.measurement import DEFAULT_NAME, Measurement
from pytest_flops.plugin import diagnoses
from pytest_flops.plugin.budget import Budget
from pytest_flops.reports.records import Status
from pytest_flops.snapshots.format import FlopsSnapshot, comparable
from pytest_flops.validation import NewerSnapshotFormatError, SnapshotFormatError

Stored = FlopsSnapshot | SnapshotFormatError | None
"""What reading a snapshot gave: the snapshot, the reason it is unreadable, or None."""


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What the comparison of one test decided."""

    statuses: Mapping[str, Status]  # per measurement name
    measurements: Mapping[str, Measurement]  # as compared and stored; zero for a missing name
    baseline: FlopsSnapshot | None  # the stored snapshot, when it could be read
    failure: str | None = None  # the long_repr that fails the test
    write: FlopsSnapshot | None = None  # what --flops-update stores once the test passed
    remove: bool = False  # --flops-update: the test measures nothing now, its snapshot goes
    budget: str | None = None  # the limits, for the report
    # compared on FLOPs alone, bytes asked for: their snapshot records no bytes accessed
    flops_only: frozenset[str] = frozenset()


def judge(
    *,
    nodeid: str,
    location: str,
    current: FlopsSnapshot | None,
    stored: Stored,
    rtol: float,
    update: bool,
    budget: Budget | None,
    must_write: bool = False,
    bytes_rtol: float | None = None,
    compare_bytes: bool = True,
    kept: Collection[str] = (),
) -> Verdict | None:
    """Compare a test's counts (None: it measured nothing; ``kept``: carried over from the
    snapshot, not taken now) with its stored snapshot (at ``location``); None if there is
    nothing to say. ``rtol`` and ``bytes_rtol`` (else ``rtol``) are the :class:`Tolerance`;
    without ``compare_bytes`` no bytes; ``update`` rewrites a changed text, or ``must_write``."""
    # an old file's backend kernel names are compared, reported and rewritten as portable
    as_stored = stored if isinstance(stored, FlopsSnapshot) else None
    baseline = None if as_stored is None else as_stored.with_portable_names()
    if current is None:
        return _measured_nothing(nodeid, location, stored, update=update)
    budget_text = None if budget is None else budget.text
    exceeded = None if budget is None else budget.check(_sum(current, leaving_out=kept))
    compared = comparable(baseline, current, bytes_compared=compare_bytes) if baseline else None
    tolerance = Tolerance(flops=rtol, bytes=rtol if bytes_rtol is None else bytes_rtol)
    changed, missing = _changes(compared, tolerance)
    moved = changed | missing
    measurements = {**current.measurements, **dict.fromkeys(missing, Measurement())}
    if exceeded is not None:
        problems: list[str | None] = [diagnoses.budget_exceeded(nodeid, exceeded)]
        if not update:
            problems.append(
                _snapshot_problem(nodeid, location, current, stored, compared, moved, tolerance)
            )
        return Verdict(
            statuses=dict.fromkeys(measurements, Status.OVER_BUDGET),
            measurements=measurements,
            baseline=baseline,
            failure="\n\n".join(filter(None, problems)),
            budget=budget_text,
            flops_only=_bytes_unrecorded(baseline, current, noted=compare_bytes and not update),
        )
    # a newer pytest-flops wrote it: rewriting it would drop what that version stores
    if update and not isinstance(stored, NewerSnapshotFormatError):
        written = must_write or as_stored is None or as_stored.to_text() != current.to_text()
        return replace(
            _updated(baseline, current, measurements, missing),
            write=current if written else None,
            budget=budget_text,
        )
    return Verdict(
        statuses=_compared_statuses(stored, baseline, measurements, changed, missing),
        measurements=measurements,
        baseline=baseline,
        failure=_snapshot_problem(nodeid, location, current, stored, compared, moved, tolerance),
        budget=budget_text,
        flops_only=_bytes_unrecorded(baseline, current, noted=compare_bytes),
    )


def _updated(
    baseline: FlopsSnapshot | None,
    current: FlopsSnapshot,
    measurements: Mapping[str, Measurement],
    missing: set[str],
) -> Verdict:
    """What --flops-update decides for a test within budget (what it writes apart)."""
    return Verdict(
        statuses={
            **{name: _updated_status(name, baseline, current) for name in current.measurements},
            **dict.fromkeys(missing, Status.REMOVED),
        },
        measurements=measurements,
        baseline=baseline,
    )


def _compared_statuses(
    stored: Stored,
    baseline: FlopsSnapshot | None,
    measurements: Mapping[str, Measurement],
    changed: set[str],
    missing: set[str],
) -> dict[str, Status]:
    """Each measurement's status, compared with the snapshot (no update, within budget)."""
    if baseline is None:
        status = Status.NO_SNAPSHOT if stored is None else Status.INVALID_SNAPSHOT
        return dict.fromkeys(measurements, status)
    return {
        name: Status.MISSING
        if name in missing
        else Status.CHANGED
        if name in changed
        else Status.PASSED
        for name in measurements
    }


def judge_budget(nodeid: str, measurement: Measurement, budget: Budget) -> Verdict:
    """A ``limit_flops`` test without the fixture: its whole call against its budget only."""
    exceeded = budget.check(measurement)
    return Verdict(
        statuses={DEFAULT_NAME: Status.WITHIN_BUDGET if exceeded is None else Status.OVER_BUDGET},
        measurements={DEFAULT_NAME: measurement.truncated(0)},
        baseline=None,
        failure=None if exceeded is None else diagnoses.budget_exceeded(nodeid, exceeded),
        budget=budget.text,
    )


def unreadable_with_skipped_parts(
    nodeid: str, location: str, error: SnapshotFormatError, current: FlopsSnapshot
) -> Verdict:
    """--flops-update of a test whose snapshot cannot be read while some of its subtests
    were skipped: rewriting it would lose what they measured, so it stays as it is."""
    return Verdict(
        statuses=dict.fromkeys(current.measurements, Status.INVALID_SNAPSHOT),
        measurements=current.measurements,
        baseline=None,
        failure=diagnoses.unreadable_with_skipped_parts(nodeid, location, error),
    )


def _measured_nothing(
    nodeid: str, location: str, stored: Stored, *, update: bool
) -> Verdict | None:
    """The test asked for the fixture but measured nothing: a snapshot it has is a change."""
    if stored is None:
        return None
    baseline = stored if isinstance(stored, FlopsSnapshot) else None
    names = () if baseline is None else baseline.measurements
    measurements = {name: Measurement() for name in names}
    if update:
        return Verdict(
            statuses=dict.fromkeys(measurements, Status.REMOVED),
            measurements=measurements,
            baseline=baseline,
            remove=True,
        )
    failure = (
        diagnoses.unreadable(nodeid, location, stored)
        if isinstance(stored, SnapshotFormatError)
        else diagnoses.measured_nothing(nodeid, location, stored)
    )
    return Verdict(
        statuses=dict.fromkeys(measurements, Status.MISSING),
        measurements=measurements,
        baseline=baseline,
        failure=failure,
    )


def _updated_status(name: str, baseline: FlopsSnapshot | None, current: FlopsSnapshot) -> Status:
    """UPDATED when what --flops-update stores for ``name`` differs from the stored form,
    not only when a count moved: bytes recorded for the first time are an update."""
    if baseline is None or name not in baseline.measurements:
        return Status.NEW
    before = baseline.measurements[name].to_dict()
    return Status.PASSED if before == current.measurements[name].to_dict() else Status.UPDATED


def _bytes_unrecorded(
    baseline: FlopsSnapshot | None, current: FlopsSnapshot, *, noted: bool
) -> frozenset[str]:
    """The measurements compared on FLOPs alone because their snapshot holds no bytes
    (:meth:`FlopsSnapshot.missing_bytes_of`), ``noted`` when bytes are compared and the
    snapshot is not being rewritten."""
    if baseline is None or not noted:
        return frozenset()
    return baseline.missing_bytes_of(current)


def _changes(
    compared: tuple[FlopsSnapshot, FlopsSnapshot] | None, tolerance: Tolerance
) -> tuple[set[str], set[str]]:
    """Names whose numbers moved beyond their tolerance or that are new, and names that
    went missing (none without a snapshot)."""
    if compared is None:
        return set(), set()
    before_all, after_all = compared
    changed = set(after_all.measurements) - set(before_all.measurements)
    missing = set(before_all.measurements) - set(after_all.measurements)
    for name in set(before_all.measurements) & set(after_all.measurements):
        before, after = before_all.measurements[name], after_all.measurements[name]
        if before.diff(after, tolerance=tolerance).moved:
            changed.add(name)
    return changed, missing


def _snapshot_problem(
    nodeid: str,
    location: str,
    current: FlopsSnapshot,
    stored: Stored,
    compared: tuple[FlopsSnapshot, FlopsSnapshot] | None,
    moved: set[str],
    tolerance: Tolerance,
) -> str | None:
    """What is wrong on the snapshot side, if anything."""
    if isinstance(stored, SnapshotFormatError):
        return diagnoses.unreadable(nodeid, location, stored)
    if compared is None:
        return diagnoses.no_snapshot(nodeid, location, _sum(current).total)
    if not moved:
        return None
    return diagnoses.mismatch(nodeid, location, *compared, moved, tolerance=tolerance)


def _sum(snapshot: FlopsSnapshot, *, leaving_out: Collection[str] = ()) -> Measurement:
    total = Measurement()
    for name, measurement in snapshot.measurements.items():
        if name not in leaving_out:
            total = total + measurement
    return total
