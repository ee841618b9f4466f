"""``python -m pytest_flops diff``: real git repositories, real commits, the real command line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from pytest_flops.measurement import GLOBAL, Measurement, ModuleFlops
from pytest_flops.reports.diff import Comparison, Revision, measurement_change, quantities
from pytest_flops.reports.diff_render import diff_json, diff_lines, diff_markdown
from pytest_flops.snapshots.format import FlopsSnapshot
from tests.reports.git_repos import (
    EXAMPLES,
    FORMAT_1,
    ROOT,
    Repo,
    counted_linear,
    flops_cli,
    linear_measurement,
    make_repo,
    snapshot_text,
)

pytestmark = pytest.mark.slow  # real git repositories of real pytest sessions

NET = "tests/__flops__/test_net.py"
# test_net: Net.a = Linear forward 100, backward 200; Net.b forward 50, backward 100:
# total 450, forward 150, backward 300.
NET_ROWS = {"Net.a": (100, 200), "Net.b": (50, 100)}


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "repo")


# -- snapshots of real sessions ------------------------------------------------------


@pytest.mark.slow
def test_a_commit_s_change_is_shown_with_where_it_starts(sessions_repo: Repo) -> None:
    result = flops_cli(sessions_repo.root, "diff", "HEAD~2", "HEAD~1")
    assert result.returncode == 0, result.stderr
    base, head = sessions_repo.short("HEAD~2"), sessions_repo.short("HEAD~1")
    # test_changed: 1,920 -> 2,112 (+192, +10%), forward 880 -> 968, backward 1,040 -> 1,144.
    # Own FLOPs: Net.new 0 -> 528 (176 forward addmm + 352 backward mm: input and weight
    # gradients); Net.old 480 -> 0 (160 + 320); Net.fc 1,440 -> 1,584 (720 -> 792 each
    # way); Net itself (2,112 minus its children's) and Global stay 0: no row.
    # bytes (fp32, the rules of docs/roofline.md): addmm fc (10 + 36 + 90 + 40) * 4 = 704
    # and old (2 + 40 + 20 + 8) * 4 = 280, 984 in all -> fc (11 + 36 + 99 + 44) * 4 = 760
    # and new (2 + 44 + 22 + 8) * 4 = 304, 1,064; the gradients' mm 1,152 -> 1,252 and
    # the sums (the loss's and the bias gradients') 248 -> 268 by the same rules; with the
    # input made in the block (randn, 36 floats: 144) and the gradient seed (ones_like:
    # writes 4, reads nothing): 2,532 -> 2,732 (+200, +7.90%)
    assert result.stdout.splitlines() == [
        f"FLOPs: HEAD~2 ({base}) -> HEAD~1 ({head})",
        "1 measurement(s) changed, 1 unchanged",
        "",
        "tests/test_m.py::test_changed: 1.92 KFLOP -> 2.11 KFLOP, +192 FLOP (+10.00%)",
        "                      before       after     change  rel. change",
        "  total           1.92 KFLOP  2.11 KFLOP  +192 FLOP      +10.00%",
        "  forward           880 FLOP    968 FLOP   +88 FLOP      +10.00%",
        "  backward        1.04 KFLOP  1.14 KFLOP  +104 FLOP      +10.00%",
        "  bytes_accessed     2.53 kB     2.73 kB     +200 B       +7.90%",
        "  where it starts (own FLOPs: a module's minus its children's):",
        "    module       before       after     change  operators",
        "    Net.new      0 FLOP    528 FLOP  +528 FLOP  aten.mm +352 FLOP, aten.addmm +176 FLOP",
        "    Net.old    480 FLOP      0 FLOP  -480 FLOP  aten.mm -320 FLOP, aten.addmm -160 FLOP",
        "    Net.fc   1.44 KFLOP  1.58 KFLOP  +144 FLOP  aten.addmm +72 FLOP, aten.mm +72 FLOP",
    ]


@pytest.mark.slow
def test_the_json_has_the_exact_numbers_and_fail_on_change_exits_1(
    sessions_repo: Repo, tmp_path: Path
) -> None:
    out = tmp_path / "diff.json"
    result = flops_cli(
        sessions_repo.root, "diff", "HEAD~2", "HEAD", "--json", str(out), "--fail-on-change"
    )
    assert result.returncode == 1
    document = json.loads(out.read_text())
    assert document["base"] == {
        "ref": "HEAD~2",
        "commit": sessions_repo.git("rev-parse", "HEAD~2").strip(),
    }
    [change] = document["changed"]
    # from HEAD~2 to HEAD the test also moved from tests/ to suite/ (git mv)
    assert change["test"] == "suite/test_m.py::test_changed"
    assert change["renamed_from"] == "tests/test_m.py::test_changed"
    assert change["quantities"] == {
        "total": {"before": 1920, "after": 2112},
        "forward": {"before": 880, "after": 968},
        "backward": {"before": 1040, "after": 1144},
        "bytes_accessed": {"before": 2532, "after": 2732},  # see the test above
    }
    assert change["relative_change"] == pytest.approx(0.1)
    assert [(o["module"], o["before"], o["after"], o["operators"]) for o in change["origins"]] == [
        ("Net.new", 0, 528, {"aten.mm": 352, "aten.addmm": 176}),
        ("Net.old", 480, 0, {"aten.mm": -320, "aten.addmm": -160}),
        ("Net.fc", 1440, 1584, {"aten.addmm": 72, "aten.mm": 72}),
    ]
    # the Global row's operators: mm 720 + 240 + 320... before: fc 720 + old 320 = 1,040
    assert change["operators"] == [
        {"op": "aten.mm", "unit": "FLOP", "before": 1040, "after": 1144},
        {"op": "aten.addmm", "unit": "FLOP", "before": 880, "after": 968},
        {"op": "aten.mm", "unit": "bytes accessed", "before": 1152, "after": 1252},
        {"op": "aten.addmm", "unit": "bytes accessed", "before": 984, "after": 1064},
        {"op": "aten.sum", "unit": "bytes accessed", "before": 248, "after": 268},
    ]
    assert document["added"] == document["removed"] == []
    assert document["unchanged"] == 1
    assert document["renamed"] == [
        {"before": "tests/test_m.py::test_known", "after": "suite/test_m.py::test_known"}
    ]


@pytest.mark.slow
def test_a_rename_alone_is_no_flop_change_and_passes_fail_on_change(sessions_repo: Repo) -> None:
    result = flops_cli(sessions_repo.root, "diff", "HEAD~1", "HEAD", "--fail-on-change")
    assert result.returncode == 0
    assert result.stdout.splitlines()[1:] == [
        "no FLOP change (2 measurement(s) compared)",
        "",
        "tests renamed, with no FLOP change:",
        "  tests/test_m.py::test_changed -> suite/test_m.py::test_changed",
        "  tests/test_m.py::test_known -> suite/test_m.py::test_known",
    ]


@pytest.mark.slow
def test_the_default_compares_head_with_the_working_tree(
    sessions_repo: Repo, tmp_path: Path
) -> None:
    clone = Repo(tmp_path / "clone")
    shutil.copytree(sessions_repo.root, clone.root)
    # the working tree takes test_changed's first snapshot back: 2,112 -> 1,920
    old = clone.git("show", "HEAD~2:tests/__flops__/test_m.py/test_changed.flops.json")
    clone.write("suite/__flops__/test_m.py/test_changed.flops.json", old)
    result = flops_cli(clone.root, "diff")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"FLOPs: HEAD ({clone.short()}) -> working tree"
    # -192 of 2,112 is -9.09%
    assert lines[3] == "suite/test_m.py::test_changed: 2.11 KFLOP -> 1.92 KFLOP, -192 FLOP (-9.09%)"
    # a file only in the working tree, not yet added to git, is a new test
    clone.write(
        "suite/__flops__/test_m.py/test_new.flops.json", snapshot_text("test_new", default=NET_ROWS)
    )
    lines = flops_cli(clone.root, "diff", "HEAD").stdout.splitlines()
    assert lines[-2:] == ["tests added:", "  suite/test_m.py::test_new  450 FLOP"]


# -- the revisions ------------------------------------------------------------------


def test_three_dots_compare_with_the_merge_base(repo: Repo) -> None:
    repo.write(f"{NET}/test_net.flops.json", snapshot_text("test_net", default=NET_ROWS))
    repo.commit("net", day=1)
    repo.git("switch", "-q", "-c", "feature")
    # the branch doubles Net.b: +50 forward, +100 backward, total 450 -> 600 (+33.33%)
    repo.write(
        f"{NET}/test_net.flops.json",
        snapshot_text("test_net", default={"Net.a": (100, 200), "Net.b": (100, 200)}),
    )
    repo.commit("double b", day=2)
    repo.git("switch", "-q", "main")
    # main gains a test after the branch started: not the branch's change
    repo.write(
        "tests/__flops__/test_net.py/test_other.flops.json",
        snapshot_text("test_other", default={"M.x": (1, 2)}),
    )
    repo.commit("other", day=3)

    three_dots = flops_cli(repo.root, "diff", "main...feature").stdout.splitlines()
    base = repo.short("main~1")
    assert (
        three_dots[0]
        == f"FLOPs: merge base of main and feature ({base}) -> feature ({repo.short('feature')})"
    )
    assert three_dots[1] == "1 measurement(s) changed, 0 unchanged"
    assert three_dots[3] == "tests/test_net.py::test_net: 450 FLOP -> 600 FLOP, +150 FLOP (+33.33%)"
    # two revisions, or A..B: the tips themselves, so main's new test looks removed
    for arguments in (["main", "feature"], ["main..feature"]):
        lines = flops_cli(repo.root, "diff", *arguments).stdout.splitlines()
        assert lines[1] == "1 measurement(s) changed, 0 unchanged, 1 removed"
        assert lines[-2:] == ["tests removed:", "  tests/test_net.py::test_other  3 FLOP"]
    # A... from the feature branch: the merge base against HEAD
    repo.git("switch", "-q", "feature")
    assert flops_cli(repo.root, "diff", "main...").stdout.splitlines()[1:2] == [
        "1 measurement(s) changed, 0 unchanged"
    ]


def test_the_biggest_relative_change_comes_first(repo: Repo) -> None:
    repo.write(
        "t/__flops__/test_a.py/test_big.flops.json",
        snapshot_text("test_big", default={"M.x": (1000, 0)}),
    )
    repo.write(
        "t/__flops__/test_a.py/test_small.flops.json",
        snapshot_text("test_small", default={"M.x": (10, 0)}),
    )
    repo.commit("two", day=1)
    # test_big grows by 500 (+50%), test_small by 10 (+100%): smaller, but relatively bigger
    repo.write(
        "t/__flops__/test_a.py/test_big.flops.json",
        snapshot_text("test_big", default={"M.x": (1500, 0)}),
    )
    repo.write(
        "t/__flops__/test_a.py/test_small.flops.json",
        snapshot_text("test_small", default={"M.x": (20, 0)}),
    )
    lines = flops_cli(repo.root, "diff").stdout.splitlines()
    headings = [line for line in lines if line.startswith("t/")]
    assert headings == [
        "t/test_a.py::test_small: 10 FLOP -> 20 FLOP, +10 FLOP (+100.00%)",
        "t/test_a.py::test_big: 1 KFLOP -> 1.5 KFLOP, +500 FLOP (+50.00%)",
    ]


def test_named_measurements_added_and_removed(repo: Repo) -> None:
    path = f"{NET}/test_net.flops.json"
    repo.write(path, snapshot_text("test_net", default=NET_ROWS, decode={"Net.a": (7, 0)}))
    repo.commit("net", day=1)
    repo.write(path, snapshot_text("test_net", default=NET_ROWS, prefill={"Net.a": (30, 0)}))
    result = flops_cli(repo.root, "diff", "--fail-on-change")
    assert result.returncode == 1  # a measurement went away
    assert result.stdout.splitlines()[1:] == [
        "no FLOP change in the 1 measurement(s) both sides have",
        "",
        "tests added:",
        "  tests/test_net.py::test_net [prefill]  30 FLOP",
        "",
        "tests removed:",
        "  tests/test_net.py::test_net [decode]  7 FLOP",
    ]


def test_the_comment_escapes_what_markdown_and_html_would_read(repo: Repo, tmp_path: Path) -> None:
    path = "t/__flops__/test_p.py/test_p_a_b_~0123456789.flops.json"
    test = "test_p[<a>|b]"
    repo.write(path, snapshot_text(test, default={"M.x": (10, 0)}))
    repo.commit("p", day=1)
    repo.write(path, snapshot_text(test, default={"M.x": (20, 0)}))
    assert flops_cli(repo.root, "diff", "--md", str(tmp_path / "c.md")).returncode == 0
    comment = (tmp_path / "c.md").read_text()
    # a | would end the table cell; a < would open an HTML tag inside <summary>
    assert "| `t/test_p.py::test_p[<a>\\|b]` | 10 FLOP | 20 FLOP | +10 FLOP | +100.00% |" in comment
    assert "<summary><code>t/test_p.py::test_p[&lt;a&gt;|b]</code>: +100.00%</summary>" in comment


# -- formats and layouts --------------------------------------------------------------


def test_a_format_1_file_in_the_pre_0_2_layout_is_the_same_test_as_its_current_file(
    repo: Repo,
) -> None:
    # before 0.2: the folder named after the stem, no hash for capitals
    repo.write(
        "tests/__flops__/test_net/TestNet.test_step.flops.json",
        json.dumps(FORMAT_1, indent=2) + "\n",
    )
    repo.commit("0.1 snapshot", day=1)
    current = FlopsSnapshot.from_text(json.dumps(FORMAT_1), where="test").to_text()
    assert '"version": 1' not in current
    repo.git("rm", "-q", "-r", "tests/__flops__/test_net")
    # what --flops-update writes now: the current format, the .py folder, a hashed name
    repo.write("tests/__flops__/test_net.py/TestNet.test_step~0123456789.flops.json", current)
    repo.commit("moved by --flops-update", day=2)
    assert flops_cli(repo.root, "diff", "HEAD~1", "HEAD").stdout.splitlines()[1:] == [
        "no FLOP change (1 measurement(s) compared)"
    ]
    # and a change across the move is shown under the test's name
    grown = json.loads(current)
    for row in ("Global", "Net", "Net.b"):
        grown["measurements"]["default"]["modules"][row]["forward"] += 50
        grown["measurements"]["default"]["modules"][row]["by_op"]["aten.addmm"] += 50
    grown["measurements"]["default"]["forward"] += 50
    grown["measurements"]["default"]["total"] += 50
    repo.write(
        "tests/__flops__/test_net.py/TestNet.test_step~0123456789.flops.json", json.dumps(grown)
    )
    lines = flops_cli(repo.root, "diff", "HEAD~1").stdout.splitlines()
    # 450 + 50 = 500: +11.11%, all of it Net.b's own addmm
    assert (
        lines[3]
        == "tests/test_net.py::TestNet::test_step: 450 FLOP -> 500 FLOP, +50 FLOP (+11.11%)"
    )
    assert lines[-1] == "    Net.b   150 FLOP  200 FLOP  +50 FLOP  aten.addmm +50 FLOP"


def test_a_snapshot_stored_shallower_is_compared_at_its_depth(repo: Repo) -> None:
    path = f"{NET}/test_net.flops.json"
    deep = snapshot_text("test_net", default=NET_ROWS)
    repo.write(path, deep)
    repo.commit("depth 3", day=1)
    # flops_depth = 1: the same counts without the Net.a and Net.b rows, as the plugin
    # compares them (at the shallower depth): no change
    shallow = FlopsSnapshot.from_text(deep, where="test").at_depth(1)
    assert "Net.a" not in shallow.to_text()
    repo.write(path, shallow.to_text())
    result = flops_cli(repo.root, "diff", "--fail-on-change")
    assert result.returncode == 0
    assert result.stdout.splitlines()[1] == "no FLOP change (1 measurement(s) compared)"


def test_a_changed_test_moved_by_git_is_followed(repo: Repo) -> None:
    repo.write(
        "old/__flops__/test_net.py/test_net.flops.json", snapshot_text("test_net", default=NET_ROWS)
    )
    repo.commit("net", day=1)
    repo.git("mv", "old", "new")
    repo.write(
        "new/__flops__/test_net.py/test_net.flops.json",
        snapshot_text("test_net", default={"Net.a": (100, 200), "Net.b": (60, 120)}),
    )
    lines = flops_cli(repo.root, "diff").stdout.splitlines()
    # Net.b 150 -> 180: 450 -> 480, +6.67%
    assert lines[1] == "1 measurement(s) changed, 0 unchanged"
    assert lines[3:5] == [
        "new/test_net.py::test_net: 450 FLOP -> 480 FLOP, +30 FLOP (+6.67%)",
        "  renamed from old/test_net.py::test_net",
    ]


# -- counts a newer snapshot format adds ---------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Format3Measurement(Measurement):
    """A measurement as a newer format may store it: counts beside total, forward, backward."""

    recompute: int = 0
    bytes_moved: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "recompute": self.recompute,
            "bytes": dict(self.bytes_moved),
        }


def test_counts_a_newer_format_stores_are_compared_and_shown() -> None:
    rows = linear_measurement(NET_ROWS).modules
    before = Format3Measurement(modules=rows, recompute=50, bytes_moved={"read": 4000})
    after = Format3Measurement(modules=rows, recompute=100, bytes_moved={"read": 6000})
    assert quantities(after) == {
        "total": 450,
        "forward": 150,
        "backward": 300,
        "recompute": 100,
        "bytes_accessed": 0,  # built by hand: no bytes moved
        "bytes.read": 6000,
    }
    comparison = _one_change(before, after, test="t.py::test_net")
    # the same FLOPs, recompute 50 -> 100 (+100%), bytes read 4 kB -> 6 kB (+50%)
    # (and this version's bytes accessed, 0 in measurements built by hand)
    assert diff_lines(comparison)[3:11] == [
        "t.py::test_net: 450 FLOP -> 450 FLOP, 0 (0%)",
        "                    before     after    change  rel. change",
        "  total           450 FLOP  450 FLOP         0           0%",
        "  forward         150 FLOP  150 FLOP         0           0%",
        "  backward        300 FLOP  300 FLOP         0           0%",
        "  recompute        50 FLOP  100 FLOP  +50 FLOP     +100.00%",
        "  bytes_accessed       0 B       0 B         0           0%",
        "  bytes.read          4 kB      6 kB     +2 kB      +50.00%",
    ]


# -- bad input ------------------------------------------------------------------------


def test_not_a_git_repository(tmp_path: Path) -> None:
    result = flops_cli(tmp_path, "diff")
    assert result.returncode == 2
    assert result.stderr == f"pytest-flops diff: error: not a git repository: {tmp_path}\n"


def test_an_unknown_ref(repo: Repo) -> None:
    repo.commit("empty", day=1)
    result = flops_cli(repo.root, "diff", "v9.9", "--fail-on-change")
    assert result.returncode == 2
    assert result.stderr == (
        f"pytest-flops diff: error: unknown ref 'v9.9': no commit of that name in {repo.root}\n"
    )
    assert flops_cli(repo.root, "diff", "nope...").returncode == 2


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"tool": "another", "results": []}\n', "expected snapshot format version"),
    ],
    ids=["corrupt", "another tool's"],
)
def test_an_unreadable_snapshot_at_a_commit_is_named(repo: Repo, text: str, problem: str) -> None:
    repo.write(f"{NET}/test_net.flops.json", snapshot_text("test_net", default=NET_ROWS))
    repo.write("tests/__flops__/test_x.py/test_x.flops.json", text)
    commit = repo.commit("bad", day=1)
    result = flops_cli(repo.root, "diff", "HEAD", "HEAD")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"pytest-flops diff: error: tests/__flops__/test_x.py/test_x.flops.json "
        f"(commit {commit[:7]}): "
    )
    assert problem in result.stderr
    assert result.stderr.count("\n") == 1


def test_an_output_that_cannot_be_written(repo: Repo, tmp_path: Path) -> None:
    repo.commit("empty", day=1)
    result = flops_cli(repo.root, "diff", "--md", str(tmp_path / "missing" / "x.md"))
    assert result.returncode == 2
    assert result.stderr.startswith("pytest-flops diff: error: cannot write ")
    assert "missing/x.md" in result.stderr


# -- no torch ---------------------------------------------------------------------------

NO_TORCH = """
import runpy, sys
sys.modules["torch"] = None  # import torch now fails, as in a clone with no torch installed
sys.argv = ["pytest_flops", *sys.argv[1:]]
try:
    runpy.run_module("pytest_flops", run_name="__main__")
