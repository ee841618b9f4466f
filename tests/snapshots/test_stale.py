"""Stale snapshots are judged on positive evidence only, each with its reason: the run
record, on real files."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from pytest_flops.snapshots.run_record import CollectedFile, CollectionRules, RunRecord
from pytest_flops.snapshots.stale import (
    SnapshotEvidence,
    StaleReason,
    StaleSnapshot,
    stale_snapshots,
)
from pytest_flops.snapshots.stale import evidence as evidence_of
from pytest_flops.snapshots.store import legacy_snapshot_path, snapshot_path
from tests.helpers import NET, flops_line

TRAIN = """
def test_a(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()
"""


def make(path: Path, test: str | None = None) -> Path:
    """A file at ``path``; a snapshot naming ``test`` when given (else unreadable as one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}" if test is None else json.dumps({"test": test}))
    return path


def snap(module: Path, test: str) -> Path:
    return make(snapshot_path(module, test), test)


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


def judged(run: RunRecord) -> list[tuple[Path, str | None, StaleReason]]:
    return [(entry.path, entry.measurement, entry.reason) for entry in stale_snapshots(run)]


def test_stale_snapshots_are_the_ones_no_collected_test_uses(module: Path) -> None:
    kept = [snap(module, name) for name in ("test_a", "test_b")]
    old = snap(module, "test_old")
    assert judged(record(module, whole("test_a", "test_b"))) == [(old, None, StaleReason.TEST_GONE)]
    assert all(path.exists() for path in kept)  # judging removes nothing


def test_each_stale_snapshot_says_why(module: Path) -> None:
    gone = snap(module, "test_gone")
    param = snap(module, "test_p[gpu]")  # test_p is still collected, with other ids
    stopped = snap(module, "test_quiet")
    unreadable = make(snapshot_path(module, "test_broken"))
    collected = whole("test_p[cpu]", "test_quiet", unmeasured={"test_quiet"})
    assert judged(record(module, collected)) == sorted(
        [
            (gone, None, StaleReason.TEST_GONE),
            (param, None, StaleReason.NOT_COLLECTED),
            (stopped, None, StaleReason.STOPPED_MEASURING),
            (unreadable, None, StaleReason.TEST_GONE),
        ]
    )


def test_a_test_that_passed_without_measuring_leaves_its_snapshot_stale(module: Path) -> None:
    path = snap(module, "test_a")
    assert judged(record(module, whole("test_a", unmeasured={"test_a"}))) == [
        (path, None, StaleReason.STOPPED_MEASURING)
    ]
    # a repeat that measured keeps it
    collected = whole("test_a", unmeasured={"test_a"}, measured={"test_a"})
    assert stale_snapshots(record(module, collected)) == []


def test_a_named_measurement_no_attempt_took_is_stale(module: Path) -> None:
    path = snap(module, "test_lm")
    collected = whole("test_lm", measured={"test_lm"})
    collected.dropped = {"test_lm": {"decode", "prefill"}}
    collected.taken = {"test_lm": {"prefill", "other"}}  # a repeat took prefill
    assert judged(record(module, collected)) == [(path, "decode", StaleReason.MEASUREMENT_GONE)]
    # evidence of the test itself, whether or not its file ran whole
    collected.ran = set()
    assert judged(record(module, collected)) == [(path, "decode", StaleReason.MEASUREMENT_GONE)]
    # but none in a narrowed run
    assert stale_snapshots(record(module, collected, narrowed=["-k"])) == []


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
    snap(module, "test_old")
    assert stale_snapshots(record(module, collected)) == []


def test_nothing_is_stale_in_a_narrowed_run(module: Path) -> None:
    snap(module, "test_old")
    assert stale_snapshots(record(module, whole("test_a"), narrowed=["-k"])) == []


@pytest.mark.parametrize(
    ("test", "rules"),
    [
        # written by a --doctest-modules run: a plain run cannot collect it
        ("tests.test_models", CollectionRules()),
        ("tests.test_models.helper", CollectionRules()),
        # written before -o python_functions=bench_*
        ("test_old", CollectionRules(python_functions=("bench_",))),
        ("test_old[1]", CollectionRules(python_functions=("bench_*",))),
        ("TestA::test_old", CollectionRules(python_functions=("bench_",))),
        # a class python_classes does not match: a TestCase under -p no:unittest (or
        # one deleted whole; kept, as it cannot be told apart)
        ("SizedCase::test_old", CollectionRules()),
        ("TestCase::check_old", CollectionRules()),  # not a test* method either
    ],
)
def test_a_test_this_run_could_not_collect_is_not_judged(
    module: Path, test: str, rules: CollectionRules
) -> None:
    snap(module, test)
    assert stale_snapshots(record(module, whole("bench_a"), rules=rules)) == []


@pytest.mark.parametrize(
    ("test", "rules"),
    [
        ("tests.test_models", CollectionRules(doctest_modules=True)),
        ("test_old", CollectionRules(python_functions=("bench_", "test"))),
        ("TestOld::test_x", CollectionRules()),
        # a TestCase class collected in this run: its test* methods, whatever the rules
        ("SizedCase::test_old", CollectionRules(python_functions=("bench_",))),
    ],
)
def test_a_test_this_run_could_collect_is_judged(
    module: Path, test: str, rules: CollectionRules
) -> None:
    path = snap(module, test)
    collected = whole("test_a", "SizedCase::test_a")
    collected.unittest_classes = {"SizedCase"}
    assert judged(record(module, collected, rules=rules)) == [(path, None, StaleReason.TEST_GONE)]


def test_snapshots_of_a_deleted_test_file_are_stale_where_its_directory_was_covered(
    module: Path,
) -> None:
    tests = module.parent
    gone = snap(tests / "test_gone.py", "test_x")
    gone_legacy = make(legacy_snapshot_path(tests / "test_older.py", "test_y"))
    ignored = snap(make(tests / "test_ignored.py"), "test_z")  # exists: kept
    covered = record(module, whole(), directories={tests}, roots=(tests.parent,))
    assert judged(covered) == sorted(
        [(gone, None, StaleReason.FILE_GONE), (gone_legacy, None, StaleReason.FILE_GONE)]
    )
    assert ignored.exists()
    # the directory was not named on the command line, or was not collected
    assert stale_snapshots(record(module, whole(), directories={tests})) == []
    assert stale_snapshots(record(module, whole(), roots=(tests,))) == []


def test_a_test_file_without_a_dot_is_not_taken_for_the_old_layout(module: Path) -> None:
    """``--doctest-glob=GUIDE``: ``__flops__/GUIDE/`` is GUIDE's, not a gone GUIDE.py's."""
    tests = module.parent
    guide = snap(make(tests / "GUIDE"), "GUIDE")
    run = record(module, whole(), directories={tests}, roots=(tests,))
    assert stale_snapshots(run) == []
    (tests / "GUIDE").unlink()  # gone, and neither GUIDE nor GUIDE.py exists: stale
    assert judged(run) == [(guide, None, StaleReason.FILE_GONE)]
    make(tests / "GUIDE.py")  # the old layout's folder of GUIDE.py
    assert stale_snapshots(run) == []


def test_the_old_layout_is_judged_like_the_new(module: Path) -> None:
    legacy_kept = make(legacy_snapshot_path(module, "test_a"), "test_a")
    legacy_old = make(legacy_snapshot_path(module, "test_old"), "test_old")
    # copied already: the new file supersedes the old one
    snap(module, "test_b")
    legacy_moved = make(legacy_snapshot_path(module, "test_b"), "test_b")
    assert judged(record(module, whole("test_a", "test_b"))) == sorted(
        [(legacy_old, None, StaleReason.TEST_GONE), (legacy_moved, None, StaleReason.MOVED)]
    )
    assert legacy_kept.exists()


def test_records_merge_across_workers(module: Path) -> None:
    first = RunRecord(files={module: CollectedFile(tests={"test_a", "test_b"}, ran={"test_a"})})
    first.files[module].taken = {"test_a": {"x"}}
    second = RunRecord(
        files={
            module: CollectedFile(
                walked=True,
                tests={"test_a", "test_b"},
                measuring={"test_b"},
                ran={"test_b"},
                taken={"test_a": {"y"}},
                dropped={"test_b": {"z"}},
            )
        },
        narrowed=["an xdist worker crashed"],
    )
    first.merge(RunRecord.from_dict(second.to_dict()))
    merged = first.files[module]
    assert merged.ran_whole
    assert (merged.measuring, merged.taken, merged.dropped) == (
        {"test_b"},
        {"test_a": {"x", "y"}},
        {"test_b": {"z"}},
    )
    assert first.narrowed == ["an xdist worker crashed"]


def test_the_evidence_lists_reasons_and_the_measuring_tests(module: Path) -> None:
    old = snap(module, "test_old")
    lm = snap(module, "test_lm")
    collected = whole("test_a", "test_lm", "test_plain", measured={"test_a", "test_lm"})
    collected.measuring = {"test_a", "test_lm", "test_late"}
    collected.dropped = {"test_lm": {"decode"}}
    run = record(module, collected)
    root = module.parent.parent
    evidence = evidence_of(
        run, stale=stale_snapshots(run), shown=lambda path: str(path.relative_to(root))
    )
    old_shown = f"tests/{old.relative_to(module.parent).as_posix()}"
    lm_shown = f"tests/{lm.relative_to(module.parent).as_posix()}"
    assert evidence.stale == (old_shown,)
    assert evidence.stale_measurements == (f"{lm_shown} [decode]",)
    assert evidence.reasons == {
        old_shown: "its test is gone from its file",
        f"{lm_shown} [decode]": StaleReason.MEASUREMENT_GONE.value,
    }
    # test_late was collected and did not run: a merge notices
    assert evidence.measuring_tests == tuple(
        f"tests/test_models.py::{name}" for name in ("test_a", "test_late", "test_lm")
    )
    assert evidence.ran == ("tests/test_models.py::test_a", "tests/test_models.py::test_lm")
    assert evidence.stale_entries() == [
        f"{lm_shown} [decode] ({StaleReason.MEASUREMENT_GONE.value})",
        f"{old_shown} (its test is gone from its file)",
    ]
    again = SnapshotEvidence.from_dict(json.loads(json.dumps(evidence.to_dict())), where="x")
    assert again == evidence


def test_an_export_before_the_reasons_reads_as_knowing_none() -> None:
    old = {"whole_files": [], "unclaimed": ["a"], "claimed": [], "stale": ["a"]}
    evidence = SnapshotEvidence.from_dict(old, where="x")
    assert (evidence.reasons, evidence.measuring_tests, evidence.ran) == ({}, (), ())
    assert evidence.stale_entries() == ["a"]


def test_a_stale_entry_is_shown_with_its_measurement() -> None:
    entry = StaleSnapshot(
        path=Path("/r/t/__flops__/a.py/x.flops.json"),
        measurement="decode",
        reason=StaleReason.MEASUREMENT_GONE,
    )
    assert (
        entry.shown(lambda p: str(p.relative_to("/r"))) == "t/__flops__/a.py/x.flops.json [decode]"
    )


def test_prune_keeps_the_old_layout_folder_of_a_test_file_with_a_dot_in_its_stem(
    pytester: pytest.Pytester,
) -> None:
    """``test_v1.2.py`` kept its snapshots in ``__flops__/test_v1.2/`` before 0.2: that
    folder is the file's, not that of a gone file named ``test_v1.2``."""
    # a module name with a dot imports only in importlib mode
    pytester.makeini("[pytest]\naddopts = --import-mode=importlib\n")
    (pytester.path / "test_v1.2.py").write_text(NET + TRAIN)
    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    folder = pytester.path / "__flops__"
    (folder / "test_v1.2.py").rename(folder / "test_v1.2")
    baseline = folder / "test_v1.2" / "test_a.flops.json"
    written = baseline.read_bytes()
    result = pytester.runpytest("--flops-prune")
    result.assert_outcomes(passed=1)
    assert flops_line(result) == "flops: 1 test passed, 0 failed, 0 written, 0 removed"
    assert baseline.read_bytes() == written
    # once the file is gone, its old folder is stale as any other's
    (pytester.path / "test_v1.2.py").unlink()
    pytester.runpytest("--flops-prune").stdout.fnmatch_lines(["flops: * 1 removed"])
    assert not baseline.exists()


def test_prune_keeps_the_folder_a_dotless_doctest_file_shares_with_a_python_file(
    pytester: pytest.Pytester,
) -> None:
    """A doctest text file ``test_x`` keeps its snapshots in ``__flops__/test_x/``,
    the folder ``test_x.py`` used before 0.2: neither file's run proves a snapshot in
    it stale, so prune keeps them (it removed the doctest's, a live baseline)."""
    pytester.makeini("[pytest]\naddopts = --doctest-glob=test_x\n")
    (pytester.path / "test_x").write_text(
        ">>> import torch\n"
        ">>> flops = getfixture('flops')\n"
        ">>> with flops():\n"
        "...     _ = torch.ones(2, 3) @ torch.ones(3, 4)\n"
    )
    (pytester.path / "test_x.py").write_text(NET + TRAIN)
    pytester.runpytest("--flops-update").assert_outcomes(passed=2)
    doctest = pytester.path / "__flops__" / "test_x" / "test_x.flops.json"
    written = doctest.read_bytes()
    result = pytester.runpytest("--flops-prune")
    result.assert_outcomes(passed=2)
    assert flops_line(result) == "flops: 2 tests passed, 0 failed, 0 written, 0 removed"
    assert doctest.read_bytes() == written
