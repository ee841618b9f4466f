"""The markers, one plain function each (in the style of pytest-memray).

The plugin calls the function with the marker's own arguments plus keyword
arguments starting with ``_`` that carry what was measured. A wrong marker
argument raises :class:`TypeError` or :class:`ValueError`; the plugin turns it
into a usage error that names the test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pytest_flops.measurement import Measurement
from pytest_flops.units import FlopAmount, format_pair, parse_flops


@dataclass(frozen=True, kw_only=True)
class Budget:
    """FLOP limits read from ``@pytest.mark.limit_flops``; None means no limit."""

    total: int | None
    forward: int | None
    backward: int | None


@dataclass(frozen=True, kw_only=True)
class BudgetExceeded:
    """The limits a measurement went over."""

    overruns: tuple[tuple[str, int, int], ...]  # (what, used, limit)

    @property
    def long_repr(self) -> str:
        lines = []
        for what, used, limit in self.overruns:
            used_text, limit_text = format_pair(used, limit)
            label = "" if what == "total" else f"{what}: "
            lines.append(f"{label}used {used_text}, limit {limit_text}")
        return "\n".join(lines)


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """How ``@pytest.mark.flops`` asks a test's snapshot to be compared."""

    rtol: float | None
    depth: int | None


def limit_flops(
    total: FlopAmount | None = None,
    *,
    forward: FlopAmount | None = None,
    backward: FlopAmount | None = None,
    _measurement: Measurement | None = None,
) -> BudgetExceeded | None:
    """``@pytest.mark.limit_flops("4 GFLOP", forward=..., backward=...)``.

    Fails the test when a measured amount goes over its limit. Without
    ``_measurement`` it only checks its arguments (the plugin does that at
    collection, so a typo stops the run before any test runs).
    """
    budget = read_budget(total, forward=forward, backward=backward)
    if _measurement is None:
        return None
    overruns = tuple(
        (what, used, limit)
        for what, used, limit in (
            ("total", _measurement.total, budget.total),
            ("forward", _measurement.forward, budget.forward),
            ("backward", _measurement.backward, budget.backward),
        )
        if limit is not None and used > limit
    )
    return BudgetExceeded(overruns=overruns) if overruns else None


def read_budget(
    total: FlopAmount | None, *, forward: FlopAmount | None, backward: FlopAmount | None
) -> Budget:
    if total is None and forward is None and backward is None:
        raise ValueError("limit_flops needs a limit, e.g. limit_flops('4 GFLOP')")
    return Budget(
        total=_amount("limit", total),
        forward=_amount("forward", forward),
        backward=_amount("backward", backward),
    )


def flops(*, rtol: float | None = None, depth: int | None = None) -> Comparison:
    """``@pytest.mark.flops(rtol=0.01, depth=3)``: the test's tolerance and module depth."""
    return Comparison(
        rtol=None if rtol is None else parse_rtol(rtol, source="rtol"),
        depth=None if depth is None else parse_depth(depth, source="depth"),
    )


def parse_rtol(value: object, *, source: str) -> float:
    """A relative tolerance: a finite number >= 0 (0 means exact)."""
    if isinstance(value, bool):
        raise ValueError(f"{source}: expected a number >= 0, got {value!r}")
    try:
        rtol = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{source}: expected a number >= 0, got {value!r}") from None
    if not math.isfinite(rtol) or rtol < 0:
        raise ValueError(f"{source}: expected a number >= 0, got {value!r}")
    return rtol


def parse_depth(value: object, *, source: str) -> int:
    """A module depth: an integer >= 0 (0 keeps only the "Global" row)."""
    if isinstance(value, bool):
        raise ValueError(f"{source}: expected an integer >= 0, got {value!r}")
    try:
        depth = int(value) if isinstance(value, (int, str)) else None
    except ValueError:
        depth = None
    if depth is None or depth < 0:
        raise ValueError(f"{source}: expected an integer >= 0, got {value!r}")
    return depth


def _amount(what: str, value: FlopAmount | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_flops(value)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None