except SystemExit as exit:
    code = exit.code
loaded = sorted(m for m in sys.modules if m.startswith(("torch.", "pytest_flops.counting")))
print("exit", code, "loaded", loaded, file=sys.stderr)
"""


@pytest.mark.parametrize("command", [["diff", "HEAD~1", "--fail-on-change"], ["history"]])
def test_neither_command_imports_torch(repo: Repo, command: list[str]) -> None:
    shutil.copytree(EXAMPLES, repo.root / "examples" / "__flops__")
    repo.commit("examples", day=1)
    repo.write(
        "examples/__flops__/test_vision.py/test_vit_forward.flops.json",
        snapshot_text("test_vit_forward", default={"M.x": (1, 0)}),
    )
    repo.commit("a smaller vit", day=2)
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH, *command], cwd=repo.root, capture_output=True, text=True
    )
    assert result.stderr.splitlines()[-1] == f"exit {1 if command[0] == 'diff' else 0} loaded []"
    assert "examples/test_vision.py::test_vit_forward" in result.stdout


# -- the CI recipe ------------------------------------------------------------------------


def comment_workflow() -> dict[Any, Any]:
    """docs/ci.md's workflow that comments on pull requests."""
    text = (ROOT / "docs" / "ci.md").read_text()
    for block in re.findall(r"^```yaml\n(.*?)^```", text, re.S | re.M):
        workflow = yaml.safe_load(block)
        triggers = workflow[True]  # YAML 1.1 reads the key on as True
        if isinstance(triggers, dict) and "pull_request" in triggers:
            return workflow
    raise AssertionError("docs/ci.md has no pull_request workflow")


