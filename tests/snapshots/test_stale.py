"""Stale snapshots are judged on positive evidence only: the run record, on real files."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from pytest_flops.snapshots.stale import CollectedFile, RunRecord
from pytest_flops.snapshots.store import legacy_snapshot_path, snapshot_path


def make(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    return path


@pytest.fixture
def module(tmp_path: Path) -> Path:
    return make(tmp_path / "tests" / "test_models.py")


def whole(
    *tests: str, measured: Iterable[str] = (), unmeasured: Iterable[str] = ()
) -> CollectedFile:
    return CollectedFile(
        walked=True,
        tests=set(tests),
        ran=set(tests),
        measured=set(measured),
        unmeasured=set(unmeasured),
    )


def record(module: Path, collected: CollectedFile, **fields: object) -> RunRecord:
    return RunRecord(files={module: collected}, **fields)  # type: ignore[arg-type]


def test_stale_snapshots_are_the_ones_no_collected_test_uses(module: Path) -> None:
    kept = [make(snapshot_path(module, name)) for name in ("test_a", "test_b")]
    old = make(snapshot_path(module, "test_old"))
    assert record(module, whole("test_a", "test_b")).stale_snapshots() == [old]
    assert all(path.exists() for path in kept)


def test_a_test_that_passed_without_measuring_leaves_its_snapshot_stale(module: Path) -> None:
    path = make(snapshot_path(module, "test_a"))
    assert record(module, whole("test_a", unmeasured={"test_a"})).stale_snapshots() == [path]
    # a repeat that measured keeps it
    collected = whole("test_a", unmeasured={"test_a"}, measured={"test_a"})
    assert record(module, collected).stale_snapshots() == []


@pytest.mark.parametrize(
    "collected",
    [
        CollectedFile(walked=True, tests={"test_a", "test_b"}, ran={"test_a"}),  # not all ran
        CollectedFile(walked=True, complete=False, tests={"test_a"}, ran={"test_a"}),  # skipped
        CollectedFile(walked=False, tests=set(), ran=set()),  # --lf's empty stand-in report
    ],
)
def test_files_that_did_not_run_whole_are_not_judged(
    module: Path, collected: CollectedFile
) -> None:
    make(snapshot_path(module, "test_old"))
    assert record(module, collected).stale_snapshots() == []


def test_nothing_is_stale_in_a_narrowed_run(module: Path) -> None:
    make(snapshot_path(module, "test_old"))
    assert record(module, whole("test_a"), narrowed=["-k"]).stale_snapshots() == []


def test_snapshots_of_a_deleted_test_file_are_stale_where_its_directory_was_covered(
    module: Path,
) -> None:
    tests = module.parent
    gone = make(snapshot_path(tests / "test_gone.py", "test_x"))
    gone_legacy = make(legacy_snapshot_path(tests / "test_older.py", "test_y"))
    ignored = make(snapshot_path(make(tests / "test_ignored.py"), "test_z"))  # exists: kept
    covered = record(module, whole(), directories={tests}, roots=(tests.parent,))
    assert covered.stale_snapshots() == sorted([gone, gone_legacy])
    assert ignored.exists()
    # the directory was not named on the command line, or was not collected
    assert record(module, whole(), directories={tests}).stale_snapshots() == []
    assert record(module, whole(), roots=(tests,)).stale_snapshots() == []


def test_the_old_layout_is_judged_like_the_new(module: Path) -> None:
    legacy_kept = make(legacy_snapshot_path(module, "test_a"))
    legacy_old = make(legacy_snapshot_path(module, "test_old"))
    # moved already: the new file supersedes the old one
    make(snapshot_path(module, "test_b"))
    legacy_moved = make(legacy_snapshot_path(module, "test_b"))
    stale = record(module, whole("test_a", "test_b")).stale_snapshots()
    assert stale == sorted([legacy_old, legacy_moved])
    assert legacy_kept.exists()


def test_records_merge_across_workers(module: Path) -> None:
    first = RunRecord(files={module: CollectedFile(tests={"test_a", "test_b"}, ran={"test_a"})})
    second = RunRecord(
        files={module: CollectedFile(walked=True, tests={"test_a", "test_b"}, ran={"test_b"})},
        narrowed=["an xdist worker crashed"],
    )
    first.merge(RunRecord.from_dict(second.to_dict()))
    assert first.files[module].ran_whole
    assert first.narrowed == ["an xdist worker crashed"]
