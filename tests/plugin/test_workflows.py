"""The gate under every common pytest workflow: no baseline lost, no changed count passing.

The suite of :mod:`tests.plugin.changed_suite` (counts changed since its
snapshots were written, two stale snapshots) runs under each workflow as a
real pytest process, compared, with ``--flops-update``, with ``--flops-prune``
and with both, and then:

* every baseline of a test that still exists is byte-identical, unless that
  test ran, passed and changed under ``--flops-update``; no file is added, and
  no measurement name leaves a file that stays;
* a stale snapshot goes only under ``--flops-prune``, and only in a run that
  proves its test gone (see each workflow's ``removes``); ``--flops-update``
  never removes one;
* a changed count never passes, nor exits 0, without ``--flops-update``;
* the JSON export, the ``flops:`` line and the report agree with pytest's own
  outcome (read from its JUnit XML, which pytest-flops does not write), and the
  stale snapshots the export lists are the ones the summary lists, with why.
"""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_flops.reports.terminal import MAX_ROWS
from tests.helpers import BEFORE_PYTEST_9, snapshot_tree
from tests.plugin.changed_suite import CHANGED, FAILING, STALE, UNCHANGED, changed_suite, run


@dataclass(frozen=True)
class Workflow:
    name: str
    args: tuple[str, ...]
    removes: frozenset[str] = frozenset(STALE)  # stale files a --flops-prune run removes
    env: dict[str, str] = field(default_factory=dict)
    before: tuple[str, ...] | None = None  # a run first, to leave cache state (--lf, --sw)
    stops_on_failure: bool = False  # -x, --maxfail: whole only when nothing fails
    randomly: bool = False
    unmeasured: frozenset[str] = frozenset()  # changed tests that measure nothing here
    plugin: str | None = None  # a module the workflow needs
    # JUnit says "skipped" for a test one of whose subtests was: it passed
    partly_skipped: frozenset[str] = frozenset()
    pytest_errors: frozenset[str] = frozenset()  # tests that pytest itself cannot run here


NONE: frozenset[str] = frozenset()
XDIST = ("-n", "2")
NO_BODY = frozenset(CHANGED)  # no test body runs
WITH_SUBTESTS = frozenset({"test_sub", "test_sub_unchanged", "test_sizes"})
# pytest-flakefinder cannot copy doctests (it reads item.function)
NO_DOCTEST_FILES = ("--ignore=pkg/test_a.txt", "--ignore=pkg/GUIDE")

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
    Workflow("xdist load", XDIST, plugin="xdist"),
    Workflow("xdist loadfile", (*XDIST, "--dist", "loadfile"), plugin="xdist"),
    Workflow("xdist loadgroup", (*XDIST, "--dist", "loadgroup"), plugin="xdist"),
    Workflow("xdist worksteal", (*XDIST, "--dist", "worksteal"), plugin="xdist"),
    Workflow("xdist --lf", (*XDIST, "--lf"), NONE, before=(), plugin="xdist"),
    Workflow("xdist crashed worker", XDIST, NONE, env={"FLOPS_CRASH": "1"}, plugin="xdist"),
    # round 3: pytest features that once made the evidence lie
    Workflow("--setup-only", ("--setup-only",), unmeasured=NO_BODY),
    # pytest 9.2's doctest items cannot set up under --setup-plan (doctest_namespace is None)
    Workflow(
        "--setup-plan",
        ("--setup-plan",),
        unmeasured=NO_BODY,
        pytest_errors=frozenset({"GUIDE", "test_a.txt"}),
    ),
    Workflow("a skipped subtest", (), env={"FLOPS_SKIP_SUB": "1"}, partly_skipped=WITH_SUBTESTS),
    Workflow(
        "every subtest skipped",
        (),
        env={"FLOPS_SKIP_SUB": "all"},
        unmeasured=frozenset({"test_sub"}),
        partly_skipped=WITH_SUBTESTS,
    ),
    Workflow(
        "flakefinder",
        ("--flake-finder", "--flake-runs=3", *NO_DOCTEST_FILES),
        plugin="pytest_flakefinder",
    ),
    Workflow("python_functions", ("-o", "python_functions=bench_*"), frozenset({"deleted"})),
    Workflow("a class with __init__", (), env={"FLOPS_INIT": "1"}),
    Workflow("-p no:unittest", ("-p", "no:unittest")),
]

