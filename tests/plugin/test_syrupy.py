"""syrupy and pytest-flops side by side: each one's snapshots, each one's rules."""

import json
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.forked_pytest import runpytest_forked

TESTS = """
import torch

def test_values(snapshot):
    assert {{"answer": {answer}}} == snapshot

def test_{name}(flops):
    linear = torch.nn.Linear(9, {out})
    with flops(linear):
        linear(torch.randn(4, 9))
"""


def write(pytester: pytest.Pytester, *, out: int = 10, answer: int = 42, name: str = "f") -> None:
    pytester.makepyfile(test_mixed=TESTS.format(out=out, answer=answer, name=name))


def files(pytester: pytest.Pytester) -> dict[str, bytes]:
    return {
        str(path.relative_to(pytester.path)): path.read_bytes()
        for folder in ("__snapshots__", "__flops__")
        for path in sorted(Path(pytester.path, folder).rglob("*"))
        if path.is_file()
    }


@pytest.mark.slow
def test_syrupy_and_flops_snapshots_stay_out_of_each_others_way(pytester: pytest.Pytester) -> None:
    write(pytester)
    result = runpytest_forked(pytester, "--snapshot-update", "--flops-update")
    result.assert_outcomes(passed=2)
    assert set(files(pytester)) == {
        "__snapshots__/test_mixed.ambr",
        "__flops__/test_mixed.py/test_f.flops.json",
    }
    both = files(pytester)

    # syrupy's unused-snapshot check does not see our files: a plain run passes.
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.no_fnmatch_line("*unused*")

    # --snapshot-update rewrites syrupy's snapshot only; ours fails and stays as it was.
    write(pytester, out=11, answer=43)
    result = pytester.runpytest("--snapshot-update")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FLOP count changed for test_mixed.py::test_f*"])
    after = files(pytester)
    assert (
        after["__flops__/test_mixed.py/test_f.flops.json"]
        == both["__flops__/test_mixed.py/test_f.flops.json"]
    )
    assert after["__snapshots__/test_mixed.ambr"] != both["__snapshots__/test_mixed.ambr"]
    syrupy_updated = after["__snapshots__/test_mixed.ambr"]

    # --flops-update rewrites ours only; syrupy's snapshot is left alone.
    result = pytester.runpytest("--flops-update")
    result.assert_outcomes(passed=2)
    assert files(pytester)["__snapshots__/test_mixed.ambr"] == syrupy_updated

    # A stale FLOP snapshot is neither deleted by --snapshot-update nor fails syrupy's check.
    write(pytester, out=11, answer=43, name="renamed")
    result = pytester.runpytest("--snapshot-update")
    result.assert_outcomes(passed=1, failed=1)  # the renamed test has no FLOP snapshot yet
    assert "__flops__/test_mixed.py/test_f.flops.json" in files(pytester)
    result.stdout.fnmatch_lines(["flops: 0 tests passed, 1 failed, 0 written, 0 removed, 1 stale"])
    result = pytester.runpytest("--flops-update", "--flops-prune")
    result.assert_outcomes(passed=2)
    assert set(files(pytester)) == {
        "__snapshots__/test_mixed.ambr",
        "__flops__/test_mixed.py/test_renamed.flops.json",
    }
    assert files(pytester)["__snapshots__/test_mixed.ambr"] == syrupy_updated


# -- measurements asserted against syrupy's own snapshot fixture -------------------------------

NATIVE = """
import pytest
import torch

import pytest_flops
from pytest_flops import FlopsSnapshotExtension

WIDTH = {width}


def test_inline(snapshot):
    model = torch.nn.Linear(4, WIDTH)
    measurement = pytest_flops.count(model, torch.randn(3, 4))
    assert measurement == snapshot(extension_class=FlopsSnapshotExtension)


@pytest.fixture
def snapshot(snapshot):
    return snapshot.use_extension(FlopsSnapshotExtension)


def test_counter(snapshot):
    model = torch.nn.Linear(4, WIDTH)
    with pytest_flops.FlopCounterMode(display=False) as mode:
        model(torch.randn(3, 4)).sum().backward()
    assert mode.to_measurement() == snapshot
"""


