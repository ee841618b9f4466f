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

    overruns: tuple[tuple[str, int, int], ...]  # (what, used, limit)

    @property
    def long_repr(self) -> str:
        lines = []
        for what, used, limit in self.overruns:
            if what == "communication":
                used_text, limit_text = f"{used:,} bytes", f"{limit:,} bytes"
            else:
                used_text, limit_text = format_pair(used, limit)
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

    def check(self, measurement: Measurement) -> BudgetExceeded | None:
        overruns = tuple(
            (what, used, limit)
            for what, used, limit in (
                ("total", measurement.total, self.total),
                ("forward", measurement.forward, self.forward),
                ("backward", measurement.backward, self.backward),
                ("communication", measurement.communication_bytes, self.communication),
            )
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
) -> Budget:
    """``@pytest.mark.limit_flops("4 GFLOP", forward=..., backward=..., communication="64 MB")``.

    ``communication`` limits the bytes of every collective the test ran.
    """
    if limit is None and forward is None and backward is None and communication is None:
        raise ValueError("limit_flops needs a limit, e.g. limit_flops('4 GFLOP')")
    return Budget(
        total=_parsed("limit", limit, parse_flops),
        forward=_parsed("forward", forward, parse_flops),
        backward=_parsed("backward", backward, parse_flops),
        communication=_parsed("communication", communication, parse_bytes),
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
        "fail the test when it counts more FLOPs than the limit, e.g. limit_flops('4 GFLOP'). "
        "Without the flops fixture the whole test call is counted.",
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
