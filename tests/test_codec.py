"""A measurement's numbers: the one decomposition that every diff, gate and report compares."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_flops import Measurement, ModuleFlops, Traffic, World
from pytest_flops.codec import Number, Tolerance, numbers, own_numbers
from pytest_flops.measurement import BYTES_ACCESSED, FLOP, DiffRow
from pytest_flops.plugin import diagnoses
from pytest_flops.snapshots.format import FlopsSnapshot

# Linear(16, 4) on an (8, 16) bf16 input, forward: addmm 2*8*16*4 = 1,024 FLOP (the bias add
# is not counted); it reads x (8*16), W (16*4), b (4) and writes (8*4), 2 bytes each:
# (128 + 64 + 4 + 32) * 2 = 456 bytes
FC = ModuleFlops(
    forward=1_024,
    by_op={"aten.addmm": 1_024},
    bytes_forward=456,
    bytes_by_op={"aten.addmm": 456},
    flops_by_precision={"aten.addmm": {"bf16": 1_024}},
)
# an all_reduce of the (8, 4) bf16 output: 64 bytes, one call
COMM = ModuleFlops(communication={"_c10d_functional.all_reduce": Traffic(calls=1, bytes=64)})
NET = Measurement(
    modules={"Global": FC + COMM, "Net": FC + COMM, "Net.fc": FC},
    unsupported={"aten.nonzero": 2},
    world=World(rank=0, size=2, mesh={"dp": 2}),
)


def test_every_number_is_keyed_by_row_operator_and_unit() -> None:
    fc = {
        ("forward", "FLOP per phase"): 1_024,
        ("backward", "FLOP per phase"): 0,
        ("recompute", "FLOP per phase"): 0,
        ("aten.addmm", "FLOP"): 1_024,
        ("forward", "bytes accessed per phase"): 456,
        ("backward", "bytes accessed per phase"): 0,
        ("recompute", "bytes accessed per phase"): 0,
        ("aten.addmm", "bytes accessed"): 456,
        ("aten.addmm", "bf16 FLOP"): 1_024,
    }
    comm = {
        ("_c10d_functional.all_reduce", "bytes"): 64,
        ("_c10d_functional.all_reduce", "calls"): 1,
    }
    expected = {
        **{Number(row, op, unit): n for row in ("Global", "Net") for (op, unit), n in fc.items()},
        **{Number(row, op, unit): n for row in ("Global", "Net") for (op, unit), n in comm.items()},
        **{Number("Net.fc", op, unit): n for (op, unit), n in fc.items()},
        Number("", "aten.nonzero", "calls with no formula"): 2,
        Number("", "rank", "world"): 0,
        Number("", "size", "world"): 2,
        Number("", "mesh dp", "world"): 2,
    }
    assert numbers(NET) == expected
    # bytes, and the precisions stored with them, only where recorded and asked for
    no_bytes = {key for key in expected if "bytes accessed" in key.unit or key.unit == "bf16 FLOP"}
    assert numbers(NET, with_bytes=False) == {
        key: n for key, n in expected.items() if key not in no_bytes
    }
    assert numbers(NET.without_bytes()).keys() == expected.keys() - no_bytes


def test_own_numbers_are_each_row_without_the_rows_right_under_it() -> None:
    own = own_numbers(numbers(NET))
    # Net.fc holds the addmm; Net adds the all_reduce; Global adds nothing of its own
    assert {key: n for key, n in own.items() if key.module == "Net"} == {
        Number("Net", "_c10d_functional.all_reduce", "bytes"): 64,
        Number("Net", "_c10d_functional.all_reduce", "calls"): 1,
    }
    assert own[Number("Net.fc", "aten.addmm", FLOP)] == 1_024
    assert own[Number("Net.fc", "backward", "FLOP per phase")] == 0  # a leaf's own zero stays
    assert not {key for key in own if key.module == "Global"}
    assert own[Number("", "rank", "world")] == 0  # not a row: as it is


def test_a_diff_compares_bytes_only_where_both_sides_recorded_them() -> None:
    # a format 3 baseline: the same FLOPs; its bytes are not known, which is not 0
    assert NET.without_bytes().diff(NET).moved == ()
    assert NET.diff(NET.without_bytes()).moved == ()
    doubled = Measurement(modules={"Global": FC + FC}, bytes_recorded=False)
    assert Measurement(modules={"Global": FC}).diff(doubled).moved == (
        DiffRow(module="Global", op="aten.addmm", before=1_024, after=2_048),
        DiffRow(module="Global", op="forward", before=1_024, after=2_048, unit="FLOP per phase"),
    )


def test_each_unit_moves_within_its_own_tolerance() -> None:
    after = Measurement(modules={"Global": FC + FC}, unsupported={"aten.nonzero": 2})
    before = Measurement(modules={"Global": FC}, unsupported={"aten.nonzero": 1})
    # FLOPs and bytes doubled (+100%), calls with no formula 1 -> 2
    loose = before.diff(after, tolerance=Tolerance(flops=1.0, bytes=1.0)).moved
    assert loose == (
        DiffRow(module="", op="aten.nonzero", before=1, after=2, unit="calls with no formula"),
    )
    flops_only = before.diff(after, tolerance=Tolerance(flops=1.0)).moved
    assert {row.unit for row in flops_only} == {
        BYTES_ACCESSED,
        "bytes accessed per phase",
        "calls with no formula",
    }


def test_an_op_that_starts_running_is_a_change_at_zero_flops_and_the_failure_names_it() -> None:
    # upsample_nearest2d counts 0 FLOP by convention: the gate failed with no row saying why
    fc = ModuleFlops(forward=100, by_op={"aten.mm": 100})
    up = ModuleFlops(by_op={"aten.upsample_nearest2d": 0})
    before = Measurement(modules={"Global": fc, "Net": fc, "Net.fc": fc})
    after = Measurement(modules={"Global": fc + up, "Net": fc + up, "Net.fc": fc, "Net.up": up})
    assert [(row.module, row.op, row.delta) for row in before.diff(after).rows] == [
        ("Global", "aten.upsample_nearest2d", 0),
        ("Net", "aten.upsample_nearest2d", 0),
        ("Net.up", "aten.upsample_nearest2d", 0),
    ]
    # a module row that appears with nothing counted is no change
    empty = Measurement(modules={**before.modules, "Net.act": ModuleFlops()})
    assert before.diff(empty).moved == ()
    failure = diagnoses.mismatch(
        "t.py::test_net", "loc", snapshot(before), snapshot(after), {"default"}
    )
    assert failure.splitlines()[4:8] == [
        "  the change starts in (each module without its submodules):",
        "  module  operator                 before  after   Δ",
        "  Net.up  aten.upsample_nearest2d       0      0  +0",
        "  and the sums of these rows: Global, Net",
    ]


def test_a_precision_change_deep_in_a_model_names_the_rows_that_only_sum_it() -> None:
    fp32 = ModuleFlops(
        forward=100, by_op={"aten.mm": 100}, flops_by_precision={"aten.mm": {"fp32": 100}}
    )
    tf32 = ModuleFlops(
        forward=100, by_op={"aten.mm": 100}, flops_by_precision={"aten.mm": {"tf32": 100}}
    )
    before = Measurement(modules={"Global": fp32, "Net": fp32, "Net.fc": fp32})
    after = Measurement(modules={"Global": tf32, "Net": tf32, "Net.fc": tf32})
    failure = diagnoses.mismatch(
        "t.py::test_net", "loc", snapshot(before), snapshot(after), {"default"}
    )
    assert failure.splitlines()[0] == (
        "FLOP precision changed for t.py::test_net: the same FLOPs, at another precision"
    )
    assert failure.splitlines()[5:10] == [
        "  module  operator             before  after     Δ",
        "  Net.fc  aten.mm (fp32 FLOP)     100      0  -100",
        "  Net.fc  aten.mm (tf32 FLOP)       0    100  +100",
        "  and the sums of these rows: Global, Net",
        "",
    ]


def snapshot(measurement: Measurement) -> FlopsSnapshot:
    return FlopsSnapshot(test="test_net", depth=6, measurements={"default": measurement})


# -- every number the snapshot stores is compared ----------------------------------------

counts = st.integers(min_value=0, max_value=3)
by_op = st.dictionaries(st.sampled_from(["aten.mm", "aten.add"]), counts)


@st.composite
def rows(draw: st.DrawFn) -> ModuleFlops:
    return ModuleFlops(
        forward=draw(counts),
        backward=draw(counts),
        recompute=draw(counts),
        by_op=draw(by_op),
        communication=draw(
            st.dictionaries(
                st.just("_c10d_functional.all_reduce"),
                st.builds(Traffic, calls=counts, bytes=counts),
            )
        ),
        bytes_forward=draw(counts),
        bytes_backward=draw(counts),
        bytes_recompute=draw(counts),
        bytes_by_op=draw(by_op),
        flops_by_precision=draw(
            st.dictionaries(
                st.just("aten.mm"),
                st.dictionaries(st.sampled_from(["fp32", "tf32"]), counts, min_size=1),
            )
        ),
    )


measurements = st.builds(
    Measurement,
    modules=st.fixed_dictionaries({"Global": rows(), "A": rows(), "A.b": rows()}),
    unsupported=st.dictionaries(st.just("aten.nonzero"), counts),
    world=st.none() | st.builds(World, rank=counts, size=counts, mesh=st.just({"dp": 2})),
)


@pytest.mark.slow  # a few seconds: 150 pairs, each diffed and serialized
@settings(max_examples=150, deadline=None)
@given(before=measurements, after=measurements)
def test_two_measurements_differ_exactly_where_their_stored_forms_do(
    before: Measurement, after: Measurement
) -> None:
    # a number the file stores but the diff left out would pass the gate unseen
    assert (before.to_dict() == after.to_dict()) == (before.diff(after).moved == ())
    assert before.diff(before).moved == ()


def test_the_failure_lists_calls_with_no_formula_that_moved_those_still_running_first() -> None:
    fc = ModuleFlops(forward=100, by_op={"aten.mm": 100})
    before = Measurement(modules={"Global": fc}, unsupported={"aten.nonzero": 1, "aten.unique": 2})
    after = Measurement(modules={"Global": fc}, unsupported={"aten.nonzero": 3, "aten.bincount": 1})
    failure = diagnoses.mismatch(
        "t.py::test_net", "loc", snapshot(before), snapshot(after), {"default"}
    )
    assert failure.splitlines()[4:9] == [
        "  the change starts in (each module without its submodules):",
        "  module        operator             before  after  Δ",
        "  (no formula)  aten.bincount calls       0      1",
        "  (no formula)  aten.nonzero calls        1      3",
        "  (no formula)  aten.unique calls         2      0",
    ]
