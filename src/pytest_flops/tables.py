"""The one renderer of aligned text tables: failure diffs, reports, counter tables, benchmarks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


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


def flop_table(flop_counts: Mapping[str, Mapping[str, int]], depth: int) -> str:
    """torch's counter's table: each module row ``depth`` deep at most (``Global`` is 0),
    its FLOPs and share of the whole, and beneath it its ops, largest first."""
    total = sum(flop_counts.get("Global", {}).values())
    rows: list[tuple[str, str, str]] = [("Module", "FLOP", "% Total")]
    for path, counts in flop_counts.items():
        level = 0 if path == "Global" else path.count(".") + 1
        if level > depth:
            continue
        flops = sum(counts.values())
        rows.append((" " * level + path, f"{flops:,}", _percent(flops, total)))
        for op, op_flops in sorted(counts.items(), key=lambda kv: -kv[1]):
            rows.append((" " * (level + 2) + op, f"{op_flops:,}", _percent(op_flops, total)))
    return "\n".join(aligned(rows, right=(False, True, True)))


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "0.00%"
