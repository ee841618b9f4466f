"""``--flops-report-html``: the page of a real session, opened in a real headless Chromium.

The browser tests need Debian's ``chromium`` and ``chromium-driver`` (``.ci/run``
installs them) and selenium (in the ``test`` extra); without them they skip,
saying which is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_flops.measurement import GLOBAL, Measurement, ModuleFlops, Traffic, relative_text
from pytest_flops.reports.export import Export, RunMetadata, json_report, write_exports
from pytest_flops.reports.html import html_report
from pytest_flops.reports.records import Status
from pytest_flops.reports.terminal import ordered
from pytest_flops.snapshots.stale import SnapshotEvidence, StaleReason
from pytest_flops.units import format_bytes, format_flops
from tests.built_records import linear_measurement, make_record
from tests.forked_pytest import pytest_process
from tests.helpers import CHANGING_SUITE

pytestmark = pytest.mark.slow  # a real session's page in a real browser

# test_known, a (4, 9) batch: Sequential.0 = Linear(9, 10) forward 2*4*9*10 = 720 and
# its weight gradient 720 (the input needs none); Sequential.2 = Linear(10, 3)
# forward 2*4*10*3 = 240, backward 240 for the input gradient + 240 for the weight.
KNOWN = {"Global": 2160, "Sequential": 2160, "Sequential.0": 1440, "Sequential.2": 720}
# test_changed, snapshot: fc = Linear(9, 10) 720 + 720, old = Linear(10, 2)
# 2*4*10*2 = 160 forward, 320 backward: Net 1,920. Now: fc = Linear(9, 11)
# 792 + 792, new = Linear(11, 2) 176 + 352: Net 2,112.
CHANGED_KINDS = {
    "Global": "grown",
    "Net": "grown",
    "Net.fc": "grown",
    "Net.new": "new",
    "Net.old": "gone",
}


def run_pytest(root: Path, *args: str, changed: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTEST_ADDOPTS": "-p no:randomly", "CHANGED": "1" if changed else ""}
    return pytest_process(args, cwd=root, env=env)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of a run in which test_known passed and test_changed changed."""
    root = tmp_path_factory.mktemp("html")
    (root / "test_h.py").write_text(CHANGING_SUITE)
    assert run_pytest(root, "--flops-update", changed=False).returncode == 0
    result = run_pytest(root, "--flops-report-html=out/report.html", changed=True)
    assert result.returncode == 1, result.stdout  # test_changed failed
    # a relative path is relative to where pytest was started; the summary says where
    assert f"flops: saved {root / 'out' / 'report.html'}" in result.stdout.splitlines()
    return root / "out" / "report.html"


def test_the_page_is_one_file_that_loads_nothing(page: Path) -> None:
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    # the SVG namespace is a name, not a request
    assert text.replace('"http://www.w3.org/2000/svg"', "").count("://") == 0
    assert "default-src 'none'" in text


def test_a_test_id_cannot_end_the_embedded_script(tmp_path: Path) -> None:
    nodeid = "t.py::test_x[</script><script>alert(1)</script>]"
    record = make_record(nodeid, linear_measurement(240, 480))
    document = json_report([record], RunMetadata.collect().to_dict())
    text = html_report(document, [record])
    assert "</script><script>alert(1)" not in text
    assert nodeid.replace("<", "\\u003c").replace(">", "\\u003e") in text


# -- in the browser ---------------------------------------------------------------------

Browser = Any  # selenium's WebDriver: the tests skip when selenium is absent


