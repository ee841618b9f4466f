"""Snapshot files: names, format, (de)serialization errors and atomic writes."""

from pathlib import Path

import pytest

from pytest_flops import Measurement, ModuleFlops, SnapshotFormatError
from pytest_flops.snapshots.format import FORMAT_VERSION, FlopsSnapshot
from pytest_flops.snapshots.store import (
    SnapshotStore,
    legacy_snapshot_path,
    snapshot_path,
    snapshot_stem,
)

LINEAR = Measurement(
    modules={
        # Linear(9, 10) on a [4, 9] input: 2*4*9*10 = 720 forward, 720 for the weight grad
        "Global": ModuleFlops(forward=720, backward=720, by_op={"aten.mm": 720, "aten.addmm": 720}),
        "Net.fc": ModuleFlops(forward=720, backward=720, by_op={"aten.mm": 720, "aten.addmm": 720}),
    },
)


def snapshot_of(**measurements: Measurement) -> FlopsSnapshot:
    return FlopsSnapshot(test="test_model", depth=3, measurements=measurements)


@pytest.mark.parametrize(
    ("test_name", "stem"),
    [
        ("test_plain", "test_plain"),
        ("test_model.test_forward", "test_model.test_forward"),
        ("test_p[cpu-0.5-x=1]", "test_p[cpu-0.5-x=1]"),
    ],
)
def test_safe_names_are_kept(test_name: str, stem: str) -> None:
    assert snapshot_stem(test_name) == stem


def test_unsafe_names_get_a_hash_and_never_collide() -> None:
    names = [
        "test_p[a/b]",
        "test_p[a_b]",
        "test_p[a b]",
        "test_p[a\\b]",
        "test_p[é]",
        "test_p[a]b]",
        "test_p[" + "x" * 300 + "]",
        "test_p[" + "x" * 301 + "]",
    ]
    stems = [snapshot_stem(name) for name in names]
    assert len(set(stems)) == len(names)
    assert stems[0].startswith("test_p[a_b]~")
    assert stems[1] == "test_p[a_b]"  # safe: no hash
    assert all(len(stem) < 140 for stem in stems)
    assert all(set(stem) <= set("abcdefghijklmnopqrstuvwxyz0123456789_.,=+-[]~x") for stem in stems)
    # Stable across runs: the hash depends on the name only.
    assert snapshot_stem("test_p[a/b]") == stems[0]


def test_names_that_differ_only_in_case_never_share_a_file_on_any_file_system() -> None:
    # macOS and Windows file systems ignore case: test_p[A] and test_p[a] would be one file
    names = ["test_p[A]", "test_p[a]", "TestModel::test_x", "testmodel::test_x", "Test_p[a]"]
    stems = [snapshot_stem(name) for name in names]
    assert len({stem.lower() for stem in stems}) == len(names)
    assert stems[1] == "test_p[a]"  # all lowercase and safe: readable, no hash
    assert stems[0].startswith("test_p[A]~")
    assert stems[2].startswith("TestModel.test_x~")


def test_the_layout_before_0_2_named_directories_after_the_stem(tmp_path: Path) -> None:
    module = tmp_path / "tests" / "test_models.py"
    assert legacy_snapshot_path(module, "TestA::test_b") == (
        tmp_path / "tests" / "__flops__" / "test_models" / "TestA.test_b.flops.json"
    )


def test_location_is_next_to_the_test_file_outside_syrupys_directory(tmp_path: Path) -> None:
    # named after the whole file name: test_models.txt (a doctest file) gets its own
    path = snapshot_path(tmp_path / "tests" / "test_models.py", "test_a")
    assert path == tmp_path / "tests" / "__flops__" / "test_models.py" / "test_a.flops.json"
    assert snapshot_path(tmp_path / "tests" / "test_models.txt", "test_a") != path


def test_text_is_deterministic_and_sorted() -> None:
    first = snapshot_of(prefill=LINEAR, default=LINEAR).to_text()
    second = snapshot_of(default=LINEAR, prefill=LINEAR).to_text()
    assert first == second
    assert first.endswith("}\n")
    assert first.index('"default"') < first.index('"prefill"')
    assert first.index('"aten.addmm"') < first.index('"aten.mm"')
    assert first.index('"Global"') < first.index('"Net.fc"')
    assert f'"version": {FORMAT_VERSION},' in first


def test_text_round_trips_exact_integers() -> None:
    big = Measurement(modules={"Global": ModuleFlops(forward=2**70, by_op={"aten.mm": 2**70})})
    snapshot = snapshot_of(default=big)
    assert FlopsSnapshot.from_text(snapshot.to_text(), where="f") == snapshot


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"version": 1, "test": "t", "dep', "not valid JSON"),
        ("[]", "expected an object, got list"),
        ('{"version": 5, "test": "t", "depth": 3, "measurements": {}}', "version 5 is newer"),
        ('{"version": "2", "test": "t", "depth": 3, "measurements": {}}', "version 4, got '2'"),
        ('{"version": 0, "test": "t", "depth": 3, "measurements": {}}', "version 4, got 0"),
        ('{"version": 1, "test": "t", "measurements": {}}', "missing key(s) depth"),
        ('{"version": 1, "test": 5, "depth": 3, "measurements": {}}', "test: expected a string"),
        ('{"version": 1, "test": "t", "depth": -1, "measurements": {}}', "depth: expected a non"),
        ('{"version": 1, "test": "t", "depth": 3, "measurements": []}', "measurements: expected"),
        (
            '{"version": 1, "test": "t", "depth": 3, "measurements": {"default": {"total": 1}}}',
            "measurements['default']: missing key(s)",
        ),
    ],
)
def test_unreadable_text_names_the_file_and_the_problem(text: str, problem: str) -> None:
    with pytest.raises(SnapshotFormatError) as error:
        FlopsSnapshot.from_text(text, where="tests/__flops__/test_m.py/test_a.flops.json")
    assert str(error.value).startswith("tests/__flops__/test_m.py/test_a.flops.json: ")
    assert problem in str(error.value)


def test_extension_writes_atomically_and_reads_back(tmp_path: Path) -> None:
    store = SnapshotStore()
    location = tmp_path / "__flops__" / "test_m.py" / "test_a.flops.json"
    assert store.read(location, where="f") is None
    store.write(location, snapshot_of(default=LINEAR))
    store.write(location, snapshot_of(default=LINEAR, decode=LINEAR))
    assert store.read(location, where="f") == snapshot_of(default=LINEAR, decode=LINEAR)
    assert [p.name for p in location.parent.iterdir()] == ["test_a.flops.json"]  # no temp files
    assert location.read_bytes() == snapshot_of(default=LINEAR, decode=LINEAR).to_text().encode()


def test_extension_reports_undecodable_files(tmp_path: Path) -> None:
    location = tmp_path / "test_a.flops.json"
    location.write_bytes(b"\xff\xfe{")
    with pytest.raises(SnapshotFormatError, match=r"test_a\.flops\.json: cannot read the file"):
        SnapshotStore().read(location, where=str(location))


def test_extension_removes_the_file_and_empty_directories(tmp_path: Path) -> None:
    store = SnapshotStore()
    kept = tmp_path / "__flops__" / "test_m.py" / "test_a.flops.json"
    gone = tmp_path / "__flops__" / "test_m.py" / "test_b.flops.json"
    for location in (kept, gone):
        store.write(location, snapshot_of(default=LINEAR))
    store.remove(gone)
    assert kept.exists() and not gone.exists()
    store.remove(kept)
    assert not (tmp_path / "__flops__").exists()
