"""``python -m pytest_flops history``: real commits; the page in a real headless Chromium."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from pytest_flops.measurement import Measurement, relative_text
from pytest_flops.reports.history import sparkline
from pytest_flops.snapshots.format import FlopsSnapshot
from pytest_flops.units import format_flops
from tests.reports.git_repos import (
    FORMAT_1,
    Repo,
    counted_linear,
    flops_cli,
    linear_measurement,
    make_repo,
    snapshot_text,
)
from tests.reports.test_html_report import browser  # noqa: F401  (the fixture, shared)

pytestmark = pytest.mark.slow  # real git repositories of real pytest sessions

Browser = Any


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "repo")


def test_a_sparkline_spans_the_smallest_to_the_largest() -> None:
    # 8 heights: (v - 10) * 7 // 20 for 10, 20, 30, 15 gives 0, 3, 7, 1
    assert sparkline([10, 20, 30, 15]) == "▁▄█▂"
    assert sparkline([5, 5]) == "▁▁"


@pytest.mark.slow
def test_each_test_lists_the_commits_that_changed_it(sessions_repo: Repo) -> None:
    first, second, third = (sessions_repo.short(f"HEAD~{n}") for n in (2, 1, 0))
    result = flops_cli(sessions_repo.root, "history")
    assert result.returncode == 0, result.stderr
    # test_changed: 1,920, then 2,112 (+192 = +10.00%), then moved with git mv, followed
    assert result.stdout.splitlines() == [
        "suite/test_m.py::test_changed  ▁██  2.11 KFLOP",
        "  date        commit        total               change  subject",
        f"  2026-11-01  {first}  1.92 KFLOP                       add the tests (added)",
        f"  2026-11-02  {second}  2.11 KFLOP  +192 FLOP (+10.00%)  widen fc",
        f"  2026-11-03  {third}  2.11 KFLOP                    0  move the tests to suite/ "
        "(renamed from tests/test_m.py::test_changed)",
        "",
        "suite/test_m.py::test_known  ▁▁  2.16 KFLOP",
        "  date        commit        total  change  subject",
        f"  2026-11-01  {first}  2.16 KFLOP          add the tests (added)",
        f"  2026-11-03  {third}  2.16 KFLOP       0  move the tests to suite/ "
        "(renamed from tests/test_m.py::test_known)",
    ]


@pytest.mark.slow
def test_since_and_paths_choose_the_commits_and_the_tests(sessions_repo: Repo) -> None:
    # the old folder still finds the tests that moved out of it
    by_old_path = flops_cli(sessions_repo.root, "history", "tests", "--since", "HEAD~1")
    lines = by_old_path.stdout.splitlines()
    second = sessions_repo.short("HEAD~1")
    assert lines[:3] == [
        "suite/test_m.py::test_changed  ▁▁  2.11 KFLOP",
        "  date        commit        total  change  subject",
        f"  2026-11-02  {second}  2.11 KFLOP          widen fc (as at HEAD~1)",
    ]
    one_file = "suite/__flops__/test_m.py/test_known.flops.json"
    only = flops_cli(sessions_repo.root, "history", one_file).stdout.splitlines()
    assert [line for line in only if not line.startswith(" ")] == [
        "suite/test_m.py::test_known  ▁▁  2.16 KFLOP"
    ]
    # a PATH relative to the directory it is run in, and a test file's path
    inside = flops_cli(sessions_repo.root / "suite", "history", ".").stdout
    assert inside.count("suite/test_m.py::") == 2
    by_test_file = flops_cli(sessions_repo.root, "history", "tests/test_m.py").stdout
    assert by_test_file == flops_cli(sessions_repo.root, "history").stdout


def test_a_merged_branch_is_its_merge_commit(repo: Repo) -> None:
    path = "t/__flops__/test_lm.py/test_lm.flops.json"
    repo.write(path, snapshot_text("test_lm", default={"M.x": (10, 0)}))
    repo.commit("lm", day=1)
    repo.git("switch", "-q", "-c", "wider")
    for day, width in ((2, 20), (3, 30)):  # two steps on the branch
        repo.write(path, snapshot_text("test_lm", default={"M.x": (width, 0)}))
        repo.commit(f"{width} wide", day=day)
    repo.git("switch", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "merge wider", "wider")
    lines = flops_cli(repo.root, "history").stdout.splitlines()
    # the main line: 10, then the merge's 30 (+20 = +200.00%); the branch's 20 never landed
    assert [line.split(maxsplit=1)[1] for line in lines[2:]] == [
        f"{repo.short('HEAD~1')}  10 FLOP                       lm (added)",
        f"{repo.short('HEAD')}  30 FLOP  +20 FLOP (+200.00%)  merge wider",
    ]


def test_a_repository_with_no_commit_yet(repo: Repo) -> None:
    result = flops_cli(repo.root, "history")
    assert result.returncode == 2
    assert result.stderr.startswith("pytest-flops history: error: unknown ref 'HEAD'")


def test_a_test_moved_from_the_pre_0_2_layout_keeps_its_history(repo: Repo) -> None:
    repo.write("t/__flops__/test_net/TestNet.test_step.flops.json", json.dumps(FORMAT_1))
    repo.commit("0.1", day=1)
    repo.git("rm", "-q", "-r", "t/__flops__/test_net")
    # --flops-update on 0.2: the current format, in the .py folder; and Net.b grew by 50
    grown = snapshot_text("TestNet::test_step", default={"Net.a": (100, 200), "Net.b": (100, 100)})
    repo.write("t/__flops__/test_net.py/TestNet.test_step~0123456789.flops.json", grown)
    repo.commit("0.2", day=2)
    repo.git("rm", "-q", "-r", "t/__flops__")
    repo.commit("drop it", day=3)
    repo.write("t/__flops__/test_net.py/TestNet.test_step~0123456789.flops.json", grown)
    repo.commit("bring it back", day=4)
    lines = flops_cli(repo.root, "history").stdout.splitlines()
    # 450, then 500 (+50 = +11.11%), removed, back at 500: no change from before it went
    assert [line.split(maxsplit=3)[2:] for line in lines[2:]] == [
        ["450", "FLOP                      0.1 (added)"],
        ["500", "FLOP  +50 FLOP (+11.11%)  0.2"],
        ["-", "drop it (removed)"],
        ["500", "FLOP                   0  bring it back (added again)"],
    ]
    assert lines[0] == "t/test_net.py::TestNet::test_step  ▁██  500 FLOP"


def test_named_measurements_are_series_of_their_own(repo: Repo) -> None:
    path = "t/__flops__/test_lm.py/test_lm.flops.json"
    repo.write(path, snapshot_text("test_lm", default={"M.x": (10, 20)}, decode={"M.x": (5, 0)}))
    repo.commit("lm", day=1)
    repo.write(path, snapshot_text("test_lm", default={"M.x": (10, 20)}, decode={"M.x": (6, 0)}))
    repo.commit("decode more", day=2)
    heads = [
        line for line in flops_cli(repo.root, "history").stdout.splitlines() if line[:1] == "t"
    ]
    # default unchanged (one point); decode 5 -> 6
    assert heads == [
        "t/test_lm.py::test_lm  ▁  30 FLOP",
        "t/test_lm.py::test_lm [decode]  ▁█  6 FLOP",
    ]


@pytest.mark.usefixtures("restored_precisions")
def test_a_commit_that_moved_precision_or_bytes_alone_says_what_moved(repo: Repo) -> None:
    path = "t/__flops__/test_fc.py/test_fc.flops.json"

    def commit(measurement: Measurement, message: str, day: int) -> str:
        snapshot = FlopsSnapshot(test="test_fc", depth=3, measurements={"default": measurement})
        repo.write(path, snapshot.to_text())
        return repo.commit(message, day=day)[:7]

    fp32 = commit(counted_linear(), "fc", 1)
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    tf32 = commit(counted_linear(), "tf32", 2)
    copied = commit(counted_linear(copied_input=True), "a copy", 3)
    # 48 FLOP throughout: its addmm in fp32, then in TF32; then a copy of the input, 64 B
    # (see counted_linear)
    assert flops_cli(repo.root, "history").stdout.splitlines() == [
        "t/test_fc.py::test_fc  ▁▁▁  48 FLOP",
        "  date        commit     total                  change  subject",
        f"  2026-11-01  {fp32}  48 FLOP                          fc (added)",
        f"  2026-11-02  {tf32}  48 FLOP  FLOPs at tf32 +48 FLOP  tf32",
        f"  2026-11-03  {copied}  48 FLOP    bytes_accessed +64 B  a copy",
    ]


def test_a_commit_that_moved_flops_between_modules_is_listed_and_says_so(repo: Repo) -> None:
    path = "t/__flops__/test_swap.py/test_swap.flops.json"
    repo.write(path, snapshot_text("test_swap", default={"M.a": (1600, 0)}))
    repo.commit("a", day=1)
    # the same 1,600 FLOP in M.b: every total held, the module rows did not
    repo.write(path, snapshot_text("test_swap", default={"M.b": (1600, 0)}))
    repo.commit("b", day=2)
    # and its addmm became an mm in M.b: the module held too, its operators did not
    moved = linear_measurement({"M.b": (1600, 0)})
    moved = replace(
        moved,
        modules={
            path: replace(row, by_op={"aten.mm": 1600}) for path, row in moved.modules.items()
        },
    )
    repo.write(
        path, FlopsSnapshot(test="test_swap", depth=3, measurements={"default": moved}).to_text()
    )
    repo.commit("mm", day=3)
    lines = flops_cli(repo.root, "history").stdout.splitlines()
    assert [line.split(maxsplit=2)[2] for line in lines[2:]] == [
        "1.6 KFLOP          a (added)",
        "1.6 KFLOP       0  b (moved between modules: M.a -1.6 KFLOP, M.b +1.6 KFLOP)",
        # own numbers, as diff's origin rows: M and Global hold no FLOPs of their own
        "1.6 KFLOP       0  mm (moved between operators: M.b: aten.addmm -1.6 KFLOP, "
        "aten.mm +1.6 KFLOP)",
    ]


def test_a_shallow_clone_says_where_its_history_starts(repo: Repo, tmp_path: Path) -> None:
    path = "t/__flops__/test_lm.py/test_lm.flops.json"
    for day, width in ((1, 10), (2, 20), (3, 30)):
        repo.write(path, snapshot_text("test_lm", default={"M.x": (width, 0)}))
        repo.commit(f"{width} wide", day=day)
    clone = tmp_path / "clone"
    repo.git("clone", "-q", "--depth", "2", repo.root.as_uri(), str(clone))
    lines = flops_cli(clone, "history").stdout.splitlines()
    # 20, then 30 (+10 = +50.00%): the 10 before the boundary was not fetched
    assert [line.split(maxsplit=2)[2] for line in lines[2:]] == [
        "20 FLOP                      20 wide (history starts here: a shallow clone "
        "(git fetch --unshallow for earlier commits))",
        "30 FLOP  +10 FLOP (+50.00%)  30 wide",
    ]


# -- bad input ------------------------------------------------------------------------


def test_a_corrupt_snapshot_at_some_commit_is_named(repo: Repo) -> None:
    path = "t/__flops__/test_lm.py/test_lm.flops.json"
    repo.write(path, snapshot_text("test_lm", default={"M.x": (10, 20)}))
    repo.commit("good", day=1)
    repo.write(path, '{"version": 2, "test": "test_lm"')
    bad = repo.commit("bad", day=2)
    repo.write(path, snapshot_text("test_lm", default={"M.x": (10, 20)}))
    repo.commit("good again", day=3)
    result = flops_cli(repo.root, "history")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"pytest-flops history: error: {path} (commit {bad[:7]}): not valid JSON"
    )
    assert result.stderr.count("\n") == 1


def test_no_snapshots_under_a_path(repo: Repo) -> None:
    repo.write(
        "t/__flops__/test_lm.py/test_lm.flops.json",
        snapshot_text("test_lm", default={"M.x": (1, 0)}),
    )
    repo.commit("one", day=1)
    (repo.root / "docs").mkdir()
    result = flops_cli(repo.root, "history", "docs")
    assert result.returncode == 2
    assert result.stderr == (
        "pytest-flops history: error: no snapshots under docs: "
        "no commit of HEAD holds a __flops__ snapshot there\n"
    )


def test_an_unknown_since_and_not_a_repository(repo: Repo, tmp_path: Path) -> None:
    repo.commit("empty", day=1)
    result = flops_cli(repo.root, "history", "--since", "v0.1")
    assert (result.returncode, result.stderr) == (
        2,
        f"pytest-flops history: error: unknown ref 'v0.1': no commit of that name in {repo.root}\n",
    )
    (tmp_path / "plain").mkdir()
    result = flops_cli(tmp_path / "plain", "history")
    assert (result.returncode, result.stderr) == (
        2,
        f"pytest-flops history: error: not a git repository: {tmp_path / 'plain'}\n",
    )


# -- the page, in the browser --------------------------------------------------------------


@pytest.fixture(scope="module")
def page(sessions_repo: Repo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("history") / "history.html"
    result = flops_cli(sessions_repo.root, "history", "--html", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def opened(browser: Browser, page: Path) -> Browser:  # noqa: F811
    browser.get(page.as_uri())
    browser.get_log("performance")  # only this load's requests from here on
    browser.refresh()
    assert browser.find_element("css selector", "body").get_attribute("data-ready") == "yes"
    return browser


def points(opened: Browser, test: str) -> list[Any]:
    section = opened.find_element("css selector", f'section.series[data-test="{test}"]')
    return section.find_elements("css selector", "circle.point")


@pytest.mark.slow
def test_the_page_loads_nothing(page: Path) -> None:
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "default-src 'none'" in text
    assert text.replace('"http://www.w3.org/2000/svg"', "").count("://") == 0


@pytest.mark.slow
def test_each_test_has_a_chart_with_a_point_per_commit_and_line(
    opened: Browser, sessions_repo: Repo
) -> None:
    titles = [h.text for h in opened.find_elements("css selector", "section.series h2")]
    assert titles == ["suite/test_m.py::test_changed", "suite/test_m.py::test_known"]
    shas = [sessions_repo.git("rev-parse", f"HEAD~{n}").strip() for n in (2, 1, 0)]
    found = points(opened, "suite/test_m.py::test_changed")
    values = {
        (dot.get_attribute("data-line"), dot.get_attribute("data-commit")): int(
            dot.get_attribute("data-value")
        )
        for dot in found
    }
    # forward 880 -> 968, backward 1,040 -> 1,144; the rename keeps them
    assert values == {
        ("forward", shas[0]): 880,
        ("forward", shas[1]): 968,
        ("forward", shas[2]): 968,
        ("backward", shas[0]): 1040,
        ("backward", shas[1]): 1144,
        ("backward", shas[2]): 1144,
    }
    section = opened.find_element("css selector", 'section.series[data-test$="test_changed"]')
    lines = section.find_elements("css selector", "polyline.line")
    assert sorted(line.get_attribute("class") for line in lines) == [
        "line backward",
        "line forward",
    ]
    # a higher count is drawn higher: SVG's y grows downwards
    forward = [dot for dot in found if dot.get_attribute("data-line") == "forward"]
    assert float(forward[0].get_attribute("cy")) > float(forward[1].get_attribute("cy"))


@pytest.mark.slow
def test_a_point_s_title_and_focus_show_its_commit_and_numbers(
    opened: Browser, sessions_repo: Repo
) -> None:
    found = points(opened, "suite/test_m.py::test_changed")
    second = sessions_repo.short("HEAD~1")
    widened = next(dot for dot in found if dot.get_attribute("data-commit").startswith(second))
    expected = [
        f"{second} 2026-11-02 widen fc",
        "total 2,112 FLOP, +192 FLOP (+10.00%)",
        "forward 968 FLOP, backward 1,144 FLOP",
        "bytes_accessed 2,732 B",  # derived in test_diff.py
    ]
    title = widened.find_element("css selector", "title").get_attribute("textContent")
    assert title.splitlines() == expected
    opened.execute_script("arguments[0].focus()", widened)
    readout = opened.find_element(
        "css selector", 'section.series[data-test$="test_changed"] .readout'
    )
    assert readout.text.splitlines() == expected
    assert "active" in widened.get_attribute("class")
    moved = found[-1]
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(opened).move_to_element(moved).perform()
    assert readout.text.splitlines()[1] == "renamed from tests/test_m.py::test_changed"


@pytest.mark.slow
def test_the_table_under_a_chart_lists_the_commits(opened: Browser) -> None:
    section = opened.find_element("css selector", 'section.series[data-test$="test_known"]')
    rows = [
        [cell.text for cell in row.find_elements("css selector", "td")]
        for row in section.find_elements("css selector", "tbody tr")
    ]
    # 2,160: forward 960, backward 1,200
    assert [row[2:6] for row in rows] == [
        ["2.16 KFLOP", "960 FLOP", "1.2 KFLOP", ""],
        ["2.16 KFLOP", "960 FLOP", "1.2 KFLOP", "0"],
    ]


@pytest.mark.slow
def test_the_page_made_no_network_request(opened: Browser, page: Path) -> None:
    requests = [
        message["params"]["request"]["url"]
        for entry in opened.get_log("performance")
        if (message := json.loads(entry["message"])["message"])["method"]
        == "Network.requestWillBeSent"
    ]
    assert requests == [page.as_uri()]
    errors = [entry for entry in opened.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_the_page_writes_amounts_as_the_terminal_report_does(opened: Browser) -> None:
    # the report's formatter (assets/common.js): 130,023,424 is "130 MFLOP", not "13"
    amounts = [0, 100, 999_999, 130_000_000, 130_023_424, 2_125, 10**15]
    shown = opened.execute_script("return arguments[0].map((n) => short(n));", amounts)
    assert shown == [format_flops(n) for n in amounts]
    assert shown[amounts.index(130_023_424)] == "130 MFLOP"


@pytest.mark.slow
@pytest.mark.usefixtures("restored_precisions")
def test_the_page_names_the_precision_of_a_point_where_it_changed(
    browser: Browser,  # noqa: F811
    repo: Repo,
    tmp_path: Path,
) -> None:
    path = "t/__flops__/test_fc.py/test_fc.flops.json"
    for day, message in ((1, "fc"), (2, "tf32")):
        if day == 2:
            torch.backends.cuda.matmul.fp32_precision = "tf32"
        snapshot = FlopsSnapshot(
            test="test_fc", depth=3, measurements={"default": counted_linear()}
        )
        repo.write(path, snapshot.to_text())
        repo.commit(message, day=day)
    out = tmp_path / "history.html"
    assert flops_cli(repo.root, "history", "--html", str(out)).returncode == 0
    browser.get(out.as_uri())
    dots = points(browser, "t/test_fc.py::test_fc")
    titles = {
        dot.get_attribute("data-commit")[:7]: dot.find_element("css selector", "title")
        .get_attribute("textContent")
        .splitlines()[1:]
        for dot in dots
        if dot.get_attribute("data-line") == "forward"
    }
    # 48 FLOP of addmm (see counted_linear), 116 B, in fp32 then in TF32: each point
    # names its precision, as the precision changed (a series in one precision alone
    # does not list it: the total says it, see the test above)
    assert titles == {
        repo.short("HEAD~1"): [
            "added",
            "total 48 FLOP",
            "forward 48 FLOP, backward 0 FLOP",
            "bytes_accessed 116 B",
            "FLOPs at fp32 48 FLOP",
        ],
        repo.short("HEAD"): [
            # what moved, as the terminal's table says it
            "total 48 FLOP, FLOPs at tf32 +48 FLOP",
            "forward 48 FLOP, backward 0 FLOP",
            "bytes_accessed 116 B",
            "FLOPs at tf32 48 FLOP",
        ],
    }


@pytest.mark.slow
def test_the_page_keeps_every_digit_and_rounds_as_the_terminal_does(
    browser: Browser,  # noqa: F811
    repo: Repo,
    tmp_path: Path,
) -> None:
    huge = "t/__flops__/test_big.py/test_huge.flops.json"
    small = "t/__flops__/test_big.py/test_round.flops.json"
    # 2^64, a (2^21 x 2^21) @ (2^21 x 2^21) matmul on meta, then 2 FLOP more: past 2^53 a
    # double cannot tell them apart. 1,600 then 1,618: +1.125%, +1.12% rounded half to even.
    for day, extra, more in ((1, 0, 0), (2, 2, 18)):
        repo.write(huge, snapshot_text("test_huge", default={"M.x": (2**64 + extra, 0)}))
        repo.write(small, snapshot_text("test_round", default={"M.x": (1_600 + more, 0)}))
        repo.commit(f"day {day}", day=day)
    out = tmp_path / "history.html"
    assert flops_cli(repo.root, "history", "--html", str(out)).returncode == 0
    browser.get(out.as_uri())
    assert browser.find_element("css selector", "body").get_attribute("data-ready") == "yes"

    def last_point(test: str) -> tuple[list[str], list[str]]:
        """The hover text of the test's last point, and the last row of its table."""
        dot = points(browser, test)[-1]
        title = dot.find_element("css selector", "title").get_attribute("textContent")
        section = browser.find_element("css selector", f'section.series[data-test="{test}"]')
        row = section.find_elements("css selector", "tbody tr")[-1]
        return title.splitlines(), [cell.text for cell in row.find_elements("css selector", "td")]

    title, row = last_point("t/test_big.py::test_huge")
    assert title[1] == (
        f"total 18,446,744,073,709,551,618 FLOP, +2 FLOP ({relative_text(2**64, 2**64 + 2)})"
    )
    assert row[5] == f"+2 FLOP ({relative_text(2**64, 2**64 + 2)})"
    forward = [
        dot.get_attribute("data-value")
        for dot in points(browser, "t/test_big.py::test_huge")
        if dot.get_attribute("data-line") == "forward"
    ]
    assert forward == [str(2**64), str(2**64 + 2)]
    title, row = last_point("t/test_big.py::test_round")
    assert title[1] == "total 1,618 FLOP, +18 FLOP (+1.12%)"
    assert row[5] == "+18 FLOP (+1.12%)"


