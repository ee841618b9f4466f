"""What one measured test is compared with, and its counts judged against it.

A test's :class:`Baseline` is its snapshot, looked up in the store (in the
layout before 0.2 when the current one has no file for it), with the tolerances,
bytes switch and depth it is compared at. It is read, parsed and resolved once
per attempt and kept on the :class:`~pytest_flops.plugin.attempt.Attempt`: the
judgement at the end of the call and the record of a test that failed by itself
read the same one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_flops.plugin.settings import Settings
from pytest_flops.plugin.verdict import Verdict, judge, judge_budget, unreadable_with_skipped_parts
from pytest_flops.reports.records import Status
from pytest_flops.snapshots.format import FlopsSnapshot
from pytest_flops.snapshots.store import SnapshotLookup, SnapshotStore
from pytest_flops.validation import SnapshotFormatError

if TYPE_CHECKING:
    from pytest_flops.counting.fixture import Flops
    from pytest_flops.plugin.attempt import Attempt, ItemPlan

__all__ = ["Baseline", "baseline_of", "judge_attempt"]


@dataclass(frozen=True, kw_only=True)
class Baseline:
    """A test's snapshot as read this attempt, and how its counts are compared with it."""

    found: SnapshotLookup
    rtol: float  # of FLOPs
    bytes_rtol: float  # of bytes accessed and communicated
    compare_bytes: bool  # bytes accessed (and FLOPs by precision) compared at all
    depth: int

    def current(self, plan: ItemPlan, fixture: Flops) -> FlopsSnapshot:
        """What the test measured, as its snapshot would store it (at its depth)."""
        measured = FlopsSnapshot(
            test=plan.name, depth=self.depth, measurements=fixture.measurements
        )
        return measured.at_depth(self.depth)


def baseline_of(
    plan: ItemPlan,
    attempt: Attempt,
    *,
    settings: Settings,
    store: SnapshotStore,
    shown: Callable[[Path], str],
) -> Baseline:
    """The attempt's baseline, read from the store the first time it is asked for.

    Its tolerances, bytes switch and depth are the test's ``@pytest.mark.flops``, else
    the session's. ``shown`` turns a path into what error messages name.
    """
    if attempt.baseline is None:
        chosen = plan.marks.comparison
        rtol = settings.rtol if chosen.rtol is None else chosen.rtol
        bytes_rtol, compare_bytes = settings.bytes_comparison(chosen, rtol=rtol)
        attempt.baseline = Baseline(
            found=store.lookup(plan.test_file, plan.name, shown=shown),
            rtol=rtol,
            bytes_rtol=bytes_rtol,
            compare_bytes=compare_bytes,
            depth=settings.depth if chosen.depth is None else chosen.depth,
        )
    return attempt.baseline


def judge_attempt(
    nodeid: str,
    plan: ItemPlan,
    attempt: Attempt,
    *,
    settings: Settings,
    store: SnapshotStore,
    shown: Callable[[Path], str],
) -> Verdict | None:
    """The verdict on an attempt whose every phase so far passed; None if there is none."""
    if attempt.fixture is None:
        if attempt.whole_call is None or plan.marks.budget is None:
            return None
        return judge_budget(nodeid, attempt.whole_call.measurement, plan.marks.budget)
    measured = attempt.fixture.measured
    if attempt.partial and not measured:
        return None  # every block was in a skipped subtest: nothing to compare
    baseline = baseline_of(plan, attempt, settings=settings, store=store, shown=shown)
    stored = baseline.found.stored
    current = baseline.current(plan, attempt.fixture) if measured else None
    if (
        current is not None
        and isinstance(stored, FlopsSnapshot)
        and (attempt.partial or settings.update or settings.prune)
    ):
        # a measurement not taken this time keeps its baseline
        current, attempt.kept = _with_kept(current, stored)
    if (
        settings.update
        and attempt.partial
        and current is not None
        and isinstance(stored, SnapshotFormatError)
    ):
        # what the skipped subtests measured is in the file, which cannot be read
        location = shown(baseline.found.location)
        return unreadable_with_skipped_parts(nodeid, location, stored, current)
    verdict = judge(
        nodeid=nodeid,
        location=shown(baseline.found.location),
        current=current,
        stored=stored,
        rtol=baseline.rtol,
        bytes_rtol=baseline.bytes_rtol,
        compare_bytes=baseline.compare_bytes,
        # a test that stopped measuring is stale under --flops-prune, not a failure
        update=settings.update or (settings.prune and current is None),
        budget=plan.marks.budget,
        must_write=baseline.found.legacy,
        kept=attempt.kept,
    )
    return None if verdict is None else _kept_statuses(verdict, attempt.kept)


def _kept_statuses(verdict: Verdict, kept: frozenset[str]) -> Verdict:
    """The verdict with the measurements that keep their baseline reported ``kept``."""
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
            name: Status.KEPT if name in kept and status is Status.PASSED else status
            for name, status in verdict.statuses.items()
        },
    )


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
