"""Measurement records built by hand, for tests of the reports and exports."""

from __future__ import annotations

from pytest_flops.measurement import DEFAULT_NAME, GLOBAL, Measurement, ModuleFlops
from pytest_flops.reports.records import MeasurementRecord, Status

__all__ = [
    "LINEAR_BWD",
    "LINEAR_FWD",
    "WIDE_BWD",
    "WIDE_FWD",
    "linear_measurement",
    "make_record",
    "suite",
]


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
