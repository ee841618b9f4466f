"""The end-of-session FLOPs report: the terminal section and the Markdown export.

Everything here is a pure function of the session's
:class:`~pytest_flops.reports.records.MeasurementRecord` list, so a serial run, an
xdist controller that merged its workers' records and a merge of CI shards'
exports print and write the same thing. The JSON and HTML exports are in
:mod:`pytest_flops.reports.export` and :mod:`pytest_flops.reports.html`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby

from pytest_flops.measurement import DEFAULT_NAME, GLOBAL, Measurement, is_precision, relative_text
from pytest_flops.reports.markup import code_span
from pytest_flops.reports.records import MeasurementRecord, Status
from pytest_flops.reports.times import (
    TIME_HEADER,
    TIME_RIGHT_ALIGNED,
    time_cell,
    time_header,
    time_rows,
)
from pytest_flops.snapshots.stale import STALE_SENTENCE
from pytest_flops.tables import aligned
from pytest_flops.units import format_bytes, format_flops

MAX_ROWS = 25
"""Measurements shown in the terminal and Markdown tables; the JSON has them all."""

MAX_UNSUPPORTED_OPS = 10
MAX_TESTS_PER_OP = 3

_HEADER = ("test", "total", "forward", "backward", "change", "rel. change", "status")
_RIGHT_ALIGNED = (False, True, True, True, True, True, False)
_OPTIONAL_COLUMN = 4  # "recompute" and "comm", before "change", in suites that have some
_PER_TOKEN_SENTENCE = (
    "FLOPs per token (model FLOPs: forward + backward, recompute left out), "
    "beside 6·N for the N parameters of the models measured"
)
_PER_TOKEN_HEADER = ("test", "tokens", "FLOP/token", "6·N", "ratio")
_PER_TOKEN_RIGHT_ALIGNED = (False, True, True, True, True)
_UNSUPPORTED_HEADER = ("op", "calls", "tests", "seen in")
_UNSUPPORTED_RIGHT_ALIGNED = (False, True, True, False)
_TIME_SENTENCE = (
    "Estimated time on {gpu} (roofline of eager, unfused traffic at datasheet peaks: "
    "for comparing versions, not for predicting wall time), with the share in memory-bound ops"
)


@dataclass(frozen=True, kw_only=True)
class UnsupportedOp:
    """An operator that ran with no formula somewhere in the suite."""

    op: str
    calls: int
    tests: tuple[str, ...]  # node ids, sorted


# -- what goes in the report ------------------------------------------------------


def moved(record: MeasurementRecord) -> bool:
    """Whether the measurement differs from its snapshot."""
    return record.status in (Status.CHANGED, Status.UPDATED) or bool(record.delta)


def ordered(records: Iterable[MeasurementRecord]) -> list[MeasurementRecord]:
    """Failed tests first, then those that changed, each by their largest absolute
    change, then the rest by total.

    A test's named measurements follow it (the default one first). Ties fall
    back to the test id, so the order never depends on the order in which
    tests ran (or which xdist worker ran them).
    """
    by_test = sorted(records, key=lambda r: (r.nodeid, r.name != DEFAULT_NAME, r.name))
    tests = [list(group) for _, group in groupby(by_test, key=lambda r: r.nodeid)]
    tests.sort(
        key=lambda group: (
            not any(r.status.failed for r in group),
            not any(moved(r) for r in group),
            -max(abs(r.delta or 0) for r in group),
            -max(r.measurement.total for r in group),
            group[0].nodeid,
        )
    )
    return [record for group in tests for record in group]


def suite_unsupported(records: Iterable[MeasurementRecord]) -> list[UnsupportedOp]:
    """Unsupported operators across the suite, most calls first."""
    calls: Counter[str] = Counter()
    tests: dict[str, set[str]] = {}
    for record in records:
        for op, count in record.measurement.unsupported.items():
            calls[op] += count
            tests.setdefault(op, set()).add(record.nodeid)
    return [
        UnsupportedOp(op=op, calls=count, tests=tuple(sorted(tests[op])))
        for op, count in sorted(calls.items(), key=lambda item: (-item[1], item[0]))
    ]


def suite_sums(records: Iterable[MeasurementRecord]) -> tuple[int, int, int]:
    """The suite's total, forward and backward FLOPs."""
    sums = [0, 0, 0]
    for record in records:
        sums[0] += record.measurement.total
        sums[1] += record.measurement.forward
        sums[2] += record.measurement.backward
    return sums[0], sums[1], sums[2]


