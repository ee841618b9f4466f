"""Amounts as people write them: budgets ("4 GFLOP", "2 ms") parsed, counts formatted."""

import math

import pytest

from pytest_flops.measurement import relative_text
from pytest_flops.units import (
    exact_digits,
    format_bytes,
    format_flops,
    format_pair,
    format_seconds,
    parse_bytes,
    parse_flops,
    parse_rtol,
    parse_seconds,
)


@pytest.mark.parametrize(
    ("text", "flops"),
    [
        ("4 GFLOP", 4 * 10**9),
        ("4GFLOP", 4 * 10**9),
        ("1.5 MFLOP", 1_500_000),
        ("2 kflop", 2_000),  # unit case does not matter
        ("12 FLOPs", 12),
        ("3 TFLOP", 3 * 10**12),
        ("1 PFLOP", 10**15),
        ("7", 7),
        ("4e9", 4 * 10**9),
        ("4_000 KFLOP", 4 * 10**6),
        ("0.0000001 GFLOP", 100),  # exact decimal arithmetic: no 99.99999
        (7, 7),
        (4e9, 4 * 10**9),
        (1.5, 1),  # counts are integers: "count > 1.5" is "count > 1"
        pytest.param("1e400", 10**400, id="1e400"),  # past any count, and read exactly
        ("9.99e999 FLOP", 999 * 10**997),
    ],
)
def test_parse_flops(text: str | int | float, flops: int) -> None:
    assert parse_flops(text) == flops


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64 MB", 64 * 10**6),
        ("1.5 GiB", 3 * 2**29),
        ("4_096 B", 4096),
        ("2kb", 2000),  # unit case does not matter
        (4096, 4096),
        # byte counts are integers: a limit of 0.4 B passes and fails what one of 0 does,
        # and 1.5 B what 1 B does
        ("0.4", 0),
        (1.5, 1),
    ],
)
def test_parse_bytes(text: str | int | float, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize(
    "value",
    ["-1 B", "64 MFLOP", "", float("inf"), True, None, "1e100000000", "1e-9999999999999999999"],
)
def test_parse_bytes_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_bytes(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("4 GB", "cannot read '4 GB' as a FLOP amount"),
        ("GFLOP", "cannot read 'GFLOP'"),
        ("-1 GFLOP", "cannot read '-1 GFLOP'"),
        (-5, "cannot be negative"),
        (float("inf"), "finite"),
        (True, "expected a FLOP amount"),
        (None, "expected a FLOP amount"),
        ("1e1000", "a FLOP amount must be below 1e1000, got '1e1000'"),
        ("1e100000000", "a FLOP amount must be below 1e1000, got '1e100000000'"),
        pytest.param(10**5000, "a FLOP amount must be below 1e1000", id="5001-digit-int"),
        ("1e9999999999999999999", "cannot read '1e9999999999999999999' as a FLOP amount"),
    ],
)
def test_parse_flops_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_flops(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("flops", "text"),
    [
        (0, "0 FLOP"),
        (999, "999 FLOP"),
        (1_000, "1 KFLOP"),
        (4_370_000_001, "4.37 GFLOP"),
        (4 * 10**9, "4 GFLOP"),
        (12_500_000, "12.5 MFLOP"),
        (999_999, "1 MFLOP"),  # rounds up into the next unit, not "1000 KFLOP"
        (123_456_789, "123 MFLOP"),
        (2 * 10**18, "2000 PFLOP"),
        # more digits than Decimal's default 28: every one
        pytest.param(10**43, "10000000000000000000000000000 PFLOP", id="1e43"),
        pytest.param(10**43 + 5 * 10**40, "10050000000000000000000000000 PFLOP", id="1.005e43"),
    ],
)
def test_format_flops(flops: int, text: str) -> None:
    assert format_flops(flops) == text


