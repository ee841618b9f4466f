"""A suite that uses syrupy's ``snapshot`` fixture next to ours keeps working."""

from pathlib import Path

import pytest

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


def test_syrupy_and_flops_snapshots_stay_out_of_each_others_way(pytester: pytest.Pytester) -> None:
    write(pytester)
    result = pytester.runpytest_subprocess("--snapshot-update", "--flops-update")
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
    result = pytester.runpytest("--flops-update")
    result.assert_outcomes(passed=2)
    assert set(files(pytester)) == {
        "__snapshots__/test_mixed.ambr",
        "__flops__/test_mixed.py/test_renamed.flops.json",
    }
    assert files(pytester)["__snapshots__/test_mixed.ambr"] == syrupy_updated
