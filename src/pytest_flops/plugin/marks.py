"""The markers: one plain function per marker, and the registry that registers them.

Each function takes a marker's own arguments and returns what it means
(``limit_flops`` a :class:`Budget`, ``flops`` a :class:`Comparison`); a
wrong argument raises :class:`TypeError` or :class:`ValueError`. :func:`read`
parses a test's markers once, at collection: the plugin turns an error into a
usage error that names the test.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pytest

from pytest_flops.measurement import Measurement
from pytest_flops.roofline import gpu as known_gpu
from pytest_flops.units import (
    ByteSize,
    FlopAmount,
    format_bytes,
    format_flops,
    format_pair,
    parse_bytes,
    parse_flops,
)

__all__ = [
    "MARKERS",
    "Budget",
    "BudgetExceeded",
    "Comparison",
    "ItemMarks",
    "MarkerError",
    "flops",
    "limit_flops",
    "parse_depth",
    "parse_rtol",
    "read",
]


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
                used_text, limit_text = _format_seconds(used), _format_seconds(limit)
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
            parts.append(f"roofline {_format_seconds(self.roofline)} on {self.gpu}")
        return ", ".join(parts)


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """How ``@pytest.mark.flops`` asks a test's snapshot to be compared; None: the session's."""

    rtol: float | None = None
    depth: int | None = None
    bytes: bool | None = None  # False: bytes accessed are not compared
    bytes_rtol: float | None = None


def limit_flops(
    limit: FlopAmount | None = None,
    *,
    forward: FlopAmount | None = None,
    backward: FlopAmount | None = None,
    communication: ByteSize | None = None,
    bytes_accessed: ByteSize | None = None,
    roofline: str | float | None = None,
    gpu: str | None = None,
) -> Budget:
    """``@pytest.mark.limit_flops("4 GFLOP", forward=..., backward=..., communication="64 MB")``.

    ``communication`` limits the bytes of every collective the test ran,
    ``bytes_accessed`` the bytes its ops read and wrote, and ``roofline`` (``"2 ms"``,
    or seconds) its roofline time on ``gpu`` (``"h100-sxm"``...).
    """
    limits = (limit, forward, backward, communication, bytes_accessed, roofline)
    if all(value is None for value in limits):
        raise ValueError("limit_flops needs a limit, e.g. limit_flops('4 GFLOP')")
    if (roofline is None) != (gpu is None):
        raise ValueError("roofline and gpu go together, e.g. roofline='2 ms', gpu='h100-sxm'")
    if gpu is not None:
        known_gpu(gpu)  # an unknown name fails at collection, listing the known ones
    return Budget(
        total=_parsed("limit", limit, parse_flops),
        forward=_parsed("forward", forward, parse_flops),
        backward=_parsed("backward", backward, parse_flops),
        communication=_parsed("communication", communication, parse_bytes),
        bytes_accessed=_parsed("bytes_accessed", bytes_accessed, parse_bytes),
        roofline=None if roofline is None else _parse_seconds(roofline),
        gpu=gpu,
    )


def flops(
    *,
    rtol: float | None = None,
    depth: int | None = None,
    bytes: bool | None = None,
    bytes_rtol: float | None = None,
) -> Comparison:
    """``@pytest.mark.flops(rtol=0.01, depth=3, bytes=False)``: the test's tolerances
    (``bytes_rtol`` for bytes accessed), module depth and whether bytes are compared."""
    if bytes is not None and not isinstance(bytes, bool):
        raise ValueError(f"bytes: expected True or False, got {bytes!r}")
    return Comparison(
        rtol=None if rtol is None else parse_rtol(rtol, source="rtol"),
        depth=None if depth is None else parse_depth(depth, source="depth"),
        bytes=bytes,
        bytes_rtol=None if bytes_rtol is None else parse_rtol(bytes_rtol, source="bytes_rtol"),
    )


class _MarkerFunction(Protocol):
    __name__: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Marker:
    """A marker of the plugin: its function and the help ``pytest --markers`` shows."""

    function: _MarkerFunction
    help: str

    @property
    def name(self) -> str:
        return self.function.__name__

    @property
    def help_line(self) -> str:
        return f"{self.name}({_parameters(self.function)}): {self.help}"


MARKERS: tuple[Marker, ...] = (
    Marker(
        limit_flops,
        "fail the test when it counts more FLOPs than the limit, e.g. limit_flops('4 GFLOP'), "
        "or more bytes, or a longer roofline time on a GPU. Without the flops fixture the "
        "whole test call is counted.",
    ),
    Marker(
        flops,
        "tolerances, module depth and bytes gate (bytes=False) of this test's FLOP "
        "snapshot comparison; keywords of closer markers win.",
    ),
)


class MarkerError(Exception):
    """A test's marker has a wrong argument; the message names the test."""


