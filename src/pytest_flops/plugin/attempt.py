"""One measured test's plan and attempts, and what its last attempt came to.

:class:`ItemPlan` is what collection learned of a test (``item.stash[PLAN_KEY]``),
:class:`Attempt` one run of it through setup, call and teardown
(``item.stash[ATTEMPT_KEY]``; a rerun or a repeat starts a new one), and
:class:`TestResult` the outcome of its last attempt, with its records: what
the summary counts, the reports show and xdist workers send.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_flops.measurement import Measurement
from pytest_flops.plugin import marks
from pytest_flops.plugin.verdict import Verdict
from pytest_flops.reports.records import MeasurementRecord, Status
from pytest_flops.snapshots.format import FlopsSnapshot

if TYPE_CHECKING:
    from pytest_flops.counting.fixture import Flops
    from pytest_flops.plugin.baseline import Baseline

__all__ = ["ATTEMPT_KEY", "PLAN_KEY", "Attempt", "ItemPlan", "Outcome", "TestResult", "records"]


@dataclass(frozen=True, kw_only=True)
class ItemPlan:
    """What collection learned of a test; kept in ``item.stash[PLAN_KEY]``."""

    name: str  # the test's name in its file, repeats folded: "TestLM::test_generate[cpu]"
    test_file: Path
    uses_fixture: bool
    marks: marks.ItemMarks
    marks_error: str | None = None  # the usage error of a bad marker argument
    hypothesis: bool = False  # a hypothesis @given test: runs its body once per example

    @property
    def measures(self) -> bool:
        """Whether the test uses a FLOP feature (then torch is imported before it runs)."""
        return self.uses_fixture or self.marks.budget is not None


@dataclass(kw_only=True)
class Attempt:
    """One run of a test through setup, call and teardown; ``item.stash[ATTEMPT_KEY]``."""

    fixture: Flops | None = None  # the test's ``flops`` fixture
    whole_call: Flops | None = None  # limit_flops without the fixture: the call phase
    in_call: bool = False  # reports made now are a subtest's, not the test's
    called: bool = False  # its call phase ran (not under --setup-only)
    passed: bool = True  # every phase (and subtest) so far passed
    partial: bool = False  # a subtest was skipped: a measurement not taken may be its
    verdict: Verdict | None = None
    baseline: Baseline | None = None  # its snapshot, read at most once
    kept: frozenset[str] = frozenset()  # stored measurements not taken, baselines kept

    @property
    def counted(self) -> Flops | None:
        return self.fixture or self.whole_call

    @property
    def legacy(self) -> bool:
        """Its snapshot was read from the layout before 0.2."""
        return self.baseline is not None and self.baseline.found.legacy


PLAN_KEY = pytest.StashKey[ItemPlan]()
ATTEMPT_KEY = pytest.StashKey[Attempt]()


class Outcome(StrEnum):
    """What a test's FLOP check came to; the numbers of the ``flops:`` summary line."""

    PASSED = "passed"
    FAILED = "failed"
    WRITTEN = "written"
    REMOVED = "removed"  # only --flops-prune removes, at the end: counted there
    NOT_COMPARED = "not compared (test failed)"


@dataclass(frozen=True, kw_only=True)
class TestResult:
    """The last attempt of one measured test."""

    __test__ = False  # not a test class, despite its name

    outcome: Outcome
    records: tuple[MeasurementRecord, ...]
    devices: tuple[str, ...] = ()
    legacy: bool = False  # its snapshot was read from the layout before 0.2
    location: Path | None = None  # its snapshot file in the current layout
    flops_only: tuple[str, ...] = ()  # measurements compared on FLOPs alone (Verdict's)

    def pruned(self, names: frozenset[str] | None) -> TestResult:
        """This result once ``--flops-prune`` removed its file (None) or ``names`` from it."""
        return replace(
            self,
            records=tuple(
                replace(record, status=Status.REMOVED)
                if names is None or record.name in names
                else record
                for record in self.records
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "records": [record.to_dict() for record in self.records],
            "devices": list(self.devices),
            "legacy": self.legacy,
            "location": None if self.location is None else str(self.location),
            "flops_only": list(self.flops_only),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestResult:
        return cls(
            outcome=Outcome(data["outcome"]),
            records=tuple(
                MeasurementRecord.from_dict(record, where="xdist payload")
                for record in data["records"]
            ),
            devices=tuple(data["devices"]),
            legacy=data["legacy"],
            location=None if data["location"] is None else Path(data["location"]),
            flops_only=tuple(data["flops_only"]),
        )


def records(
    nodeid: str,
    measurements: Mapping[str, Measurement],
    baseline: FlopsSnapshot | None,
    statuses: dict[str, Status],
    budget: str | None,
) -> tuple[MeasurementRecord, ...]:
    stored = {} if baseline is None else baseline.measurements
    return tuple(
        MeasurementRecord(
            nodeid=nodeid,
            name=name,
            measurement=measurement,
            baseline=stored.get(name),
            status=statuses[name],
            budget=budget,
        )
        for name, measurement in measurements.items()
    )
