"""The report as pure functions of measurement records (no pytest session involved)."""

from __future__ import annotations

import json

import pytest
import torch

import pytest_flops
from pytest_flops import report
from pytest_flops.measurement import DEFAULT_NAME, GLOBAL, Measurement, ModuleFlops
from pytest_flops.records import MeasurementRecord, Status


def linear_measurement(forward: int, backward: int, **unsupported: int) -> Measurement:
    """All FLOPs in one ``Net.fc`` module, as ``aten.mm``."""
    counts = ModuleFlops(forward=forward, backward=backward, by_op={"aten.mm": forward + backward})
    return Measurement(
        modules={GLOBAL: counts, "Net.fc": counts},
        unsupported={f"aten.{op}": calls for op, calls in unsupported.items()},
    )


def make_record(
    nodeid: str,
    measurement: Measurement,
    *,
    baseline: Measurement | None = None,
    status: Status = Status.PASSED,
    name: str = DEFAULT_NAME,
) -> MeasurementRecord:
    return MeasurementRecord(
        nodeid=nodeid, name=name, measurement=measurement, baseline=baseline, status=status
    )


# Linear(5, 6) on a (4, 5) input: forward mm 2*4*5*6 = 240; backward needs the
# input grad and the weight grad, two mms of the same size: 2*240 = 480.
LINEAR_FWD, LINEAR_BWD = 240, 480
# The same layer widened to Linear(5, 7): forward 2*4*5*7 = 280, backward 560.
WIDE_FWD, WIDE_BWD = 280, 560


def suite() -> list[MeasurementRecord]:
    linear = linear_measurement(LINEAR_FWD, LINEAR_BWD)
    wide = linear_measurement(WIDE_FWD, WIDE_BWD)
    return [
        make_record("t.py::test_same", linear, baseline=linear),
        make_record("t.py::test_grew", wide, baseline=linear, status=Status.CHANGED),
        make_record("t.py::test_new", linear_measurement(LINEAR_FWD, 0), status=Status.NEW),
        # The decode step of an LM: one token, so 1/4 of the rows of the forward above: 60.
        make_record(
            "t.py::test_lm",
            linear_measurement(60, 0, _local_scalar_dense=3),
            baseline=linear_measurement(60, 0),
            name="decode",
        ),
        make_record(
            "t.py::test_lm",
            linear_measurement(LINEAR_FWD, 0, _local_scalar_dense=2, nonzero=1),
            baseline=linear_measurement(LINEAR_FWD, 0),
            name="prefill",
        ),
    ]


def test_changed_first_by_absolute_change_then_by_total_then_by_id() -> None:
    linear = linear_measurement(LINEAR_FWD, LINEAR_BWD)
    shrunk = linear_measurement(LINEAR_FWD - 100, LINEAR_BWD)
    records = [
        make_record("t.py::b_small", linear_measurement(10, 0), baseline=linear_measurement(10, 0)),
        make_record("t.py::b_big", linear, baseline=linear),
        make_record("t.py::a_big", linear, baseline=linear),
        make_record("t.py::grew", linear_measurement(WIDE_FWD, WIDE_BWD), baseline=linear),
        make_record("t.py::shrank", shrunk, baseline=linear, status=Status.CHANGED),
        make_record("t.py::new", linear_measurement(1, 0), status=Status.NEW),
    ]
    order = [record.nodeid for record in report.ordered(records)]
    # grew: 840 - 720 = +120 (larger than shrank's -100), then the unchanged ones by
    # total (720, 720, 10, 1) with the tie broken by test id.
    assert order == [
        "t.py::grew",
        "t.py::shrank",
        "t.py::a_big",
        "t.py::b_big",
        "t.py::b_small",
        "t.py::new",
    ]
    assert report.ordered(reversed(records)) == report.ordered(records)


def test_suite_unsupported_sums_calls_and_names_tests() -> None:
    ops = report.suite_unsupported(suite())
    # _local_scalar_dense: 3 calls in decode + 2 in prefill, both in test_lm.
    assert ops == [
        report.UnsupportedOp(op="aten._local_scalar_dense", calls=5, tests=("t.py::test_lm",)),
        report.UnsupportedOp(op="aten.nonzero", calls=1, tests=("t.py::test_lm",)),
    ]