def _status_counts(records: Iterable[MeasurementRecord]) -> str:
    counts = Counter(record.status for record in records)
    return ", ".join(f"{counts[status]} {status.value}" for status in Status if counts[status])


def _suite_sentence(records: Sequence[MeasurementRecord]) -> str:
    total, forward, backward = suite_sums(records)
    recompute = sum(record.measurement.recompute for record in records)
    recomputed = f", recompute {format_flops(recompute)}" if recompute else ""
    tests = len({record.nodeid for record in records})
    return (
        f"suite total {format_flops(total)} (forward {format_flops(forward)}, "
        f"backward {format_flops(backward)}{recomputed}) in {len(records)} measurement(s) "
        f"of {tests} test(s); measurements: {_status_counts(records)}"
    )


def _left_out_sentence(records: Sequence[MeasurementRecord]) -> str:
    total = sum(record.measurement.total for record in records)
    return (
        f"{len(records)} more measurement(s) not shown ({_status_counts(records)}; "
        f"{format_flops(total)} in all)"
    )


def change_cells(record: MeasurementRecord) -> tuple[str, str]:
    """The absolute and relative change against the snapshot, as text; where the totals
    held and the counts did not, what changed: ``moved`` or ``precision``."""
    if record.baseline is None:
        return "", ""
    before, after = record.baseline.total, record.measurement.total
    if after == before:
        cells = _bytes_change(record.baseline, record.measurement)
        if cells == ("0", "0%") and record.status in (Status.CHANGED, Status.UPDATED):
            return _held_change(record.baseline, record.measurement), ""
        return cells
    sign = "+" if after > before else "-"
    return f"{sign}{format_flops(abs(after - before))}", relative_text(before, after)


def _bytes_change(before: Measurement, after: Measurement) -> tuple[str, str]:
    """At equal FLOPs, the change of the bytes accessed (where both sides recorded them):
    an upcast or a copy that fails the test shows in its row."""
    moved = after.bytes_accessed - before.bytes_accessed
    if not (before.bytes_recorded and after.bytes_recorded) or not moved:
        return "0", "0%"
    sign = "+" if moved > 0 else "-"
    return f"{sign}{format_bytes(abs(moved))}", relative_text(
        before.bytes_accessed, after.bytes_accessed
    )


def _held_change(before: Measurement, after: Measurement) -> str:
    """What changed in a measurement whose totals held: its FLOPs' precision (Global's
    operators held, their precisions did not) or where its counts are (they moved between
    modules, phases or operators). Global's rows are at every depth either side has."""
    changed = [row for row in before.diff(after).moved if row.module == GLOBAL]
    precision = changed and all(is_precision(row.unit) for row in changed)
    return "precision" if precision else "moved"


def _status(record: MeasurementRecord) -> str:
    """The status, with the limit of a budget test: ``within budget (limit 1 MFLOP)``."""
    if record.budget is None:
        return record.status.value
    return f"{record.status.value} (limit {record.budget})"


def _cells(record: MeasurementRecord) -> tuple[str, ...]:
    measurement = record.measurement
    return (
        record.label,
        format_flops(measurement.total),
        format_flops(measurement.forward),
        format_flops(measurement.backward),
        *change_cells(record),
        _status(record),
    )


