"""The comparison's pure decision: what a test's counts against its snapshot and budget conclude."""

import pytest

from pytest_flops import Measurement, ModuleFlops, SnapshotFormatError, Status
from pytest_flops.plugin.marks import Budget, limit_flops
from pytest_flops.plugin.verdict import Verdict, judge
from pytest_flops.snapshots.format import FlopsSnapshot

LOCATION = "tests/__flops__/test_models.py/test_a.flops.json"


def linear(out_features: int) -> Measurement:
    # Linear(9, out) on a [4, 9] input: forward addmm 2*4*9*out, weight-grad mm the same
    flops = 2 * 4 * 9 * out_features
    row = ModuleFlops(forward=flops, backward=flops, by_op={"aten.addmm": flops, "aten.mm": flops})
    return Measurement(modules={"Global": row, "Net": row, "Net.fc": row})


def snapshot(depth: int = 3, **measurements: Measurement) -> FlopsSnapshot:
    return FlopsSnapshot(test="test_a", depth=depth, measurements=measurements)


def decide(
    current: FlopsSnapshot | None,
    stored: FlopsSnapshot | SnapshotFormatError | None,
    *,
    rtol: float = 0.0,
    bytes_rtol: float | None = 0.0,
    update: bool = False,
    budget: Budget | None = None,
) -> Verdict:
    verdict = judge(
        nodeid="tests/test_models.py::test_a",
        location=LOCATION,
        current=current,
        stored=stored,
        rtol=rtol,
        bytes_rtol=bytes_rtol,
        update=update,
        budget=budget,
    )
    assert verdict is not None
    return verdict


# -- judge -----------------------------------------------------------------------------------


def test_equal_counts_pass_and_write_nothing() -> None:
    verdict = decide(snapshot(default=linear(10)), snapshot(default=linear(10)))
    assert verdict.failure is None and verdict.write is None
    assert verdict.statuses == {"default": Status.PASSED}


def test_missing_snapshot_fails_and_names_the_test() -> None:
    verdict = decide(snapshot(default=linear(10)), None)
    assert verdict.statuses == {"default": Status.NO_SNAPSHOT}
    assert verdict.write is None
    assert verdict.failure == (
        "No FLOP snapshot for tests/test_models.py::test_a (1,440 FLOP counted).\n"
        "Run `pytest --flops-update` to write tests/__flops__/test_models.py/test_a.flops.json."
    )


def test_change_puts_the_diagnosis_first_and_the_hint_last() -> None:
    verdict = decide(snapshot(default=linear(11)), snapshot(default=linear(10)))
    assert verdict.statuses == {"default": Status.CHANGED}
    # 2*4*9*10 = 720 -> 2*4*9*11 = 792 per op, forward and backward
    assert verdict.failure == (
        "FLOP count changed for tests/test_models.py::test_a: total 1,440 → 1,584 FLOP (+10.00%)\n"
        "  forward   720 → 792 FLOP (+10.00%)\n"
        "  backward  720 → 792 FLOP (+10.00%)\n"
        "\n"
        "  module  operator    before  after    Δ\n"
        "  Global  aten.addmm     720    792  +72\n"
        "  Global  aten.mm        720    792  +72\n"
        "  Net     aten.addmm     720    792  +72\n"
        "  Net     aten.mm        720    792  +72\n"
        "  Net.fc  aten.addmm     720    792  +72\n"
        "  Net.fc  aten.mm        720    792  +72\n"
        "\n"
        "Snapshot: tests/__flops__/test_models.py/test_a.flops.json\n"
        "Run `pytest --flops-update` to accept the new counts."
    )


def test_long_tables_are_capped() -> None:
    modules = {
        f"GPT.blocks.{i}": ModuleFlops(forward=i, by_op={"aten.mm": i}) for i in range(1, 31)
    }
    before = Measurement(modules={"Global": ModuleFlops(forward=465, by_op={"aten.mm": 465})})
    after = Measurement(modules={"Global": before.modules["Global"], **modules})
    failure = decide(snapshot(default=after), snapshot(default=before)).failure
    assert failure is not None
    assert "  GPT.blocks.30  aten.mm" in failure  # largest change first
    assert "GPT.blocks.18 " not in failure
    assert "... 18 more changed row(s) not shown" in failure  # 30 rows, 12 shown


def test_equal_changes_list_global_first_then_blocks_in_numeric_order() -> None:
    # every block doubles its mm, 100 -> 200; as text "blocks.10" would sort before "blocks.2"
    def blocks(flops: int) -> Measurement:
        row = ModuleFlops(forward=flops, by_op={"aten.mm": flops})
        total = ModuleFlops(forward=12 * flops, by_op={"aten.mm": 12 * flops})
        return Measurement(
            modules={"Global": total, **{f"Encoder.blocks.{i}": row for i in range(12)}}
        )

    rows = blocks(100).diff(blocks(200)).rows
    assert [row.module for row in rows] == [
        "Global",  # +1200, the largest change
        *(f"Encoder.blocks.{i}" for i in range(12)),  # +100 each
    ]


