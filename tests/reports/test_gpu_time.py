"""``--flops-gpu``: each test's and module's roofline time in the reports and exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pytest_flops import FlopCounterMode, Measurement
from pytest_flops.__main__ import main
from pytest_flops.reports.export import Export, RunMetadata, json_report, read_export, write_exports
from pytest_flops.reports.merge import MergeError, merge_exports
from pytest_flops.reports.records import MeasurementRecord, Status
from pytest_flops.reports.terminal import markdown, terminal_lines
from pytest_flops.units import format_seconds
from tests.forked_pytest import runpytest_forked
from tests.reports.test_html_report import (  # noqa: F401  (browser: the fixture)
    Browser,
    browser,
    suite_rows,
    wait_until,
)

# Linear(128, 32) in bf16 on (64, 128), in a Sequential: one addmm of
# 2 * 64 * 128 * 32 = 524,288 FLOPs, reading x (64*128), W (128*32) and the bias (32)
# and writing (64*32), 2 bytes each: 2 * 14,368 = 28,736 bytes.
# On h100-sxm: compute 524,288 / 989.4e12 = 0.53 ns, memory 28,736 / 3.35e12 = 8.578 ns:
# memory-bound, 8.58 ns, 100% of it in memory-bound ops.
LINEAR_SECONDS = 28_736 / 3.35e12
# a @ a for a (1024, 1024) fp32 on meta, TF32 not allowed: 2 * 1024**3 = 2,147,483,648
# FLOPs at the FP32 peak of 67e12 = 32.05 µs; a is read once (both operands are the one
# tensor) and the product written: 2 * 4 MiB = 8,388,608 bytes / 3.35e12 = 2.5 µs:
# compute-bound, 0% memory-bound.
MATMUL_SECONDS = 2 * 1024**3 / 67e12


def measure(step: object) -> Measurement:
    with FlopCounterMode(display=False) as mode:
        step()  # type: ignore[operator]
    return mode.to_measurement()


@pytest.fixture(scope="module")
def records() -> list[MeasurementRecord]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(128, 32)).to(torch.bfloat16)
    x = torch.randn(64, 128, dtype=torch.bfloat16)
    a = torch.randn(1024, 1024, device="meta")
    linear, matmul = measure(lambda: model(x)), measure(lambda: a @ a)
    return [
        MeasurementRecord(
            nodeid="t.py::test_linear",
            name="default",
            measurement=linear,
            baseline=linear,
            status=Status.PASSED,
        ),
        MeasurementRecord(
            nodeid="t.py::test_matmul",
            name="default",
            measurement=matmul,
            baseline=None,
            status=Status.NEW,
        ),
    ]


def test_the_records_have_the_hand_derived_flops_and_bytes(
    records: list[MeasurementRecord],
) -> None:
    linear, matmul = (record.measurement for record in records)
    assert (linear.total, linear.bytes_accessed) == (524_288, 28_736)
    assert (matmul.total, matmul.bytes_accessed) == (2 * 1024**3, 8_388_608)
    assert linear.roofline("h100-sxm").seconds == LINEAR_SECONDS
    assert matmul.roofline("h100-sxm").seconds == MATMUL_SECONDS


def test_seconds_are_written_with_three_significant_digits() -> None:
    assert [format_seconds(s) for s in (LINEAR_SECONDS, MATMUL_SECONDS, 0.0)] == [
        "8.58 ns",
        "32.1 µs",
        "0 s",
    ]
    # 999.7 ns rounds to 1000 ns at three digits: said as 1 µs; 2.5 s stays in seconds
    assert [format_seconds(s) for s in (999.7e-9, 2.5, 1e-13)] == ["1 µs", "2.5 s", "0.1 ps"]


def test_the_terminal_report_has_a_time_column_and_the_top_modules(
    records: list[MeasurementRecord],
) -> None:
    lines = terminal_lines(records, gpu="h100-sxm")
    # the matmul (2.15 GFLOP) is new; the linear passed: new measurements rank by total
    assert lines[:3] == [
        "test                    total     forward  backward  h100-sxm time  change  rel. change  status",  # noqa: E501
        "t.py::test_matmul  2.15 GFLOP  2.15 GFLOP    0 FLOP        32.1 µs                       new",  # noqa: E501
        "t.py::test_linear   524 KFLOP   524 KFLOP    0 FLOP        8.58 ns       0           0%  passed",  # noqa: E501
    ]  # fmt: skip
    at = lines.index(
        "Estimated time on h100-sxm (roofline of eager, unfused traffic at datasheet peaks: "
        "for comparing versions, not for predicting wall time), with the share in "
        "memory-bound ops:"
    )
    # the matmul has no module; the linear's two rows take all of its time
    assert lines[at + 1 :] == [
        "  test               module           time  memory-bound",
        "  t.py::test_matmul  (all)         32.1 µs            0%",
        "  t.py::test_linear  (all)         8.58 ns          100%",
        "                     Sequential    8.58 ns          100%",
        "                     Sequential.0  8.58 ns          100%",
    ]


def test_without_a_gpu_the_reports_have_no_time(records: list[MeasurementRecord]) -> None:
    assert not any("time" in line for line in terminal_lines(records))
    assert "time" not in markdown(records)
    assert all("roofline" not in m for m in json_report(records, {})["measurements"])


def test_markdown_shows_the_same(records: list[MeasurementRecord]) -> None:
    text = markdown(records, gpu="h100-sxm")
    assert "| test | total | forward | backward | h100-sxm time | change |" in text
    assert "| `t.py::test_linear` | 524 KFLOP | 524 KFLOP | 0 FLOP | 8.58 ns | 0 | 0% |" in text
    assert (
        "| `t.py::test_linear` | (all) | 8.58 ns | 100% |\n"
        "|  | `Sequential` | 8.58 ns | 100% |\n"
        "|  | `Sequential.0` | 8.58 ns | 100% |\n"
    ) in text


def test_the_json_export_has_the_roofline_and_reads_back(
    records: list[MeasurementRecord], tmp_path: Path
) -> None:
    document = json_report(records, {}, gpu="h100-sxm")
    linear = next(m for m in document["measurements"] if m["nodeid"] == "t.py::test_linear")
    assert linear["roofline"] == {
        "gpu": "h100-sxm",
        "seconds": LINEAR_SECONDS,
        "compute_seconds": 524_288 / 989.4e12,
        "memory_seconds": LINEAR_SECONDS,
        "communication_seconds": 0.0,
        "memory_bound_share": 1.0,
        "by_module": {
            "Sequential": {"seconds": LINEAR_SECONDS, "memory_bound_share": 1.0},
            "Sequential.0": {"seconds": LINEAR_SECONDS, "memory_bound_share": 1.0},
        },
    }
    path = tmp_path / "flops.json"
    export = Export(records=tuple(records), metadata={}, gpu="h100-sxm")
    assert not write_exports(export, json_path=path, markdown_path=None, html_path=None)
    again = read_export(path)
    assert again.gpu == "h100-sxm"
    assert json_report(again.records, {}, gpu=again.gpu) == document


def shard(path: Path, records: list[MeasurementRecord], gpu: str | None) -> Path:
    export = Export(records=tuple(records), metadata=RunMetadata.collect().to_dict(), gpu=gpu)
    assert not write_exports(export, json_path=path, markdown_path=None, html_path=None)
    return path


def test_merged_shards_equal_the_serial_export(
    records: list[MeasurementRecord], tmp_path: Path
) -> None:
    serial = json_report(records, {}, gpu="h100-sxm")
    paths = [shard(tmp_path / f"{i}.json", [r], "h100-sxm") for i, r in enumerate(records)]
    merged = merge_exports(paths)
    assert merged.gpu == "h100-sxm"
    assert json_report(merged.records, {}, gpu=merged.gpu) == serial


def test_shards_on_different_gpus_are_refused(
    records: list[MeasurementRecord], tmp_path: Path
) -> None:
    paths = [
        shard(tmp_path / "1.json", records[:1], "h100-sxm"),
        shard(tmp_path / "2.json", records[1:], None),
    ]
    with pytest.raises(MergeError, match=r"different --flops-gpu .*1\.json: h100-sxm.*: none"):
        merge_exports(paths)


def test_an_export_with_an_unknown_gpu_names_the_file(
    records: list[MeasurementRecord], tmp_path: Path
) -> None:
    path = shard(tmp_path / "flops.json", records, "h100-sxm")
    path.write_text(path.read_text().replace('"gpu": "h100-sxm"', '"gpu": "z80"'))
    with pytest.raises(Exception, match=r"flops\.json: roofline on unknown GPU 'z80'"):
        read_export(path)


def test_the_page_has_a_time_column_and_times_in_the_icicle(
    browser: Browser,  # noqa: F811
    records: list[MeasurementRecord],
    tmp_path: Path,
) -> None:
    page = tmp_path / "report.html"
    export = Export(
        records=tuple(records), metadata=RunMetadata.collect().to_dict(), gpu="h100-sxm"
    )
    assert not write_exports(export, json_path=None, markdown_path=None, html_path=page)
    browser.get(page.as_uri())
    assert browser.find_element("css selector", "body").get_attribute("data-ready") == "yes"
    heads = [th.text for th in browser.find_elements("css selector", "#suite thead th")]
    assert heads[4] == "h100-sxm time"
    assert [row[4] for row in suite_rows(browser)] == ["32.1 µs", "8.58 ns"]
    cell = browser.find_element("css selector", "#suite tbody tr td:nth-child(5)")
    assert cell.get_attribute("title") == "32.1 µs on h100-sxm (0% memory-bound)"
    heading = browser.find_element("css selector", '#suite th[data-key="time"]')
    heading.click()
    heading.click()  # the shortest time first
    assert [row[4] for row in suite_rows(browser)] == ["8.58 ns", "32.1 µs"]
    browser.find_element("link text", "t.py::test_linear").click()
    # the section draws its icicle on the click's event: wait for it
    icicle = wait_until(browser, lambda b: b.find_elements("css selector", "svg.icicle"))[0]
    box = next(
        box
        for box in icicle.find_elements("css selector", "rect.box")
        if box.get_attribute("data-path") == "Sequential.0"
    )
    title = box.find_element("css selector", "title").get_attribute("textContent")
    assert "8.58 ns on h100-sxm (100% memory-bound)" in title.splitlines()


LINEAR_TEST = """
import torch