def _table(
    records: Sequence[MeasurementRecord], gpu: str | None
) -> tuple[tuple[str, ...], tuple[bool, ...], list[tuple[str, ...]]]:
    """The header, alignment and rows of the measurement table; with a "recompute"
    column when some measurement recomputed (activation checkpointing), a "comm"
    column (the bytes of every collective) when some measurement communicated, and
    the estimated time on ``gpu`` when one is named."""
    optional: list[tuple[str, Callable[[MeasurementRecord], str]]] = [
        (name, cell)
        for name, cell, shown in (
            ("recompute", _recompute, any(r.measurement.recompute for r in records)),
            ("comm", _communication, any(r.measurement.communication for r in records)),
        )
        if shown
    ]
    if gpu is not None:
        optional.append((time_header(gpu), time_cell(gpu)))
    at = _OPTIONAL_COLUMN
    return (
        (*_HEADER[:at], *(name for name, _ in optional), *_HEADER[at:]),
        (*_RIGHT_ALIGNED[:at], *(True for _ in optional), *_RIGHT_ALIGNED[at:]),
        [
            (*row[:at], *(cell(record) for _, cell in optional), *row[at:])
            for row, record in zip(map(_cells, records), records, strict=True)
        ],
    )


def _recompute(record: MeasurementRecord) -> str:
    """A measurement that recomputed nothing leaves its cell empty."""
    recompute = record.measurement.recompute
    return format_flops(recompute) if recompute else ""


def _communication(record: MeasurementRecord) -> str:
    return _bytes(record.measurement.communication_bytes)


def _per_token_rows(
    records: Sequence[MeasurementRecord], style: Callable[[str], str]
) -> list[tuple[str, ...]]:
    """(test, tokens, model FLOPs per token, 6·N, their ratio) of the measurements
    given ``tokens``; 6·N and the ratio are empty when the models' N is not known."""
    rows: list[tuple[str, ...]] = []
    for record in records:
        measurement = record.measurement
        if measurement.tokens is None:
            continue
        per_token = measurement.model_flops / measurement.tokens
        six_n = None if measurement.parameters is None else 6 * measurement.parameters
        rows.append(
            (
                style(record.label),
                f"{measurement.tokens:,}",
                format_flops(round(per_token)),
                "" if six_n is None else format_flops(six_n),
                f"{per_token / six_n:.2f}" if six_n else "",
            )
        )
    return rows


def _bytes(size: int) -> str:
    """A test that communicated nothing leaves its cell empty, as one with no snapshot does."""
    return format_bytes(size) if size else ""


def _unsupported_rows(
    records: Sequence[MeasurementRecord], style: Callable[[str], str]
) -> tuple[list[tuple[str, ...]], int]:
    """Rows (op, calls, tests, test ids) of the top unsupported ops, and how many were cut.

    ``style`` formats op names and test ids (plain, or as Markdown code).
    """
    ops = suite_unsupported(records)
    rows: list[tuple[str, ...]] = []
    for op in ops[:MAX_UNSUPPORTED_OPS]:
        names = ", ".join(map(style, op.tests[:MAX_TESTS_PER_OP]))
        hidden = len(op.tests) - MAX_TESTS_PER_OP
        seen_in = f"{names}, +{hidden} more" if hidden > 0 else names
        rows.append((style(op.op), str(op.calls), str(len(op.tests)), seen_in))
    return rows, len(ops) - len(rows)


# -- terminal ---------------------------------------------------------------------