def test_json_report_numbers() -> None:
    metadata = report.RunMetadata(
        plugin_version="1.2.3",
        torch_version="2.99",
        python_version="3.99.0",
        platform="linux",
        devices=("cpu",),
    )
    document = json.loads(json.dumps(report.json_report(suite(), metadata)))
    assert document["schema_version"] == report.SCHEMA_VERSION == 1
    assert document["metadata"] == {
        "plugin_version": "1.2.3",
        "torch_version": "2.99",
        "python_version": "3.99.0",
        "platform": "linux",
        "devices": ["cpu"],
    }
    summary = document["summary"]
    # forward: 240 + 280 + 240 + 60 + 240 = 1060; backward: 480 + 560 = 1040
    assert (summary["total"], summary["forward"], summary["backward"]) == (2100, 1060, 1040)
    assert (summary["tests"], summary["measurements"]) == (4, 5)
    assert summary["statuses"] == {
        **{status.value: 0 for status in Status},
        "passed": 3,
        "changed": 1,
        "new": 1,
    }
    assert summary["unsupported"] == [
        {"op": "aten._local_scalar_dense", "calls": 5, "tests": ["t.py::test_lm"]},
        {"op": "aten.nonzero", "calls": 1, "tests": ["t.py::test_lm"]},
    ]

    by_key = {(m["nodeid"], m["name"]): m for m in document["measurements"]}
    assert list(by_key) == sorted(by_key)
    grew = by_key[("t.py::test_grew", "default")]
    assert grew["status"] == "changed"
    assert (grew["total"], grew["forward"], grew["backward"]) == (840, 280, 560)
    assert grew["by_op"] == {"aten.mm": 840}
    assert grew["by_module"] == {
        "Net.fc": {"forward": 280, "backward": 560, "by_op": {"aten.mm": 840}}
    }
    assert grew["unsupported"] == {}
    assert grew["snapshot"]["total"] == 720
    assert grew["snapshot"]["by_module"]["Net.fc"]["by_op"] == {"aten.mm": 720}
    # 840 - 720 = 120, relative 120 / 720 = 1/6
    assert grew["delta"] == {
        "total": 120,
        "forward": 40,
        "backward": 80,
        "communication_bytes": 0,
        "relative": 120 / 720,
        "changes": [
            {"module": "Global", "op": "aten.mm", "unit": "FLOP", "before": 720, "after": 840,
             "delta": 120},
            {"module": "Net.fc", "op": "aten.mm", "unit": "FLOP", "before": 720, "after": 840,
             "delta": 120},
        ],
    }  # fmt: skip
    new = by_key[("t.py::test_new", "default")]
    assert (new["status"], new["snapshot"], new["delta"]) == ("new", None, None)
    decode = by_key[("t.py::test_lm", "decode")]
    assert decode["unsupported"] == {"aten._local_scalar_dense": 3}
    assert decode["delta"]["total"] == 0
    assert decode["delta"]["relative"] == 0.0
    assert decode["delta"]["changes"] == []


def test_json_report_relative_change_from_zero_is_null() -> None:
    record = make_record(
        "t.py::test_grew_from_nothing",
        linear_measurement(LINEAR_FWD, 0),
        baseline=Measurement(),
        status=Status.CHANGED,
    )
    metadata = report.RunMetadata.collect()
    (entry,) = report.json_report([record], metadata)["measurements"]
    assert entry["delta"]["total"] == LINEAR_FWD
    assert entry["delta"]["relative"] is None


def test_json_report_is_independent_of_record_order() -> None:
    metadata = report.RunMetadata.collect()
    forward = json.dumps(report.json_report(suite(), metadata))
    backward = json.dumps(report.json_report(suite()[::-1], metadata))
    assert forward == backward


def test_metadata_falls_back_to_the_default_device() -> None:
    metadata = report.RunMetadata.collect()
    assert metadata.devices == (str(torch.get_default_device()),)
    assert metadata.plugin_version == pytest_flops.__version__
    assert metadata.torch_version == torch.__version__
    assert report.RunMetadata.collect(["cuda:0", "cpu", "cuda:0"]).devices == ("cpu", "cuda:0")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("t.py::test_x[a|b]", "`t.py::test_x[a\\|b]`"),
        ("t.py::test_x[`tick`]", "``t.py::test_x[`tick`]``"),
        ("t.py::test_x[a``b]", "```t.py::test_x[a``b]```"),
    ],
)
def test_markdown_test_ids_stay_in_their_cell(text: str, expected: str) -> None:
    assert report._escape(report._code(text)) == expected