@pytest.mark.slow
def test_the_ci_recipe_posts_the_pull_request_s_flop_changes(
    sessions_repo: Repo, tmp_path: Path
) -> None:
    workflow = comment_workflow()
    assert workflow[True]["pull_request"]["paths"] == ["**/__flops__/**"]  # YAML 1.1: on
    steps = workflow["jobs"]["comment"]["steps"]
    assert steps[0]["with"]["fetch-depth"] == 0  # the merge base must be there
    [command] = [step["run"] for step in steps if "pytest_flops diff" in step.get("run", "")]
    [comment] = [step for step in steps if "sticky-pull-request-comment" in step.get("uses", "")]

    # GitHub's side: main holds the first commit of the sessions' repository, then gains
    # a test of its own after the pull request branched off
    origin = Repo(tmp_path / "origin")
    subprocess.run(["git", "clone", "-q", str(sessions_repo.root), str(origin.root)], check=True)
    origin.git("reset", "-q", "--hard", "HEAD~2")
    origin.write(
        "tests/__flops__/test_m.py/test_later.flops.json",
        snapshot_text("test_later", default={"M.x": (1, 0)}),
    )
    origin.commit("a test on main", day=4)
    # the runner's checkout: the pull request's two commits (widen fc, move to suite/)
    checkout = Repo(tmp_path / "checkout")
    subprocess.run(["git", "clone", "-q", str(origin.root), str(checkout.root)], check=True)
    checkout.git("fetch", "-q", str(sessions_repo.root), "main:pr")
    checkout.git("switch", "-q", "pr")

    run = command.replace("${{ github.base_ref }}", "main")
    bin_dir = str(Path(sys.executable).parent)
    result = subprocess.run(
        ["bash", "-c", run],
        cwd=checkout.root,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]},
    )
    assert result.returncode == 0, result.stderr
    posted = (checkout.root / comment["with"]["path"]).read_text()
    base = sessions_repo.short("HEAD~2")  # the merge base: main's test_later is not ours
    head = sessions_repo.short("HEAD")
    assert posted == "\n".join(
        [
            "<!-- pytest-flops diff -->",
            f"### FLOPs: `merge base of origin/main and HEAD ({base})` → `HEAD ({head})`",
            "",
            "1 measurement(s) changed, 1 unchanged.",
            "",
            "| test | before | after | change | % |",
            "|---|---:|---:|---:|---:|",
            "| `suite/test_m.py::test_changed` | 1.92 KFLOP | 2.11 KFLOP | +192 FLOP | +10.00% |",
            "",
            "<details>",
            "<summary><code>suite/test_m.py::test_changed</code>: +10.00%</summary>",
            "",
            "Renamed from `tests/test_m.py::test_changed`.",
            "",
            "|  | before | after | change | % |",
            "|---|---:|---:|---:|---:|",
            "| total | 1.92 KFLOP | 2.11 KFLOP | +192 FLOP | +10.00% |",
            "| forward | 880 FLOP | 968 FLOP | +88 FLOP | +10.00% |",
            "| backward | 1.04 KFLOP | 1.14 KFLOP | +104 FLOP | +10.00% |",
            "| bytes_accessed | 2.53 kB | 2.73 kB | +200 B | +7.90% |",
            "",
            "Where it starts (own FLOPs: a module's minus its children's):",
            "",
            "| module | before | after | change | operators |",
            "|---|---:|---:|---:|---|",
            "| `Net.new` | 0 FLOP | 528 FLOP | +528 FLOP |"
            " aten.mm +352 FLOP, aten.addmm +176 FLOP |",
            "| `Net.old` | 480 FLOP | 0 FLOP | -480 FLOP |"
            " aten.mm -320 FLOP, aten.addmm -160 FLOP |",
            "| `Net.fc` | 1.44 KFLOP | 1.58 KFLOP | +144 FLOP |"
            " aten.addmm +72 FLOP, aten.mm +72 FLOP |",
            "",
            "</details>",
            "",
            "**Tests renamed, with no FLOP change**",
            "",
            "| before | after |",
            "|---|---|",
            "| `tests/test_m.py::test_known` | `suite/test_m.py::test_known` |",
            "",
        ]
    )


