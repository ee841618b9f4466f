"""``--flops-report``, ``--flops-report-json`` and ``--flops-report-md`` end to end."""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

import pytest

import pytest_flops
from pytest_flops.reports.records import Status
from tests.forked_pytest import runpytest_forked

pytestmark = pytest.mark.slow  # real pytest sessions

SUITE = """
import pytest
import torch

WIDTH = {width}


@torch.library.custom_op("report_demo::blind", mutates_args=())
def blind(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


def test_linear(flops):
    model = torch.nn.Linear(5, WIDTH)
    with flops(model):
        model(torch.randn(4, 5)).sum().backward()


def test_lm(flops):
    model = torch.nn.Linear(5, 6)
    with flops(model, name="prefill"):
        model(torch.randn(4, 5))
    with flops(model, name="decode"):
        blind(model(torch.randn(1, 5)))


@pytest.mark.limit_flops(100)
def test_over_budget(flops):
    model = torch.nn.Linear(5, 6, device="meta")
    with flops(model):
        model(torch.randn(4, 5, device="meta"))


def test_unmeasured():
    pass
"""

NEW_TEST = """

def test_new(flops):
    model = torch.nn.Linear(5, 6)
    with flops(model):
        model(torch.randn(2, 5))
"""


def test_report_and_exports(pytester: pytest.Pytester) -> None:
    """A suite whose snapshots were written at WIDTH=6, then run again changed.

    Linear(5, 6) on a (4, 5) input: addmm 2*4*5*6 = 240 forward, and backward
    only the weight grad (the input needs none), mm 2*6*4*5 = 240.
    At WIDTH=7: 2*4*5*7 = 280 forward and 280 backward.
    """
    pytester.makepyfile(test_suite=SUITE.format(width=6))
    update = runpytest_forked(pytester, "--flops-update")
    update.assert_outcomes(passed=3, failed=1)  # over budget: fails and writes nothing
    assert not any("flops report" in line for line in update.outlines)
    pytester.makepyfile(test_suite=SUITE.format(width=7) + NEW_TEST)
    result = runpytest_forked(
        pytester,
        "-p",
        "no:xdist",  # the report must not need xdist
        "--flops-report",
        "--flops-report-json=out/flops.json",
        "--flops-report-md=out/flops.md",
    )
    # test_linear changed, test_new has no snapshot, test_over_budget is over budget
    result.assert_outcomes(passed=2, failed=3)
    check_report_section(result.outlines)
    result.stdout.fnmatch_lines(["flops: 1 test passed, 3 failed, 0 written, 0 removed"])
    check_json_export(json.loads((pytester.path / "out" / "flops.json").read_text("utf-8")))
    check_markdown_export((pytester.path / "out" / "flops.md").read_text("utf-8"))


def check_report_section(lines: list[str]) -> None:
    start = next(i for i, line in enumerate(lines) if " flops report " in line)
    end = lines.index("", start)
    # Failed first: changed (+80), then by total (over budget 240, no snapshot
    # 120); then the rest by total with ties by test id; a test's named
    # measurements stay together, the default one first.
    assert lines[start + 1 : end] == [
        "test                                 total   forward  backward    change"
        "  rel. change  status",
        # 480 -> 560: +80, 80 / 480 = +16.67%
        "test_suite.py::test_linear        560 FLOP  280 FLOP  280 FLOP  +80 FLOP"
        "      +16.67%  changed",
        "test_suite.py::test_over_budget   240 FLOP  240 FLOP    0 FLOP"
        "                         over budget (limit 100 FLOP)",
        # Linear(5, 6) on (2, 5): 2*2*5*6 = 120
        "test_suite.py::test_new           120 FLOP  120 FLOP    0 FLOP"
        "                         no snapshot",
        # Linear(5, 6) on (1, 5): 2*1*5*6 = 60
        "test_suite.py::test_lm [decode]    60 FLOP   60 FLOP    0 FLOP         0"
        "           0%  passed",
        "test_suite.py::test_lm [prefill]  240 FLOP  240 FLOP    0 FLOP         0"
        "           0%  passed",
    ]
    # 560 + 240 + 240 + 120 + 60 = 1220; backward only in test_linear: 280
    assert lines[end + 1] == (
        "suite total 1.22 KFLOP (forward 940 FLOP, backward 280 FLOP) in 5 measurement(s) "
        "of 4 test(s); measurements: 2 passed, 1 changed, 1 no snapshot, 1 over budget"
    )
    assert lines[end + 3 : end + 6] == [
        "unsupported ops (ran with no formula; their FLOPs are not counted):",
        "  op                 calls  tests  seen in",
        "  report_demo.blind      1      1  test_suite.py::test_lm",
    ]