def test_terminal_section() -> None:
    assert report.terminal_lines(suite()) == [
        "test                        total   forward  backward     change  rel. change  status",
        # 840 - 720 = +120; 120 / 720 = 16.67%
        "t.py::test_grew          840 FLOP  280 FLOP  560 FLOP  +120 FLOP      +16.67%  changed",
        "t.py::test_same          720 FLOP  240 FLOP  480 FLOP          0           0%  passed",
        # a test's measurements stay together (largest 240, tied with test_new: by id)
        "t.py::test_lm [decode]    60 FLOP   60 FLOP    0 FLOP          0           0%  passed",
        "t.py::test_lm [prefill]  240 FLOP  240 FLOP    0 FLOP          0           0%  passed",
        "t.py::test_new           240 FLOP  240 FLOP    0 FLOP                          new",
        "",
        # 720 + 840 + 240 + 60 + 240 = 2100 in all, 1060 forward and 1040 backward
        "suite total 2.1 KFLOP (forward 1.06 KFLOP, backward 1.04 KFLOP) in 5 measurement(s)"
        " of 4 test(s); measurements: 3 passed, 1 changed, 1 new",
        "",
        "unsupported ops (ran with no formula; their FLOPs are not counted):",
        "  op                        calls  tests  seen in",
        "  aten._local_scalar_dense      5      1  t.py::test_lm",
        "  aten.nonzero                  1      1  t.py::test_lm",
    ]


def test_markdown_summary() -> None:
    assert report.markdown(suite()).splitlines() == [
        "## FLOPs report",
        "",
        "| test | total | forward | backward | change | rel. change | status |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        "| `t.py::test_grew` | 840 FLOP | 280 FLOP | 560 FLOP | +120 FLOP | +16.67% | changed |",
        "| `t.py::test_same` | 720 FLOP | 240 FLOP | 480 FLOP | 0 | 0% | passed |",
        "| `t.py::test_lm [decode]` | 60 FLOP | 60 FLOP | 0 FLOP | 0 | 0% | passed |",
        "| `t.py::test_lm [prefill]` | 240 FLOP | 240 FLOP | 0 FLOP | 0 | 0% | passed |",
        "| `t.py::test_new` | 240 FLOP | 240 FLOP | 0 FLOP |  |  | new |",
        "",
        "**Suite total 2.1 KFLOP (forward 1.06 KFLOP, backward 1.04 KFLOP) in 5 measurement(s)"
        " of 4 test(s); measurements: 3 passed, 1 changed, 1 new.**",
        "",
        "Unsupported ops (ran with no formula; their FLOPs are not counted):",
        "",
        "| op | calls | tests | seen in |",
        "| --- | ---: | ---: | --- |",
        "| `aten._local_scalar_dense` | 5 | 1 | `t.py::test_lm` |",
        "| `aten.nonzero` | 1 | 1 | `t.py::test_lm` |",
    ]


def test_shrinking_shows_a_negative_change() -> None:
    before = linear_measurement(WIDE_FWD, WIDE_BWD)
    after = linear_measurement(LINEAR_FWD, LINEAR_BWD)
    record = make_record("t.py::test_shrank", after, baseline=before, status=Status.CHANGED)
    row = report.terminal_lines([record])[1]
    # 720 - 840 = -120; -120 / 840 = -14.29%
    assert row.split()[-3:] == ["FLOP", "-14.29%", "changed"]
    assert "-120 FLOP" in row


def test_long_lists_are_capped_and_say_what_was_left_out() -> None:
    extra = 3
    ops = [f"op{i:02}" for i in range(report.MAX_UNSUPPORTED_OPS + 2)]
    records = [
        # test_00 is the largest (MAX_ROWS + extra FLOPs), the last ones are cut
        make_record(
            f"t.py::test_{i:02}",
            linear_measurement(report.MAX_ROWS + extra - i, 0, **{op: 1 for op in ops[: i + 1]}),
        )
        for i in range(report.MAX_ROWS + extra)
    ]
    lines = report.terminal_lines(records)
    table = lines[1 : report.MAX_ROWS + 1]
    assert [line.split()[0] for line in table] == [
        f"t.py::test_{i:02}" for i in range(report.MAX_ROWS)
    ]
    # The 3 smallest are left out: 3 + 2 + 1 = 6 FLOP.
    assert (
        lines[report.MAX_ROWS + 1]
        == "... 3 more measurement(s) not shown (3 passed; 6 FLOP in all)"
    )
    unsupported = lines[lines.index("  op         calls  tests  seen in") + 1 :]
    # op00 ran in all 28 tests, op01 in 27, ... so the two last ops are cut.
    assert unsupported[0] == (
        "  aten.op00     28     28  t.py::test_00, t.py::test_01, t.py::test_02, +25 more"
    )
    assert len(unsupported) == report.MAX_UNSUPPORTED_OPS + 1
    assert unsupported[-1] == "  ... 2 more unsupported op(s) not shown"
    markdown = report.markdown(records)
    assert "_3 more measurement(s) not shown (3 passed; 6 FLOP in all)._" in markdown
    assert "_2 more unsupported op(s) not shown._" in markdown


def test_no_measurements() -> None:
    assert report.terminal_lines([]) == ["no test measured any FLOPs"]
    assert report.markdown([]) == "## FLOPs report\n\nNo test measured any FLOPs.\n"
