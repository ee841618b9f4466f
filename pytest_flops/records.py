"""What the plugin learned about each measured test: the input of reports and xdist.

One :class:`MeasurementRecord` per test and measurement name. Records are plain
data with a JSON form, so xdist workers can ship them to the controller.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from pytest_flops.measurement import Measurement


class Status(str, Enum):
    """How a measurement compared with its snapshot (or budget)."""

    PASSED = "passed"  # equal to the snapshot (within rtol)
    CHANGED = "changed"  # differs from the snapshot; the test failed
    UPDATED = "updated"  # differed from the snapshot; rewritten under --flops-update
    NEW = "new"  # had no (readable) snapshot; written under --flops-update
    NO_SNAPSHOT = "no snapshot"  # had no snapshot and none was written (test failed)
    INVALID_SNAPSHOT = "invalid snapshot"  # the snapshot file could not be read (test failed)
    OVER_BUDGET = "over budget"  # a limit_flops budget was exceeded
    WITHIN_BUDGET = "within budget"  # limit_flops test without the fixture: no snapshot
    NOT_COMPARED = "not compared"  # the test failed by itself; its snapshot was left alone

    @property
    def failed(self) -> bool:
        """Whether this status failed the test."""
        return self in _FAILED


@dataclass(frozen=True, kw_only=True)
class MeasurementRecord:
    nodeid: str
    name: str  # "default" for the unnamed measurement
    measurement: Measurement
    baseline: Measurement | None  # the snapshot's value, if one was stored
    status: Status

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
            "measurement": self.measurement.to_dict(),
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasurementRecord:
        where = f"record {data.get('nodeid')!r}"
        return cls(
            nodeid=data["nodeid"],
            name=data["name"],
            status=Status(data["status"]),
            measurement=Measurement.from_dict(data["measurement"], where=where),
            baseline=(
                None
                if data["baseline"] is None
                else Measurement.from_dict(data["baseline"], where=f"{where} baseline")
            ),
        )


DEFAULT_NAME = "default"
_FAILED = frozenset(
    {Status.CHANGED, Status.NO_SNAPSHOT, Status.INVALID_SNAPSHOT, Status.OVER_BUDGET}
)
