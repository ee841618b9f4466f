"""What a test is held to: the limits of ``@pytest.mark.limit_flops`` (a :class:`Budget`,
checked against a measurement) and the comparison ``@pytest.mark.flops`` asks for (a
:class:`Comparison`). :mod:`pytest_flops.plugin.marks` builds both from a test's markers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_flops.units import format_bytes, format_flops, format_pair, format_seconds

if TYPE_CHECKING:
    from pytest_flops.measurement import Measurement

__all__ = ["Budget", "BudgetExceeded", "Comparison", "Limit"]


@dataclass(frozen=True, kw_only=True)
class Limit:
    """One limit of a budget: its value, and its text as the marker wrote it."""

    value: float  # FLOPs and bytes (whole numbers), or seconds
    text: str  # "1.0005 MFLOP"; a limit given as a number, written exactly in its unit


@dataclass(frozen=True, kw_only=True)
class BudgetExceeded:
    """The limits a measurement went over."""

    overruns: tuple[tuple[str, float, Limit], ...]  # (what, used, limit)

    @property
    def long_repr(self) -> str:
        lines = []
        for what, used, limit in self.overruns:
            # as many digits as tell the amount used from the limit: 8.578 ns over 8.577 ns
            used_text, _ = format_pair(used, limit.value, written=_written(what))
            label = "" if what == "total" else f"{what}: "
            lines.append(f"{label}used {used_text}, limit {limit.text}")
        return "\n".join(lines)


def _written(what: str) -> Callable[..., str]:
    """How the amount of a limit on ``what`` is written."""
    if what in {"communication", "bytes accessed"}:
        return format_bytes
    return format_seconds if what.startswith("roofline") else format_flops


@dataclass(frozen=True, kw_only=True)
class Budget:
    """The limits read from ``@pytest.mark.limit_flops``; None means no limit."""

    total: Limit | None
    forward: Limit | None
    backward: Limit | None
    communication: Limit | None = None  # bytes
    bytes_accessed: Limit | None = None
    roofline: Limit | None = None  # seconds on ``gpu``
    gpu: str | None = None

    def check(self, measurement: Measurement) -> BudgetExceeded | None:
        limits: list[tuple[str, float, Limit | None]] = [
            ("total", measurement.total, self.total),
            ("forward", measurement.forward, self.forward),
            ("backward", measurement.backward, self.backward),
            ("communication", measurement.communication_bytes, self.communication),
            ("bytes accessed", measurement.bytes_accessed, self.bytes_accessed),
        ]
        if self.roofline is not None and self.gpu is not None:
            seconds = measurement.roofline(self.gpu).seconds
            limits.append((f"roofline on {self.gpu}", seconds, self.roofline))
        overruns = tuple(
            (what, used, limit)
            for what, used, limit in limits
            if limit is not None and used > limit.value
        )
        return BudgetExceeded(overruns=overruns) if overruns else None

    @property
    def text(self) -> str:
        """The limits as the report shows them, as the marker wrote them:
        ``3 MFLOP, forward 1 MFLOP``."""
        labelled = (
            ("", self.total),
            ("forward ", self.forward),
            ("backward ", self.backward),
            ("communication ", self.communication),
            ("bytes accessed ", self.bytes_accessed),
        )
        parts = [f"{label}{limit.text}" for label, limit in labelled if limit is not None]
        if self.roofline is not None:
            parts.append(f"roofline {self.roofline.text} on {self.gpu}")
        return ", ".join(parts)


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """How ``@pytest.mark.flops`` asks a test's snapshot to be compared; None: the session's."""

    rtol: float | None = None
    depth: int | None = None
    bytes: bool | None = None  # False: bytes accessed are not compared
    bytes_rtol: float | None = None
