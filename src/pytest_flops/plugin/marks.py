"""The markers: one plain function per marker, and the registry that registers them.

Each function takes a marker's own arguments and returns what it means
(``limit_flops`` a :class:`~pytest_flops.plugin.budget.Budget`, ``flops`` a
:class:`~pytest_flops.plugin.budget.Comparison`); a
wrong argument raises :class:`TypeError` or :class:`ValueError`. :func:`read`
parses a test's markers (at collection, and again as hooks and fixtures add
markers): the plugin turns an error into a usage error that names the test.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from pytest_flops.plugin.budget import Budget, Comparison, Limit
from pytest_flops.roofline import gpu as known_gpu
from pytest_flops.units import (
    ByteSize,
    FlopAmount,
    exact_digits,
    format_bytes,
    format_flops,
    format_seconds,
    parse_bytes,
    parse_depth,
    parse_flops,
    parse_rtol,
    parse_seconds,
)

__all__ = [
    "MARKERS",
    "ItemMarks",
    "MarkerError",
    "flops",
    "limit_flops",
    "read",
]


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
        total=_limit("limit", limit, parse_flops, format_flops),
        forward=_limit("forward", forward, parse_flops, format_flops),
        backward=_limit("backward", backward, parse_flops, format_flops),
        communication=_limit("communication", communication, parse_bytes, format_bytes),
        bytes_accessed=_limit("bytes_accessed", bytes_accessed, parse_bytes, format_bytes),
        roofline=_limit("roofline", roofline, parse_seconds, format_seconds),
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
    """What a test's markers ask for."""

    budget: Budget | None = None
    comparison: Comparison = field(default_factory=Comparison)


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


def _limit(
    what: str,
    value: FlopAmount | ByteSize | float | None,
    parse: Callable[[Any], float],
    written: Callable[..., str],
) -> Limit | None:
    """``value`` parsed, with its text: a string as written, a number exactly in its unit
    (``written``); an error names the keyword."""
    if value is None:
        return None
    try:
        parsed = parse(value)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None
    text = (
        value.strip()
        if isinstance(value, str)
        else written(parsed, significant=exact_digits(parsed))
    )
    return Limit(value=parsed, text=text)


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