# -- what moved where FLOPs held --------------------------------------------------------


def _one_change(
    before: Measurement, after: Measurement, *, test: str = "t.py::test_fc"
) -> Comparison:
    """``test`` counted ``before`` and then ``after``, in one working tree."""
    change = measurement_change(test, "default", before, after)
    revision = Revision(ref="working tree", commit=None)
    return Comparison(
        base=revision, head=revision, changed=(change,), added=(), removed=(), unchanged=0
    )


def _diff_text(before: Measurement, after: Measurement) -> list[str]:
    return diff_lines(_one_change(before, after))[3:]


def _comment_details(before: Measurement, after: Measurement) -> list[str]:
    """The pull-request comment's collapsed section of the one changed test."""
    lines = diff_markdown(_one_change(before, after)).splitlines()
    return lines[lines.index("<details>") :]


@pytest.mark.usefixtures("restored_precisions")
def test_a_change_of_precision_alone_is_shown_with_where_it_starts() -> None:
    before = counted_linear()
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    after = counted_linear()
    # addmm of (2, 4) @ (4, 3): 2 * 2 * 4 * 3 = 48 FLOP, in fp32, then in TF32. Bytes
    # (fp32): bias 3, input 8 and weight 12 read, output 6 written: 29 * 4 = 116 B.
    assert _diff_text(before, after) == [
        "t.py::test_fc: 48 FLOP -> 48 FLOP, 0 (0%)",
        "                   before    after    change  rel. change",
        "  total           48 FLOP  48 FLOP         0           0%",
        "  forward         48 FLOP  48 FLOP         0           0%",
        "  backward         0 FLOP   0 FLOP         0           0%",
        "  bytes_accessed    116 B    116 B         0           0%",
        "  FLOPs at fp32   48 FLOP        -  -48 FLOP            -",
        "  FLOPs at tf32         -  48 FLOP  +48 FLOP            -",
        "  where it starts (own FLOPs: a module's minus its children's):",
        "    module              before    after  change  operators",
        "    _CopyingLinear.fc  48 FLOP  48 FLOP       0  aten.addmm at fp32 -48 FLOP, "
        "aten.addmm at tf32 +48 FLOP",
    ]