def test_measurements_asserted_with_syrupys_fixture_follow_syrupys_rules(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_native=NATIVE.format(width=6))
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)  # no snapshot yet: syrupy says so
    result.stdout.fnmatch_lines(["*Snapshot 'test_inline' does not exist!*"])

    result = pytester.runpytest("--snapshot-update")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["2 snapshots generated."])
    stored = {
        name: json.loads(text)
        for name, text in files(pytester).items()
        if name.startswith("__snapshots__")
    }
    # Linear(4, 6) on (3, 4): 2*3*4*6 = 144 forward; the counter step's weight grad 144
    assert {name: doc["measurements"]["default"]["total"] for name, doc in stored.items()} == {
        "__snapshots__/test_native/test_inline.flops.json": 144,
        "__snapshots__/test_native/test_counter.flops.json": 288,
    }
    assert not (pytester.path / "__flops__").exists()  # the plugin's own snapshots are apart

    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["2 snapshots passed."])

    # A change fails with the FLOP diagnosis, not a text diff of the JSON.
    pytester.makepyfile(test_native=NATIVE.format(width=7))
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "E       assert [[]+ received] == [[]- snapshot]",
            # 2*3*4*7 = 168
            "E         FLOP count changed for the measurement: total 144 → 168 FLOP (+16.67%)",
            "E           forward   144 → 168 FLOP (+16.67%)",
            "E           backward  0 (unchanged)",
            "E           module  operator    before  after    Δ",
            "E           Linear  aten.addmm     144    168  +24",
            "E           and the sums of these rows: Global",
        ]
    )
    result.stdout.no_fnmatch_line('*"total": 168*')

    # syrupy's own rules: its unused-snapshot check, its --snapshot-update deletes
    pytester.makepyfile(test_native=NATIVE.format(width=7).split("\n\n@pytest.fixture")[0])
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*1 snapshot unused*"])
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    assert set(files(pytester)) == {"__snapshots__/test_native/test_inline.flops.json"}


INLINE_ONLY = """
import torch

import pytest_flops
from pytest_flops import FlopsSnapshotExtension


def test_inline(snapshot):
    model = torch.nn.Linear(4, {width})
    measurement = pytest_flops.count(model, torch.randn(3, 4))
    assert measurement == snapshot(extension_class=FlopsSnapshotExtension)
"""


def test_a_flop_snapshot_of_syrupys_default_fixture_fails_with_the_flop_diagnosis(
    pytester: pytest.Pytester,
) -> None:
    """syrupy explains the failed assertion with its fixture's default extension (a text
    diff of the JSON); the FLOP diagnosis comes first whichever plugin pytest loads first."""
    pytester.makepyfile(test_inline=INLINE_ONLY.format(width=6))
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    pytester.makepyfile(test_inline=INLINE_ONLY.format(width=7))
    for first, second in (("flops", "syrupy"), ("syrupy", "flops")):
        result = runpytest_forked(pytester, "-p", first, "-p", second)
        result.assert_outcomes(failed=1)
        # 2*3*4*6 = 144 FLOP before, 2*3*4*7 = 168 after
        explained = result.stdout.lines.index("E       assert [+ received] == [- snapshot]")
        assert result.stdout.lines[explained + 1] == (
            "E         FLOP count changed for the measurement: total 144 → 168 FLOP (+16.67%)"
        )


