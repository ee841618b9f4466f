"""The report as pure functions of measurement records (no pytest session involved)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pytest_flops import Measurement
from pytest_flops.reports import terminal as report
from pytest_flops.reports.records import Status
from tests.built_records import (
    LINEAR_BWD,
    LINEAR_FWD,
    WIDE_BWD,
    WIDE_FWD,
    linear_measurement,
    make_record,
    suite,
)


def test_failed_first_then_changed_by_absolute_change_then_by_total_then_by_id() -> None:
    linear = linear_measurement(LINEAR_FWD, LINEAR_BWD)
    shrunk = linear_measurement(LINEAR_FWD - 100, LINEAR_BWD)
    records = [
        make_record("t.py::b_small", linear_measurement(10, 0), baseline=linear_measurement(10, 0)),
        make_record("t.py::b_big", linear, baseline=linear),
        make_record("t.py::a_big", linear, baseline=linear),
        make_record("t.py::grew", linear_measurement(WIDE_FWD, WIDE_BWD), baseline=linear),
        make_record("t.py::shrank", shrunk, baseline=linear, status=Status.CHANGED),
        make_record("t.py::unwritten", linear_measurement(1, 0), status=Status.NO_SNAPSHOT),
        make_record("t.py::new", linear_measurement(1, 0), status=Status.NEW),
    ]
    order = [record.nodeid for record in report.ordered(records)]
    # Failed: shrank (-100, a change) before unwritten (no change). Then grew
    # (840 - 720 = +120, within rtol), then the unchanged ones by total (720,
    # 720, 10, 1) with the tie broken by test id.
    assert order == [
        "t.py::shrank",
        "t.py::unwritten",
        "t.py::grew",
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


def test_markdown_lists_stale_snapshots_last() -> None:
    stale = ["tests/__flops__/test_a.py/test_gone.flops.json"]
    lines = report.markdown(suite(), stale=stale).splitlines()
    assert lines[-4:] == [
        "",
        "Stale snapshots, kept (their tests no longer exist or no longer measure; "
        "`pytest --flops-prune` on a run that covers their files removes them):",
        "",
        "- `tests/__flops__/test_a.py/test_gone.flops.json`",
    ]
    assert report.markdown([], stale=stale).splitlines()[2:4] == [
        "No test measured any FLOPs.",
        "",
    ]


def test_shrinking_shows_a_negative_change() -> None:
    before = linear_measurement(WIDE_FWD, WIDE_BWD)
    after = linear_measurement(LINEAR_FWD, LINEAR_BWD)
    record = make_record("t.py::test_shrank", after, baseline=before, status=Status.CHANGED)
    row = report.terminal_lines([record])[1]
    # 720 - 840 = -120; -120 / 840 = -14.29%
    assert row.split()[-3:] == ["FLOP", "-14.29%", "changed"]
    assert "-120 FLOP" in row


def test_bytes_that_moved_at_equal_flops_are_the_rows_change() -> None:
    # a Linear(9, 10) train step on (4, 9) whose bytes went from 300 to 400 (a copy): its
    # FLOPs (1,440) held, and what failed it shows in its row: +100 B, +33.33%
    linear = linear_measurement(LINEAR_FWD, LINEAR_BWD)

    def moving(size: int) -> Measurement:
        rows = linear.modules.items()
        return replace(
            linear,
            modules={
                p: replace(r, bytes_forward=size, bytes_by_op={"aten.mm": size}) for p, r in rows
            },
        )

    record = make_record(
        "t.py::test_copy", moving(400), baseline=moving(300), status=Status.CHANGED
    )
    row = report.terminal_lines([record])[1]
    assert row.split()[-4:] == ["+100", "B", "+33.33%", "changed"]


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
