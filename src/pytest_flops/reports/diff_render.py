"""The renderings of a diff's :class:`~pytest_flops.reports.diff.Comparison`: terminal
text, a Markdown pull-request comment and JSON, all of one value.

The text helpers (amounts, signed changes, titles) are the history's too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pytest_flops.measurement import relative_text
from pytest_flops.reports.diff import (
    Comparison,
    MeasurementChange,
    Origin,
    Present,
    Revision,
)
from pytest_flops.reports.markup import code_span
from pytest_flops.tables import aligned
from pytest_flops.units import format_bytes, format_flops, format_pair

__all__ = [
    "amount",
    "diff_json",
    "diff_lines",
    "diff_markdown",
    "first_few",
    "operators_moved",
    "signed",
    "title",
]

SCHEMA_VERSION = 1
ORIGINS_SHOWN = 10  # in the terminal and the Markdown; the JSON has them all


# -- text -------------------------------------------------------------------------------


def amount(value: int | None, unit: str) -> str:
    if value is None:
        return "-"
    return format_bytes(value) if unit == "B" else format_flops(value)


def signed(delta: int, unit: str) -> str:
    if delta == 0:
        return "0"
    return ("+" if delta > 0 else "-") + amount(abs(delta), unit)


def pair(before: int | None, after: int | None, unit: str) -> tuple[str, str]:
    """Both amounts, written so that two that differ read differently."""
    if before is None or after is None or before == after:
        return amount(before, unit), amount(after, unit)
    if unit == "FLOP":
        return format_pair(before, after)
    texts = amount(before, unit), amount(after, unit)
    # bytes too close for three digits are written whole, to the byte
    return texts if texts[0] != texts[1] else (f"{before:,} B", f"{after:,} B")


def title(test: str, name: str) -> str:
    return test if name == "default" else f"{test} [{name}]"


def headline(comparison: Comparison) -> str:
    compared = len(comparison.changed) + comparison.unchanged
    if not comparison.changed:
        if comparison.added or comparison.removed:
            return f"no FLOP change in the {compared} measurement(s) both sides have"
        return f"no FLOP change ({compared} measurement(s) compared)"
    parts = [
        f"{len(comparison.changed)} measurement(s) changed",
        f"{comparison.unchanged} unchanged",
    ]
    if comparison.added:
        parts.append(f"{len(comparison.added)} added")
    if comparison.removed:
        parts.append(f"{len(comparison.removed)} removed")
    return ", ".join(parts)


def _quantity_rows(change: MeasurementChange) -> list[list[str]]:
    rows = []
    for q in change.quantities:
        before, after = pair(q.before, q.after, q.unit)
        delta = signed((q.after or 0) - (q.before or 0), q.unit)
        rel = relative_text(q.before or 0, q.after or 0) if None not in (q.before, q.after) else "-"
        rows.append([q.name, before, after, delta, rel])
    return rows


def _origin_rows(change: MeasurementChange) -> list[list[str]]:
    rows = []
    for origin in change.origins[:ORIGINS_SHOWN]:
        before, after = format_pair(origin.before, origin.after)
        ops = first_few(operators_moved(origin))
        rows.append(
            [origin.module, before, after, signed(origin.after - origin.before, "FLOP"), ops]
        )
    return rows


def operators_moved(origin: Origin) -> list[str]:
    """What moved in a module: ``aten.mm +8 FLOP``, ``aten.addmm at tf32 +48 FLOP``,
    ``aten.clone +64 B``."""
    return [
        *(f"{op} {signed(delta, 'FLOP')}" for op, delta in origin.operators),
        *(f"{op} at {p} {signed(delta, 'FLOP')}" for op, p, delta in origin.precisions),
        *(f"{op} {signed(delta, 'B')}" for op, delta in origin.bytes_accessed),
    ]


def first_few(texts: Sequence[str]) -> str:
    """The first three, and how many more."""
    return ", ".join(texts[:3]) + (f", {len(texts) - 3} more" if len(texts) > 3 else "")


def _more_origins(change: MeasurementChange) -> str | None:
    left = len(change.origins) - ORIGINS_SHOWN
    return f"{left} more module(s) in the JSON (--json)" if left > 0 else None


def diff_lines(comparison: Comparison) -> list[str]:
    """The terminal text of :func:`python -m pytest_flops diff`."""
    lines = [f"FLOPs: {comparison.base} -> {comparison.head}", headline(comparison)]
    for change in comparison.changed:
        before, after = format_pair(change.before, change.after)
        lines += [
            "",
            f"{title(change.test, change.name)}: {before} -> {after}, "
            f"{signed(change.after - change.before, 'FLOP')} "
            f"({relative_text(change.before, change.after)})",
        ]
        if change.renamed_from:
            lines.append(f"  renamed from {change.renamed_from}")
        header = ["", "before", "after", "change", "rel. change"]
        lines += [
            "  " + line
            for line in aligned(
                [header, *_quantity_rows(change)], right=[False, True, True, True, True]
            )
        ]
        if change.origins:
            lines.append("  where it starts (own FLOPs: a module's minus its children's):")
            header = ["module", "before", "after", "change", "operators"]
            lines += [
                "    " + line
                for line in aligned(
                    [header, *_origin_rows(change)], right=[False, True, True, True, False]
                )
            ]
            if more := _more_origins(change):
                lines.append(f"    {more}")
    for heading, entries in (
        ("tests added", comparison.added),
        ("tests removed", comparison.removed),
    ):
        if entries:
            lines += ["", f"{heading}:"]
            rows = [[title(p.test, p.name), format_flops(p.total)] for p in entries]
            lines += ["  " + line for line in aligned(rows, right=[False, True])]
    if comparison.renamed:
        lines += ["", "tests renamed, with no FLOP change:"]
        lines += [f"  {old} -> {new}" for old, new in comparison.renamed]
    return lines


# -- Markdown ---------------------------------------------------------------------------

MARKDOWN_MARKER = "<!-- pytest-flops diff -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    return _cell(code_span(text))


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[bool]
) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if r else "---" for r in right) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def diff_markdown(comparison: Comparison) -> str:
    """A pull-request comment: a summary table, then a collapsed section per changed test."""
    lines = [
        MARKDOWN_MARKER,
        f"### FLOPs: `{comparison.base}` → `{comparison.head}`",
        "",
        headline(comparison) + ".",
    ]
    if comparison.changed:
        lines += ["", *_summary_table(comparison.changed)]
    for change in comparison.changed:
        lines += ["", *_details(change)]
    for heading, entries in (
        ("Tests added", comparison.added),
        ("Tests removed", comparison.removed),
    ):
        if entries:
            rows = [[_code(title(p.test, p.name)), format_flops(p.total)] for p in entries]
            lines += [
                "",
                f"**{heading}**",
                "",
                *_table(["test", "total"], rows, right=[False, True]),
            ]
    if comparison.renamed:
        rows = [[_code(old), _code(new)] for old, new in comparison.renamed]
        lines += ["", "**Tests renamed, with no FLOP change**", ""]
        lines += _table(["before", "after"], rows, right=[False, False])
    return "\n".join(lines) + "\n"


def _summary_table(changed: Sequence[MeasurementChange]) -> list[str]:
    rows = []
    for change in changed:
        before, after = format_pair(change.before, change.after)
        rows.append(
            [
                _code(title(change.test, change.name)),
                before,
                after,
                signed(change.after - change.before, "FLOP"),
                relative_text(change.before, change.after),
            ]
        )
    return _table(
        ["test", "before", "after", "change", "%"], rows, right=[False, True, True, True, True]
    )


def _details(change: MeasurementChange) -> list[str]:
    """The collapsed section of one changed test: its numbers and where the change starts."""
    lines = [
        "<details>",
        f"<summary><code>{_html(title(change.test, change.name))}</code>: "
        f"{relative_text(change.before, change.after)}</summary>",
        "",
    ]
    if change.renamed_from:
        lines += [f"Renamed from {_code(change.renamed_from)}.", ""]
    lines += _table(
        ["", "before", "after", "change", "%"],
        _quantity_rows(change),
        right=[False, True, True, True, True],
    )
    if change.origins:
        rows = [[_code(r[0]), *r[1:4], _cell(r[4])] for r in _origin_rows(change)]
        lines += [
            "",
            "Where it starts (own FLOPs: a module's minus its children's):",
            "",
            *_table(
                ["module", "before", "after", "change", "operators"],
                rows,
                right=[False, True, True, True, False],
            ),
        ]
        if more := _more_origins(change):
            lines += ["", more]
    return [*lines, "", "</details>"]


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- JSON -------------------------------------------------------------------------------


def diff_json(comparison: Comparison) -> str:
    """The same data as the text, exact integers."""

    def revision(r: Revision) -> dict[str, Any]:
        return {"ref": r.ref, "commit": r.commit}

    def present(p: Present) -> dict[str, Any]:
        return {"test": p.test, "name": p.name, **p.quantities}

    document = {
        "schema_version": SCHEMA_VERSION,
        "base": revision(comparison.base),
        "head": revision(comparison.head),
        "changed": [
            {
                "test": c.test,
                "name": c.name,
                "renamed_from": c.renamed_from,
                "relative_change": None if c.relative == float("inf") else c.relative,
                "quantities": {
                    q.name: {"before": q.before, "after": q.after} for q in c.quantities
                },
                "origins": [
                    {
                        "module": o.module,
                        "before": o.before,
                        "after": o.after,
                        "operators": dict(o.operators),
                        "precisions": _precisions_json(o.precisions),
                        "bytes_accessed": dict(o.bytes_accessed),
                    }
                    for o in c.origins
                ],
                "operators": [
                    {"op": row.op, "unit": row.unit, "before": row.before, "after": row.after}
                    for row in c.operators
                ],
            }
            for c in comparison.changed
        ],
        "added": [present(p) for p in comparison.added],
        "removed": [present(p) for p in comparison.removed],
        "unchanged": comparison.unchanged,
        "renamed": [{"before": old, "after": new} for old, new in comparison.renamed],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _precisions_json(precisions: Sequence[tuple[str, str, int]]) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for op, precision, delta in precisions:
        found.setdefault(op, {})[precision] = delta
    return found