def test_a_change_of_bytes_alone_is_shown_with_where_it_starts() -> None:
    # the copy: 8 floats read and 8 written, 64 B, in _CopyingLinear itself (not in its fc)
    assert _diff_text(counted_linear(), counted_linear(copied_input=True)) == [
        "t.py::test_fc: 48 FLOP -> 48 FLOP, 0 (0%)",
        "                   before    after  change  rel. change",
        "  total           48 FLOP  48 FLOP       0           0%",
        "  forward         48 FLOP  48 FLOP       0           0%",
        "  backward         0 FLOP   0 FLOP       0           0%",
        "  bytes_accessed    116 B    180 B   +64 B      +55.17%",
        "  where it starts (own FLOPs: a module's minus its children's):",
        "    module          before   after  change  operators",
        "    _CopyingLinear  0 FLOP  0 FLOP       0  aten.clone +64 B",
    ]


def test_the_json_names_the_precisions_and_bytes_that_moved() -> None:
    comparison = _one_change(counted_linear(), counted_linear(copied_input=True))
    (changed,) = json.loads(diff_json(comparison))["changed"]
    assert changed["origins"] == [
        {
            "module": "_CopyingLinear",
            "before": 0,
            "after": 0,
            "operators": {},
            "precisions": {},
            "bytes_accessed": {"aten.clone": 64},
        }
    ]


