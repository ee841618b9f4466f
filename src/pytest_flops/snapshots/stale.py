"""What this run collected and ran, and so which snapshots are stale.

A snapshot is stale (reported, and removed by ``--flops-update``) only on
positive evidence that its test no longer exists:

* its test file was collected whole in this run, every test of it ran, and no
  test of it maps to the snapshot (or the test passed without measuring); or
* its test file is gone, and the run collected the directory it was in, named
  on the command line.

Either way, only when nothing narrowed the run: no ``-k``, ``-m``,
``--deselect``, ``--lf``, ``--sw``, ``file::test`` or ``--pyargs`` ids, no
tests deselected by a plugin, no ``-x``/``--maxfail`` stop, collection error,
interruption or crashed xdist worker. When in doubt, a snapshot is kept, and
the summary says why none was removed.

A :class:`RunRecord` is plain data: xdist workers send theirs to the
controller, which merges them and alone judges. Its :class:`SnapshotEvidence`
goes into the JSON export, so that ``python -m pytest_flops merge`` can judge
across CI shards, none of which ran the whole suite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_flops.snapshots.store import (
    SNAPSHOT_DIRNAME,
    legacy_snapshot_dir,
    legacy_snapshot_path,
    snapshot_dir,
    snapshot_files,
    snapshot_path,
)
from pytest_flops.validation import SnapshotFormatError, expect_mapping, expect_string


@dataclass(kw_only=True)
class CollectedFile:
    """What happened to the tests of one test file."""

    walked: bool = False  # its collector really collected it (not a stand-in report)
    complete: bool = True  # no collector in it failed or was skipped
    tests: set[str] = field(default_factory=set)  # snapshot names collected, deselected too
    ran: set[str] = field(default_factory=set)  # tests that ran through their teardown
    measured: set[str] = field(default_factory=set)  # tests that measured in some attempt
    unmeasured: set[str] = field(default_factory=set)  # tests that passed without measuring

    @property
    def whole(self) -> bool:
        """Every test of the file was collected (deselected ones too)."""
        return self.walked and self.complete

    @property
    def ran_whole(self) -> bool:
        return self.whole and self.tests <= self.ran

    @property
    def wanted(self) -> set[str]:
        """The tests whose snapshots this file still uses."""
        return self.tests - (self.unmeasured - self.measured)

    def merge(self, other: CollectedFile) -> None:
        self.walked |= other.walked
        self.complete &= other.complete
        self.tests |= other.tests
        self.ran |= other.ran
        self.measured |= other.measured
        self.unmeasured |= other.unmeasured

    def to_dict(self) -> dict[str, Any]:
        return {
            "walked": self.walked,
            "complete": self.complete,
            "tests": sorted(self.tests),
            "ran": sorted(self.ran),
            "measured": sorted(self.measured),
            "unmeasured": sorted(self.unmeasured),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CollectedFile:
        return cls(
            walked=bool(data["walked"]),
            complete=bool(data["complete"]),
            tests=set(data["tests"]),
            ran=set(data["ran"]),
            measured=set(data["measured"]),
            unmeasured=set(data["unmeasured"]),
        )


@dataclass(kw_only=True)
class RunRecord:
    """The evidence of one run (or, merged, of every xdist worker's share of it)."""

    files: dict[Path, CollectedFile] = field(default_factory=dict)
    directories: set[Path] = field(default_factory=set)  # whose collector passed
    roots: tuple[Path, ...] = ()  # directories named whole on the command line
    narrowed: list[str] = field(default_factory=list)  # why nothing may be removed

    def file(self, path: Path) -> CollectedFile:
        return self.files.setdefault(path, CollectedFile())

    def narrow(self, reason: str) -> None:
        if reason not in self.narrowed:
            self.narrowed.append(reason)

    def merge(self, other: RunRecord) -> None:
        for path, collected in other.files.items():
            self.file(path).merge(collected)
        self.directories |= other.directories
        for reason in other.narrowed:
            self.narrow(reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": {str(path): collected.to_dict() for path, collected in self.files.items()},
            "directories": sorted(map(str, self.directories)),
            "narrowed": list(self.narrowed),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        return cls(
            files={Path(path): CollectedFile.from_dict(raw) for path, raw in data["files"].items()},
            directories={Path(path) for path in data["directories"]},
            narrowed=list(data["narrowed"]),
        )

    # -- the judgement ------------------------------------------------------------

    def stale_snapshots(self) -> list[Path]:
        """Snapshot files that no test will use again; none while the run was narrowed."""
        if self.narrowed:
            return []
        stale: set[Path] = set()
        for path, collected in self.files.items():
            if collected.ran_whole:
                stale |= _unwanted(path, collected.wanted)
        for directory in self._covered_directories():
            stale |= set(_orphans(directory, known=self.files.keys()))
        return sorted(stale)

    def evidence(self, *, stale: Iterable[Path], shown: Callable[[Path], str]) -> SnapshotEvidence:
        """What this run knows of the snapshot files, whether or not it was narrowed.

        A file's snapshots are unclaimed when it was collected whole and no test
        of it still uses them, and so are the snapshots of deleted test files in
        the directories this run collected. ``shown`` makes paths relative to
        the root directory, the same on every CI machine.
        """
        unclaimed: set[Path] = set()
        claimed: set[Path] = set()
        for path, collected in self.files.items():
            if collected.whole:
                unclaimed |= _unwanted(path, collected.wanted)
            claimed |= _used_by(path, collected.measured)
        for directory in self._covered_directories():
            unclaimed |= set(_orphans(directory, known=self.files.keys()))

        def listed(paths: Iterable[Path]) -> tuple[str, ...]:
            return tuple(sorted(Path(shown(path)).as_posix() for path in paths))

        return SnapshotEvidence(
            whole_files=listed(path for path, collected in self.files.items() if collected.whole),
            unclaimed=listed(unclaimed - claimed),
            claimed=listed(claimed),
            stale=listed(stale),
        )

    def _covered_directories(self) -> Iterable[Path]:
        for directory in self.directories:
            if any(root == directory or root in directory.parents for root in self.roots):
                yield directory


@dataclass(frozen=True, kw_only=True)
class SnapshotEvidence:
    """The ``snapshots`` section of a JSON export: paths relative to the root directory.

    ``stale`` is what the run itself judged (nothing, when it was narrowed);
    :meth:`merged` judges from the other three across shards.
    """

    whole_files: tuple[str, ...] = ()  # test files collected whole
    unclaimed: tuple[str, ...] = ()  # snapshots no test of the run uses
    claimed: tuple[str, ...] = ()  # snapshots of the tests the run measured
    stale: tuple[str, ...] = ()

    @classmethod
    def merged(cls, shards: Sequence[SnapshotEvidence]) -> SnapshotEvidence:
        """Stale: unclaimed in some shard that collected its file whole, claimed by none.

        A shard that deselected a test still collected it, and so never calls
        its snapshot unclaimed; only a shard that ran it and saw it measure
        nothing does.
        """
        claimed = {path for shard in shards for path in shard.claimed}
        unclaimed = {path for shard in shards for path in shard.unclaimed} - claimed
        return cls(
            whole_files=tuple(sorted({path for shard in shards for path in shard.whole_files})),
            unclaimed=tuple(sorted(unclaimed)),
            claimed=tuple(sorted(claimed)),
            stale=tuple(sorted(unclaimed)),
        )

    def to_dict(self) -> dict[str, list[str]]:
        return {
            "whole_files": list(self.whole_files),
            "unclaimed": list(self.unclaimed),
            "claimed": list(self.claimed),
            "stale": list(self.stale),
        }

    @classmethod
    def from_dict(cls, data: object, *, where: str) -> SnapshotEvidence:
        obj = expect_mapping(data, where)
        lists: dict[str, tuple[str, ...]] = {}
        for key in ("whole_files", "unclaimed", "claimed", "stale"):
            value = obj.get(key)
            if not isinstance(value, list):
                raise SnapshotFormatError(f"{where}.{key}: expected a list of paths")
            lists[key] = tuple(expect_string(path, f"{where}.{key}") for path in value)
        return cls(**lists)


def _used_by(test_file: Path, names: Iterable[str]) -> set[Path]:
    """The snapshot files that the tests ``names`` of ``test_file`` read.

    A test with no file in the current layout reads the one of the layout
    before 0.2, if there is one.
    """
    used = set()
    for name in names:
        current = snapshot_path(test_file, name)
        used.add(current)
        if test_file.suffix == ".py" and not current.exists():
            used.add(legacy_snapshot_path(test_file, name))
    return used


def _unwanted(test_file: Path, wanted: set[str]) -> set[Path]:
    """The snapshot files of ``test_file`` that none of ``wanted`` reads."""
    existing = set(snapshot_files(snapshot_dir(test_file)))
    if test_file.suffix == ".py":
        existing |= set(snapshot_files(legacy_snapshot_dir(test_file)))
    return existing - _used_by(test_file, wanted)


def _orphans(directory: Path, *, known: Iterable[Path]) -> Iterable[Path]:
    """Snapshot files in ``directory/__flops__/`` whose test file no longer exists."""
    root = directory / SNAPSHOT_DIRNAME
    if not root.is_dir():
        return
    known = set(known)
    for folder in sorted(root.iterdir()):
        if not folder.is_dir():
            continue
        # current layout: named after the test file; before 0.2: after its stem
        owner = directory / (folder.name if "." in folder.name else f"{folder.name}.py")
        if owner not in known and not owner.exists():
            yield from snapshot_files(folder)
