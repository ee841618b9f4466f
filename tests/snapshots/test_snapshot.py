"""Snapshot files: names, format, (de)serialization errors and atomic writes."""

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_flops import Measurement, ModuleFlops, SnapshotFormatError, Traffic, World
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


FC = ModuleFlops(
    forward=720,
    backward=720,
    by_op={"aten.mm": 720, "aten.addmm": 720},
    # the Linear above in bf16: x (72 B), W (180 B), b (20 B) read, y (80 B) written;
    # its weight gradient reads dy (80 B) and x (72 B) and writes dW (180 B)
    bytes_forward=352,
    bytes_backward=332,
    bytes_by_op={"aten.addmm": 352, "aten.mm": 332},
    flops_by_precision={"aten.addmm": {"bf16": 720}, "aten.mm": {"bf16": 720}},
    communication={"_c10d_functional.all_reduce": Traffic(calls=1, bytes=80)},
)
SHARDED = Measurement(modules={"Global": FC, "Net.fc": FC}, world=World(rank=0, size=2))


def edited(change: Callable[[dict[str, Any]], object]) -> str:
    """The snapshot of ``SHARDED`` with one hand edit."""
    document = json.loads(snapshot_of(default=SHARDED).to_text())
    change(document)
    return json.dumps(document)


def row(document: dict[str, Any]) -> dict[str, Any]:
    return document["measurements"]["default"]["modules"]["Net.fc"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda d: row(d).update(forward=820),
            "modules['Net.fc']: forward + backward + recompute is 1,540 but its by_op add up "
            "to 1,440: the file was edited by hand?",
        ),
        (
            lambda d: row(d)["bytes"].update(forward=452),
            "modules['Net.fc']: bytes forward + backward + recompute is 784 but its "
            "bytes.by_op add up to 684: the file was edited by hand?",
        ),
        (
            lambda d: row(d)["flops_by_precision"].update({"aten.mm": {"fp32": 700, "bf16": 0}}),
            "modules['Net.fc']: by_op['aten.mm'] is 720 but its "
            "flops_by_precision['aten.mm'] add up to 700: the file was edited by hand?",
        ),
        (
            lambda d: row(d)["flops_by_precision"].update({"aten.mm": {"fp33": 720}}),
            "modules['Net.fc'].flops_by_precision['aten.mm']: unknown precision 'fp33'; "
            "expected one of fp64, fp32, tf32, bf16, fp16, fp8, int8",
        ),
        (
            lambda d: d.update(version=3),
            "measurements['default']: holds bytes accessed, which format version 4 introduced, "
            "but the file says version 3: was its version edited?",
        ),
        (
            lambda d: d.update(version=1),
            "measurements['default']: holds communication or a world, which format version 2 "
            "introduced, but the file says version 1: was its version edited?",
        ),
    ],
    ids=["flops", "bytes", "precision sum", "precision name", "version 3", "version 1"],
)
def test_a_file_edited_by_hand_is_named_as_such(
    change: Callable[[dict[str, Any]], object], problem: str
) -> None:
    # the gate would fail these as changed counts, or (the versions) compare less than
    # the file holds: the error names the edit instead
    assert FlopsSnapshot.from_text(edited(lambda d: None), where="f").measurements == {
        "default": SHARDED
    }
    with pytest.raises(SnapshotFormatError) as error:
        FlopsSnapshot.from_text(edited(change), where="f")
    assert (
        str(error.value)
        .removeprefix("f: measurements['default']: ")
        .endswith(problem.removeprefix("measurements['default']: "))
    )


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


# -- the store against what it may find on disk --------------------------------------------


def test_a_checkout_with_crlf_line_ends_reads_as_the_same_snapshot(tmp_path: Path) -> None:
    location = tmp_path / "test_a.flops.json"
    location.write_bytes(snapshot_of(default=LINEAR).to_text().replace("\n", "\r\n").encode())
    assert SnapshotStore().read(location, where="f") == snapshot_of(default=LINEAR)


def test_a_symlinked_snapshot_is_read_and_written_through_its_link(tmp_path: Path) -> None:
    store = SnapshotStore()
    shared = tmp_path / "shared" / "test_a.flops.json"
    store.write(shared, snapshot_of(default=LINEAR))
    link = tmp_path / "__flops__" / "test_m.py" / "test_a.flops.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(shared)
    assert store.read(link, where="f") == snapshot_of(default=LINEAR)
    store.write(link, snapshot_of(default=LINEAR, decode=LINEAR))
    assert link.is_symlink()
    assert store.read(shared, where="f") == snapshot_of(default=LINEAR, decode=LINEAR)
    assert sorted(p.name for p in shared.parent.iterdir()) == ["test_a.flops.json"]


def test_a_dangling_link_has_no_snapshot_and_is_written_through(tmp_path: Path) -> None:
    store = SnapshotStore()
    target = tmp_path / "elsewhere" / "test_a.flops.json"
    link = tmp_path / "test_a.flops.json"
    link.symlink_to(target)
    assert store.read(link, where="f") is None
    store.write(link, snapshot_of(default=LINEAR))
    assert link.is_symlink() and store.read(target, where="f") == snapshot_of(default=LINEAR)


def test_a_directory_where_the_file_should_be_names_the_file(tmp_path: Path) -> None:
    location = tmp_path / "test_a.flops.json"
    location.mkdir()
    with pytest.raises(SnapshotFormatError, match=r"^shown/test_a\.flops\.json: cannot read"):
        SnapshotStore().read(location, where="shown/test_a.flops.json")


def test_a_file_syrupys_snapshot_fixture_wrote_is_no_baseline_of_a_test(tmp_path: Path) -> None:
    from pytest_flops import FlopsSnapshotExtension

    # FlopsSnapshotExtension's file (as under __snapshots__/) has no test name: copied into
    # __flops__/, the store refuses it, naming the file, rather than compare against it
    location = snapshot_path(tmp_path / "test_m.py", "test_a")
    location.parent.mkdir(parents=True)
    location.write_bytes(FlopsSnapshotExtension().serialize(LINEAR))
    lookup = SnapshotStore().lookup(tmp_path / "test_m.py", "test_a", shown=lambda p: p.name)
    assert isinstance(lookup.stored, SnapshotFormatError)
    assert str(lookup.stored).startswith("test_a.flops.json: ")
    assert location.read_bytes() == FlopsSnapshotExtension().serialize(LINEAR)


def test_an_unwritable_location_raises_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = SnapshotStore()
    blocked = tmp_path / "__flops__" / "test_m.py"
    blocked.parent.mkdir()
    blocked.write_text("a file where the folder should be")
    with pytest.raises(FileExistsError):
        store.write(blocked / "test_a.flops.json", snapshot_of(default=LINEAR))
    folder = tmp_path / "test_b.flops.json"
    folder.mkdir()
    with pytest.raises(IsADirectoryError):
        store.write(folder, snapshot_of(default=LINEAR))
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "__flops__",
        "test_b.flops.json",
        "test_m.py",
    ]


def test_the_store_and_the_session_import_no_syrupy() -> None:
    script = (
        "import sys\n"
        "import pytest_flops.plugin.hooks, pytest_flops.snapshots.stale\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'syrupy'], 'syrupy imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