MODES = {
    "compare": (),
    "update": ("--flops-update",),
    "prune": ("--flops-prune",),
    "update+prune": ("--flops-update", "--flops-prune"),
}

# pytest-repeat's "[2-3]" and pytest-flakefinder's "[1]": copies of one test
COPY_ID = re.compile(r"\[\d+(?:-\d+)?\]$")


def outcomes(root: Path, *, partly_skipped: frozenset[str] = frozenset()) -> dict[str, str]:
    """pytest's verdict per test (copies folded), from its JUnit XML."""
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
        seen.setdefault(COPY_ID.sub("", case.get("name", "")), set()).add(verdict)
    for name in partly_skipped & seen.keys():
        seen[name] = {"passed" if v == "skipped" else v for v in seen[name]}
    # one failed copy fails the test; one that ran and passed makes it pass
    return {
        name: next(v for v in ("failed", "passed", "skipped") if v in verdicts)
        for name, verdicts in seen.items()
    }


def measurement_names(tree: dict[str, bytes]) -> dict[str, set[str]]:
    names = {}
    for path, content in tree.items():
        try:
            names[path] = set(json.loads(content).get("measurements", {}))
        except ValueError:
            names[path] = set()
    return names


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("baseline")
    changed_suite(root)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.name for w in WORKFLOWS])
def test_workflow(baseline: Path, tmp_path: Path, workflow: Workflow, mode: str) -> None:
    if workflow.plugin is not None:
        pytest.importorskip(workflow.plugin)
    update, prune = "update" in mode, "prune" in mode
    root = tmp_path / "suite"
    shutil.copytree(baseline, root)
    env = {name: value.format(root=root) for name, value in workflow.env.items()}
    env["PYTEST_ADDOPTS"] = "" if workflow.randomly else "-p no:randomly"
    if workflow.before is not None:
        run(root, workflow.before, {"PYTEST_ADDOPTS": env["PYTEST_ADDOPTS"]})
    before = snapshot_tree(root)
    exports = ("--flops-report", "--flops-report-json=flops.json", "--junitxml=junit.xml")
    result = run(root, (*workflow.args, *exports, *MODES[mode]), env)
    after = snapshot_tree(root)
    verdicts = outcomes(root, partly_skipped=workflow.partly_skipped)
    output = result.stdout + result.stderr

    # -- no baseline lost, no file added, no measurement dropped ------------------------
    assert set(after) <= set(before), output  # no per-copy or stray files
    for path, content in before.items():
        stale = next((key for key, stale_path in STALE.items() if stale_path == path), None)
        test = Path(path).name.removesuffix(".flops.json")
        if stale is not None:
            removable = stale in workflow.removes and not (workflow.stops_on_failure and not update)
            assert (path not in after) == (prune and removable), (path, output)
            continue
        assert path in after, (path, output)  # a live test's baseline is never removed
        if after[path] != content:
            # only a test that ran, passed and changed is rewritten, under --flops-update
            assert update and test in CHANGED and verdicts.get(test) == "passed", (path, output)
        elif update and test in CHANGED - workflow.unmeasured and verdicts.get(test) == "passed":
            pytest.fail(f"{path}: its test passed with a changed count and was not rewritten")
    names_before, names_after = measurement_names(before), measurement_names(after)
    for path, names in names_after.items():
        assert names >= names_before[path], (path, output)  # --flops-update drops none

    # -- a changed count never passes, an unchanged one does ---------------------------
    unchanged = UNCHANGED - workflow.pytest_errors
    assert all(verdicts.get(test, "passed") != "failed" for test in unchanged), (verdicts, output)
    if not update:
        ran_changed = [
            test
            for test in CHANGED - workflow.unmeasured
            if verdicts.get(test, "skipped") != "skipped"
        ]
        assert all(verdicts[test] == "failed" for test in ran_changed), (verdicts, output)
        if ran_changed:
            assert result.returncode != 0, output

    # -- the exports, the summary line and the report agree with pytest ---------------
    document = json.loads((root / "flops.json").read_text())
    records = document["measurements"]
    for record in records:
        test = COPY_ID.sub("", record["nodeid"].rpartition("::")[2])
        if record["status"] in FAILING:
            assert verdicts.get(test) == "failed", (record, output)
        if record["status"] in ("passed", "updated", "new"):
            assert verdicts.get(test) != "skipped", (record, output)
        shown = f"{record['nodeid']}" + (
            "" if record["name"] == "default" else f" [{record['name']}]"
        )
        assert len(records) > MAX_ROWS or any(
            line.startswith(shown + " ") and line.rstrip().endswith(record["status"])
            for line in result.stdout.splitlines()
        ), (shown, output)
    failed_tests = {record["nodeid"] for record in records if record["status"] in FAILING}
    if len(records) > MAX_ROWS:
        assert f"{len(records) - MAX_ROWS} more measurement(s) not shown" in result.stdout
    lines = [
        line for line in result.stdout.splitlines() if re.match(r"flops: \d+ tests? passed", line)
    ]
    evidence = document["snapshots"]
    listed = [*evidence["stale"], *evidence["stale_measurements"]]
    assert len(lines) == 1 or (not records and not lines and not listed), output
    if records:
        assert f", {len(failed_tests)} failed," in lines[0], (lines[0], failed_tests)
    removed = set(before) - set(after)
    if prune:
        assert set(evidence["stale"]) >= removed, output
        assert f", {len(removed)} removed" in lines[0], (lines[0], removed)
    else:
        assert not removed
        for entry in listed:
            assert f"  {entry} ({evidence['reasons'][entry]})" in result.stdout, (entry, output)
        if listed:
            assert lines[0].endswith(f", {len(listed)} stale"), (lines[0], listed)
    if workflow.name == "--setup-plan" or workflow.name == "--setup-only":
        assert not any("passed without measuring" in why for why in evidence["reasons"].values())


