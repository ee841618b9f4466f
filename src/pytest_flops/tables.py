"""The one renderer of aligned text tables: failure diffs, reports, counter tables, benchmarks."""

from __future__ import annotations

from collections.abc import Sequence


def aligned(
    rows: Sequence[Sequence[str]], *, right: Sequence[bool], rule: bool = False
) -> list[str]:
    """``rows`` (the header first) as lines of columns two spaces apart.

    Columns flagged in ``right`` are right-aligned (numbers), the others
    left-aligned; ``rule`` puts a line of dashes under the header. Trailing
    spaces are dropped, so a short last cell leaves none behind.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(right))]
    if rule:
        rows = [rows[0], ["-" * width for width in widths], *rows[1:]]
    return [
        "  ".join(
            cell.rjust(width) if is_right else cell.ljust(width)
            for cell, width, is_right in zip(row, widths, right, strict=True)
        ).rstrip()
        for row in rows
    ]