def test_a_snapshot_from_before_bytes_fails_until_snapshot_update_records_them(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_native=NATIVE.format(width=6))
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=2)
    folder = pytester.path / "__snapshots__" / "test_native"
    for path in folder.iterdir():  # as format 3 wrote them: no bytes yet
        document = json.loads(path.read_text())
        document["version"] = 3
        for measurement in document["measurements"].values():
            del measurement["bytes_accessed"]
            for row in measurement["modules"].values():
                row.pop("bytes", None)
                row.pop("flops_by_precision", None)
        path.write_text(json.dumps(document, indent=2) + "\n")

    # syrupy rewrites only what does not match: matching on the FLOPs alone, these
    # files would never gate bytes (a .contiguous() copy at equal FLOPs would pass)
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "E         The snapshot records no bytes accessed (an earlier pytest-flops wrote "
            "it): run `pytest --snapshot-update` to record them."
        ]
    )
    result.stdout.no_fnmatch_line("*FLOP count changed*")  # the FLOPs are equal
    result = pytester.runpytest("--snapshot-update")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["2 snapshots updated."])
    assert all(json.loads(text)["version"] == 4 for text in files(pytester).values())
    pytester.runpytest().assert_outcomes(passed=2)

    # ...and a changed count fails against it: 2*3*4*7 = 168
    pytester.makepyfile(test_native=NATIVE.format(width=7))
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        ["E         FLOP count changed for the measurement: total 144 → 168 FLOP (+16.67%)"]
    )


def test_syrupy_deletes_the_snapshot_of_a_test_that_errored_ours_keeps_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_both="""
import os
import torch
from pytest_flops import FlopsSnapshotExtension

def test_a(snapshot, flops):
    model = torch.nn.Linear(4, 6)
    with flops(model):
        model(torch.randn(3, 4))
    if os.environ.get("BOOM"):
        raise RuntimeError("boom")
    assert flops == snapshot(extension_class=FlopsSnapshotExtension)
"""
    )
    pytester.runpytest("--snapshot-update", "--flops-update").assert_outcomes(passed=1)
    assert set(files(pytester)) == {
        "__snapshots__/test_both/test_a.flops.json",
        "__flops__/test_both.py/test_a.flops.json",
    }
    monkeypatch.setenv("BOOM", "1")
    result = pytester.runpytest("--snapshot-update", "--flops-update")
    result.assert_outcomes(failed=1)
    # syrupy counts the errored test's snapshot as unused and deletes it; the fixture's stays
    assert set(files(pytester)) == {"__flops__/test_both.py/test_a.flops.json"}


def test_the_extension_refuses_what_it_cannot_store() -> None:
    from pytest_flops import FlopsSnapshotExtension

    with pytest.raises(TypeError, match=r"stores a pytest_flops\.Measurement, the flops fixture"):
        FlopsSnapshotExtension().serialize({"total": 1})


def test_a_file_of_another_kind_never_matches_and_shows_as_text() -> None:
    import torch

    import pytest_flops
    from pytest_flops import FlopsSnapshotExtension

    extension = FlopsSnapshotExtension()
    # Linear(4, 6) on (3, 4): 2*3*4*6 = 144 FLOP
    measured = extension.serialize(pytest_flops.count(torch.nn.Linear(4, 6), torch.randn(3, 4)))
    assert b'"total": 144' in measured
    # a checkout with \r\n line ends holds the same counts
    crlf = measured.replace(b"\n", b"\r\n")
    assert extension.matches(serialized_data=measured, snapshot_data=crlf)
    for other in (b'{"answer": 42}\n', b"\xff\xfe not text", measured.replace(b"144", b"145")):
        assert not extension.matches(serialized_data=measured, snapshot_data=other)
    diff = plain(extension.diff_lines(measured, b'{"answer": 42}\n'))
    assert '"answer": 42' in diff and "b'" not in diff  # a text diff of what the file holds
    assert "\\xff\\xfe not text" in plain(extension.diff_lines(measured, b"\xff\xfe not text"))


def plain(lines: Iterable[str]) -> str:
    """syrupy's diff lines without their colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(lines))