def check_json_export(document: dict[str, Any]) -> None:
    assert document["schema_version"] == 1
    metadata = document["metadata"]
    assert metadata["plugin_version"] == pytest_flops.__version__
    assert metadata["torch_version"] == importlib.metadata.version("torch")
    assert metadata["devices"] == ["cpu", "meta"]  # test_over_budget's model is on meta
    assert {"python_version", "platform"} <= metadata.keys()
    summary = document["summary"]
    assert (summary["total"], summary["forward"], summary["backward"]) == (1220, 940, 280)
    assert (summary["tests"], summary["measurements"]) == (4, 5)
    assert summary["statuses"] == {
        **{status.value: 0 for status in Status},
        "passed": 2,
        "changed": 1,
        "no snapshot": 1,
        "over budget": 1,
    }
    assert summary["unsupported"] == [
        {"op": "report_demo.blind", "calls": 1, "tests": ["test_suite.py::test_lm"]}
    ]

    measurements = {(m["nodeid"], m["name"]): m for m in document["measurements"]}
    assert list(measurements) == [
        ("test_suite.py::test_linear", "default"),
        ("test_suite.py::test_lm", "decode"),
        ("test_suite.py::test_lm", "prefill"),
        ("test_suite.py::test_new", "default"),
        ("test_suite.py::test_over_budget", "default"),
    ]
    linear = measurements["test_suite.py::test_linear", "default"]
    assert linear["status"] == "changed"
    assert (linear["total"], linear["forward"], linear["backward"]) == (560, 280, 280)
    assert linear["by_op"] == {"aten.addmm": 280, "aten.mm": 280}
    # bytes, fp32: addmm reads the bias (7*4 = 28), x (4*5*4 = 80) and W (5*7*4 = 140)
    # and writes 4*7*4 = 112: 360. Backward, the sum's gradient is a scalar expanded
    # (stride 0: 4 bytes): grad W = gradᵀ @ x reads 4 + 80 and writes 140 (224), grad
    # bias sums it: reads 4, writes 28 (32)
    assert linear["by_module"] == {
        "Linear": {
            "forward": 280,
            "backward": 280,
            "by_op": {"aten.addmm": 280, "aten.mm": 280},
            "bytes": {
                "forward": 360,
                "backward": 256,
                "by_op": {"aten.addmm": 360, "aten.mm": 224, "aten.sum": 32},
            },
            "flops_by_precision": {"aten.addmm": {"fp32": 280}, "aten.mm": {"fp32": 280}},
        }
    }
    assert linear["unsupported"] == {}
    snapshot = dict(linear["snapshot"])
    # width 6: addmm 24 + 80 + 120 + 96 = 320; mm 4 + 80 + 120 = 204; sum 4 + 24 = 28
    assert snapshot["by_module"]["Linear"].pop("bytes") == {
        "forward": 320,
        "backward": 232,
        "by_op": {"aten.addmm": 320, "aten.mm": 204, "aten.sum": 28},
    }
    del snapshot["by_module"]["Linear"]["flops_by_precision"]
    for key in ("bytes_accessed", "bytes", "flops_by_precision"):
        del snapshot[key]
    assert snapshot == {
        "total": 480,
        "forward": 240,
        "backward": 240,
        "recompute": 0,
        "by_op": {"aten.addmm": 240, "aten.mm": 240},
        "by_module": {
            "Linear": {
                "forward": 240,
                "backward": 240,
                "by_op": {"aten.addmm": 240, "aten.mm": 240},
            }
        },
        "unsupported": {},
        "communication": {},  # a single process: no collectives
        "world": None,
    }
    delta = dict(linear["delta"])
    moved_bytes = [change for change in delta["changes"] if change["unit"] == "bytes accessed"]
    assert {(change["module"], change["op"]) for change in moved_bytes} >= {
        ("Linear", "aten.addmm"),
        ("Linear", "aten.mm"),
    }
    delta["changes"] = [change for change in delta["changes"] if change not in moved_bytes]
    assert delta == {
        "total": 80,
        "forward": 40,
        "backward": 40,
        "recompute": 0,
        "communication_bytes": 0,
        # a 7th output column, fp32: forward +4 (bias) +20 (W) +16 (y written), +16 (y
        # read by sum); backward +20 (dW) +4 (db); the gradient of sum is stride 0
        "bytes_accessed": 80,
        "relative": 80 / 480,
        "changes": [
            {"module": module, "op": op, "unit": "FLOP", "before": 240, "after": 280, "delta": 40}
            for module in ("Global", "Linear")
            for op in ("aten.addmm", "aten.mm")
        ],
    }
    decode = measurements["test_suite.py::test_lm", "decode"]
    assert (decode["status"], decode["total"]) == ("passed", 60)
    assert decode["unsupported"] == {"report_demo.blind": 1}
    assert decode["snapshot"]["unsupported"] == {"report_demo.blind": 1}
    assert (decode["delta"]["total"], decode["delta"]["relative"]) == (0, 0.0)
    new = measurements["test_suite.py::test_new", "default"]
    assert (new["status"], new["total"], new["snapshot"], new["delta"]) == (
        "no snapshot",
        120,
        None,
        None,
    )
    over = measurements["test_suite.py::test_over_budget", "default"]
    assert (over["status"], over["total"], over["snapshot"]) == ("over budget", 240, None)


