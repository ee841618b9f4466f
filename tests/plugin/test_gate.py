"""The gate's edge cases beyond the workflow matrix: file-system trouble, vanished
measurements, merged markers, native TOML, blocks after the call phase."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.forked_pytest import runpytest_forked
from tests.helpers import BEFORE_PYTEST_9, NET, OUTER, flops_line, snapshot_bytes, stored

TRAIN = """
def test_{name}(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()
"""


def train_tests(*names: str) -> str:
    return NET + "".join(TRAIN.format(name=name) for name in names)


# -- the file system refuses ---------------------------------------------------------------


def test_unwritable_snapshot_locations_fail_only_their_own_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_m=train_tests("fine", "dir_is_a_file", "path_is_a_dir"))
    pytester.makepyfile(test_n=train_tests("blocked"))
    folder = pytester.path / "__flops__"
    folder.mkdir()
    (folder / "test_n.py").write_text("a file where the directory should be")
    (folder / "test_m.py").mkdir()
    (folder / "test_m.py" / "test_path_is_a_dir.flops.json").mkdir()
    result = pytester.runpytest("--flops-update", "--flops-report-json=flops.json")
    # each failure names its test, the path and the OS error; the other test is written
    # (pytest counts a test whose teardown errors as passed, plus an error)
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines_random(
        [
            "Cannot write the FLOP snapshot of test_n.py::test_blocked: "
            "__flops__/test_n.py/test_blocked.flops.json: [[]Errno 17[]] File exists*",
            "Cannot write the FLOP snapshot of test_m.py::test_path_is_a_dir: "
            "__flops__/test_m.py/test_path_is_a_dir.flops.json: [[]Errno 21[]] Is a directory*",
        ]
    )
    assert flops_line(result) == "flops: 0 tests passed, 2 failed, 2 written, 0 removed"
    assert set(stored(pytester)) == {"test_fine", "test_dir_is_a_file"}
    statuses = {
        m["nodeid"]: m["status"]
        for m in json.loads((pytester.path / "flops.json").read_text())["measurements"]
    }
    assert statuses == {
        "test_m.py::test_fine": "new",
        "test_m.py::test_dir_is_a_file": "new",
        "test_m.py::test_path_is_a_dir": "not written",
        "test_n.py::test_blocked": "not written",
    }


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Nothing can be written in ``folder``: by permissions, or for root (who writes
    through them) by making it immutable, where the file system and capabilities allow."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", folder], capture_output=True).returncode:
        pytest.skip("running as root, and `chattr +i` (an immutable directory) is not available")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", folder], check=True)


def test_a_read_only_snapshot_directory_fails_only_its_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_m=train_tests("a"))
    folder = pytester.path / "__flops__"
    folder.mkdir()
    with read_only(folder):
        result = pytester.runpytest("--flops-update")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "Cannot write the FLOP snapshot of test_m.py::test_a: "
            "__flops__/test_m.py/test_a.flops.json: [[]Errno 1*"  # EPERM (immutable) or EACCES
        ]
    )
    assert not any(folder.iterdir())


def test_a_read_only_checkout_still_compares(pytester: pytest.Pytester) -> None:
    """CI may check the baselines out read-only: comparing writes nothing, and still fails."""
    pytester.makepyfile(test_m=train_tests("a"))
    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    folder = pytester.path / "__flops__" / "test_m.py"
    with read_only(folder):
        pytester.runpytest().assert_outcomes(passed=1)
        pytester.makepyfile(test_m=train_tests("a").replace("randn(4, 9)", "randn(8, 9)"))
        result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    assert flops_line(result) == "flops: 0 tests passed, 1 failed, 0 written, 0 removed"


def test_a_stale_snapshot_that_cannot_be_removed_is_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_m=train_tests("a"))
    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    (pytester.path / "__flops__" / "test_m.py" / "test_gone.flops.json").mkdir()
    result = pytester.runpytest("--flops-prune", "--flops-report-md=flops.md")
    result.assert_outcomes(passed=1)  # the session ends normally, and writes its exports
    result.stdout.fnmatch_lines(
        [
            "flops: 1 test passed, 0 failed, 0 written, 0 removed, 1 stale",
            "  __flops__/test_m.py/test_gone.flops.json (its test is gone from its file)",
            "flops: cannot remove the stale snapshot __flops__/test_m.py/test_gone.flops.json: "
            "[[]Errno 21[]] Is a directory*",
        ]
    )
    assert (pytester.path / "flops.md").exists()


def test_an_unwritable_export_is_reported_and_the_other_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_m=train_tests("a"))
    (pytester.path / "taken").write_text("a file where the directory should be")
    result = pytester.runpytest(
        "--flops-update", "--flops-report-json=taken/flops.json", "--flops-report-md=flops.md"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["flops: cannot write the report */taken/flops.json: *"])
    assert (pytester.path / "flops.md").exists()


# -- what the snapshot has and the run does not ---------------------------------------------


NAMED = (
    NET
    + """
def test_lm(flops):
    net = Net()
    with torch.no_grad():
        with flops(net, name="prefill"):
            net(torch.randn(4, 9))
        if PREFILL_ONLY is False:
            with flops(net, name="decode"):
                net(torch.randn(1, 9))

PREFILL_ONLY = {prefill_only}
"""
)


def test_a_vanished_named_measurement_fails_in_every_output(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_m=NAMED.format(prefill_only=False))
    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    pytester.makepyfile(test_m=NAMED.format(prefill_only=True))
    result = pytester.runpytest(
        "--flops-report", "--flops-report-json=flops.json", "--flops-report-md=flops.md"
    )
    result.assert_outcomes(failed=1)
    # decode: Linear(9, 10) on (1, 9) = 2*1*9*10 = 180 FLOP, gone
    result.stdout.fnmatch_lines(
        [
            "FLOP measurement 'decode' of test_m.py::test_lm was not measured this time "
            "(the snapshot has 180 FLOP)",
            "test_m.py::test_lm [[]decode]*0 FLOP*-180 FLOP*-100.00%  missing",
            "test_m.py::test_lm [[]prefill]*passed",
            "flops: 0 tests passed, 1 failed, 0 written, 0 removed",
        ]
    )
    document = json.loads((pytester.path / "flops.json").read_text())
    assert document["summary"]["statuses"]["missing"] == 1
    assert {m["name"]: m["status"] for m in document["measurements"]} == {
        "decode": "missing",
        "prefill": "passed",
    }
    assert "| missing |" in (pytester.path / "flops.md").read_text()

    # --flops-update keeps its baseline (a measurement may be gone with a skipped
    # part of the test), and reports it stale; the file is unchanged
    before = snapshot_bytes(pytester)
    result = pytester.runpytest("--flops-update", "--flops-report", "--flops-report-json=up.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "test_m.py::test_lm [[]decode]*kept",
            "flops: 1 test passed, 0 failed, 0 written, 0 removed, 1 stale",
            "  __flops__/test_m.py/test_lm.flops.json [[]decode] (its test ran whole and passed "
            "without taking this measurement)",
        ]
    )
    assert snapshot_bytes(pytester) == before
    evidence = json.loads((pytester.path / "up.json").read_text())["snapshots"]
    assert evidence["stale_measurements"] == ["__flops__/test_m.py/test_lm.flops.json [decode]"]

    # --flops-prune takes it out of the snapshot, and says so
    result = pytester.runpytest("--flops-prune", "--flops-report")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "test_m.py::test_lm [[]decode]*removed",
            "flops: 1 test passed, 0 failed, 0 written, 1 removed",
        ]
    )
    assert set(stored(pytester)["test_lm"]["measurements"]) == {"prefill"}
    assert "stale" not in pytester.runpytest().stdout.str()


def test_a_test_that_stops_measuring_fails_until_pruned(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_m=train_tests("a"))
    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    pytester.makepyfile(test_m=NET + "\ndef test_a(flops):\n    Net()(torch.randn(4, 9))\n")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["test_m.py::test_a measured no FLOPs this time, but its snapshot has 1,440 FLOP*"]
    )
    before = snapshot_bytes(pytester)
    result = pytester.runpytest("--flops-update")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["  __flops__/test_m.py/test_a.flops.json (its test passed without measuring)"]
    )
    assert snapshot_bytes(pytester) == before  # --flops-update never removes
    result = pytester.runpytest("--flops-prune")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["flops: 1 test passed, 0 failed, 0 written, 1 removed"])
    assert snapshot_bytes(pytester) == {}


# -- configuration -------------------------------------------------------------------------


def test_markers_merge_keywords_the_closest_winning(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_m=NET
        + OUTER
        + """
pytestmark = pytest.mark.flops(rtol=0.5, depth=3)

@pytest.mark.flops(depth=1)
def test_a(flops):
    model = Outer(OUT)
    with flops(model):
        model(torch.randn(4, 9))

OUT = 10
"""
    )
    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    # depth=1 from the test's own marker: Outer only, not Outer.net
    assert list(stored(pytester)["test_a"]["measurements"]["default"]["modules"]) == [
        "Global",
        "Outer",
    ]
    # rtol=0.5 from the module's: 2*4*9*14 = 1,008 is +40% of 720, within it
    path = pytester.path / "test_m.py"
    path.write_text(path.read_text().replace("OUT = 10", "OUT = 14"))
    pytester.runpytest().assert_outcomes(passed=1)
    path.write_text(path.read_text().replace("OUT = 14", "OUT = 16"))  # +60%
    pytester.runpytest().assert_outcomes(failed=1)


@pytest.mark.skipif(BEFORE_PYTEST_9, reason="[tool.pytest] with native types is pytest 9's")
def test_native_toml_numbers_configure_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_m=train_tests("a"))
    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    # pytest 9's [tool.pytest] keeps TOML's types: a number, not a string
    (pytester.path / "pyproject.toml").write_text(
        "[tool.pytest]\nflops_rtol = 0.5\nflops_depth = 1\n"
    )
    path = pytester.path / "test_m.py"
    path.write_text(path.read_text().replace("Linear(9, out)", "Linear(9, out + 4)"))
    # 2*4*9*14 = 1,008 per phase, +40% of 720: within rtol 0.5
    pytester.runpytest().assert_outcomes(passed=1)
    (pytester.path / "pyproject.toml").write_text('[tool.pytest]\nflops_rtol = "much"\n')
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ini option flops_rtol: expected a number >= 0 (*"])


def test_a_block_in_a_fixture_teardown_says_it_is_not_measured(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_m=NET
        + """
@pytest.fixture
def measured_after(flops):
    with flops(Net(), name="setup"):  # before the test: part of it
        Net()(torch.randn(4, 9))
    yield
    with flops(Net(), name="teardown"):
        Net()(torch.randn(4, 9))

def test_a(measured_after):
    pass
"""
    )
    result = pytester.runpytest("--flops-update")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "E * RuntimeError: flops: a block opened after the test's call phase (in a fixture's "
            "teardown) is not measured: the test was compared with its snapshot when its call "
            "ended. Measure in the test, or in a fixture before the test runs.",
        ]
    )
    # a test whose teardown failed writes nothing
    assert stored(pytester) == {}
    assert flops_line(result) == (
        "flops: 0 tests passed, 0 failed, 0 written, 0 removed, 1 not compared (test failed)"
    )


# -- round 3: what once slipped past the gate --------------------------------------------


def test_a_narrowed_prune_removes_nothing_and_says_why(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_m=train_tests("a", "b"))
    pytester.runpytest("--flops-update").assert_outcomes(passed=2)
    gone = pytester.path / "__flops__" / "test_m.py" / "test_gone.flops.json"
    gone.write_text('{"test": "test_gone"}')
    result = pytester.runpytest("--flops-prune", "-k", "test_a")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(
        [
            "flops: 1 test passed, 0 failed, 0 written, 0 removed",
            "flops: no stale snapshot was looked for or removed, as this run did not cover the "
            "whole suite (-k; 1 tests deselected); a whole run with --flops-prune removes them",
        ]
    )
    assert gone.exists()


def test_an_xpass_is_compared(pytester: pytest.Pytester) -> None:
    """A non-strict xfail test that passes is a passing test: a changed count fails it."""
    xfail = "\n@pytest.mark.xfail(reason='flaky elsewhere')\ndef test_a(flops):"
    pytester.makepyfile(test_m=train_tests("a").replace("\ndef test_a(flops):", xfail))
    result = pytester.runpytest("--flops-update")
    result.assert_outcomes(xpassed=1)
    assert set(stored(pytester)) == {"test_a"}  # written, as for any passing test
    path = pytester.path / "test_m.py"
    path.write_text(path.read_text().replace("randn(4, 9)", "randn(8, 9)"))
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # Net on (8, 9): 2*8*9*10 = 1,440 forward and 1,440 weight grad, was 720 + 720
    result.stdout.fnmatch_lines(["*FLOP count changed for test_m.py::test_a: total 1,440 → 2,880*"])
    assert flops_line(result) == "flops: 0 tests passed, 1 failed, 0 written, 0 removed"


def test_a_hypothesis_test_using_flops_errors_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_m="""
import torch
from hypothesis import given, strategies

@given(strategies.integers(1, 3))
def test_sizes(flops, n):
    with flops():
        torch.ones(n, 3) @ torch.ones(3, 4)
"""
    )
    result = pytester.runpytest("--flops-update")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["flops: test_m.py::test_sizes is a hypothesis @given test: its body runs once per *"]
    )
    assert stored(pytester) == {}


def test_a_symlinked_snapshot_is_written_through(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_m=train_tests("a"))
    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    link = pytester.path / "__flops__" / "test_m.py" / "test_a.flops.json"
    shared = pytester.path / "shared.flops.json"
    link.rename(shared)
    link.symlink_to(shared)
    path = pytester.path / "test_m.py"
    path.write_text(path.read_text().replace("randn(4, 9)", "randn(8, 9)"))
    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    assert link.is_symlink() and link.resolve() == shared.resolve()
    # Net on (8, 9): 2*8*9*10 = 1,440 forward and as much backward
    assert json.loads(shared.read_text())["measurements"]["default"]["total"] == 2880
    assert [p.name for p in link.parent.iterdir()] == ["test_a.flops.json"]  # no temporary left
    pytester.runpytest().assert_outcomes(passed=1)


DEVICES_CONFTEST = """
import pytest

@pytest.fixture(params=["cpu", "gpu"])
def device(request):
    return request.param
"""

DEVICE_TEST = """
import torch

def test_step(flops, device):
    linear = torch.nn.Linear(4, 6)
    with flops(linear):
        linear(torch.randn(3, 4))
"""


@pytest.mark.slow
def test_prune_spares_the_snapshots_of_a_test_whose_setup_errored(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(DEVICES_CONFTEST)
    pytester.makepyfile(test_m=DEVICE_TEST)
    runpytest_forked(pytester, "--flops-update").assert_outcomes(passed=2)
    before = snapshot_bytes(pytester)
    assert len(before) == 2  # test_step[cpu] and test_step[gpu]
    # Without its conftest, test_step has no params and errors at setup: it never ran,
    # so nothing proves its two snapshots stale.
    result = runpytest_forked(pytester, "--noconftest", "--flops-prune")
    result.assert_outcomes(errors=1)
    assert snapshot_bytes(pytester) == before