@pytest.mark.slow
def test_commit_subjects_of_any_text_leave_the_page_whole(
    browser: Browser,  # noqa: F811
    repo: Repo,
    tmp_path: Path,
) -> None:
    # "<!--<script>" would keep the data's </script> from ending it; "@SCRIPT@" is data, not
    # the template's marker for the script (see test_html_report's AWKWARD_IDS)
    subjects = ["wider <!--<script> head", "docs: mention @SCRIPT@ marker"]
    path = "t/__flops__/test_fc.py/test_fc.flops.json"
    for day, subject in enumerate(subjects, start=1):
        repo.write(path, snapshot_text("test_fc", default={"M.x": (1_600 * day, 0)}))
        repo.commit(subject, day=day)
    rows = fc_rows_on_the_page(browser, repo, tmp_path)
    assert [row.find_elements("css selector", "td")[-1].text for row in rows] == [
        f"{subjects[0]} (added)",
        subjects[1],
    ]


def fc_rows_on_the_page(window: Browser, repo: Repo, tmp_path: Path) -> list[Any]:
    """The rows of ``t/test_fc.py::test_fc``'s table on the history page of ``repo``."""
    out = tmp_path / "history.html"
    assert flops_cli(repo.root, "history", "--html", str(out)).returncode == 0
    window.get(out.as_uri())
    assert window.find_element("css selector", "body").get_attribute("data-ready") == "yes"
    section = window.find_element(
        "css selector", 'section.series[data-test="t/test_fc.py::test_fc"]'
    )
    return list(section.find_elements("css selector", "tbody tr"))


