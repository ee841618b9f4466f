"""Which snapshots are stale, and why, judged from what a run collected and ran.

A snapshot is stale (reported every run, removed only by ``--flops-prune``)
on positive evidence only, and each comes with its reason
(:class:`StaleReason`):

* its test file is gone, and the run collected the directory it was in,
  named on the command line;
* its test file was collected whole in this run and every test of it ran,
  and its test is gone from the file, its id was not collected, or its test
  passed without measuring (its call ran: ``--setup-only`` runs none);
* its test ran whole and passed without taking one of its named
  measurements (no subtest of it was skipped): that measurement is stale.

Either way, only when nothing narrowed the run: no ``-k``, ``-m``,
``--deselect``, ``--lf``, ``--sw``, ``file::test`` or ``--pyargs`` ids, no
tests deselected by a plugin, no ``-x``/``--maxfail`` stop, collection error,
interruption or crashed xdist worker. A test this run could not have
collected (a doctest without ``--doctest-modules``, a function that
``python_functions`` does not match, a class or function pytest could not
collect) is never called gone. When in doubt, a snapshot is kept, and the
summary says why none was judged.

The judgement reads a :class:`~pytest_flops.snapshots.run_record.RunRecord`
(xdist workers send theirs to the controller, which merges them and alone
judges). Its :class:`SnapshotEvidence` goes into the JSON export, so that
``python -m pytest_flops merge`` can judge across CI shards, none of which
ran the whole suite, and notice a shard that is missing.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pytest_flops.snapshots.run_record import CollectedFile, RunRecord
from pytest_flops.snapshots.store import (
    FILE_SUFFIX,
    SNAPSHOT_DIRNAME,
    doctest_name_in,
    has_legacy_dir,
    legacy_snapshot_dir,
    legacy_snapshot_path,
    snapshot_dir,
    snapshot_files,
    snapshot_path,
    stored_test_name,
)
from pytest_flops.validation import (
    SnapshotFormatError,
    expect_mapping,
    expect_string,
)

STALE_SENTENCE = (
    "Stale snapshots, kept (their tests no longer exist or no longer measure; "
    "`pytest --flops-prune` on a run that covers their files removes them)"
)
"""Said once, here: the summary, the Markdown export and ``merge`` all print it."""


class StaleReason(StrEnum):
    """Why a snapshot (or one named measurement in it) is stale."""

    FILE_GONE = "its test file is gone"
    TEST_GONE = "its test is gone from its file"
    NOT_COLLECTED = "its id was not collected"
    STOPPED_MEASURING = "its test passed without measuring"
    MEASUREMENT_GONE = "its test ran whole and passed without taking this measurement"
    MOVED = "a copy in the layout before 0.2 of a snapshot already moved"


@dataclass(frozen=True, kw_only=True, order=True)
class StaleSnapshot:
    """A stale snapshot file, or one stale named measurement in a file."""

    path: Path
    measurement: str | None = None  # a named measurement no longer taken; None: the file
    reason: StaleReason = field(compare=False)

    def shown(self, shown_path: Callable[[Path], str]) -> str:
        """``path`` or ``path [name]``, as the summary and the exports list it."""
        where = Path(shown_path(self.path)).as_posix()
        return where if self.measurement is None else f"{where} [{self.measurement}]"


def stale_snapshots(run: RunRecord) -> list[StaleSnapshot]:
    """Snapshot files (and named measurements) that no test will use again, with why;
    none while the run was narrowed."""
    if run.narrowed:
        return []
    stale: set[StaleSnapshot] = set()
    for path, collected in run.files.items():
        if collected.ran_whole:
            stale |= _unwanted(run, path, collected)
        for test in sorted(collected.dropped):
            stale |= {
                StaleSnapshot(
                    path=_read_by(path, test),
                    measurement=name,
                    reason=StaleReason.MEASUREMENT_GONE,
                )
                for name in collected.stale_measurements(test)
            }
    stale |= _orphans_of(run)
    whole_files = {entry.path for entry in stale if entry.measurement is None}
    # a file that goes whole takes its named measurements with it
    return sorted(
        entry for entry in stale if entry.measurement is None or entry.path not in whole_files
    )


def evidence(
    run: RunRecord, *, stale: Iterable[StaleSnapshot], shown: Callable[[Path], str]
) -> SnapshotEvidence:
    """What this run knows of the snapshot files, whether or not it was narrowed.

    A file's snapshots are unclaimed when it was collected whole and no test
    of it still uses them, and so are the snapshots of deleted test files in
    the directories this run collected. ``shown`` makes paths relative to
    the root directory, the same on every CI machine.
    """
    unclaimed: set[StaleSnapshot] = set()
    claimed: set[Path] = set()
    for path, collected in run.files.items():
        if collected.whole:
            unclaimed |= _unwanted(run, path, collected)
        claimed |= _used_by(path, collected.measured)
    unclaimed |= _orphans_of(run)
    unclaimed = {entry for entry in unclaimed if entry.path not in claimed}
    stale = list(stale)

    def listed(paths: Iterable[Path]) -> tuple[str, ...]:
        return tuple(sorted({Path(shown(path)).as_posix() for path in paths}))

    def tests(pick: Callable[[CollectedFile], set[str]]) -> tuple[str, ...]:
        return tuple(
            sorted(
                f"{Path(shown(path)).as_posix()}::{test}"
                for path, collected in run.files.items()
                for test in pick(collected)
            )
        )

    return SnapshotEvidence(
        whole_files=listed(path for path, collected in run.files.items() if collected.whole),
        unclaimed=listed(entry.path for entry in unclaimed),
        claimed=listed(claimed),
        stale=listed(entry.path for entry in stale if entry.measurement is None),
        reasons={entry.shown(shown): entry.reason.value for entry in (*unclaimed, *stale)},
        stale_measurements=tuple(
            sorted(entry.shown(shown) for entry in stale if entry.measurement is not None)
        ),
        measuring_tests=tests(lambda collected: collected.measuring),
        ran=tests(lambda collected: collected.ran & collected.measuring),
    )


def _unwanted(run: RunRecord, test_file: Path, collected: CollectedFile) -> set[StaleSnapshot]:
    """The snapshot files of ``test_file`` that no test of it still reads, with why."""
    folders = [snapshot_dir(test_file)]
    if has_legacy_dir(test_file):
        folders.append(legacy_snapshot_dir(test_file))
    # a folder that two files may keep snapshots in proves nothing of whose they are
    existing = {
        path for folder in folders if not _shared(folder) for path in snapshot_files(folder)
    }
    collected_heads = {test.partition("[")[0] for test in collected.tests}
    unwanted = set()
    for path in existing - _used_by(test_file, collected.wanted):
        test = stored_test_name(path) or _name_from_stem(path)
        # a doctest named under another import mode: its baseline, this run's name of it
        renamed = doctest_name_in(test_file, test, collected.tests)
        if renamed in collected.wanted and path.parent == snapshot_dir(test_file):
            continue
        test = renamed or test
        if collected.hidden(test) or not run.rules.could_collect(
            test_file, test, unittest_classes=collected.unittest_classes
        ):
            continue  # this run could not have collected it: no evidence either way
        elif test in collected.unmeasured and test not in collected.measured:
            reason = StaleReason.STOPPED_MEASURING
        elif (
            test in collected.tests
            and has_legacy_dir(test_file)
            and path.parent == legacy_snapshot_dir(test_file)
        ):
            reason = StaleReason.MOVED
        elif test.partition("[")[0] in collected_heads:
            reason = StaleReason.NOT_COLLECTED
        else:
            reason = StaleReason.TEST_GONE
        unwanted.add(StaleSnapshot(path=path, reason=reason))
    return unwanted


def _shared(folder: Path) -> bool:
    """``__flops__/X/`` is the folder of a file ``X`` (a doctest text file named without
    a dot) and the folder before 0.2 of every ``X.<suffix>`` (``X.py``, ``X.txt``): it
    is shared when two of them exist."""
    return sum(path.is_file() for path in _owners(folder.parent.parent, folder.name)) > 1


def _owners(directory: Path, folder: str) -> set[Path]:
    """The files whose snapshots ``directory/__flops__/<folder>/`` may hold: the file
    named ``folder``, and (the layout before 0.2) each file whose stem it is."""
    candidates = {directory / folder, *directory.glob(f"{glob.escape(folder)}.*")}
    return {path for path in candidates if path.name == folder or path.stem == folder}


def _orphans_of(run: RunRecord) -> set[StaleSnapshot]:
    """Snapshots of deleted test files, in directories named whole and collected."""
    orphans: set[StaleSnapshot] = set()
    for directory in run.directories:
        if any(root == directory or root in directory.parents for root in run.roots):
            orphans |= {
                StaleSnapshot(path=path, reason=StaleReason.FILE_GONE)
                for path in _orphans(directory, known=run.files.keys())
            }
    return orphans


@dataclass(frozen=True, kw_only=True)
class SnapshotEvidence:
    """The ``snapshots`` section of a JSON export: paths relative to the root directory.

    ``stale`` and ``stale_measurements`` are what the run itself judged
    (nothing, when it was narrowed); :meth:`merged` judges from the rest across
    shards. ``measuring_tests`` are the tests using a FLOP feature that the run
    collected, deselected ones included (pytest-split deselects the other
    shards' tests), as ``path::name``; ``ran`` those of them that ran here.
    """

    whole_files: tuple[str, ...] = ()  # test files collected whole
    unclaimed: tuple[str, ...] = ()  # snapshots no test of the run uses
    claimed: tuple[str, ...] = ()  # snapshots of the tests the run measured
    stale: tuple[str, ...] = ()
    reasons: Mapping[str, str] = field(default_factory=dict)  # why each is unclaimed or stale
    stale_measurements: tuple[str, ...] = ()  # "path [name]"
    measuring_tests: tuple[str, ...] = ()
    ran: tuple[str, ...] = ()

    @classmethod
    def merged(cls, shards: Sequence[SnapshotEvidence]) -> SnapshotEvidence:
        """Stale: unclaimed in some shard that collected its file whole, claimed by none.

        A shard that deselected a test still collected it, and so never calls
        its snapshot unclaimed; only a shard that ran it and saw it measure
        nothing does. Each test runs in one shard, so the stale measurements
        are every shard's together.
        """
        claimed = {path for shard in shards for path in shard.claimed}
        unclaimed = {path for shard in shards for path in shard.unclaimed} - claimed
        stale_measurements = {entry for shard in shards for entry in shard.stale_measurements}
        reasons = {path: why for shard in shards for path, why in shard.reasons.items()}
        return cls(
            whole_files=tuple(sorted({path for shard in shards for path in shard.whole_files})),
            unclaimed=tuple(sorted(unclaimed)),
            claimed=tuple(sorted(claimed)),
            stale=tuple(sorted(unclaimed)),
            reasons={
                entry: reasons[entry]
                for entry in sorted(unclaimed | stale_measurements)
                if entry in reasons
            },
            stale_measurements=tuple(sorted(stale_measurements)),
            measuring_tests=tuple(sorted({t for shard in shards for t in shard.measuring_tests})),
            ran=tuple(sorted({test for shard in shards for test in shard.ran})),
        )

    def stale_entries(self) -> list[str]:
        """Every stale snapshot and measurement with its reason: ``path (reason)``."""
        return [
            f"{entry} ({self.reasons[entry]})" if entry in self.reasons else entry
            for entry in sorted((*self.stale, *self.stale_measurements))
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "whole_files": list(self.whole_files),
            "unclaimed": list(self.unclaimed),
            "claimed": list(self.claimed),
            "stale": list(self.stale),
            "reasons": dict(sorted(self.reasons.items())),
            "stale_measurements": list(self.stale_measurements),
            "measuring_tests": list(self.measuring_tests),
            "ran": list(self.ran),
        }

    @classmethod
    def from_dict(cls, data: object, *, where: str) -> SnapshotEvidence:
        """Exports before 0.3 lack the keys after ``stale``: they read as empty."""
        obj = expect_mapping(data, where)
        lists: dict[str, tuple[str, ...]] = {}
        for key in ("whole_files", "unclaimed", "claimed", "stale"):
            lists[key] = _paths(obj.get(key), f"{where}.{key}")
        for key in ("stale_measurements", "measuring_tests", "ran"):
            lists[key] = _paths(obj.get(key, []), f"{where}.{key}")
        reasons = expect_mapping(obj.get("reasons", {}), f"{where}.reasons")
        return cls(
            **lists,
            reasons={
                path: expect_string(why, f"{where}.reasons[{path!r}]")
                for path, why in reasons.items()
            },
        )


def _paths(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SnapshotFormatError(f"{where}: expected a list of paths")
    return tuple(expect_string(path, where) for path in value)


def in_use(run: RunRecord) -> dict[Path, list[Path]]:
    """The snapshot files the run's tests still read, by their real paths: more than one
    path where snapshots share a file through symbolic links."""
    readers: dict[Path, list[Path]] = {}
    for test_file, collected in run.files.items():
        for path in _used_by(test_file, collected.wanted):
            if path.exists():
                readers.setdefault(path.resolve(), []).append(path)
    return readers


def _name_from_stem(path: Path) -> str:
    """The test name an unreadable snapshot's file name stands for, as near as it can
    be told (``Class.test`` was ``Class::test``; a hashed name keeps its readable part)."""
    stem = path.name.removesuffix(FILE_SUFFIX).partition("~")[0]
    head, bracket, params = stem.partition("[")
    return head.replace(".", "::") + bracket + params


def _read_by(test_file: Path, name: str) -> Path:
    """The snapshot file that the test ``name`` reads: in the layout before 0.2 when the
    current one has none."""
    current = snapshot_path(test_file, name)
    if current.exists() or not has_legacy_dir(test_file):
        return current
    return legacy_snapshot_path(test_file, name)


def _used_by(test_file: Path, names: Iterable[str]) -> set[Path]:
    """The snapshot files that the tests ``names`` of ``test_file`` read.

    A test with no file in the current layout reads the one of the layout
    before 0.2, if there is one.
    """
    return {snapshot_path(test_file, name) for name in names} | {
        _read_by(test_file, name) for name in names
    }


def _orphans(directory: Path, *, known: Iterable[Path]) -> Iterable[Path]:
    """Snapshot files in ``directory/__flops__/`` whose test file no longer exists.

    A folder is named after its test file (``test_a.py``, ``GUIDE``), or, before
    0.2, after its stem (``test_v1.2`` for ``test_v1.2.py``, ``test_guide`` for
    ``test_guide.txt``): it belongs to whichever of them exists.
    """
    root = directory / SNAPSHOT_DIRNAME
    if not root.is_dir():
        return
    known = set(known)
    for folder in sorted(root.iterdir()):
        if not folder.is_dir():
            continue
        if not any(owner in known or owner.exists() for owner in _owners(directory, folder.name)):
            yield from snapshot_files(folder)
