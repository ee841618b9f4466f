"""The gate under every common pytest workflow: no baseline lost, no changed count passing.

One suite, its snapshots written at ``WIDTH = 10``, then changed to ``WIDTH = 11``
(three tests now count differently) and given two stale snapshots: one of a
test that no longer exists in ``test_a.py``, one of a test file that was
deleted. Each workflow runs it as a real pytest process, with and without
``--flops-update``, and then:

* every baseline of a test that still exists is byte-identical, unless that
  test ran, passed and changed under ``--flops-update``; no file is added;
* a stale snapshot goes only under ``--flops-update``, and only in a run that
  proves its test gone (see each workflow's ``removes``);
* a changed count never passes, nor exits 0, without ``--flops-update``;
* the JSON export, the ``flops:`` line and the report agree with pytest's own
  outcome (read from its JUnit XML, which pytest-flops does not write).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import BEFORE_PYTEST_9, snapshot_tree

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
from pathlib import Path

import torch

from pkg.test_a import WIDTH


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
def test_sub(flops, subtests):
    for batch in (1, 2):
        with subtests.test(batch=batch):
            model = torch.nn.Linear(9, WIDTH)
            with flops(model, name=f"batch{batch}"):
                model(torch.randn(batch, 9))


def test_sub_unchanged(flops, subtests):
    # compared once, after the test's own call: never against half its measurements
    for batch in (1, 2):
        with subtests.test(batch=batch):
            model = torch.nn.Linear(9, 3)
            with flops(model, name=f"batch{batch}"):
                model(torch.randn(batch, 9))
"""

CHANGED = {"test_1", "test_flaky"}  # their counts depend on WIDTH
UNCHANGED = {"test_2", "test_plain", "test_a.txt"}
if not BEFORE_PYTEST_9:
    TEST_B += SUBTESTS
    CHANGED.add("test_sub")
    UNCHANGED.add("test_sub_unchanged")
STALE = {
    "old": "pkg/__flops__/test_a.py/test_old.flops.json",  # test_old is gone from test_a.py
    "deleted": "pkg/__flops__/test_deleted.py/test_x.flops.json",  # test_deleted.py is gone
}
FAILING = {"changed", "missing", "no snapshot", "invalid snapshot", "not written", "over budget"}


@dataclass(frozen=True)
class Workflow:
    name: str
    args: tuple[str, ...]
    removes: frozenset[str] = frozenset(STALE)  # stale files a --flops-update run removes
    env: dict[str, str] = field(default_factory=dict)
    before: tuple[str, ...] | None = None  # a run first, to leave cache state (--lf, --sw)
    stops_on_failure: bool = False  # -x, --maxfail: whole only when nothing fails
    randomly: bool = False


NONE: frozenset[str] = frozenset()
XDIST = ("-n", "2")

WORKFLOWS = [
    Workflow("plain", ()),
    Workflow("--lf", ("--lf",), NONE, before=()),
    Workflow("--ff", ("--ff",), before=()),
    Workflow("--nf", ("--nf",)),
    Workflow("--sw", ("--sw",), NONE, before=()),
    Workflow("-k", ("-k", "test_2 or test_3"), NONE),
    Workflow("-m", ("-m", "slow"), NONE),
    Workflow("--deselect", ("--deselect", "pkg/test_a.py::test_2"), NONE),
    Workflow("--pyargs module", ("--pyargs", "pkg.test_a"), frozenset({"old"})),
    Workflow("--pyargs test", ("--pyargs", "pkg.test_a::test_1"), NONE),
    Workflow("file", ("pkg/test_a.py",), frozenset({"old"})),
    Workflow("file::test", ("pkg/test_a.py::test_1",), NONE),
    Workflow("@argsfile", ("@args.txt",), NONE),
    Workflow("--doctest-modules", ("--doctest-modules",)),
    Workflow("-x", ("-x",), stops_on_failure=True),
    Workflow("--maxfail", ("--maxfail=1",), stops_on_failure=True),
    Workflow("--co", ("--co",), NONE),
    Workflow("ctrl-c", (), NONE, env={"FLOPS_INTERRUPT": "1"}),
    Workflow("rerunfailures", ("--reruns", "2"), env={"FLOPS_FLAKY": "{root}"}),
    Workflow("repeat", ("--count", "3")),
    Workflow("randomly", ("-p", "randomly"), randomly=True),
    Workflow("timeout", ("--timeout", "1"), env={"FLOPS_SLOW": "1"}),
    Workflow("xdist load", XDIST),
    Workflow("xdist loadfile", (*XDIST, "--dist", "loadfile")),
    Workflow("xdist loadgroup", (*XDIST, "--dist", "loadgroup")),
    Workflow("xdist worksteal", (*XDIST, "--dist", "worksteal")),
    Workflow("xdist --lf", (*XDIST, "--lf"), NONE, before=()),
    Workflow("xdist crashed worker", XDIST, NONE, env={"FLOPS_CRASH": "1"}),
]


