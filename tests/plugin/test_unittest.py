"""unittest-style test classes measure with ``FlopsTestCase``: the same gate as functions."""

from __future__ import annotations

import pytest

from tests.forked_pytest import runpytest_forked
from tests.helpers import flops_line, stored

pytestmark = pytest.mark.slow  # real pytest sessions under reruns and xdist

CASES = """
import os
import unittest
from pathlib import Path

import torch

from pytest_flops import FlopsTestCase

WIDTH = {width}


class TestModel(FlopsTestCase, unittest.TestCase):
    def test_train_step(self):
        model = torch.nn.Linear(9, WIDTH)
        with self.flops(model):
            model(torch.randn(4, 9)).sum().backward()

    def test_batches(self):
        model = torch.nn.Linear(9, WIDTH)
        for batch in (1, 2):
            with self.subTest(batch=batch):
                with self.flops(model, name=f"batch{{batch}}"):
                    model(torch.randn(batch, 9))

    def test_flaky(self):
        model = torch.nn.Linear(9, WIDTH)
        with self.flops(model):
            model(torch.randn(3, 9))
        marker = Path("failed once")
        if os.environ.get("FLAKY") and not marker.exists():
            marker.write_text("")
            self.fail("fails on its first attempt")
"""


def test_unittest_classes_are_compared_and_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_cases=CASES.format(width=10))
    result = pytester.runpytest()
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["No FLOP snapshot for test_cases.py::TestModel::test_train_step*"])

    pytester.runpytest("--flops-update").assert_outcomes(passed=3)
    documents = stored(pytester, "test_cases.py")
    # Linear(9, 10) on (4, 9): 2*4*9*10 = 720 forward, 720 weight grad; batches 180 and 360
    assert documents["TestModel::test_train_step"]["measurements"]["default"]["total"] == 1440
    assert {
        name: m["total"] for name, m in documents["TestModel::test_batches"]["measurements"].items()
    } == {"batch1": 180, "batch2": 360}  # compared once, after every subtest ran
    result = pytester.runpytest()
    result.assert_outcomes(passed=3)
    assert flops_line(result) == "flops: 3 tests passed, 0 failed, 0 written, 0 removed"

    # Linear(9, 11): 2*4*9*11 = 792 per phase
    pytester.makepyfile(test_cases=CASES.format(width=11))
    result = pytester.runpytest()
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "FLOP count changed for test_cases.py::TestModel::test_train_step: "
            "total 1,440 → 1,584 FLOP (+10.00%)"
        ]
    )


def test_unittest_classes_under_reruns_and_xdist(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_cases=CASES.format(width=10))
    pytester.runpytest("--flops-update").assert_outcomes(passed=3)
    pytester.makepyfile(test_cases=CASES.format(width=11))
    # a flaky test with a changed count fails on its rerun too: the rerun is compared
    monkeypatch.setenv("FLAKY", "1")
    result = runpytest_forked(pytester, "--reruns", "1", "-k", "flaky")
    assert result.parseoutcomes() == {"failed": 1, "rerun": 1, "deselected": 2}
    result.stdout.fnmatch_lines(["FLOP count changed for test_cases.py::TestModel::test_flaky*"])
    # and is written once it passes a rerun under --flops-update
    (pytester.path / "failed once").unlink()
    result = runpytest_forked(pytester, "--reruns", "1", "-k", "flaky", "--flops-update")
    assert result.parseoutcomes() == {"passed": 1, "rerun": 1, "deselected": 2}
    monkeypatch.delenv("FLAKY")
    result = runpytest_forked(pytester, "-n", "2", "--flops-update")
    result.assert_outcomes(passed=3)
    assert flops_line(result) == "flops: 1 test passed, 0 failed, 2 written, 0 removed"
    runpytest_forked(pytester, "-n", "2").assert_outcomes(passed=3)
