"""The reports show recompute as a phase, and model FLOPs per token beside 6·N."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_flops.measurement import GLOBAL, Measurement, ModuleFlops
from pytest_flops.reports.export import Export, RunMetadata, json_report, read_export, write_exports
from pytest_flops.reports.records import MeasurementRecord
from pytest_flops.reports.terminal import markdown, terminal_lines
from tests.built_records import linear_measurement, make_record
from tests.reports.test_html_report import Browser, browser, suite_rows  # noqa: F401  (the fixture)

# The MLP Linear(64, 256) -> ReLU -> Linear(256, 64) on (32, 64) under a reentrant
# checkpoint: forward 2 * 1,048,576, backward 4 * 1,048,576, recompute the forward
# again. 32 tokens; parameters 64*256 + 256 + 256*64 + 64 = 33,088.
LINEAR = 2 * 32 * 64 * 256


def checkpointed() -> Measurement:
    def row(linears: int) -> ModuleFlops:
        return ModuleFlops(
            forward=linears * LINEAR,
            backward=2 * linears * LINEAR,
            recompute=linears * LINEAR,
            by_op={"aten.addmm": 2 * linears * LINEAR, "aten.mm": 2 * linears * LINEAR},
        )

    return Measurement(
        modules={GLOBAL: row(2), "Sequential": row(2), "Sequential.0": row(1)},
        tokens=32,
        parameters=33_088,
    )


def records() -> list[MeasurementRecord]:
    return [
        make_record("t.py::test_checkpointed", checkpointed()),
        make_record("t.py::test_plain", linear_measurement(240, 480)),
    ]


def test_the_terminal_report_has_a_recompute_column_and_the_flops_per_token() -> None:
    lines = terminal_lines(records())
    # total 8 * LINEAR = 8,388,608; forward and recompute 2,097,152; backward 4,194,304;
    # a measurement that recomputed nothing leaves its cell empty
    assert lines[:3] == [
        "test                          total    forward    backward  recompute  change  rel. change  status",  # noqa: E501
        "t.py::test_checkpointed  8.39 MFLOP  2.1 MFLOP  4.19 MFLOP  2.1 MFLOP                       passed",  # noqa: E501
        "t.py::test_plain           720 FLOP   240 FLOP    480 FLOP                                  passed",  # noqa: E501
    ]  # fmt: skip
    assert (
        "suite total 8.39 MFLOP (forward 2.1 MFLOP, backward 4.19 MFLOP, recompute 2.1 MFLOP)"
        in "\n".join(lines)
    )
    at = lines.index(
        "FLOPs per token (model FLOPs: forward + backward, recompute left out), "
        "beside 6·N for the N parameters of the models measured:"
    )
    # (2 + 4) * 1,048,576 / 32 = 196,608 per token; 6 * 33,088 = 198,528; 0.99
    assert [line.split() for line in lines[at + 1 : at + 3]] == [
        ["test", "tokens", "FLOP/token", "6·N", "ratio"],
        ["t.py::test_checkpointed", "32", "197", "KFLOP", "199", "KFLOP", "0.99"],
    ]


def test_a_suite_without_recompute_or_tokens_reads_as_before() -> None:
    lines = terminal_lines([make_record("t.py::test_plain", linear_measurement(240, 480))])
    assert "recompute" not in "\n".join(lines)
    assert not any(line.startswith("FLOPs per token") for line in lines)


def test_markdown_shows_the_same() -> None:
    text = markdown(records())
    assert "| test | total | forward | backward | recompute | change |" in text
    assert "| `t.py::test_checkpointed` | 32 | 197 KFLOP | 199 KFLOP | 0.99 |" in text


def test_the_json_export_has_the_phase_and_the_per_token_figures_and_reads_back(
    tmp_path: Path,
) -> None:
    document = json_report(records(), RunMetadata.collect().to_dict())
    assert document["summary"]["recompute"] == 2 * LINEAR
    entry = document["measurements"][0]
    assert (entry["forward"], entry["backward"], entry["recompute"]) == (
        2 * LINEAR,
        4 * LINEAR,
        2 * LINEAR,
    )
    assert entry["by_module"]["Sequential.0"]["recompute"] == LINEAR
    assert (entry["tokens"], entry["parameters"]) == (32, 33_088)
    assert (entry["flops_per_token"], entry["flops_per_token_6n"]) == (196_608, 198_528)
    plain = document["measurements"][1]
    assert plain["recompute"] == 0
    assert "tokens" not in plain and "flops_per_token" not in plain

    path = tmp_path / "flops.json"
    write_exports(
        Export(records=tuple(records()), metadata={}),
        json_path=path,
        markdown_path=None,
        html_path=None,
    )
    (back, _) = read_export(path).records
    assert back.measurement == checkpointed()
    assert (back.measurement.tokens, back.measurement.parameters) == (32, 33_088)


def test_an_export_written_before_recompute_was_a_phase_still_reads(tmp_path: Path) -> None:
    document = json_report(
        [make_record("t.py::test_plain", linear_measurement(240, 480))],
        RunMetadata.collect().to_dict(),
    )
    del document["summary"]["recompute"]
    del document["measurements"][0]["recompute"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(document))
    (record,) = read_export(path).records
    assert record.measurement == linear_measurement(240, 480)


def test_records_carry_tokens_between_processes() -> None:
    record = records()[0]
    data = json.loads(json.dumps(record.to_dict()))
    back = MeasurementRecord.from_dict(data, where="worker")
    assert back.measurement == record.measurement
    assert (back.measurement.tokens, back.measurement.parameters) == (32, 33_088)
    plain = MeasurementRecord.from_dict(records()[1].to_dict(), where="worker")
    assert plain.measurement.tokens is None


def open_page(browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    page = tmp_path / "report.html"
    write_exports(
        Export(records=tuple(records()), metadata=RunMetadata.collect().to_dict()),
        json_path=None,
        markdown_path=None,
        html_path=page,
    )
    browser.get(page.as_uri())
    assert browser.find_element("css selector", "body").get_attribute("data-ready") == "yes"


def test_the_page_has_the_terminal_reports_recompute_column_and_per_token_table(
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    open_page(browser, tmp_path)
    # the numbers of the terminal test above; test_plain recomputed nothing: an empty cell
    assert [th.text for th in browser.find_elements("css selector", "#suite th")][:5] == [
        "test", "total", "forward", "backward", "recompute"
    ]  # fmt: skip
    assert [cells[:5] for cells in suite_rows(browser)] == [
        ["t.py::test_checkpointed", "8.39 MFLOP", "2.1 MFLOP", "4.19 MFLOP", "2.1 MFLOP"],
        ["t.py::test_plain", "720 FLOP", "240 FLOP", "480 FLOP", ""],
    ]
    assert "recompute 2.1 MFLOP) in 2 measurement(s)" in browser.find_element("id", "summary").text
    per_token = [
        [cell.text for cell in tr.find_elements("css selector", "td")]
        for tr in browser.find_elements("css selector", "#per-token tbody tr")
    ]
    # (2 + 4) * 1,048,576 / 32 = 196,608 per token; 6 * 33,088 = 198,528; 0.99
    assert per_token == [["t.py::test_checkpointed", "32", "197 KFLOP", "199 KFLOP", "0.99"]]


def test_the_icicle_shades_recompute_apart(browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    open_page(browser, tmp_path)
    browser.find_element("link text", "t.py::test_checkpointed").click()
    icicle = browser.find_elements("css selector", "svg.icicle")[0]
    boxes = icicle.find_elements("css selector", "rect.box")
    widths = {box.get_attribute("data-path"): float(box.get_attribute("width")) for box in boxes}
    shades = icicle.find_elements("css selector", "rect.recompute")
    backward = icicle.find_elements("css selector", "rect.backward")
    # a row of 8 parts: forward 2, backward 4, recompute 2 (a quarter of each box)
    assert [float(rect.get_attribute("width")) for rect in shades] == [
        widths[path] / 4 for path in ("Global", "Sequential", "Sequential.0")
    ]
    assert [float(rect.get_attribute("width")) for rect in backward] == [
        widths[path] / 2 for path in ("Global", "Sequential", "Sequential.0")
    ]
    title = next(box for box in boxes if box.get_attribute("data-path") == "Sequential.0")
    assert (
        title.find_element("css selector", "title").get_attribute("textContent").splitlines()[2]
        == "forward 1,048,576 FLOP, backward 2,097,152 FLOP, recompute 1,048,576 FLOP"
    )
