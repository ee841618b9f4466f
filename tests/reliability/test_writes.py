"""``--flops-update`` interrupted while it writes a snapshot loses nothing.

A conftest in the pytester directory interrupts the write of one snapshot file
half way through writing its temporary file, or right before the rename that
puts it in place: with KeyboardInterrupt (in-process, cheap) or with SIGKILL
(in a subprocess that then dies on the spot, so no cleanup code runs). The
stored snapshot is untouched or absent afterwards, never half-written, and the
temporary file a killed process leaves behind is neither read nor reported.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import pytest

import pytest_flops.snapshots.store
from pytest_flops.snapshots.format import FlopsSnapshot
from pytest_flops.snapshots.store import SnapshotStore
from tests.forked_pytest import runpytest_forked
from tests.helpers import recorded, snapshot_bytes

TESTS = """
import torch

def net():
    return torch.nn.Linear(9, {out})

def test_changed(flops):
    model = net()
    with torch.no_grad(), flops(model):
        model(torch.randn(4, 9))
"""

NEW_TEST = """
def test_new(flops):
    model = net()
    with torch.no_grad(), flops(model):
        model(torch.randn(2, 9))
"""

# Interrupts the write of the snapshot file TARGET at POINT, with HOW.
INTERRUPTING_CONFTEST = """
import os
import signal
from pathlib import Path

import pytest_flops.snapshots.store

TARGET, POINT, HOW = {settings!r}
real_replace = os.replace


def interrupt():
    if HOW == "SIGKILL":
        os.kill(os.getpid(), signal.SIGKILL)
    raise KeyboardInterrupt


class HalfWritten:
    def __init__(self, file):
        self.file = file

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.file.close()

    def write(self, text):
        self.file.write(text[: len(text) // 2])
        self.file.flush()
        interrupt()


def interrupting_open(path, *args, **kwargs):
    file = open(path, *args, **kwargs)
    if POINT == "mid-write" and Path(path).name.startswith(f".{{TARGET}}."):
        return HalfWritten(file)
    return file


def interrupting_replace(source, destination):
    if POINT == "before-rename" and Path(destination).name == TARGET:
        interrupt()
    real_replace(source, destination)


pytest_flops.snapshots.store.open = interrupting_open
os.replace = interrupting_replace


def pytest_unconfigure():
    pytest_flops.snapshots.store.open = open
    os.replace = real_replace
"""


def first_snapshot(pytester: pytest.Pytester) -> bytes:
    """Store test_changed's snapshot of Linear(9, 10): 2*4*9*10 = 720 FLOP."""
    stored = recorded(pytester, TESTS.format(out=10), passed=1)
    assert json.loads(stored["test_changed.flops.json"])["measurements"]["default"]["total"] == 720
    return stored["test_changed.flops.json"]


def interrupted_update(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *, target: str, point: str, how: str
) -> pytest.RunResult:
    """``--flops-update`` of Linear(9, 11) (792 FLOP) plus test_new, interrupted at ``target``."""
    pytester.makepyfile(test_m=TESTS.format(out=11) + NEW_TEST)
    conftest = pytester.makeconftest(
        INTERRUPTING_CONFTEST.format(settings=(f"{target}.flops.json", point, how))
    )
    if how == "SIGKILL":
        result = runpytest_forked(pytester, "--flops-update", timeout=300)
        assert result.ret == -signal.SIGKILL
    else:
        # The conftest restores both at unconfigure; monkeypatch is the safety net.
        monkeypatch.setattr(os, "replace", os.replace)
        monkeypatch.setattr(pytest_flops.snapshots.store, "open", open, raising=False)
        result = pytester.runpytest("--flops-update", no_reraise_ctrlc=True)
        assert result.ret == pytest.ExitCode.INTERRUPTED
        result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    conftest.unlink()
    return result


@pytest.mark.parametrize(
    ("target", "point", "how"),
    [
        ("test_changed", "mid-write", "KeyboardInterrupt"),
        ("test_changed", "before-rename", "KeyboardInterrupt"),
        ("test_new", "mid-write", "KeyboardInterrupt"),
        ("test_new", "before-rename", "KeyboardInterrupt"),
        pytest.param("test_changed", "mid-write", "SIGKILL", marks=pytest.mark.slow),
        pytest.param("test_new", "before-rename", "SIGKILL", marks=pytest.mark.slow),
    ],
)
def test_an_interrupted_write_leaves_the_stored_snapshot_whole(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, target: str, point: str, how: str
) -> None:
    before = first_snapshot(pytester)
    interrupted_update(pytester, monkeypatch, target=target, point=point, how=how)

    after = snapshot_bytes(pytester)
    temporary = {name: text for name, text in after.items() if name.endswith(".tmp")}
    snapshots = {name: text for name, text in after.items() if not name.endswith(".tmp")}
    if target == "test_changed":
        # Interrupted on the first write: the stored snapshot is the old one, byte for byte.
        assert snapshots == {"test_changed.flops.json": before}
    else:
        # test_changed ran first and was rewritten whole; test_new's file never appeared.
        assert set(snapshots) == {"test_changed.flops.json"}
        changed = json.loads(snapshots["test_changed.flops.json"])
        assert changed["measurements"]["default"]["total"] == 792  # 2*4*9*11
    if how == "KeyboardInterrupt":
        assert temporary == {}  # removed on the way out
    else:
        # SIGKILL runs no cleanup: the hidden temporary file stays (checked below).
        assert [name.startswith(f".{target}.flops.json.") for name in temporary] == [True]

    # The next runs read the old snapshot, and neither read nor report the temporary file.
    result = pytester.runpytest()
    if target == "test_changed":
        result.assert_outcomes(failed=2)
        result.stdout.fnmatch_lines(
            ["FLOP count changed for test_m.py::test_changed: total 720 → 792*"]
        )
    else:
        result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["No FLOP snapshot for test_m.py::test_new (396 FLOP counted)."])
    assert "stale" not in result.stdout.str()  # 2*2*9*11 = 396 above
    written = 2 if target == "test_changed" else 1
    result = pytester.runpytest("--flops-update")
    result.stdout.fnmatch_lines(
        [
            f"flops: {2 - written} test{'' if written == 1 else 's'} passed, 0 failed, "
            f"{written} written, 0 removed"
        ]
    )
    pytester.runpytest().assert_outcomes(passed=2)
    after = snapshot_bytes(pytester)
    assert {name: text for name, text in after.items() if name.endswith(".tmp")} == temporary
    for text in temporary.values():
        # What the killed process had written of the snapshot that is now in place.
        complete = after[f"{target}.flops.json"]
        assert text == (complete[: len(complete) // 2] if point == "mid-write" else complete)


def test_snapshots_get_the_permissions_of_any_new_file(tmp_path: Path) -> None:
    # Written through a temporary file, yet not with mkstemp's owner-only 0600.
    plain = tmp_path / "plain"
    plain.write_text("")
    location = tmp_path / "__flops__" / "test_m.py" / "test_a.flops.json"
    snapshot = FlopsSnapshot(test="test_a", depth=3, measurements={})
    SnapshotStore().write(location, snapshot)
    assert stat.S_IMODE(location.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert [path.name for path in location.parent.iterdir()] == ["test_a.flops.json"]