def test_global_leads_a_tie() -> None:
    # "Encoder" sorts before "Global" as text; the diagnosis starts with the whole model
    row = ModuleFlops(forward=10, by_op={"aten.mm": 10})
    before = Measurement(modules={"Global": ModuleFlops(), "Encoder": ModuleFlops()})
    after = Measurement(modules={"Global": row, "Encoder": row})
    assert [row.module for row in before.diff(after).rows] == ["Global", "Encoder"]


def test_rtol_accepts_small_changes_only() -> None:
    stored, current = snapshot(default=linear(10)), snapshot(default=linear(11))
    assert decide(current, stored, rtol=0.1).failure is None  # +10.00% everywhere
    assert decide(current, stored, rtol=0.09).statuses == {"default": Status.CHANGED}


def test_rows_deeper_than_either_depth_are_not_compared() -> None:
    shallow = snapshot(depth=1, default=linear(10).truncated(1))
    verdict = decide(snapshot(depth=3, default=linear(10)), shallow)
    assert verdict.failure is None
    assert decide(snapshot(depth=3, default=linear(10)), shallow, update=True).write is not None


def test_named_measurements_that_come_or_go_fail() -> None:
    verdict = decide(
        snapshot(default=linear(10), decode=linear(10)),
        snapshot(default=linear(10), prefill=linear(10)),
    )
    # the one that went is a record of its own: every export shows the test failed
    assert verdict.statuses == {
        "default": Status.PASSED,
        "decode": Status.CHANGED,
        "prefill": Status.MISSING,
    }
    assert verdict.measurements["prefill"] == Measurement()
    assert verdict.failure is not None
    assert "FLOP measurement 'decode' of tests/test_models.py::test_a is new: 1,440 FLOP" in (
        verdict.failure
    )
    assert "'prefill' of tests/test_models.py::test_a was not measured this time" in verdict.failure


def test_unreadable_snapshot_fails_naming_the_problem() -> None:
    error = SnapshotFormatError("tests/__flops__/test_models.py/test_a.flops.json: not valid JSON")
    verdict = decide(snapshot(default=linear(10)), error)
    assert verdict.statuses == {"default": Status.INVALID_SNAPSHOT}
    assert verdict.failure == (
        "Cannot read the FLOP snapshot of tests/test_models.py::test_a: "
        "tests/__flops__/test_models.py/test_a.flops.json: not valid JSON\n"
        "Run `pytest --flops-update` to rewrite tests/__flops__/test_models.py/test_a.flops.json."
    )


@pytest.mark.parametrize(
    ("stored", "status"),
    [
        (None, Status.NEW),
        (SnapshotFormatError("broken"), Status.NEW),
        (snapshot(default=linear(10)), Status.UPDATED),
    ],
)
def test_update_writes_missing_broken_and_changed_snapshots(
    stored: FlopsSnapshot | SnapshotFormatError | None, status: Status
) -> None:
    current = snapshot(default=linear(11))
    verdict = decide(current, stored, update=True)
    assert verdict.failure is None
    assert verdict.write == current
    assert verdict.statuses == {"default": status}


def test_update_takes_a_vanished_name_out_of_the_snapshot() -> None:
    current = snapshot(default=linear(10))
    verdict = decide(current, snapshot(default=linear(10), prefill=linear(10)), update=True)
    assert verdict.write == current
    assert verdict.statuses == {"default": Status.PASSED, "prefill": Status.REMOVED}


def test_a_test_that_measured_nothing_fails_against_its_snapshot() -> None:
    verdict = decide(None, snapshot(default=linear(10)))
    assert verdict.statuses == {"default": Status.MISSING}
    assert verdict.failure == (
        "tests/test_models.py::test_a measured no FLOPs this time, but its snapshot has "
        "1,440 FLOP (no `with flops(...)` block finished).\n"
        f"Snapshot: {LOCATION}\n"
        "Run `pytest --flops-update` to remove it, if the test should not measure."
    )
    removed = decide(None, snapshot(default=linear(10)), update=True)
    assert removed.remove and removed.failure is None
    assert removed.statuses == {"default": Status.REMOVED}
    # nothing measured, nothing stored: nothing to say
    assert (
        judge(
            nodeid="t",
            location=LOCATION,
            current=None,
            stored=None,
            rtol=0,
            bytes_rtol=0,
            update=False,
            budget=None,
        )
        is None
    )


def test_update_moves_a_snapshot_of_the_old_layout_even_when_equal() -> None:
    current = snapshot(default=linear(10))
    verdict = judge(
        nodeid="t",
        location=LOCATION,
        current=current,
        stored=current,
        rtol=0,
        bytes_rtol=0,
        update=True,
        budget=None,
        must_write=True,
    )
    assert verdict is not None and verdict.write == current
    assert verdict.statuses == {"default": Status.PASSED}


def test_update_never_writes_a_test_over_budget() -> None:
    budget = limit_flops(1000)
    verdict = decide(snapshot(default=linear(11)), None, update=True, budget=budget)
    assert verdict.write is None
    assert verdict.statuses == {"default": Status.OVER_BUDGET}
    assert verdict.failure == (
        "FLOP budget exceeded by tests/test_models.py::test_a: used 1.58 KFLOP, limit 1 KFLOP"
    )
