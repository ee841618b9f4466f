"""Amounts as people write them: FLOPs (``"4 GFLOP"``), byte sizes (``"64 MB"``) and
times (``"2 ms"``) in and out, and the tolerances and depths options and markers take."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import MAX_EMAX, MIN_EMIN, ROUND_FLOOR, Decimal, InvalidOperation, localcontext

# Decimal prefixes, as in "4 GFLOP": powers of 1000, never 1024.
UNITS: dict[str, int] = {
    "FLOP": 1,
    "KFLOP": 10**3,
    "MFLOP": 10**6,
    "GFLOP": 10**9,
    "TFLOP": 10**12,
    "PFLOP": 10**15,
}

_NUMBER = r"^\s*(?P<number>[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9]+)?)\s*"
"""A number as amounts are written: ``4``, ``1.5``, ``4e9``, ``4_000``; then its unit."""

_AMOUNT = re.compile(
    _NUMBER + r"(?P<unit>[KMGTP]?FLOPS?)?\s*$",
    re.IGNORECASE,
)

BYTE_UNITS: dict[str, int] = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
"""Decimal (kB, MB: powers of 1000) and binary (KiB, MiB: powers of 1024) sizes."""

_SIZE = re.compile(
    _NUMBER + r"(?P<unit>[KMGT]?I?B)?\s*$",
    re.IGNORECASE,
)

FlopAmount = str | int | float
ByteSize = str | int | float

_MOST_DIGITS = 1000
"""Amounts are read below 1e1000: no limit at all, in effect, and one Python can
still write out (it writes no integer of more than 4,300 digits)."""


def parse_flops(value: FlopAmount) -> int:
    """``"4 GFLOP"``, ``"1.5MFLOP"``, ``4e9`` or ``4_000`` as a whole number of FLOPs.

    A fractional amount is rounded down: FLOP counts are integers, so
    ``count > 1.5`` and ``count > 1`` fail for the same counts.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a FLOP amount such as '4 GFLOP' or 4e9, got {value!r}")
    if isinstance(value, int):
        number, scale = _decimal(value, "FLOP amount"), 1
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite FLOP amount, got {value!r}")
        number, scale = Decimal(repr(value)), 1
    else:
        match = _AMOUNT.match(value)
        if match is None:
            raise ValueError(
                f"cannot read {value!r} as a FLOP amount: expected a number with an optional "
                f"unit, one of {', '.join(UNITS)} (e.g. '4 GFLOP')"
            )
        number = _read(match["number"], value, "FLOP amount")
        unit = (match["unit"] or "FLOP").upper().removesuffix("S")
        scale = UNITS[unit]
    if number < 0:
        raise ValueError(f"a FLOP amount cannot be negative, got {value!r}")
    return _whole(number, scale, value, "FLOP amount")