@pytest.mark.usefixtures("restored_precisions")
def test_the_comment_shows_a_change_of_precision_alone() -> None:
    before = counted_linear()
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    after = counted_linear()
    # the 48 FLOP addmm of the test above, moved from fp32 to TF32; its 116 B held
    assert _comment_details(before, after) == [
        "<details>",
        "<summary><code>t.py::test_fc</code>: 0%</summary>",
        "",
        "|  | before | after | change | % |",
        "|---|---:|---:|---:|---:|",
        "| total | 48 FLOP | 48 FLOP | 0 | 0% |",
        "| forward | 48 FLOP | 48 FLOP | 0 | 0% |",
        "| backward | 0 FLOP | 0 FLOP | 0 | 0% |",
        "| bytes_accessed | 116 B | 116 B | 0 | 0% |",
        "| FLOPs at fp32 | 48 FLOP | - | -48 FLOP | - |",
        "| FLOPs at tf32 | - | 48 FLOP | +48 FLOP | - |",
        "",
        "Where it starts (own FLOPs: a module's minus its children's):",
        "",
        "| module | before | after | change | operators |",
        "|---|---:|---:|---:|---|",
        "| `_CopyingLinear.fc` | 48 FLOP | 48 FLOP | 0 |"
        " aten.addmm at fp32 -48 FLOP, aten.addmm at tf32 +48 FLOP |",
        "",
        "</details>",
    ]


