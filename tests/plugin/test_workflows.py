"""The gate under every common pytest workflow: no baseline lost, no changed count passing.

The suite of :mod:`tests.plugin.changed_suite` (counts changed since its
snapshots were written, two stale snapshots) runs under each workflow as a
real pytest process, with and without ``--flops-update``, and then:

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
import re
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import snapshot_tree
from tests.plugin.changed_suite import CHANGED, FAILING, STALE, UNCHANGED, changed_suite, run


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
    Workflow("pytest-split", ("--splits", "3", "--group", "2"), NONE),
    Workflow("xdist load", XDIST),
    Workflow("xdist loadfile", (*XDIST, "--dist", "loadfile")),
    Workflow("xdist loadgroup", (*XDIST, "--dist", "loadgroup")),
    Workflow("xdist worksteal", (*XDIST, "--dist", "worksteal")),
    Workflow("xdist --lf", (*XDIST, "--lf"), NONE, before=()),
    Workflow("xdist crashed worker", XDIST, NONE, env={"FLOPS_CRASH": "1"}),
]


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


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("baseline")
    changed_suite(root)
    return root


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
