"""What the plugin learned about each measured test: the input of reports, exports and xdist.

One :class:`MeasurementRecord` per test and measurement name. Records are plain
data with a JSON form, so xdist workers can ship them to the controller and
``python -m pytest_flops merge`` can read them back from shard exports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from pytest_flops.measurement import DEFAULT_NAME, Measurement
from pytest_flops.validation import (
    SnapshotFormatError,
    expect_count,
    expect_mapping,
    expect_string,
)

__all__ = ["MeasurementRecord", "Status"]


class Status(StrEnum):
    """How a measurement compared with its snapshot (or budget)."""

    PASSED = "passed"  # equal to the snapshot (within rtol)
    CHANGED = "changed"  # differs from the snapshot, or is not in it; the test failed
    MISSING = "missing"  # in the snapshot, but not measured this time; the test failed
    UPDATED = "updated"  # differed from the snapshot; rewritten under --flops-update
    NEW = "new"  # had no (readable) snapshot; written under --flops-update
    REMOVED = "removed"  # no longer measured; taken out of the snapshot by --flops-prune
    KEPT = "kept"  # in the snapshot, not measured this time (a skipped subtest, or stale): kept
    NO_SNAPSHOT = "no snapshot"  # had no snapshot and none was written (test failed)
    INVALID_SNAPSHOT = "invalid snapshot"  # the snapshot file could not be read (test failed)
    NOT_WRITTEN = "not written"  # --flops-update could not write the snapshot (test failed)
    OVER_BUDGET = "over budget"  # a limit_flops budget was exceeded
    WITHIN_BUDGET = "within budget"  # limit_flops test without the fixture: no snapshot
    NOT_COMPARED = "not compared"  # the test failed by itself; its snapshot was left alone

    @property
    def failed(self) -> bool:
        """Whether this status failed its test's FLOP check."""
        return self in _FAILED


_FAILED = frozenset(
    {
        Status.CHANGED,
        Status.MISSING,
        Status.NO_SNAPSHOT,
        Status.INVALID_SNAPSHOT,
        Status.NOT_WRITTEN,
        Status.OVER_BUDGET,
    }
)


@dataclass(frozen=True, kw_only=True)
class MeasurementRecord:
    nodeid: str
    name: str  # "default" for the unnamed measurement
    measurement: Measurement
    baseline: Measurement | None  # the snapshot's value, if one was stored
    status: Status
    budget: str | None = None  # the limit_flops limits, as written: "1 MFLOP, forward 0.5 MFLOP"

    @property
    def label(self) -> str:
        """The test id, with the measurement name when it is not the default one."""
        return self.nodeid if self.name == DEFAULT_NAME else f"{self.nodeid} [{self.name}]"

    @property
    def delta(self) -> int | None:
        return None if self.baseline is None else self.measurement.total - self.baseline.total

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "name": self.name,
            "status": self.status.value,
            "budget": self.budget,
            "measurement": self.measurement.to_dict(),
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            **per_token_figures(self.measurement),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str) -> MeasurementRecord:
        data = expect_mapping(data, where)
        nodeid = expect_string(data.get("nodeid"), f"{where}: nodeid")
        at = f"{where} ({nodeid})"
        try:
            status = Status(expect_string(data.get("status"), f"{at}: status"))
        except ValueError:
            raise SnapshotFormatError(f"{at}: unknown status {data.get('status')!r}") from None
        baseline = data.get("baseline")
        budget = data.get("budget")
        return cls(
            nodeid=nodeid,
            name=expect_string(data.get("name"), f"{at}: name"),
            status=status,
            budget=None if budget is None else expect_string(budget, f"{at}: budget"),
            measurement=with_per_token_figures(
                Measurement.from_dict(data.get("measurement"), where=f"{at}: measurement"),
                data,
                where=at,
            ),
            baseline=(
                None
                if baseline is None
                else Measurement.from_dict(baseline, where=f"{at}: baseline")
            ),
        )


def per_token_figures(measurement: Measurement) -> dict[str, int]:
    """``tokens`` and ``parameters``, where known: a record's, not a snapshot's."""
    figures = {"tokens": measurement.tokens, "parameters": measurement.parameters}
    return {key: value for key, value in figures.items() if value is not None}


def with_per_token_figures(
    measurement: Measurement, data: Mapping[str, Any], *, where: str
) -> Measurement:
    """``measurement`` with the ``tokens`` and ``parameters`` that ``data`` holds."""
    tokens, parameters = (
        None if data.get(key) is None else expect_count(data[key], f"{where}: {key}")
        for key in ("tokens", "parameters")
    )
    return replace(measurement, tokens=tokens, parameters=parameters)