def test_the_comment_shows_a_change_of_bytes_alone() -> None:
    # the 64 B input copy of the test above, in _CopyingLinear itself
    assert _comment_details(counted_linear(), counted_linear(copied_input=True)) == [
        "<details>",
        "<summary><code>t.py::test_fc</code>: 0%</summary>",
        "",
        "|  | before | after | change | % |",
        "|---|---:|---:|---:|---:|",
        "| total | 48 FLOP | 48 FLOP | 0 | 0% |",
        "| forward | 48 FLOP | 48 FLOP | 0 | 0% |",
        "| backward | 0 FLOP | 0 FLOP | 0 | 0% |",
        "| bytes_accessed | 116 B | 180 B | +64 B | +55.17% |",
        "",
        "Where it starts (own FLOPs: a module's minus its children's):",
        "",
        "| module | before | after | change | operators |",
        "|---|---:|---:|---:|---|",
        "| `_CopyingLinear` | 0 FLOP | 0 FLOP | 0 | aten.clone +64 B |",
        "",
        "</details>",
    ]


def _global_mm(flops: int, accessed: int) -> Measurement:
    """One ``aten.mm`` of ``flops`` FLOP that read and wrote ``accessed`` bytes."""
    row = ModuleFlops(
        forward=flops,
        by_op={"aten.mm": flops},
        bytes_forward=accessed,
        bytes_by_op={"aten.mm": accessed},
    )
    return Measurement(modules={GLOBAL: row})