def test_linear(flops):
    model = torch.nn.Linear(128, 32).to(torch.bfloat16)
    x = torch.randn(64, 128, dtype=torch.bfloat16)
    with flops(model):
        model(x)
"""


def test_merge_prints_the_time_of_shards_run_with_a_gpu(
    records: list[MeasurementRecord], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [shard(tmp_path / f"{i}.json", [r], "h100-sxm") for i, r in enumerate(records)]
    assert main(["merge", *map(str, paths)]) == 0
    out = capsys.readouterr().out.splitlines()
    header = "test total forward backward h100-sxm time change rel. change status"
    assert out[0].split() == header.split()
    assert "  t.py::test_linear  (all)         8.58 ns          100%" in out


@pytest.mark.slow
def test_an_unknown_gpu_is_a_usage_error_naming_the_known_ones(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a=LINEAR_TEST)
    result = runpytest_forked(pytester, "--flops-gpu=z80")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--flops-gpu: unknown GPU 'z80': expected one of "
            "h100-sxm, h100-pcie, h200, a100-sxm, l4, b200, mi300x*"
        ]
    )


@pytest.mark.slow
def test_the_command_line_gpu_wins_over_the_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a=LINEAR_TEST)
    pytester.makeini("[pytest]\nflops_gpu = a100-sxm\n")
    # a100-sxm: memory 28,736 / 2.039e12 = 14.09 ns beats compute 524,288 / 312e12 = 1.68 ns
    from_ini = runpytest_forked(pytester, "--flops-update", "--flops-report")
    from_ini.stdout.fnmatch_lines(["*a100-sxm time*", "test_a.py::test_linear *14.1 ns*"])
    from_cli = runpytest_forked(pytester, "--flops-report", "--flops-gpu=h100-sxm")
    assert from_cli.ret == pytest.ExitCode.OK
    from_cli.stdout.fnmatch_lines(["*h100-sxm time*", "test_a.py::test_linear *8.58 ns*"])
    assert "a100-sxm" not in from_cli.stdout.str()


@pytest.mark.slow
def test_an_unknown_gpu_in_the_ini_file_names_the_key(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a=LINEAR_TEST)
    pytester.makeini("[pytest]\nflops_gpu = h100\n")
    result = runpytest_forked(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option flops_gpu: unknown GPU 'h100': expected one of*"])


@pytest.mark.slow
def test_under_xdist_the_export_equals_the_serial_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_a=LINEAR_TEST,
        test_b=LINEAR_TEST.replace("Linear(128, 32)", "Linear(128, 64)"),
    )
    runpytest_forked(pytester, "--flops-update").assert_outcomes(passed=2)
    exports = {}
    for name, args in (("serial", ()), ("parallel", ("-n", "2"))):
        result = runpytest_forked(
            pytester, "--flops-gpu=h100-sxm", f"--flops-report-json={name}.json", *args
        )
        result.assert_outcomes(passed=2)
        document = json.loads((pytester.path / f"{name}.json").read_text())
        exports[name] = [m["roofline"] for m in document["measurements"]]
    # Linear(128, 64): (64*128 + 128*64 + 64 + 64*64) * 2 = 2 * 20,544 = 41,088 bytes / 3.35e12
    assert [m["seconds"] for m in exports["serial"]] == [28_736 / 3.35e12, 41_088 / 3.35e12]
    assert exports["parallel"] == exports["serial"]


@pytest.mark.slow
def test_a_shard_that_measured_nothing_merges_with_the_gpu_it_ran_with(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pytest-split group with no FLOP test still names its --flops-gpu."""
    pytester.makepyfile(test_a=LINEAR_TEST, test_plain="def test_plain():\n    pass\n")
    runpytest_forked(pytester, "--flops-update", "test_a.py").assert_outcomes(passed=1)

    def export(test_file: str, *options: str) -> str:
        path = pytester.path / f"{test_file}-{len(options)}.json"
        result = runpytest_forked(pytester, test_file, f"--flops-report-json={path}", *options)
        assert result.ret == pytest.ExitCode.OK, result.outlines
        return str(path)

    measured, nothing = (
        export("test_a.py", "--flops-gpu=h100-sxm"),
        export("test_plain.py", "--flops-gpu=h100-sxm"),
    )
    assert json.loads(Path(nothing).read_text())["metadata"]["gpu"] == "h100-sxm"
    merged = str(pytester.path / "merged.json")
    assert main(["merge", measured, nothing, "--json", merged]) == 0
    assert json.loads(Path(merged).read_text())["metadata"]["gpu"] == "h100-sxm"
    assert "8.58 ns" in capsys.readouterr().out

    # exports of the previous version name no GPU: the measuring shard's roofline tells it,
    # and the shard that measured nothing says nothing
    for path in (measured, nothing):
        document = json.loads(Path(path).read_text())
        del document["metadata"]["gpu"]
        Path(path).write_text(json.dumps(document))
    assert main(["merge", measured, nothing]) == 0
    capsys.readouterr()

    # a shard run without --flops-gpu says so, whether it measured or not
    without = export("test_plain.py")
    assert main(["merge", measured, without]) == 2
    assert capsys.readouterr().err == (
        "pytest-flops merge: error: the shards were run with different --flops-gpu "
        f"({measured}: h100-sxm, {without}: none)\n"
    )