def wait_until(browser: Browser, condition: Callable[[Browser], Any]) -> Any:
    """What ``condition`` gives once it is truthy: the page draws some parts on events."""
    from selenium.webdriver.support.wait import WebDriverWait

    return WebDriverWait(browser, 10).until(condition)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip(
            "no chromium and chromedriver (Debian: apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    from selenium.webdriver.chrome.service import Service

    session = webdriver.Chrome(service=Service(driver), options=options)
    yield session
    session.quit()


@pytest.fixture
def opened(browser: Browser, page: Path) -> Browser:
    browser.get(page.as_uri())
    browser.get_log("performance")  # only this load's requests from here on
    browser.refresh()
    assert browser.find_element("css selector", "body").get_attribute("data-ready") == "yes"
    return browser


def suite_rows(browser: Browser) -> list[list[str]]:
    return [
        [cell.text for cell in row.find_elements("css selector", "td")]
        for row in browser.find_elements("css selector", "#suite tbody tr")
    ]


def open_icicle(browser: Browser, test: str) -> Any:
    browser.find_element("link text", f"test_h.py::{test}").click()
    index = browser.find_element("link text", f"test_h.py::{test}").get_attribute("href")
    section = browser.find_element("id", index.rpartition("#")[2])
    return section.find_element("css selector", "svg.icicle")


def boxes(icicle: Any) -> dict[str, Any]:
    return {
        box.get_attribute("data-path"): box
        for box in icicle.find_elements("css selector", "rect.box")
    }


def test_the_suite_table_shows_each_test_failures_first(opened: Browser) -> None:
    # test_changed failed: 2,112 FLOP (forward 792 + 176 = 968, backward 792 + 352 =
    # 1,144), +192 = 10.00% over 1,920; test_known passed
    assert suite_rows(opened) == [
        ["test_h.py::test_changed", "2.11 KFLOP", "968 FLOP", "1.14 KFLOP", "+192 FLOP",
         "+10.00%", "changed"],
        ["test_h.py::test_known", "2.16 KFLOP", "960 FLOP", "1.2 KFLOP", "0", "0%", "passed"],
    ]  # fmt: skip
    status = opened.find_element("css selector", "#suite tbody tr td:last-child")
    assert "status-failed" in status.get_attribute("class")
    summary = opened.find_element("id", "summary").text
    # 2,160 + 2,112 = 4,272: forward 960 + 968 = 1,928, backward 1,200 + 1,144 = 2,344
    assert summary.startswith("Suite total 4.27 KFLOP (forward 1.93 KFLOP, backward 2.34 KFLOP)")


def test_the_suite_table_sorts_by_total_change_and_status(opened: Browser) -> None:
    header = {th.text: th for th in opened.find_elements("css selector", "#suite th")}
    header["total"].click()
    assert [row[0] for row in suite_rows(opened)] == [
        "test_h.py::test_known",
        "test_h.py::test_changed",
    ]
    header["total"].click()
    assert [row[0] for row in suite_rows(opened)] == [
        "test_h.py::test_changed",
        "test_h.py::test_known",
    ]
    header["change"].click()
    assert suite_rows(opened)[0][0] == "test_h.py::test_changed"  # +192 against 0
    header["status"].click()
    assert suite_rows(opened)[0][-1] == "changed"  # failing first
    assert header["status"].get_attribute("aria-sort") == "descending"


def test_a_known_icicle_has_its_boxes_with_the_exact_numbers(opened: Browser) -> None:
    found = boxes(open_icicle(opened, "test_known"))
    assert {path: int(box.get_attribute("data-flops")) for path, box in found.items()} == KNOWN
    assert {box.get_attribute("data-kind") for box in found.values()} == {"same"}
    title = found["Sequential.0"].find_element("css selector", "title")
    # 1,440 of Sequential's 2,160: 66.7%
    assert title.get_attribute("textContent").splitlines() == [
        "Sequential.0",
        "1,440 FLOP (66.7% of Sequential)",
        "forward 720 FLOP, backward 720 FLOP",
        "before 1,440 FLOP → after 1,440 FLOP",
    ]


def test_a_click_on_a_box_shows_its_operators(opened: Browser) -> None:
    found = boxes(open_icicle(opened, "test_known"))
    found["Sequential.2"].click()
    table = opened.find_element("css selector", '.ops-table[data-path="Sequential.2"]')
    rows = [
        [cell.text for cell in row.find_elements("css selector", "td")]
        for row in table.find_elements("css selector", "tbody tr")
    ]
    # forward: addmm 240; backward: two mm of 240 (input and weight gradients)
    assert rows == [["aten.mm", "480", "480", ""], ["aten.addmm", "240", "240", ""]]
    assert "selected" in found["Sequential.2"].get_attribute("class")


def test_a_changed_test_is_colored_where_it_changed(opened: Browser) -> None:
    found = boxes(open_icicle(opened, "test_changed"))
    assert {path: box.get_attribute("data-kind") for path, box in found.items()} == CHANGED_KINDS
    title = found["Net"].find_element("css selector", "title").get_attribute("textContent")
    assert "before 1,920 FLOP → after 2,112 FLOP" in title.splitlines()
    old = found["Net.old"].find_element("css selector", "title").get_attribute("textContent")
    # Linear(10, 2): 160 forward + 320 backward in the snapshot, not measured now
    assert old.splitlines() == ["Net.old", "gone: not measured this time",
                                "before 480 FLOP → after 0 FLOP"]  # fmt: skip
    # the snapshot's total sets the scale where it was larger, so a gone box keeps its width
    widths = {path: float(box.get_attribute("width")) for path, box in found.items()}
    assert widths["Net.old"] > 0


def test_the_page_made_no_network_request(opened: Browser, page: Path) -> None:
    open_icicle(opened, "test_changed")
    requests = [
        message["params"]["request"]["url"]
        for entry in opened.get_log("performance")
        if (message := json.loads(entry["message"])["message"])["method"]
        == "Network.requestWillBeSent"
    ]
    assert requests == [page.as_uri()]
    errors = [entry for entry in opened.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_a_merged_report_writes_the_same_page(tmp_path: Path, page: Path) -> None:
    """``merge --html`` and ``--flops-report-html`` share one writer: checked once here."""
    record = make_record("t.py::test_a", linear_measurement(240, 480))
    export = Export(records=(record,), metadata={"torch_version": "x", "plugin_version": "y"})
    saved: list[Path] = []
    problems = write_exports(
        export,
        json_path=None,
        markdown_path=None,
        html_path=tmp_path / "merged.html",
        saved=saved.append,
    )
    assert problems == [] and saved == [tmp_path / "merged.html"]
    assert (tmp_path / "merged.html").read_text().startswith("<!DOCTYPE html>")
    (tmp_path / "a_file").write_text("")
    unwritable = tmp_path / "a_file" / "report.html"
    problems = write_exports(
        export, json_path=None, markdown_path=None, html_path=unwritable, saved=saved.append
    )
    assert len(problems) == 1 and saved == [tmp_path / "merged.html"]  # not said to be saved


# -- every number the page shows, as the terminal report writes it ---------------------


def test_the_page_writes_amounts_as_the_terminal_report_does(opened: Browser) -> None:
    # the rounding edges: a whole number keeps its zeros (130, not "13"), ties round
    # half to even on the exact integer, and 999,999 becomes 1 MFLOP, not 1000 KFLOP
    amounts = [0, 1, 7, 100, 999, 1_000, 1_005, 1_015, 2_125, 2_135, 10_000, 99_950, 100_000,
               130_000_000, 130_023_424, 41_943_040, 88_080_384, 999_499, 999_500, 999_999,
               1_000_000, 123_456_789_012, 10**15, 1_234_567 * 10**15, 2**53 - 1]  # fmt: skip
    shown = opened.execute_script(
        "return arguments[0].map((n) => [short(n), short(n, 'B')]);", amounts
    )
    assert shown == [[format_flops(n), format_bytes(n)] for n in amounts]
    assert shown[amounts.index(130_023_424)] == ["130 MFLOP", "130 MB"]


# 130,023,424 FLOP: forward 41,943,040 + backward 88,080,384, the test;
# its snapshot had 100,000,000 = 40,000,000 + 60,000,000.
BIG = Measurement(
    modules={
        GLOBAL: ModuleFlops(
            forward=41_943_040,
            backward=88_080_384,
            by_op={"aten.mm": 130_023_424},
            communication={"_c10d_functional.all_reduce": Traffic(calls=3, bytes=100_000)},
        ),
        "Net": ModuleFlops(forward=41_943_040, backward=88_080_384, by_op={"aten.mm": 130_023_424}),
    },
    unsupported={"aten.nonzero": 1_000},
)
BIG_BEFORE = Measurement(
    modules={
        path: ModuleFlops(forward=40_000_000, backward=60_000_000, by_op={"aten.mm": 100_000_000})
        for path in (GLOBAL, "Net")
    }
)
# snapshot at depth 1 (Net only), run at depth 2: Net.fc is deeper than the snapshot holds
SHALLOW = Measurement(
    modules={path: ModuleFlops(forward=1_000, by_op={"aten.mm": 1_000}) for path in (GLOBAL, "Net")}
)
DEEP = Measurement(
    modules={
        path: ModuleFlops(forward=1_000, by_op={"aten.mm": 1_000})
        for path in (GLOBAL, "Net", "Net.fc")
    }
)
SMALL = linear_measurement(240, 480)


def moving_bytes(size: int) -> Measurement:
    """A 40 FLOP matmul whose ops moved ``size`` bytes."""
    linear = linear_measurement(40, 0)
    return replace(
        linear,
        modules={
            path: replace(row, bytes_forward=size, bytes_by_op={"aten.mm": size})
            for path, row in linear.modules.items()
        },
    )


BUILT = [
    make_record("t.py::test_a_small", SMALL, baseline=SMALL),
    # a copy at equal FLOPs: 300 -> 400 bytes, +33.33%
    make_record(
        "t.py::test_copy", moving_bytes(400), baseline=moving_bytes(300), status=Status.CHANGED
    ),
    make_record("t.py::test_big", BIG, baseline=BIG_BEFORE, status=Status.CHANGED),
    make_record("t.py::test_deeper", DEEP, baseline=SHALLOW),
    make_record("t.py::test_new", linear_measurement(100, 0), status=Status.NEW),
]


@pytest.fixture
def built(browser: Browser, tmp_path: Path) -> tuple[Browser, dict[str, Any]]:
    """The page of hand-built records, and the JSON export it embeds."""
    document = json_report(BUILT, RunMetadata.collect().to_dict())
    path = tmp_path / "built.html"
    path.write_text(html_report(document, BUILT), encoding="utf-8")
    browser.get(path.as_uri())
    assert browser.find_element("css selector", "body").get_attribute("data-ready") == "yes"
    return browser, document


def test_every_number_on_the_page_is_the_exports_as_the_terminal_writes_it(
    built: tuple[Browser, dict[str, Any]],
) -> None:
    browser, document = built
    order = [record.label for record in ordered(BUILT)]
    exported = {m["nodeid"]: m for m in document["measurements"]}
    expected_rows = []
    for nodeid in order:
        m = exported[nodeid]
        comm = sum(t["bytes"] for t in m["communication"].values())
        if m["delta"] is None:
            change = ("", "")
        elif m["delta"]["total"] == 0 and m["delta"].get("bytes_accessed"):
            moved = m["delta"]["bytes_accessed"]
            change = (
                ("+" if moved > 0 else "-") + format_bytes(abs(moved)),
                relative_text(m["snapshot"]["bytes_accessed"], m["bytes_accessed"]),
            )
        elif m["delta"]["total"] == 0:
            change = ("0", "0%")
        else:
            sign = "+" if m["delta"]["total"] > 0 else "-"
            before = m["snapshot"]["total"]
            change = (
                sign + format_flops(abs(m["delta"]["total"])),
                relative_text(before, m["total"]),
            )
        expected_rows.append(
            [nodeid, *(format_flops(m[key]) for key in ("total", "forward", "backward")),
             format_bytes(comm) if comm else "", *change, m["status"]]
        )  # fmt: skip
    assert suite_rows(browser) == expected_rows
    # the numbers, written out: 130,023,424 - 100,000,000 = 30,023,424 (+30.02%)
    assert expected_rows[0] == ["t.py::test_big", "130 MFLOP", "41.9 MFLOP", "88.1 MFLOP",
                                "100 kB", "+30 MFLOP", "+30.02%", "changed"]  # fmt: skip
    summary = document["summary"]
    assert browser.find_element("id", "summary").text.startswith(
        f"Suite total {format_flops(summary['total'])} (forward "
        f"{format_flops(summary['forward'])}, backward {format_flops(summary['backward'])}) "
        f"in {len(BUILT)} measurement(s) of {len(BUILT)} test(s)"
    )
    sections = [s.text for s in browser.find_elements("css selector", "#tests summary")]
    assert sections == [
        f"{nodeid}: {format_flops(exported[nodeid]['total'])}, {exported[nodeid]['status']}"
        for nodeid in order
    ]
    assert sections[0] == "t.py::test_big: 130 MFLOP, changed"
    copy = next(row for row in expected_rows if row[0] == "t.py::test_copy")
    assert copy[-3:] == ["+100 B", "+33.33%", "changed"]
    unsupported = browser.find_elements("css selector", "#unsupported tbody td")
    assert [cell.text for cell in unsupported] == ["aten.nonzero", "1,000", "1", "t.py::test_big"]
    communication = browser.find_elements("css selector", "#communication tbody td")
    assert [cell.text for cell in communication] == [
        "t.py::test_big", "_c10d_functional.all_reduce", "3", format_bytes(100_000)
    ]  # fmt: skip


def test_anchors_count_in_the_order_the_page_shows(built: tuple[Browser, dict[str, Any]]) -> None:
    browser, _ = built
    links = browser.find_elements("css selector", "#suite tbody a")
    assert [(link.text, link.get_attribute("href").rpartition("#")[2]) for link in links] == [
        (record.label, f"measurement-{position}")
        for position, record in enumerate(ordered(BUILT), start=1)
    ]
    sections = browser.find_elements("css selector", "#tests details")
    assert [s.get_attribute("id") for s in sections] == [
        f"measurement-{position}" for position in range(1, len(BUILT) + 1)
    ]


def test_rows_deeper_than_the_snapshot_keeps_are_not_painted_new(
    built: tuple[Browser, dict[str, Any]],
) -> None:
    browser, _ = built
    link = browser.find_element("link text", "t.py::test_deeper")
    link.click()
    section = browser.find_element("id", link.get_attribute("href").rpartition("#")[2])
    # the section draws its icicle when the browser reports it opened
    icicle = wait_until(browser, lambda _: section.find_elements("css selector", "svg.icicle"))[0]
    found = boxes(icicle)
    assert {path: box.get_attribute("data-kind") for path, box in found.items()} == {
        "Global": "same",
        "Net": "same",
        "Net.fc": "deeper",
    }
    title = found["Net.fc"].find_element("css selector", "title").get_attribute("textContent")
    assert title.splitlines()[-1] == "not compared: the snapshot keeps rows 1 deep"


def test_stale_snapshots_are_listed_with_their_reasons(browser: Browser, tmp_path: Path) -> None:
    gone = "tests/__flops__/test_a.py/test_gone.flops.json"
    warm = "tests/__flops__/test_b.py/test_step.flops.json [warm]"
    export = Export(
        records=(make_record("tests/test_b.py::test_step", linear_measurement(240, 480)),),
        metadata=RunMetadata.collect().to_dict(),
        snapshots=SnapshotEvidence(
            stale=(gone,),
            stale_measurements=(warm,),
            reasons={gone: StaleReason.TEST_GONE, warm: StaleReason.MEASUREMENT_GONE},
        ),
    )
    page = tmp_path / "report.html"
    write_exports(export, json_path=None, markdown_path=None, html_path=page)
    browser.get(page.as_uri())
    assert browser.find_element("id", "stale-section").is_displayed()
    assert [li.text for li in browser.find_elements("css selector", "#stale li")] == [
        f"{gone} (its test is gone from its file)",
        f"{warm} (its test ran whole and passed without taking this measurement)",
    ]
    # the same entries, in the same words, as the terminal and Markdown reports
    assert [li.text for li in browser.find_elements("css selector", "#stale li")] == (
        export.snapshots.stale_entries()
    )
    assert "--flops-prune" in browser.find_element("id", "stale-section").text


# -- exact past 2^53, and rounded as Python rounds ----------------------------------------

# 2^64 FLOP: a (2^21 x 2^21) @ (2^21 x 2^21) matmul counted on meta, 2 * (2^21)^3; then a
# (1 x 1) @ (1 x 1) matmul more, 2 FLOP, in Two.small. A double holds integers exactly only
# up to 2^53: 2^64 + 2 is 2^64 to it.
HUGE = 2**64


def two(*, small: int) -> Measurement:
    rows = {"Two.big": HUGE, **({"Two.small": small} if small else {})}
    return Measurement(
        modules={
            path: ModuleFlops(forward=flops, by_op={"aten.mm": flops})
            for path, flops in {GLOBAL: HUGE + small, "Two": HUGE + small, **rows}.items()
        }
    )


EXACT = [
    make_record("t.py::test_huge", two(small=2), baseline=two(small=0), status=Status.CHANGED),
    # 2*1*40*20 = 1,600, then a (1 x 9) @ (9 x 1) matmul more: 18, 1,618 = +1.125%, which
    # Python rounds half to even, to +1.12% (JavaScript's toFixed gives +1.13%)
    make_record(
        "t.py::test_round",
        linear_measurement(1_618, 0),
        baseline=linear_measurement(1_600, 0),
        status=Status.CHANGED,
    ),
]


@pytest.fixture
def exact_page(browser: Browser, tmp_path: Path) -> Browser:
    document = json_report(EXACT, RunMetadata.collect().to_dict())
    path = tmp_path / "exact.html"
    path.write_text(html_report(document, EXACT), encoding="utf-8")
    browser.get(path.as_uri())
    assert browser.find_element("css selector", "body").get_attribute("data-ready") == "yes"
    return browser


def test_counts_past_2_53_keep_every_digit(exact_page: Browser) -> None:
    link = exact_page.find_element("link text", "t.py::test_huge")
    cells = link.find_elements("xpath", "ancestor::tr/td")
    assert cells[1].get_attribute("title") == "18,446,744,073,709,551,618 FLOP"
    assert (cells[4].text, cells[4].get_attribute("title")) == ("+2 FLOP", "+2 FLOP")
    assert cells[5].text == relative_text(HUGE, HUGE + 2)
    link.click()
    section = exact_page.find_element("id", link.get_attribute("href").rpartition("#")[2])
    # the section draws its icicle when the browser reports it opened
    drawn = wait_until(exact_page, lambda _: section.find_elements("css selector", "svg.icicle"))
    found = boxes(drawn[0])
    assert found["Global"].get_attribute("data-flops") == str(HUGE + 2)
    assert {path: box.get_attribute("data-kind") for path, box in found.items()} == {
        "Global": "grown",
        "Two": "grown",
        "Two.big": "same",
    }  # Two.small, 2 of 2^64, is too thin to draw: its parents' titles have it
    title = found["Global"].find_element("css selector", "title").get_attribute("textContent")
    assert title.splitlines()[-1] == (
        "before 18,446,744,073,709,551,616 FLOP → after 18,446,744,073,709,551,618 FLOP"
    )
    operators = exact_page.find_elements("css selector", '.ops-table[data-path="Global"] td')
    assert [cell.text for cell in operators] == [
        "aten.mm", "18,446,744,073,709,551,618", "18,446,744,073,709,551,616", "+2"
    ]  # fmt: skip


# "<!--<script>" puts the HTML parser in its "script data double escaped" state, where a
# "</script>" no longer ends the element; a marker of the page's template in a test id is
# data, never a place to fill.
AWKWARD_IDS = ["t.py::test_tag[<!--<script>]", "t.py::test_tag[@PAGE@]", "t.py::test_tag[@SCRIPT@]"]


def test_test_ids_of_any_text_leave_the_page_whole(browser: Browser, tmp_path: Path) -> None:
    records = [make_record(nodeid, SMALL, baseline=SMALL) for nodeid in AWKWARD_IDS]
    document = json_report(records, RunMetadata.collect().to_dict())
    path = tmp_path / "awkward.html"
    path.write_text(html_report(document, records), encoding="utf-8")
    browser.get(path.as_uri())
    assert browser.find_element("css selector", "body").get_attribute("data-ready") == "yes"
    assert sorted(row[0] for row in suite_rows(browser)) == sorted(AWKWARD_IDS)


def test_flops_that_moved_at_equal_totals_say_so_in_their_row(
    browser: Browser, tmp_path: Path
) -> None:
    # SMALL's 720 FLOP, from Net.fc into Net.gc: every total held, the test failed
    moved = replace(
        SMALL, modules={GLOBAL: SMALL.modules[GLOBAL], "Net.gc": SMALL.modules["Net.fc"]}
    )
    records = [make_record("t.py::test_moved", moved, baseline=SMALL, status=Status.CHANGED)]
    document = json_report(records, RunMetadata.collect().to_dict())
    path = tmp_path / "moved.html"
    path.write_text(html_report(document, records), encoding="utf-8")
    browser.get(path.as_uri())
    assert browser.find_element("css selector", "body").get_attribute("data-ready") == "yes"
    assert suite_rows(browser)[0][4:] == ["moved", "", "changed"]


def test_percentages_are_rounded_as_the_terminal_report_rounds_them(exact_page: Browser) -> None:
    rows = {row[0]: row for row in suite_rows(exact_page)}
    assert rows["t.py::test_round"][4:6] == ["+18 FLOP", relative_text(1_600, 1_618)]
    assert rows["t.py::test_round"][5] == "+1.12%"