def parse_bytes(value: ByteSize) -> int:
    """``"64 MB"``, ``"1.5 GiB"``, ``4096`` or ``"4_096 B"`` as a whole number of bytes.

    A fractional amount is rounded down, as :func:`parse_flops` does: byte counts are
    integers, so a limit of ``0.4`` and one of ``0`` pass and fail the same counts.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a size such as '64 MB' or 4096, got {value!r}")
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match is None:
            raise ValueError(
                f"cannot read {value!r} as a size: expected a number with an optional unit, "
                f"one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB (e.g. '64 MB')"
            )
        number = _read(match["number"], value, "size")
        scale = BYTE_UNITS[(match["unit"] or "B").upper()]
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite size, got {value!r}")
    elif isinstance(value, float):
        number, scale = Decimal(repr(value)), 1
    else:
        number, scale = _decimal(value, "size"), 1
    if number < 0:
        raise ValueError(f"a size cannot be negative, got {value!r}")
    return _whole(number, scale, value, "size")


def _read(number: str, value: str, what: str) -> Decimal:
    try:
        return Decimal(number)
    except InvalidOperation:  # an exponent beyond even Decimal's: 1e9999999999999999999
        raise ValueError(f"cannot read {value!r} as a {what}") from None


def _decimal(value: int, what: str) -> Decimal:
    """An integer amount as a Decimal (one too long to write out is too large to read)."""
    if abs(value) >= 10**_MOST_DIGITS:
        raise ValueError(f"a {what} must be below 1e{_MOST_DIGITS}")
    return Decimal(value)


def _whole(number: Decimal, scale: int, value: object, what: str) -> int:
    """``number * scale`` rounded down, computed exactly: a limit of 1.5 is a limit of 1."""
    too_large = f"a {what} must be below 1e{_MOST_DIGITS}, got {value!r}"
    with localcontext() as context:  # every digit of the product, at any exponent
        context.prec = len(number.as_tuple().digits) + len(str(scale))
        context.Emax, context.Emin = MAX_EMAX, MIN_EMIN
        try:
            whole = (number * scale).to_integral_value(rounding=ROUND_FLOOR)
        except ArithmeticError:  # beyond even Decimal's exponents
            raise ValueError(too_large) from None
    if whole.adjusted() >= _MOST_DIGITS:
        raise ValueError(too_large)
    return int(whole)


_SHOWN_BYTE_UNITS = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


SIGNIFICANT = 3
"""The significant digits an amount is written with, unless two must be told apart."""


def format_flops(
    flops: int, *, significant: int = SIGNIFICANT, trailing_zeros: bool = False
) -> str:
    """``4_370_000_000`` as ``"4.37 GFLOP"``: the largest unit that keeps a leading digit;
    with ``trailing_zeros``, every digit asked for (``"4.000 GFLOP"``), none below a FLOP."""
    return _scaled(flops, UNITS, significant, trailing_zeros)


def format_bytes(size: int, *, significant: int = SIGNIFICANT, trailing_zeros: bool = False) -> str:
    """``65_536`` as ``"65.5 kB"``: decimal units, as :func:`format_flops` writes FLOPs."""
    return _scaled(size, _SHOWN_BYTE_UNITS, significant, trailing_zeros)


def _scaled(amount: int, units: dict[str, int], significant: int, trailing_zeros: bool) -> str:
    unit, scale = next(iter(units.items()))
    for name, size in units.items():
        if abs(amount) >= size:
            unit, scale = name, size
    with localcontext() as context:  # every digit: 10**43 FLOP is 10**28 PFLOP, exactly
        context.prec = len(str(abs(amount))) + significant
        value = Decimal(amount) / scale
        # a whole count has no digit below its unit's one: 5 FLOP, never 5.00 FLOP
        places = min(significant - len(str(int(abs(value)))), len(str(scale)) - 1)
        rounded = round(value, max(places, 0))
    if abs(rounded) >= 1000 and scale != max(units.values()):
        # 999_999 rounds to 1000 KFLOP: say 1 MFLOP instead.
        return _scaled(int(rounded) * scale, units, significant, trailing_zeros)
    text = f"{rounded:f}"
    if "." in text and not trailing_zeros:
        text = text.rstrip("0").rstrip(".")
    return f"{text} {unit}"


def exact_digits(amount: float) -> int:
    """The significant digits that write ``amount`` exactly: 3 for 1_250_000, and a
    float's shortest form's (2 for 8.5e-9)."""
    return len(Decimal(repr(amount)).normalize().as_tuple().digits)


def format_pair(
    first: float, second: float, *, written: Callable[..., str] = format_flops
) -> tuple[str, str]:
    """Both amounts with just enough significant digits (3 at least) to tell them apart,
    as ``written`` writes them: :func:`format_flops`, :func:`format_bytes` or
    :func:`format_seconds`. Past 3 digits both keep every digit, the zeros too:
    ``1.0000 MFLOP`` beside ``1.0005 MFLOP``, never ``1 MFLOP``, which reads as less
    precise than it is."""
    significant = telling_digits(first, second, written=written)
    return (
        written(first, significant=significant, trailing_zeros=significant > SIGNIFICANT),
        written(second, significant=significant, trailing_zeros=significant > SIGNIFICANT),
    )


def telling_digits(
    first: float, second: float, *, written: Callable[..., str] = format_flops
) -> int:
    """The fewest significant digits (3 at least) at which ``written`` tells the two
    amounts apart; 3 for equal ones."""
    if first == second:
        return SIGNIFICANT
    most = max(exact_digits(first), exact_digits(second), SIGNIFICANT)
    return next(
        (
            significant
            for significant in range(SIGNIFICANT, most)
            if written(first, significant=significant) != written(second, significant=significant)
        ),
        most,
    )


_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "ps": 1e-12}
_TIME = re.compile(_NUMBER + r"(?P<unit>s|ms|us|µs|ns|ps)?\s*$")
_SHOWN_TIME_UNITS = (("s", 0), ("ms", -3), ("µs", -6), ("ns", -9), ("ps", -12))
"""Each unit and its power of ten."""


def parse_seconds(value: str | float, *, source: str | None = None) -> float:
    """``"2 ms"``, ``"150us"`` or a number of seconds, > 0."""
    problem = _problem("expected a time such as '2 ms' or 0.002", value, source)
    if isinstance(value, bool):
        raise ValueError(problem)
    if isinstance(value, str):
        match = _TIME.match(value)
        if match is None:
            raise ValueError(problem)
        seconds = float(match["number"]) * _TIME_UNITS[match["unit"] or "s"]
    elif isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float's range: no time at all
            raise ValueError(problem) from None
    else:
        raise ValueError(problem)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(problem)
    return seconds


def format_seconds(
    seconds: float, *, significant: int = SIGNIFICANT, trailing_zeros: bool = False
) -> str:
    """Three significant digits in the largest unit that keeps the value >= 1: ``8.58 ns``;
    with ``trailing_zeros``, every digit asked for (``8.500 ns``)."""
    if not seconds:
        return "0 s"
    # the float's shortest form shifted by a power of ten, exactly: a float divided by
    # 1e-9 can change its last digit (8.577910447761192e-09 s read 8.577910447761191 ns)
    exact = Decimal(repr(seconds))
    with localcontext() as context:
        context.prec = max(significant, len(exact.as_tuple().digits)) + 1
        # rounded before the unit is chosen: 999.7 ns is 1 µs, not "1000 ns"
        rounded = [
            (_round_significant(exact.scaleb(-power), significant), unit)
            for unit, power in _SHOWN_TIME_UNITS
        ]
        value, unit = next((pair for pair in rounded if pair[0] >= 1), rounded[-1])
        return f"{value if trailing_zeros else value.normalize():f} {unit}"


def _round_significant(value: Decimal, significant: int) -> Decimal:
    """``value`` rounded half to even to ``significant`` significant digits."""
    return value.quantize(Decimal(1).scaleb(value.adjusted() - significant + 1))


def parse_rtol(value: object, *, source: str | None = None) -> float:
    """A relative tolerance: a finite number >= 0 (0 means exact)."""
    problem = _problem("expected a number >= 0", value, source)
    if isinstance(value, bool):
        raise ValueError(problem)
    try:
        rtol = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
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
