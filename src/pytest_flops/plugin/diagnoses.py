"""Why a measured test failed, diagnosis first: a changed count (what moved, and the
module and operator it starts in), a budget exceeded, a snapshot missing or unreadable.

Loaded with the first verdict on a measured test: a session that measures nothing
never imports the measurement layer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from pytest_flops.codec import Tolerance, moved_numbers, numbers, own_numbers
from pytest_flops.measurement import (
    BYTES_ACCESSED,
    BYTES_PER_PHASE,
    CALLS,
    COMMUNICATED,
    DEFAULT_NAME,
    FLOP,
    FLOP_PER_PHASE,
    OPERATOR_UNITS,
    UNSUPPORTED_CALLS,
    DiffRow,
    Measurement,
    is_precision,
    module_order,
    relative_text,
)
from pytest_flops.plugin.budget import BudgetExceeded
from pytest_flops.snapshots.format import FlopsSnapshot
from pytest_flops.tables import aligned
from pytest_flops.validation import NewerSnapshotFormatError, SnapshotFormatError

UPDATE_HINT = "Run `pytest --flops-update` to accept the new counts."


def budget_exceeded(nodeid: str, exceeded: BudgetExceeded) -> str:
    return f"FLOP budget exceeded by {nodeid}: {exceeded.long_repr}"


def unreadable(nodeid: str, location: str, error: SnapshotFormatError) -> str:
    if isinstance(error, NewerSnapshotFormatError):  # --flops-update leaves it alone
        return f"Cannot read the FLOP snapshot of {nodeid}: {error}."
    return (
        f"Cannot read the FLOP snapshot of {nodeid}: {error}\n"
        f"Run `pytest --flops-update` to rewrite {location}."
    )


def unreadable_with_skipped_parts(nodeid: str, location: str, error: SnapshotFormatError) -> str:
    return (
        f"Cannot rewrite the FLOP snapshot of {nodeid}: {error}\n"
        "Some of its subtests were skipped, and what they measured is in that file: "
        "rewriting it would lose it. Fix the file (a merge conflict?), or run every "
        f"subtest with `pytest --flops-update`, or remove {location} to record only what "
        "runs here."
    )


def no_snapshot(nodeid: str, location: str, total: int) -> str:
    return (
        f"No FLOP snapshot for {nodeid} ({total:,} FLOP counted).\n"
        f"Run `pytest --flops-update` to write {location}."
    )


def measured_nothing(nodeid: str, location: str, stored: FlopsSnapshot) -> str:
    total = sum(m.total for m in stored.measurements.values())
    return (
        f"{nodeid} measured no FLOPs this time, but its snapshot has {total:,} FLOP "
        f"(no `with flops(...)` block finished).\n"
        f"Snapshot: {location}\n"
        f"Run `pytest --flops-prune` to remove it, if the test should not measure."
    )


def mismatch(
    nodeid: str,
    location: str,
    stored: FlopsSnapshot,
    current: FlopsSnapshot,
    moved: set[str],
    *,
    tolerance: Tolerance | None = None,
) -> str:
    """Diagnosis first: totals before -> after, then what moved, then the hint.

    ``stored`` and ``current`` are at the depth they are compared at, and the
    ``tolerance`` (exact without one) they are compared with.
    """
    sections = changes(
        nodeid, stored.measurements, current.measurements, moved, tolerance=tolerance
    )
    return "\n\n".join([*sections, f"Snapshot: {location}\n{UPDATE_HINT}"])


def changes(
    subject: str,
    before: Mapping[str, Measurement],
    after: Mapping[str, Measurement],
    moved: Iterable[str],
    *,
    tolerance: Tolerance | None = None,
) -> list[str]:
    """One section per measurement name that moved: totals, then the changed rows, those
    that moved beyond the ``tolerance`` (exact without one) first."""
    tolerance = tolerance or Tolerance()
    sections: list[str] = []
    for name in sorted(moved, key=lambda n: (n != DEFAULT_NAME, n)):
        label = "" if name == DEFAULT_NAME else f" [{name}]"
        old, new = before.get(name), after.get(name)
        if new is None:
            assert old is not None
            sections.append(
                f"FLOP measurement {name!r} of {subject} was not measured this time "
                f"(the snapshot has {old.total:,} FLOP)"
            )
            continue
        if old is None:
            sections.append(
                f"FLOP measurement {name!r} of {subject} is new: {new.total:,} FLOP, "
                f"not in the snapshot"
            )
            continue
        lines = _totals(f"{subject}{label}", old, new, tolerance)
        if old.communication or new.communication:
            lines.append(
                f"  comm      {_change(old.communication_bytes, new.communication_bytes, 'bytes')}"
            )
        if old.world != new.world:
            lines.append(
                f"  world     {old.world or 'no process group'} → {new.world or 'no process group'}"
            )
        lines += _diff_table(old, new, tolerance)
        sections.append("\n".join(lines))
    return sections


def _totals(subject: str, old: Measurement, new: Measurement, tolerance: Tolerance) -> list[str]:
    """The header of a change: FLOPs and their phases, or the bytes where the FLOPs held
    (within the tolerance)."""
    moved_bytes = _change(old.bytes_accessed, new.bytes_accessed, "bytes")
    rows = old.diff(new, tolerance=tolerance).moved
    units = {row.unit for row in rows}
    if all(unit in _BYTE_UNITS or is_precision(unit) for unit in units):
        if not units & _BYTE_UNITS:
            # the same FLOPs and bytes, run at another precision (TF32 where fp32 was)
            return [
                f"FLOP precision changed for {subject}: the same FLOPs, at another precision",
                f"  FLOP      {_change(old.total, new.total)}",
                f"  bytes     {moved_bytes}",
            ]
        if old.bytes_accessed == new.bytes_accessed:
            headline = (
                f"Bytes accessed moved {_where(rows, BYTES_PER_PHASE)} for {subject}: "
                f"total {new.bytes_accessed:,} bytes unchanged"
            )
        else:
            headline = f"Bytes accessed changed for {subject}: {moved_bytes}"
        return [headline, f"  FLOP      {_change(old.total, new.total)}"]
    if old.total == new.total:
        headline = (
            f"FLOPs moved {_where(rows, FLOP_PER_PHASE)} for {subject}: "
            f"total {new.total:,} unchanged"
        )
    else:
        headline = f"FLOP count changed for {subject}: total {_change(old.total, new.total)}"
    lines = [
        headline,
        f"  forward   {_change(old.forward, new.forward)}",
        f"  backward  {_change(old.backward, new.backward)}",
    ]
    if old.recompute or new.recompute:
        lines.append(f"  recompute {_change(old.recompute, new.recompute)}")
    if old.bytes_accessed or new.bytes_accessed:
        lines.append(f"  bytes     {moved_bytes}")
    return lines


def _where(rows: Sequence[DiffRow], per_phase: str) -> str:
    """Where counts whose total held moved: between modules (a module row's own sum of
    its phases ``per_phase`` moved), else between phases, else between operators."""
    by_module: Counter[str] = Counter()
    for row in rows:
        if row.unit == per_phase:
            by_module[row.module] += row.delta
    if any(by_module.values()):
        return "between modules"
    return "between phases" if by_module else "between operators"


def _diff_table(before: Measurement, after: Measurement, tolerance: Tolerance) -> list[str]:
    """Where the change starts: each module's own counts that moved, every such row; those
    that moved beyond the tolerance first, and the others marked.

    A parent whose own counts did not move only adds up its submodules' changes:
    it is named in one line below the table instead of repeating their rows.
    """
    moved = before.diff(after).moved
    origins, beyond = _origin_rows(before, after, tolerance)
    if any(_counted(row.unit) for row in beyond):
        # the FLOP rows point at the cause; bytes and precisions only split them
        origins = [row for row in origins if _counted(row.unit)]
    origins.sort(key=lambda row: row not in beyond)  # what failed the test first
    rows: list[tuple[str, ...]] = [
        (
            row.module,
            row.op if row.unit == "FLOP" else f"{row.op} ({row.unit})",
            f"{row.before:,}",
            f"{row.after:,}",
            f"{row.delta:+,}",
            "" if row in beyond else "within the tolerance",
        )
        for row in origins
    ]
    # the ops that still run first, then those gone (a count with no formula is never 0)
    unsupported = sorted(
        (row for row in moved if row.unit == UNSUPPORTED_CALLS),
        key=lambda row: (row.after == 0, row.op),
    )
    rows += [
        ("(no formula)", f"{row.op} calls", f"{row.before:,}", f"{row.after:,}", "", "")
        for row in unsupported
    ]
    if not rows:
        return []
    # the last column, empty without a tolerance, marks the rows that moved within it
    header = ("module", "operator", "before", "after", "Δ", "")
    table = aligned([header, *rows], right=(False, False, True, True, True, False))
    lines = ["", "  the change starts in (each module without its submodules):"]
    lines += [f"  {line}" for line in table]
    starts = {row.module for row in origins}
    units = {row.unit for row in origins}
    summing = sorted({row.module for row in moved if row.unit in units} - starts, key=module_order)
    if summing:
        lines.append(f"  and the sums of these rows: {', '.join(summing)}")
    return lines


_BYTE_UNITS = frozenset({BYTES_ACCESSED, BYTES_PER_PHASE})


def _counted(unit: str) -> bool:
    """FLOPs per op and the bytes and calls of collectives, not bytes accessed nor the
    FLOPs per precision (``"tf32 FLOP"``) that split them."""
    return unit in (FLOP, COMMUNICATED, CALLS)


def _origin_rows(
    before: Measurement, after: Measurement, tolerance: Tolerance
) -> tuple[list[DiffRow], frozenset[DiffRow]]:
    """The numbers of each module row without the rows under it that moved, per op, and
    those of them that moved beyond ``tolerance``."""
    with_bytes = before.bytes_recorded and after.bytes_recorded
    own_before, own_after = (
        own_numbers(numbers(measurement, with_bytes=with_bytes)) for measurement in (before, after)
    )

    def moved(within: Tolerance) -> list[DiffRow]:
        return [
            row
            for row in moved_numbers(own_before, own_after, tolerance=within).moved
            if row.unit in OPERATOR_UNITS or is_precision(row.unit)
        ]

    rows = moved(Tolerance())
    rows.sort(key=lambda row: (row.unit != FLOP, -abs(row.delta), module_order(row.module), row.op))
    return rows, frozenset(moved(tolerance))


def _change(before: int, after: int, unit: str = "FLOP") -> str:
    if before == after:
        return f"{after:,} (unchanged)"
    return f"{before:,} → {after:,} {unit} ({relative_text(before, after)})"
