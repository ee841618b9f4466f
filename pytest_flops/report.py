"""The end-of-session FLOPs report: terminal section, JSON export, Markdown export.

Everything here is a pure function of the session's
:class:`~pytest_flops.records.MeasurementRecord` list (plus :class:`RunMetadata`
for the JSON), so a serial run and an xdist controller that merged its
workers' records print and write the same thing.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

from pytest_flops import __version__
from pytest_flops.measurement import (
    DEFAULT_NAME,
    GLOBAL,
    Measurement,
    relative_change,
    relative_text,
)
from pytest_flops.records import MeasurementRecord, Status
from pytest_flops.tables import aligned
from pytest_flops.units import format_bytes, format_flops

SCHEMA_VERSION = 1
"""Version of the ``--flops-report-json`` layout; bumped on any incompatible change."""

MAX_ROWS = 25
"""Measurements shown in the terminal and Markdown tables; the JSON has them all."""

MAX_UNSUPPORTED_OPS = 10
MAX_TESTS_PER_OP = 3

_HEADER = ("test", "total", "forward", "backward", "change", "rel. change", "status")
_RIGHT_ALIGNED = (False, True, True, True, True, True, False)
_COMMUNICATION_COLUMN = 4  # "comm", before "change", in suites that communicate
_UNSUPPORTED_HEADER = ("op", "calls", "tests", "seen in")
_UNSUPPORTED_RIGHT_ALIGNED = (False, True, True, False)


@dataclass(frozen=True, kw_only=True)
class RunMetadata:
    """Where the numbers came from; written to the JSON export only."""

    plugin_version: str
    torch_version: str
    python_version: str
    platform: str
    devices: tuple[str, ...]

    @classmethod
    def collect(cls, devices: Iterable[str] = ()) -> RunMetadata:
        """This process's versions; ``devices`` are those the measured models were on.

        When none is known, torch's default device stands in. Reads torch's
        version without importing it: a session that measured nothing never does.
        """
        torch = sys.modules.get("torch")
        known = tuple(sorted(set(devices)))
        if not known and torch is not None:
            known = (str(torch.get_default_device()),)
        return cls(
            plugin_version=__version__,
            torch_version=importlib.metadata.version("torch")
            if torch is None
            else torch.__version__,
            python_version=platform.python_version(),
            platform=sys.platform,
            devices=known,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "plugin_version": self.plugin_version,
            "torch_version": self.torch_version,
            "python_version": self.python_version,
            "platform": self.platform,
            "devices": list(self.devices),
        }


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
    """Tests that changed first, by their largest absolute change, then the rest by total.

    A test's named measurements follow it (the default one first). Ties fall
    back to the test id, so the order never depends on the order in which
    tests ran (or which xdist worker ran them).
    """
    by_test = sorted(records, key=lambda r: (r.nodeid, r.name != DEFAULT_NAME, r.name))
    tests = [list(group) for _, group in groupby(by_test, key=lambda r: r.nodeid)]
    tests.sort(
        key=lambda group: (
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
    tests = len({record.nodeid for record in records})
    return (
        f"suite total {format_flops(total)} (forward {format_flops(forward)}, "
        f"backward {format_flops(backward)}) in {len(records)} measurement(s) "
        f"of {tests} test(s); measurements: {_status_counts(records)}"
    )


def _left_out_sentence(records: Sequence[MeasurementRecord]) -> str:
    total = sum(record.measurement.total for record in records)
    return (
        f"{len(records)} more measurement(s) not shown ({_status_counts(records)}; "
        f"{format_flops(total)} in all)"
    )


def _change(record: MeasurementRecord) -> tuple[str, str]:
    """The absolute and relative change against the snapshot, as text."""
    if record.baseline is None:
        return "", ""
    before, after = record.baseline.total, record.measurement.total
    if after == before:
        return "0", "0%"
    sign = "+" if after > before else "-"
    return f"{sign}{format_flops(abs(after - before))}", relative_text(before, after)


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
        *_change(record),
        _status(record),
    )


def _table(
    records: Sequence[MeasurementRecord],
) -> tuple[tuple[str, ...], tuple[bool, ...], list[tuple[str, ...]]]:
    """The header, alignment and rows of the measurement table; with a "comm" column
    (the bytes of every collective) when some measurement communicated."""
    rows = [_cells(record) for record in records]
    if not any(record.measurement.communication for record in records):
        return _HEADER, _RIGHT_ALIGNED, rows
    at = _COMMUNICATION_COLUMN
    return (
        (*_HEADER[:at], "comm", *_HEADER[at:]),
        (*_RIGHT_ALIGNED[:at], True, *_RIGHT_ALIGNED[at:]),
        [
            (*row[:at], format_bytes(record.measurement.communication_bytes), *row[at:])
            for row, record in zip(rows, records, strict=True)
        ],
    )


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


def terminal_lines(records: Sequence[MeasurementRecord]) -> list[str]:
    """The ``--flops-report`` section, without its ``=== flops report ===`` title."""
    if not records:
        return ["no test measured any FLOPs"]
    shown = ordered(records)
    header, right, rows = _table(shown[:MAX_ROWS])
    lines = aligned([header, *rows], right=right)
    if len(shown) > MAX_ROWS:
        lines.append(f"... {_left_out_sentence(shown[MAX_ROWS:])}")
    lines += ["", _suite_sentence(records)]
    unsupported, cut = _unsupported_rows(records, str)
    if unsupported:
        lines += ["", "unsupported ops (ran with no formula; their FLOPs are not counted):"]
        table = aligned([_UNSUPPORTED_HEADER, *unsupported], right=_UNSUPPORTED_RIGHT_ALIGNED)
        lines += ["  " + line for line in table]
        if cut:
            lines.append(f"  ... {cut} more unsupported op(s) not shown")
    return lines


# -- Markdown ---------------------------------------------------------------------


def markdown(records: Sequence[MeasurementRecord]) -> str:
    """The same summary as the terminal section, as GitHub-flavoured Markdown."""
    lines = ["## FLOPs report", ""]
    if not records:
        return "\n".join([*lines, "No test measured any FLOPs.", ""])
    shown = ordered(records)
    header, right, rows = _table(shown[:MAX_ROWS])
    lines += _markdown_table(header, right, [(_code(row[0]), *row[1:]) for row in rows])
    if len(shown) > MAX_ROWS:
        lines += ["", f"_{_sentence(_left_out_sentence(shown[MAX_ROWS:]))}_"]
    lines += ["", f"**{_sentence(_suite_sentence(records))}**"]
    unsupported, cut = _unsupported_rows(records, _code)
    if unsupported:
        lines += ["", "Unsupported ops (ran with no formula; their FLOPs are not counted):", ""]
        lines += _markdown_table(_UNSUPPORTED_HEADER, _UNSUPPORTED_RIGHT_ALIGNED, unsupported)
        if cut:
            lines += ["", f"_{cut} more unsupported op(s) not shown._"]
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


def _code(text: str) -> str:
    """A code span that survives backticks in parametrized ids."""
    longest = 0
    run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"


# -- JSON -------------------------------------------------------------------------


def json_report(records: Sequence[MeasurementRecord], metadata: RunMetadata) -> dict[str, Any]:
    """The ``--flops-report-json`` document (schema in the README).

    Apart from ``metadata`` it depends only on the records, never on the order
    in which they were gathered.
    """
    total, forward, backward = suite_sums(records)
    return {
        "schema_version": SCHEMA_VERSION,
        "metadata": metadata.to_dict(),
        "summary": {
            "tests": len({record.nodeid for record in records}),
            "measurements": len(records),
            "total": total,
            "forward": forward,
            "backward": backward,
            "communication_bytes": sum(r.measurement.communication_bytes for r in records),
            "statuses": {
                status.value: sum(record.status is status for record in records)
                for status in Status
            },
            "unsupported": [
                {"op": op.op, "calls": op.calls, "tests": list(op.tests)}
                for op in suite_unsupported(records)
            ],
        },
        "measurements": [
            _record_json(record) for record in sorted(records, key=lambda r: (r.nodeid, r.name))
        ],
    }


def _record_json(record: MeasurementRecord) -> dict[str, Any]:
    baseline = record.baseline
    return {
        "nodeid": record.nodeid,
        "name": record.name,
        "status": record.status.value,
        "budget": record.budget,
        **_measurement_json(record.measurement),
        "snapshot": None if baseline is None else _measurement_json(baseline),
        "delta": None if baseline is None else _delta_json(baseline, record.measurement),
    }


def _measurement_json(measurement: Measurement) -> dict[str, Any]:
    data = measurement.to_dict()
    modules = data.pop("modules")
    return {
        "total": data["total"],
        "forward": data["forward"],
        "backward": data["backward"],
        "by_op": modules[GLOBAL]["by_op"],
        "by_module": {path: counts for path, counts in modules.items() if path != GLOBAL},
        "unsupported": data["unsupported"],
        "communication": modules[GLOBAL].get("communication", {}),
        "world": data.get("world"),
    }


def _delta_json(before: Measurement, after: Measurement) -> dict[str, Any]:
    relative = relative_change(before.total, after.total)
    return {
        "total": after.total - before.total,
        "forward": after.forward - before.forward,
        "backward": after.backward - before.backward,
        "communication_bytes": after.communication_bytes - before.communication_bytes,
        "relative": None if relative == float("inf") else relative,
        "changes": [
            {
                "module": row.module,
                "op": row.op,
                "unit": row.unit,
                "before": row.before,
                "after": row.after,
                "delta": row.delta,
            }
            for row in before.diff(after).rows
        ],
    }


# -- files ------------------------------------------------------------------------


def write_exports(
    records: Sequence[MeasurementRecord],
    *,
    devices: Iterable[str],
    json_path: Path | None,
    markdown_path: Path | None,
) -> list[str]:
    """Write the ``--flops-report-json`` and ``--flops-report-md`` files that were asked for.

    ``devices`` are those the measured models were on, when known. Returns
    what could not be written: one export failing never stops the other.
    """
    problems = []
    if json_path is not None:
        document = json_report(records, RunMetadata.collect(devices))
        problems += _write(json_path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    if markdown_path is not None:
        problems += _write(markdown_path, markdown(records))
    return problems


def _write(path: Path, text: str) -> list[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        return [f"flops: cannot write the report {path}: {error}"]
    return []
