"""``--flops-prune`` removes what it says it removed, and nothing a test still reads: a
snapshot that another one links to, a measurement in a file of the layout before 0.2
(real pytest sessions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.forked_pytest import runpytest_forked
from tests.helpers import NET, flops_line

ONE_TEST = (
    NET
    + """
def test_x(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()
"""
)


def linked_pair(pytester: pytest.Pytester, name: str, source: str, test: str) -> tuple[Path, Path]:
    """``a/name`` and ``b/name`` hold ``source``; ``a``'s snapshot of ``test`` is recorded
    and ``b``'s is a symbolic link to it. The target and the link."""
    pytester.makeini("[pytest]\naddopts = --import-mode=importlib -p no:randomly\n")
    for side in "ab":
        pytester.mkdir(side).joinpath(name).write_text(source)
    assert runpytest_forked(pytester, "--flops-update", "a").ret == pytest.ExitCode.OK
    target = pytester.path / "a" / "__flops__" / name / f"{test}.flops.json"
    link = pytester.path / "b" / "__flops__" / name / f"{test}.flops.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(f"../../../a/__flops__/{name}/{test}.flops.json")
    return target, link


@pytest.mark.parametrize("renamed", ["a", "b"])
def test_a_snapshot_another_links_to_is_removed_only_with_its_last_reader(
    pytester: pytest.Pytester, renamed: str
) -> None:
    """``b``'s snapshot is a symbolic link to ``a``'s. When ``a``'s test is renamed, its
    file is stale but ``b`` still reads it: kept, with why. When ``b``'s is, the stale
    link goes and its target stays."""
    target, link = linked_pair(pytester, "test_m.py", ONE_TEST, "test_x")
    written = target.read_bytes()
    test_file = pytester.path / renamed / "test_m.py"
    test_file.write_text(ONE_TEST.replace("def test_x", "def test_y"))
    result = runpytest_forked(pytester, "--flops-update", "--flops-prune")
    result.assert_outcomes(passed=2)
    if renamed == "a":
        # test_y written, a's test_x kept: b/test_x links to it
        assert flops_line(result) == "flops: 1 test passed, 0 failed, 1 written, 0 removed, 1 stale"
        result.stdout.fnmatch_lines(
            [
                "flops: cannot remove the stale snapshot a/__flops__/test_m.py/test_x.flops.json:"
                " b/__flops__/test_m.py/test_x.flops.json, a snapshot still in use,"
                " is a symbolic link to it"
            ]
        )
    else:
        assert flops_line(result) == "flops: 1 test passed, 0 failed, 1 written, 1 removed"
        assert not link.is_symlink()
    assert target.read_bytes() == written
    runpytest_forked(pytester).assert_outcomes(passed=2)


NAMED = (
    NET
    + """
import os

def test_named(flops):
    net = Net()
    with flops(net, name="a"):
        net(torch.randn(4, 9)).sum().backward()
    if not os.environ.get("DROP"):
        with flops(net, name="b"):
            net(torch.randn(4, 9)).sum().backward()

def test_other(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()
"""
)


def test_a_stale_measurement_is_pruned_from_a_snapshot_before_0_2(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest-flops 0.1 kept a file's snapshots in ``__flops__/<stem>/``: a measurement
    no longer taken is dropped from the file the test read, and counted only then."""
    pytester.makeini("[pytest]\naddopts = -p no:randomly\n")
    pytester.makepyfile(test_n=NAMED)
    runpytest_forked(pytester, "--flops-update").assert_outcomes(passed=2)
    folder = pytester.path / "__flops__"
    (folder / "test_n.py").rename(folder / "test_n")
    legacy = folder / "test_n" / "test_named.flops.json"
    monkeypatch.setenv("DROP", "1")
    result = runpytest_forked(pytester, "--flops-prune")
    result.assert_outcomes(passed=2)
    assert flops_line(result) == "flops: 2 tests passed, 0 failed, 0 written, 1 removed"
    assert list(json.loads(legacy.read_text())["measurements"]) == ["a"]
    # nothing left to drop: nothing is said removed
    result = runpytest_forked(pytester, "--flops-prune")
    assert flops_line(result) == "flops: 2 tests passed, 0 failed, 0 written, 0 removed"


def test_a_measurement_another_test_reads_through_a_link_is_not_dropped(
    pytester: pytest.Pytester,
) -> None:
    """``b``'s snapshot links to ``a``'s file. ``a``'s test stops taking the measurement
    ``b``, which ``b``'s test still takes: dropping it from the shared file would lose
    ``b``'s baseline, so the file is kept whole, with why."""
    target, link = linked_pair(pytester, "test_n.py", NAMED, "test_named")
    written = target.read_bytes()
    runpytest_forked(pytester, "--flops-update", "b").assert_outcomes(passed=2)
    a_test = pytester.path / "a" / "test_n.py"
    a_test.write_text(NAMED.replace('os.environ.get("DROP")', "True"))
    result = runpytest_forked(pytester, "--flops-prune")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "flops: cannot remove the stale snapshot a/__flops__/test_n.py/test_named.flops.json:"
            " b/__flops__/test_n.py/test_named.flops.json, a snapshot still in use,"
            " is the same file, through a symbolic link"
        ]
    )
    assert target.read_bytes() == written
    assert link.is_symlink()
    runpytest_forked(pytester, "b").assert_outcomes(passed=2)