def close_totals(repo: Repo) -> list[str]:
    """Three commits of Linear(1, N, bias=False) on a (1, 1) input, 2*N FLOP: N = 500,000,
    500,200, 500,250, so 1,000,000, 1,000,400 and 1,000,500 FLOP; their short commits."""
    path = "t/__flops__/test_fc.py/test_fc.flops.json"
    shorts = []
    for day, n in enumerate((500_000, 500_200, 500_250), start=1):
        repo.write(path, snapshot_text("test_fc", default={"M.fc": (2 * n, 0)}))
        shorts.append(repo.commit(f"N={n}", day=day)[:7])
    return shorts


def test_close_totals_are_written_with_the_digits_that_tell_them_apart(repo: Repo) -> None:
    first, second, third = close_totals(repo)
    # 1,000,000 against 1,000,400 needs four digits past the point (1.0000, 1.0004), and
    # 1,000,400 against 1,000,500 too; every digit kept, its zeros too
    assert flops_cli(repo.root, "history").stdout.splitlines()[1:] == [
        "  date        commit          total              change  subject",
        f"  2026-11-01  {first}  1.0000 MFLOP                      N=500000 (added)",
        f"  2026-11-02  {second}  1.0004 MFLOP  +400 FLOP (+0.04%)  N=500200",
        f"  2026-11-03  {third}  1.0005 MFLOP  +100 FLOP (+0.01%)  N=500250",
    ]


@pytest.mark.slow
def test_the_page_writes_close_totals_as_the_terminal_does(
    browser: Browser,  # noqa: F811
    repo: Repo,
    tmp_path: Path,
) -> None:
    close_totals(repo)
    rows = fc_rows_on_the_page(browser, repo, tmp_path)
    assert [row.find_elements("css selector", "td")[2].text for row in rows] == [
        "1.0000 MFLOP",
        "1.0004 MFLOP",
        "1.0005 MFLOP",
    ]
