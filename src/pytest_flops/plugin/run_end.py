"""The end of a run, decided once: what ``--flops-prune`` removed, and what is shown.

:meth:`RunEnd.decide` judges the stale snapshots (on proof, each with its
reason: :mod:`pytest_flops.snapshots.stale`) and prunes them when asked, once,
at session finish. The value it returns is the only thing the summary line,
the stale list under it, the records marked removed and the exports read, so
that they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_flops.plugin import messages
from pytest_flops.plugin.attempt import Outcome
from pytest_flops.plugin.settings import Settings
from pytest_flops.snapshots.run_record import RunRecord
from pytest_flops.snapshots.stale import StaleSnapshot, evidence, stale_snapshots
from pytest_flops.snapshots.store import SnapshotStore

if TYPE_CHECKING:
    from pytest_flops.plugin.result import TestResult
    from pytest_flops.reports.records import MeasurementRecord

__all__ = ["RunEnd", "summary_lines", "write_exports"]


@dataclass(frozen=True, kw_only=True)
class RunEnd:
    """What the end of the run decided about snapshot files, once: pruning it, the
    summary and the exports all read this one value."""

    stale: tuple[StaleSnapshot, ...] = ()  # found on proof, with why
    pruned: tuple[StaleSnapshot, ...] = ()  # of those, what --flops-prune removed
    held_back: tuple[str, ...] = ()  # why none was judged, under --flops-update or -prune
    problems: tuple[str, ...] = ()  # the files --flops-prune could not remove, and why

    @property
    def kept(self) -> tuple[StaleSnapshot, ...]:
        return tuple(entry for entry in self.stale if entry not in self.pruned)

    @classmethod
    def decide(
        cls,
        run: RunRecord,
        *,
        settings: Settings,
        store: SnapshotStore,
        shown: Callable[[Path], str],
    ) -> RunEnd:
        """The stale snapshots, with why, and what ``--flops-prune`` removed of them."""
        stale = tuple(stale_snapshots(run))
        pruned: list[StaleSnapshot] = []
        problems: list[str] = []
        if settings.prune:
            from pytest_flops.snapshots.prune import prune  # loads only when asked for

            pruned, failures = prune(stale, store, run, shown=shown)
            problems = [messages.cannot_remove(shown(path), error) for path, error in failures]
        return cls(
            stale=stale,
            pruned=tuple(pruned),
            held_back=tuple(run.narrowed) if settings.update or settings.prune else (),
            problems=tuple(problems),
        )

    def marked(self, results: Mapping[str, TestResult]) -> dict[str, TestResult]:
        """The tests' results, those whose snapshots (or measurements) were pruned saying so."""
        by_path: dict[Path, frozenset[str] | None] = {}
        for entry in self.pruned:
            if entry.measurement is None:
                by_path[entry.path] = None
            else:
                names = by_path.get(entry.path, frozenset())
                if names is not None:
                    by_path[entry.path] = names | {entry.measurement}
        return {
            nodeid: result.pruned(by_path[result.location])
            if result.location in by_path
            else result
            for nodeid, result in results.items()
        }


def summary_lines(
    end: RunEnd,
    results: Iterable[TestResult],
    *,
    moved: bool,
    problems: Iterable[str],
    shown: Callable[[Path], str],
) -> list[str]:
    """``flops: 12 tests passed, 1 failed, 2 written, 1 removed`` and the stale files.

    ``moved``: snapshots read from the layout before 0.2 were copied (``--flops-update``).
    """
    results = list(results)
    tally = dict.fromkeys(Outcome, 0)
    for result in results:
        tally[result.outcome] += 1
    tally[Outcome.REMOVED] += len(end.pruned)
    return messages.summary_lines(
        counts=[(outcome.value, tally[outcome]) for outcome in Outcome],
        stale=[(entry.shown(shown), entry.reason.value) for entry in end.kept],
        held_back=end.held_back,
        legacy=sum(result.legacy for result in results),
        moved=moved,
        flops_only=sorted(
            record.label
            for result in results
            for record in result.records
            if record.name in result.flops_only
        ),
        problems=[*end.problems, *problems],
    )


def write_exports(
    end: RunEnd,
    run: RunRecord,
    records: Iterable[MeasurementRecord],
    devices: set[str],
    *,
    settings: Settings,
    shown: Callable[[Path], str],
    saved: Callable[[Path], None],
) -> list[str]:
    """The ``--flops-report-json``, ``-md`` and ``-html`` files asked for; what went wrong."""
    if settings.report_json is None and settings.report_md is None and settings.report_html is None:
        return []
    from pytest_flops.reports.export import Export, RunMetadata
    from pytest_flops.reports.export import write_exports as write

    export = Export(
        records=tuple(records),
        metadata=RunMetadata.collect(devices).to_dict(),
        snapshots=evidence(run, stale=end.stale, shown=shown),
        gpu=settings.gpu,
    )
    return write(
        export,
        json_path=settings.report_json,
        markdown_path=settings.report_md,
        html_path=settings.report_html,
        saved=saved,
    )
