"""A suite that changed since its snapshots were written, for tests that run it whole.

Its snapshots are written at ``WIDTH = 10`` (with ``--doctest-modules``, so a
doctest in ``test_b.py`` has one that plain runs cannot collect), then it is
changed to ``WIDTH = 11`` (the tests in ``CHANGED`` now count differently)
and given two stale snapshots: one of a test that no longer exists in
``test_a.py``, one of a test file that was deleted. A dotless doctest file,
``GUIDE``, is collected by every run. Environment variables make its tests
slow, flaky, interrupted or crashing, skip subtests, or give a test class an
``__init__`` (pytest then cannot collect it), for the workflows that need it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.forked_pytest import pytest_process
from tests.helpers import BEFORE_PYTEST_9, snapshot_tree

__all__ = ["CHANGED", "FAILING", "STALE", "UNCHANGED", "changed_suite", "run"]

TEST_A = '''"""A module docstring with a doctest that measures nothing.

>>> 1 + 1
2
"""
import os
import time

import pytest
import torch

WIDTH = {width}


def test_1(flops):
    model = torch.nn.Linear(9, WIDTH)
    with flops(model):
        if os.environ.get("FLOPS_SLOW"):
            time.sleep(3)  # past --timeout 1, inside the block
        model(torch.randn(4, 9))


@pytest.mark.slow
def test_2(flops):
    model = torch.nn.Linear(9, 4)
    with flops(model):
        model(torch.randn(4, 9))


@pytest.mark.xfail(reason="a non-strict xfail: when it passes, it is compared")
def test_xpass(flops):
    model = torch.nn.Linear(9, WIDTH)
    with flops(model):
        model(torch.randn(3, 9))
'''

# collected by default (test*.txt), and it measures: test_a.py's snapshots are not its own
TEST_A_TXT = """
>>> import torch
>>> flops = getfixture("flops")
>>> with flops():
...     _ = torch.ones(2, 3) @ torch.ones(3, 4)
"""

TEST_B = """
import os
import unittest
from pathlib import Path

import torch

from pkg.test_a import WIDTH
from pytest_flops import FlopsTestCase


def helper():
    \"\"\"Measured by --doctest-modules only.

    >>> flops = getfixture("flops")
    >>> with flops():
    ...     _ = torch.ones(2, 3) @ torch.ones(3, 5)
    \"\"\"


class TestInit:
    def test_m(self, flops):
        model = torch.nn.Linear(9, 2)
        with flops(model):
            model(torch.randn(4, 9))


if os.environ.get("FLOPS_INIT"):
    TestInit.__init__ = lambda self: None  # pytest warns, and collects none of its tests


class SizedCase(FlopsTestCase, unittest.TestCase):
    def test_sizes(self):
        model = torch.nn.Linear(9, 3)
        for batch in (1, 2):
            with self.subTest(batch=batch):
                skip = os.environ.get("FLOPS_SKIP_SUB")
                if skip == "all" or (skip and batch == 2):
                    self.skipTest("needs a GPU")
                with self.flops(model, name=f"batch{batch}"):
                    model(torch.randn(batch, 9))


def test_3(flops):
    model = torch.nn.Linear(9, 3)
    with flops(model):
        model(torch.randn(4, 9))
    if os.environ.get("FLOPS_INTERRUPT"):
        raise KeyboardInterrupt
    if os.environ.get("FLOPS_CRASH"):
        os._exit(1)


def test_flaky(flops):
    model = torch.nn.Linear(9, WIDTH)
    with flops(model):
        model(torch.randn(2, 9))
    marker = Path(os.environ.get("FLOPS_FLAKY", "."), "failed once")
    if os.environ.get("FLOPS_FLAKY") and not marker.exists():
        marker.write_text("")
        raise AssertionError("fails on its first attempt")


def test_plain():
    pass
"""

# pytest 9's subtests fixture (older pytest has none)
SUBTESTS = """
import pytest

def test_sub(flops, subtests):
    for batch in (1, 2):
        with subtests.test(batch=batch):
            skip = os.environ.get("FLOPS_SKIP_SUB")
            if skip == "all" or (skip and batch == 2):
                pytest.skip("needs a GPU")
            model = torch.nn.Linear(9, WIDTH)
            with flops(model, name=f"batch{batch}"):
                model(torch.randn(batch, 9))


def test_sub_unchanged(flops, subtests):
    # compared once, after the test's own call: never against half its measurements
    for batch in (1, 2):
        with subtests.test(batch=batch):
            if os.environ.get("FLOPS_SKIP_SUB") == "all":
                pytest.skip("needs a GPU")
            model = torch.nn.Linear(9, 3)
            with flops(model, name=f"batch{batch}"):
                model(torch.randn(batch, 9))
"""

GUIDE = """
>>> import torch
>>> flops = getfixture("flops")
>>> with flops():
...     _ = torch.ones(2, 3) @ torch.ones(3, 6)
"""

CHANGED = {"test_1", "test_flaky", "test_xpass"}  # their counts depend on WIDTH
UNCHANGED = {"test_2", "test_plain", "test_a.txt", "test_m", "test_sizes", "GUIDE"}
if not BEFORE_PYTEST_9:
    TEST_B += SUBTESTS
    CHANGED.add("test_sub")
    UNCHANGED.add("test_sub_unchanged")
STALE = {
    "old": "pkg/__flops__/test_a.py/test_old.flops.json",  # test_old is gone from test_a.py
    "deleted": "pkg/__flops__/test_deleted.py/test_x.flops.json",  # test_deleted.py is gone
}
FAILING = {"changed", "missing", "no snapshot", "invalid snapshot", "not written", "over budget"}


def write_suite(root: Path, *, width: int) -> None:
    (root / "pkg").mkdir(exist_ok=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "test_a.py").write_text(TEST_A.format(width=width))
    (root / "pkg" / "test_a.txt").write_text(TEST_A_TXT)
    (root / "pkg" / "test_b.py").write_text(TEST_B)
    (root / "pkg" / "GUIDE").write_text(GUIDE)
    (root / "pytest.ini").write_text(
        "[pytest]\nmarkers = slow\naddopts = --doctest-glob=test*.txt --doctest-glob=GUIDE\n"
    )
    (root / "args.txt").write_text("pkg/test_a.py::test_1\n")


def run(root: Path, args: tuple[str, ...], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return pytest_process(["-p", "no:hypothesispytest", *args], cwd=root, env={**os.environ, **env})


def changed_suite(root: Path) -> None:
    """The suite with its snapshots written at ``WIDTH = 10``, then changed, in ``root``."""
    write_suite(root, width=10)
    written = run(root, ("--flops-update", "--doctest-modules", "-p", "no:randomly"), {})
    assert written.returncode == 0, written.stdout
    # test_1, test_2, test_xpass, test_a.txt, GUIDE, test_3, test_flaky, helper's
    # doctest, TestInit::test_m, SizedCase::test_sizes, and the two subtests tests
    assert len(snapshot_tree(root)) == (10 if BEFORE_PYTEST_9 else 12), written.stdout
    write_suite(root, width=11)
    for path in STALE.values():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("{}\n")
    shutil.rmtree(root / ".pytest_cache")