def terminal_lines(records: Sequence[MeasurementRecord], *, gpu: str | None = None) -> list[str]:
    """The ``--flops-report`` section, without its ``=== flops report ===`` title;
    with each measurement's estimated time on ``gpu`` when one is named."""
    if not records:
        return ["no test measured any FLOPs"]
    shown = ordered(records)
    header, right, rows = _table(shown[:MAX_ROWS], gpu)
    lines = aligned([header, *rows], right=right)
    if len(shown) > MAX_ROWS:
        lines.append(f"... {_left_out_sentence(shown[MAX_ROWS:])}")
    lines += ["", _suite_sentence(records)]
    per_token = _per_token_rows(shown, str)
    if per_token:
        lines += ["", f"{_PER_TOKEN_SENTENCE}:"]
        table = aligned([_PER_TOKEN_HEADER, *per_token], right=_PER_TOKEN_RIGHT_ALIGNED)
        lines += ["  " + line for line in table]
    if gpu is not None:
        lines += ["", f"{_TIME_SENTENCE.format(gpu=gpu)}:"]
        table = aligned(
            [TIME_HEADER, *time_rows(shown[:MAX_ROWS], gpu, str)], right=TIME_RIGHT_ALIGNED
        )
        lines += ["  " + line for line in table]
    unsupported, cut = _unsupported_rows(records, str)
    if unsupported:
        lines += ["", "unsupported ops (ran with no formula; their FLOPs are not counted):"]
        table = aligned([_UNSUPPORTED_HEADER, *unsupported], right=_UNSUPPORTED_RIGHT_ALIGNED)
        lines += ["  " + line for line in table]
        if cut:
            lines.append(f"  ... {cut} more unsupported op(s) not shown")
    return lines


# -- Markdown ---------------------------------------------------------------------


def markdown(
    records: Sequence[MeasurementRecord],
    *,
    stale: Sequence[str] = (),
    reasons: Mapping[str, str] | None = None,
    gpu: str | None = None,
) -> str:
    """The same summary as the terminal section, as GitHub-flavoured Markdown.

    ``stale`` are the stale snapshots found (paths as shown), ``reasons`` why;
    ``gpu`` adds each measurement's estimated time on it.
    """
    lines = ["## FLOPs report", ""]
    why = reasons or {}
    stale_lines = (
        [
            "",
            f"{STALE_SENTENCE}:",
            "",
            *(f"- {_code(path)}" + (f" ({why[path]})" if path in why else "") for path in stale),
        ]
        if stale
        else []
    )
    if not records:
        return "\n".join([*lines, "No test measured any FLOPs.", *stale_lines, ""])
    shown = ordered(records)
    header, right, rows = _table(shown[:MAX_ROWS], gpu)
    lines += _markdown_table(header, right, [(_code(row[0]), *row[1:]) for row in rows])
    if len(shown) > MAX_ROWS:
        lines += ["", f"_{_sentence(_left_out_sentence(shown[MAX_ROWS:]))}_"]
    lines += ["", f"**{_sentence(_suite_sentence(records))}**"]
    per_token = _per_token_rows(shown, _code)
    if per_token:
        lines += ["", f"{_PER_TOKEN_SENTENCE}:", ""]
        lines += _markdown_table(_PER_TOKEN_HEADER, _PER_TOKEN_RIGHT_ALIGNED, per_token)
    if gpu is not None:
        lines += ["", f"{_TIME_SENTENCE.format(gpu=gpu)}:", ""]
        times = time_rows(shown[:MAX_ROWS], gpu, _code)
        lines += _markdown_table(TIME_HEADER, TIME_RIGHT_ALIGNED, times)
    unsupported, cut = _unsupported_rows(records, _code)
    if unsupported:
        lines += ["", "Unsupported ops (ran with no formula; their FLOPs are not counted):", ""]
        lines += _markdown_table(_UNSUPPORTED_HEADER, _UNSUPPORTED_RIGHT_ALIGNED, unsupported)
        if cut:
            lines += ["", f"_{cut} more unsupported op(s) not shown._"]
    lines += stale_lines
    return "\n".join([*lines, ""])


def _sentence(text: str) -> str:
    return f"{text[:1].upper()}{text[1:]}."


def _markdown_table(
    header: tuple[str, ...], right: Sequence[bool], rows: Sequence[tuple[str, ...]]
) -> list[str]:
    rule = tuple("---:" if is_right else "---" for is_right in right)
    return [
        "| " + " | ".join(_escape(cell) for cell in row) + " |" for row in [header, rule, *rows]
    ]


def _escape(cell: str) -> str:
    """Keep a cell inside its column: GitHub splits cells on ``|`` even in code spans."""
    return cell.replace("|", "\\|").replace("\n", " ")


_code = code_span  # shared with diff --md (reports.markup)
