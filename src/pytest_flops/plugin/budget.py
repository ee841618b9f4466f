"""What a test is held to: the limits of ``@pytest.mark.limit_flops`` (a :class:`Budget`,
checked against a measurement) and the comparison ``@pytest.mark.flops`` asks for (a
:class:`Comparison`). :mod:`pytest_flops.plugin.marks` builds both from a test's markers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_flops.units import format_bytes, format_flops, format_pair, format_seconds

if TYPE_CHECKING:
    from pytest_flops.measurement import Measurement

__all__ = ["Budget", "BudgetExceeded", "Comparison"]


@dataclass(frozen=True, kw_only=True)
class BudgetExceeded:
    """The limits a measurement went over."""

    overruns: tuple[tuple[str, float, float], ...]  # (what, used, limit)

    @property
    def long_repr(self) -> str:
        lines = []
        for what, used, limit in self.overruns:
            if what in {"communication", "bytes accessed"}:
                used_text, limit_text = f"{used:,} bytes", f"{limit:,} bytes"
            elif what.startswith("roofline"):
                used_text, limit_text = format_seconds(used), format_seconds(limit)
            else:
                used_text, limit_text = format_pair(int(used), int(limit))
            label = "" if what == "total" else f"{what}: "
            lines.append(f"{label}used {used_text}, limit {limit_text}")
        return "\n".join(lines)


@dataclass(frozen=True, kw_only=True)
class Budget:
    """FLOP limits read from ``@pytest.mark.limit_flops``; None means no limit."""

    total: int | None
    forward: int | None
    backward: int | None
    communication: int | None = None  # bytes
    bytes_accessed: int | None = None
    roofline: float | None = None  # seconds on ``gpu``
    gpu: str | None = None

    def check(self, measurement: Measurement) -> BudgetExceeded | None:
        limits: list[tuple[str, float, float | None]] = [
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
            if limit is not None and used > limit
        )
        return BudgetExceeded(overruns=overruns) if overruns else None

    @property
    def text(self) -> str:
        """The limits as the report shows them: ``3 MFLOP, forward 1 MFLOP``."""
        parts = [
            f"{label}{format_flops(limit)}"
            for label, limit in (
                ("", self.total),
                ("forward ", self.forward),
                ("backward ", self.backward),
            )
            if limit is not None
        ]
        if self.communication is not None:
            parts.append(f"communication {format_bytes(self.communication)}")
        if self.bytes_accessed is not None:
            parts.append(f"bytes accessed {format_bytes(self.bytes_accessed)}")
        if self.roofline is not None:
            parts.append(f"roofline {format_seconds(self.roofline)} on {self.gpu}")
        return ", ".join(parts)


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """How ``@pytest.mark.flops`` asks a test's snapshot to be compared; None: the session's."""

    rtol: float | None = None
    depth: int | None = None
    bytes: bool | None = None  # False: bytes accessed are not compared
    bytes_rtol: float | None = None