def check_markdown_export(markdown: str) -> None:
    rows = [line for line in markdown.splitlines() if line.startswith("| `test_suite.py")]
    assert rows == [
        "| `test_suite.py::test_linear` | 560 FLOP | 280 FLOP | 280 FLOP | +80 FLOP | +16.67%"
        " | changed |",
        "| `test_suite.py::test_over_budget` | 240 FLOP | 240 FLOP | 0 FLOP |  |  |"
        " over budget (limit 100 FLOP) |",
        "| `test_suite.py::test_new` | 120 FLOP | 120 FLOP | 0 FLOP |  |  | no snapshot |",
        "| `test_suite.py::test_lm [decode]` | 60 FLOP | 60 FLOP | 0 FLOP | 0 | 0% | passed |",
        "| `test_suite.py::test_lm [prefill]` | 240 FLOP | 240 FLOP | 0 FLOP | 0 | 0% | passed |",
    ]
    assert "**Suite total 1.22 KFLOP (forward 940 FLOP, backward 280 FLOP)" in markdown
    assert "| `report_demo.blind` | 1 | 1 | `test_suite.py::test_lm` |" in markdown


TINY_CHANGE = """
import torch


def test_big(flops):
    a = torch.ones(1000, 1000, device="meta")
    with flops():
        a @ a  # 2*1000**3 = 2,000,000,000 FLOP
        {extra}
"""


def test_a_change_too_small_for_two_decimals_never_reads_as_none(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_m=TINY_CHANGE.format(extra="pass"))
    runpytest_forked(pytester, "--flops-update").assert_outcomes(passed=1)
    # one more (1, 1) @ (1, 1): 2*1*1*1 = 2 FLOP, a change of 1e-7 %
    pytester.makepyfile(test_m=TINY_CHANGE.format(extra="torch.ones(1, 1) @ torch.ones(1, 1)"))
    result = runpytest_forked(pytester, "--flops-report", "--flops-report-md=flops.md")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "FLOP count changed for test_m.py::test_big: "
            "total 2,000,000,000 → 2,000,000,002 FLOP (<+0.01%)",
            "test_m.py::test_big *+2 FLOP  *<+0.01%  changed",
        ]
    )
    assert "+0.00%" not in result.stdout.str()
    assert "| +2 FLOP | <+0.01% | changed |" in (pytester.path / "flops.md").read_text()


HELD_TOTALS = """
import torch

MOVED = {moved}
W = torch.ones(8, 8)


class Matmul(torch.nn.Module):
    def forward(self, x):
        return x if MOVED else x @ W


class Double(torch.nn.Module):
    def forward(self, x):
        return x if MOVED else x * 2


class Net(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        y = self.inner(x)
        if MOVED:
            y = y @ W if isinstance(self.inner, Matmul) else y * 2
        return y


def test_matmul(flops):
    model = Net(Matmul())
    with torch.no_grad(), flops(model):
        model(torch.ones(4, 8))


def test_double(flops):
    model = Net(Double())
    with torch.no_grad(), flops(model):
        model(torch.ones(4, 8))


def test_tf32(flops):
    model = torch.nn.Linear(8, 8, bias=False)
    setting = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "tf32" if MOVED else "ieee"
    try:
        with torch.no_grad(), flops(model):
            model(torch.ones(4, 8))
    finally:
        torch.backends.cuda.matmul.fp32_precision = setting
"""


def test_a_change_whose_totals_held_says_what_changed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_m=HELD_TOTALS.format(moved=False))
    runpytest_forked(pytester, "--flops-update").assert_outcomes(passed=3)
    pytester.makepyfile(test_m=HELD_TOTALS.format(moved=True))
    result = runpytest_forked(pytester, "--flops-report", "--flops-report-md=flops.md")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            # (4, 8) @ (8, 8): 2*4*8*8 = 512 FLOP, from Net.inner into Net
            "FLOPs moved between modules for test_m.py::test_matmul: total 512 unchanged",
            # x * 2 on (4, 8) fp32 reads 128 bytes and writes 128, into Net; with the 128
            # torch.ones writes in the block: 384
            "Bytes accessed moved between modules for test_m.py::test_double: "
            "total 384 bytes unchanged",
            # the same 512 FLOP of (4, 8) @ (8, 8), at TF32 where it was fp32
            "FLOP precision changed for test_m.py::test_tf32: the same FLOPs, at another precision",
        ],
        consecutive=False,
    )
    rows = {line.split()[0]: line.split() for line in result.stdout.lines if "  changed" in line}
    assert rows["test_m.py::test_matmul"][-2:] == ["moved", "changed"]
    assert rows["test_m.py::test_double"][-2:] == ["moved", "changed"]
    assert rows["test_m.py::test_tf32"][-2:] == ["precision", "changed"]
    markdown = (pytester.path / "flops.md").read_text()
    assert "| moved |  | changed |" in markdown
    assert "| precision |  | changed |" in markdown