@dataclass(frozen=True, kw_only=True)
class ItemMarks:
    """What a test's markers ask for, parsed once at collection."""

    budget: Budget | None = None
    comparison: Comparison = Comparison()


def read(item: pytest.Item) -> ItemMarks:
    """Parse a test's markers.

    Every keyword is taken from the closest marker that gives it, so a
    module's ``pytestmark = pytest.mark.flops(rtol=0.5)`` and a test's own
    ``@pytest.mark.flops(depth=1)`` both apply.
    """
    parsed: dict[str, Any] = {}
    for marker in MARKERS:
        arguments: dict[str, Any] = {}
        found = False
        try:
            for mark in item.iter_markers(marker.name):  # closest first
                found = True
                bound = inspect.signature(marker.function).bind(*mark.args, **mark.kwargs)
                for key, value in bound.arguments.items():
                    arguments.setdefault(key, value)
            if found:
                parsed[marker.name] = marker.function(**arguments)
        except (TypeError, ValueError) as error:
            raise MarkerError(
                f"{item.nodeid}: bad @pytest.mark.{marker.name} argument: {error}"
            ) from None
    return ItemMarks(budget=parsed.get("limit_flops"), comparison=parsed.get("flops", Comparison()))


def parse_rtol(value: object, *, source: str | None = None) -> float:
    """A relative tolerance: a finite number >= 0 (0 means exact)."""
    problem = _problem("expected a number >= 0", value, source)
    if isinstance(value, bool):
        raise ValueError(problem)
    try:
        rtol = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(problem) from None
    if not math.isfinite(rtol) or rtol < 0:
        raise ValueError(problem)
    return rtol


def parse_depth(value: object, *, source: str | None = None) -> int:
    """A module depth: an integer >= 0 (0 keeps only the "Global" row)."""
    problem = _problem("expected an integer >= 0", value, source)
    if isinstance(value, bool):
        raise ValueError(problem)
    try:
        depth = int(value) if isinstance(value, (int, str)) else None
    except ValueError:
        depth = None
    if depth is None or depth < 0:
        raise ValueError(problem)
    return depth


def _problem(expected: str, value: object, source: str | None) -> str:
    """``rtol: expected ...``; without ``source`` (argparse names the option itself) no label."""
    text = f"{expected}, got {value!r}"
    return text if source is None else f"{source}: {text}"


def _parsed(
    what: str, value: FlopAmount | ByteSize | None, parse: Callable[[FlopAmount | ByteSize], int]
) -> int | None:
    """``value`` parsed (a FLOP amount or a byte size); an error names the keyword."""
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None


_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def _parse_seconds(value: str | float) -> float:
    """``"2 ms"``, ``"150 us"`` or a number of seconds, > 0."""
    problem = f"roofline: expected a time such as '2 ms' or 0.002, got {value!r}"
    if isinstance(value, bool):
        raise ValueError(problem)
    if isinstance(value, str):
        number, _, unit = value.strip().partition(" ")
        if unit.strip() not in _TIME_UNITS:
            raise ValueError(problem)
        try:
            seconds = float(number) * _TIME_UNITS[unit.strip()]
        except ValueError:
            raise ValueError(problem) from None
    elif isinstance(value, (int, float)):
        seconds = float(value)
    else:
        raise ValueError(problem)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(problem)
    return seconds


def _format_seconds(seconds: float) -> str:
    """``0.0021`` as ``"2.1 ms"``."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _parameters(function: Callable[..., Any]) -> str:
    """``limit=None, *, forward=None, backward=None``: a signature without its annotations."""
    parts: list[str] = []
    star_written = False
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and not star_written:
            parts.append("*")
            star_written = True
        default = "" if parameter.default is inspect.Parameter.empty else f"={parameter.default!r}"
        parts.append(f"{parameter.name}{default}")
    return ", ".join(parts)