def test_format_pair_adds_digits_until_the_amounts_differ() -> None:
    assert format_pair(4_370_000_000, 4 * 10**9) == ("4.37 GFLOP", "4 GFLOP")
    # past three digits, the zeros are digits too: "4 GFLOP" would read as less precise
    assert format_pair(4_000_400_000, 4 * 10**9) == ("4.0004 GFLOP", "4.0000 GFLOP")
    assert format_pair(4 * 10**9 + 1, 4 * 10**9) == ("4.000000001 GFLOP", "4.000000000 GFLOP")
    # 1,000,500 is 1.000 MFLOP at four digits (half to even), as 1,000,000 is
    assert format_pair(1_000_000, 1_000_500) == ("1.0000 MFLOP", "1.0005 MFLOP")
    assert format_pair(1_000, 1_001) == ("1.000 KFLOP", "1.001 KFLOP")
    assert format_pair(5, 5) == ("5 FLOP", "5 FLOP")
    assert format_pair(5, 6) == ("5 FLOP", "6 FLOP")  # no digit below a FLOP


def test_format_pair_writes_bytes_and_seconds_too() -> None:
    assert format_pair(2048, 1000, written=format_bytes) == ("2.05 kB", "1 kB")
    assert format_pair(1_000_001, 10**6, written=format_bytes) == ("1.000001 MB", "1.000000 MB")
    # 28,736 bytes at 3.35 TB/s = 8.5779 ns, over a limit of 8.577 ns
    used = format_pair(28_736 / 3.35e12, 8.577e-9, written=format_seconds)
    assert used == ("8.578 ns", "8.577 ns")
    assert format_pair(2e-10 + 1e-24, 2e-10, written=format_seconds) == (
        "200.000000000001 ps",
        "200.000000000000 ps",
    )


def test_a_time_is_shifted_into_its_unit_exactly() -> None:
    # 28,736 bytes at 3.35 TB/s, one float below: 8.577910447761192e-09 s. Divided by 1e-9
    # in floats it reads 8.577910447761191 ns; its digits only move.
    limit = math.nextafter(28_736 / 3.35e12, 0)
    assert repr(limit) == "8.577910447761192e-09"
    assert format_seconds(limit, significant=exact_digits(limit)) == "8.577910447761192 ns"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2 ms", 2e-3),
        ("2ms", 2e-3),  # as "4GFLOP" and "64MB" are read
        (" 150 us ", 150e-6),
        ("150 µs", 150e-6),
        ("200 ps", 200e-12),  # the unit the reports write the shortest times in
        ("1e-3", 1e-3),  # a bare number is seconds
        (0.5, 0.5),
    ],
)
def test_parse_seconds(text: str | float, seconds: float) -> None:
    assert parse_seconds(text, source="roofline") == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize(
    "value",
    [
        *("1 sec", "2 MS", "ms", "", "0 s", "-1 ms", float("inf"), True, "1e400 s"),
        pytest.param(10**400, id="past-floats"),
    ],
)
def test_parse_seconds_rejects(value: object) -> None:
    with pytest.raises(
        ValueError, match=r"^roofline: expected a time such as '2 ms' or 0.002, got "
    ):
        parse_seconds(value, source="roofline")  # type: ignore[arg-type]


def test_a_tolerance_past_floats_is_refused_as_any_bad_one() -> None:
    with pytest.raises(ValueError, match=r"^rtol: expected a number >= 0, got 1000"):
        parse_rtol(10**400, source="rtol")


@pytest.mark.parametrize(
    ("before", "after", "text"),
    [
        (100, 110, "+10.00%"),
        (5, 5, "0%"),
        (0, 5, "from 0"),
        (10_000, 10_001, "+0.01%"),
        # too small for two decimals, never read as no change
        (2_000_000_000, 2_000_000_002, "<+0.01%"),
        (2_000_000_002, 2_000_000_000, ">-0.01%"),
        pytest.param(10**400, 10**400 + 1, "<+0.01%", id="below-floats"),
    ],
)
def test_relative_text(before: int, after: int, text: str) -> None:
    assert relative_text(before, after) == text