def test_bytes_too_close_for_three_digits_are_written_whole() -> None:
    # a (1000 x 1000) @ (1000 x 1000) mm, 2e9 FLOP, then 2 FLOP more: 20 MB read and
    # written, then 20 B more. "20 MB" on both sides would hide the +20 B.
    before, after = _global_mm(2 * 10**9, 20_000_000), _global_mm(2 * 10**9 + 2, 20_000_020)
    cells = {re.split(r"\s{2,}", row.strip())[0]: re.split(r"\s{2,}", row.strip())[1:4]
             for row in _diff_text(before, after)[2:6]}  # fmt: skip
    assert cells["bytes_accessed"] == ["20,000,000 B", "20,000,020 B", "+20 B"]
    assert cells["total"] == ["2.000000000 GFLOP", "2.000000002 GFLOP", "+2 FLOP"]


def test_a_test_id_with_backticks_stays_one_code_span_in_the_comment() -> None:
    # a parametrized id that holds backticks, HTML and emphasis: only a code span fenced
    # by more backticks than it holds keeps it from rendering
    test = "t.py::test_ids[`t` <b>x</b> *y*]"
    comment = diff_markdown(
        _one_change(
            linear_measurement({"M": (8, 0)}), linear_measurement({"M": (16, 0)}), test=test
        )
    )
    assert f"| ``{test}`` | 8 FLOP | 16 FLOP | +8 FLOP | +100.00% |" in comment.splitlines()