@pytest.mark.slow
@pytest.mark.skipif(BEFORE_PYTEST_9, reason="the subtests fixture is pytest 9's")
def test_a_skipped_subtest_keeps_its_baseline_under_update(baseline: Path, tmp_path: Path) -> None:
    """The measurement of a skipped subtest is neither dropped nor compared."""
    root = tmp_path / "suite"
    shutil.copytree(baseline, root)
    sub = "pkg/__flops__/test_b.py/test_sub.flops.json"
    before = json.loads((root / sub).read_text())["measurements"]
    env = {"FLOPS_SKIP_SUB": "1", "PYTEST_ADDOPTS": "-p no:randomly"}
    result = run(root, ("--flops-update", "--flops-report"), env)
    after = json.loads((root / sub).read_text())["measurements"]
    # batch1 rewritten (Linear(9, 11) on (1, 9): 2*9*11 = 198 FLOP), batch2 kept
    assert (after["batch1"]["total"], after["batch2"]) == (198, before["batch2"])
    kept = r"pkg/test_b.py::test_sub \[batch2\] .* kept$"
    assert any(re.match(kept, line) for line in result.stdout.splitlines()), result.stdout
    # and a compare run on that machine passes: batch2 is not compared
    compared = run(root, (), env)
    assert compared.returncode == 0, compared.stdout


@pytest.mark.slow
@pytest.mark.skipif(BEFORE_PYTEST_9, reason="the subtests fixture is pytest 9's")
def test_update_never_rewrites_an_unreadable_snapshot_a_skipped_subtest_measured_in(
    baseline: Path, tmp_path: Path
) -> None:
    """Rewriting it with what ran would drop what the skipped subtest measured there."""
    root = tmp_path / "suite"
    shutil.copytree(baseline, root)
    sub = root / "pkg/__flops__/test_b.py/test_sub.flops.json"
    text = sub.read_text()
    conflicted = f"<<<<<<< HEAD\n{text}=======\n{text}>>>>>>> gpu-box\n"
    sub.write_text(conflicted)
    env = {"FLOPS_SKIP_SUB": "1", "PYTEST_ADDOPTS": "-p no:randomly"}
    result = run(root, ("--flops-update", "pkg/test_b.py"), env)
    assert result.returncode == 1, result.stdout
    assert "Cannot rewrite the FLOP snapshot of pkg/test_b.py::test_sub: " in result.stdout
    assert "Some of its subtests were skipped, and what they measured is in that file" in (
        result.stdout
    )
    assert sub.read_text() == conflicted
    # every subtest ran: nothing is lost, the file is rewritten
    result = run(root, ("--flops-update", "pkg/test_b.py"), {"PYTEST_ADDOPTS": "-p no:randomly"})
    assert result.returncode == 0, result.stdout
    assert json.loads(sub.read_text())["measurements"].keys() == {"batch1", "batch2"}