def write_suite(root: Path, *, width: int) -> None:
    (root / "pkg").mkdir(exist_ok=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "test_a.py").write_text(TEST_A.format(width=width))
    (root / "pkg" / "test_a.txt").write_text(TEST_A_TXT)
    (root / "pkg" / "test_b.py").write_text(TEST_B)
    (root / "pytest.ini").write_text("[pytest]\nmarkers = slow\n")
    (root / "args.txt").write_text("pkg/test_a.py::test_1\n")


def run(root: Path, args: tuple[str, ...], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:hypothesispytest", *args],
        cwd=root,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("baseline")
    write_suite(root, width=10)
    written = run(root, ("--flops-update", "-p", "no:randomly"), {})
    assert written.returncode == 0, written.stdout
    # test_1, test_2, test_a.txt, test_3, test_flaky, and the two subtests tests
    assert len(snapshot_tree(root)) == (5 if BEFORE_PYTEST_9 else 7), written.stdout
    write_suite(root, width=11)
    for path in STALE.values():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("{}\n")
    shutil.rmtree(root / ".pytest_cache")
    return root


def outcomes(root: Path) -> dict[str, str]:
    """pytest's verdict per test (repeats folded), from its JUnit XML."""
    report = root / "junit.xml"
    if not report.exists():
        return {}
    seen: dict[str, set[str]] = {}
    for case in ET.parse(report).iter("testcase"):
        tags = {child.tag for child in case}
        verdict = (
            "failed"
            if tags & {"failure", "error"}
            else "skipped"
            if "skipped" in tags
            else "passed"
        )
        seen.setdefault(re.sub(r"\[\d+-\d+\]$", "", case.get("name", "")), set()).add(verdict)
    # one failed repeat fails the test; one that ran and passed makes it pass
    return {
        name: next(v for v in ("failed", "passed", "skipped") if v in verdicts)
        for name, verdicts in seen.items()
    }


@pytest.mark.parametrize("update", [False, True], ids=["compare", "update"])
@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.name for w in WORKFLOWS])
def test_workflow(baseline: Path, tmp_path: Path, workflow: Workflow, update: bool) -> None:
    if workflow.args[:1] == ("-n",):
        pytest.importorskip("xdist")
    root = tmp_path / "suite"
    shutil.copytree(baseline, root)
    env = {name: value.format(root=root) for name, value in workflow.env.items()}
    env["PYTEST_ADDOPTS"] = "" if workflow.randomly else "-p no:randomly"
    if workflow.before is not None:
        run(root, workflow.before, {"PYTEST_ADDOPTS": env["PYTEST_ADDOPTS"]})
    before = snapshot_tree(root)
    exports = ("--flops-report", "--flops-report-json=flops.json", "--junitxml=junit.xml")
    args = (*workflow.args, *exports, *(("--flops-update",) if update else ()))
    result = run(root, args, env)
    after = snapshot_tree(root)
    verdicts = outcomes(root)
    output = result.stdout + result.stderr

    # -- no baseline lost, no file added ----------------------------------------------
    assert set(after) <= set(before), output  # no per-repeat or stray files
    for path, content in before.items():
        stale = next((key for key, stale_path in STALE.items() if stale_path == path), None)
        test = Path(path).name.removesuffix(".flops.json")
        if stale is not None:
            removable = stale in workflow.removes and not (workflow.stops_on_failure and not update)
            assert (path not in after) == (update and removable), (path, output)
        elif after.get(path) != content:
            # only a test that ran, passed and changed is rewritten, under --flops-update
            assert update and test in CHANGED and verdicts.get(test) == "passed", (path, output)
        elif update and test in CHANGED and verdicts.get(test) == "passed":
            pytest.fail(f"{path}: its test passed with a changed count and was not rewritten")

    # -- a changed count never passes, an unchanged one does ---------------------------
    assert all(verdicts.get(test, "passed") != "failed" for test in UNCHANGED), (verdicts, output)
    if not update:
        ran_changed = [test for test in CHANGED if verdicts.get(test, "skipped") != "skipped"]
        assert all(verdicts[test] == "failed" for test in ran_changed), (verdicts, output)
        if ran_changed:
            assert result.returncode != 0, output

    # -- the exports, the summary line and the report agree with pytest ---------------
    records = json.loads((root / "flops.json").read_text())["measurements"]
    statuses: dict[str, set[str]] = {}
    for record in records:
        test = re.sub(r"\[\d+-\d+\]$", "", record["nodeid"].rpartition("::")[2])
        statuses.setdefault(test, set()).add(record["status"])
        if record["status"] in FAILING:
            assert verdicts.get(test) == "failed", (record, output)
        if record["status"] in ("passed", "updated", "new"):
            assert verdicts.get(test) != "skipped", (record, output)
        shown = f"{record['nodeid']}" + (
            "" if record["name"] == "default" else f" [{record['name']}]"
        )
        assert any(
            line.startswith(shown + " ") and line.rstrip().endswith(record["status"])
            for line in result.stdout.splitlines()
        ), (shown, output)
    failed_tests = {record["nodeid"] for record in records if record["status"] in FAILING}
    lines = [
        line for line in result.stdout.splitlines() if re.match(r"flops: \d+ tests? passed", line)
    ]
    assert len(lines) == 1 or (not records and not lines), output
    if records:
        assert f", {len(failed_tests)} failed," in lines[0], (lines[0], failed_tests)
