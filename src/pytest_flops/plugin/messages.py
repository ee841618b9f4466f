"""Every text the plugin shows: test failures, diagnosis first, and the summary lines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from pytest_flops.measurement import BYTES_ACCESSED, DEFAULT_NAME, Measurement, relative_text
from pytest_flops.plugin.marks import BudgetExceeded
from pytest_flops.snapshots.format import FlopsSnapshot
from pytest_flops.tables import aligned
from pytest_flops.validation import SnapshotFormatError

MAX_DIFF_ROWS = 12
UPDATE_HINT = "Run `pytest --flops-update` to accept the new counts."


def budget_exceeded(nodeid: str, exceeded: BudgetExceeded) -> str:
    return f"FLOP budget exceeded by {nodeid}: {exceeded.long_repr}"


def unreadable(nodeid: str, location: str, error: SnapshotFormatError) -> str:
    return (
        f"Cannot read the FLOP snapshot of {nodeid}: {error}\n"
        f"Run `pytest --flops-update` to rewrite {location}."
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
        f"Run `pytest --flops-update` to remove it, if the test should not measure."
    )


def cannot_write(nodeid: str, location: str, error: OSError) -> str:
    return (
        f"Cannot write the FLOP snapshot of {nodeid}: {location}: {error}\n"
        f"The snapshot on disk, if any, is unchanged."
    )


def cannot_remove(location: str, error: OSError) -> str:
    return f"flops: cannot remove the stale snapshot {location}: {error}"


def mismatch(
    nodeid: str, location: str, stored: FlopsSnapshot, current: FlopsSnapshot, moved: set[str]
) -> str:
    """Diagnosis first: totals before -> after, then what moved, then the hint.

    ``stored`` and ``current`` are at the depth they are compared at.
    """
    sections = changes(nodeid, stored.measurements, current.measurements, moved)
    return "\n\n".join([*sections, f"Snapshot: {location}\n{UPDATE_HINT}"])


def changes(
    subject: str,
    before: Mapping[str, Measurement],
    after: Mapping[str, Measurement],
    moved: Iterable[str],
) -> list[str]:
    """One section per measurement name that moved: totals, then the changed rows."""
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
        moved_bytes = _change(old.bytes_accessed, new.bytes_accessed, "bytes")
        if old.without_bytes() == new.without_bytes():  # the FLOPs held, the bytes moved
            lines = [
                f"Bytes accessed changed for {subject}{label}: {moved_bytes}",
                f"  FLOP      {_change(old.total, new.total)}",
            ]
        else:
            lines = [
                f"FLOP count changed for {subject}{label}: total {_change(old.total, new.total)}"
            ]
            lines += [
                f"  forward   {_change(old.forward, new.forward)}",
                f"  backward  {_change(old.backward, new.backward)}",
            ]
            if old.bytes_accessed or new.bytes_accessed:
                lines.append(f"  bytes     {moved_bytes}")
        if old.communication or new.communication:
            lines.append(
                f"  comm      {_change(old.communication_bytes, new.communication_bytes, 'bytes')}"
            )
        if old.world != new.world:
            lines.append(
                f"  world     {old.world or 'no process group'} → {new.world or 'no process group'}"
            )
        lines += _diff_table(old, new)
        sections.append("\n".join(lines))
    return sections


def summary_lines(
    *,
    counts: Iterable[tuple[str, int]],
    stale: Sequence[str],
    held_back: Sequence[str],
    legacy: int,
    moved: bool,
    problems: Sequence[str],
) -> list[str]:
    """``flops: 12 tests passed, 1 failed, 2 written, 1 removed`` and what goes with it.

    ``counts`` are (what, number of tests) pairs, the first four always shown;
    ``stale`` the stale snapshots kept (shown paths); ``held_back`` why
    ``--flops-update`` removed no stale snapshot; ``legacy`` how many
    snapshots were read from the layout before 0.2 (and ``moved`` to the
    current one, under ``--flops-update``).
    """
    counts = list(counts)
    if not any(number for _, number in counts) and not (stale or held_back or problems):
        return []
    (first_what, first_number), *others = counts
    noun = "test" if first_number == 1 else "tests"
    parts = [f"{first_number} {noun} {first_what}"]
    parts += [f"{number} {what}" for i, (what, number) in enumerate(others) if i < 3 or number]
    line = "flops: " + ", ".join(parts)
    if stale:
        line += f", {len(stale)} stale"
    lines = [line]
    if stale:
        lines.append(
            "flops: stale snapshots (their tests no longer exist or no longer measure); "
            "`pytest --flops-update` removes them:"
        )
        lines += [f"  {path}" for path in stale]
    if held_back:
        lines.append(
            "flops: no stale snapshot was looked for or removed, as this run did not cover "
            f"the whole suite ({'; '.join(held_back)}); a whole run with --flops-update "
            "removes them"
        )
    if legacy and moved:
        lines.append(
            f"flops: {legacy} snapshot(s) moved from the layout before pytest-flops 0.2 "
            "(__flops__/<file stem>/) to __flops__/<file name>/"
        )
    elif legacy:
        lines.append(
            f"flops: {legacy} snapshot(s) read from the layout before pytest-flops 0.2 "
            "(__flops__/<file stem>/); `pytest --flops-update` moves them to "
            "__flops__/<file name>/"
        )
    lines += problems
    return lines


def _diff_table(before: Measurement, after: Measurement) -> list[str]:
    """The rows that moved; bytes accessed only when nothing else did (else their total
    line above says it, and the FLOP rows point at the cause)."""
    moved = before.diff(after).rows
    if any(row.unit != BYTES_ACCESSED for row in moved):
        moved = tuple(row for row in moved if row.unit != BYTES_ACCESSED)
    rows: list[tuple[str, ...]] = [
        (
            row.module,
            row.op if row.unit == "FLOP" else f"{row.op} ({row.unit})",
            f"{row.before:,}",
            f"{row.after:,}",
            f"{row.delta:+,}",
        )
        for row in moved
    ]
    rows += [
        ("(no formula)", f"{op} calls", f"{before.unsupported.get(op, 0):,}", f"{calls:,}", "")
        for op, calls in sorted(after.unsupported.items())
        if before.unsupported.get(op, 0) != calls
    ]
    rows += [
        ("(no formula)", f"{op} calls", f"{calls:,}", "0", "")
        for op, calls in sorted(before.unsupported.items())
        if op not in after.unsupported
    ]
    if not rows:
        return []
    shown, left_out = rows[:MAX_DIFF_ROWS], len(rows) - MAX_DIFF_ROWS
    header = ("module", "operator", "before", "after", "Δ")
    table = aligned([header, *shown], right=(False, False, True, True, True))
    lines = ["", *(f"  {line}" for line in table)]
    if left_out > 0:
        lines.append(f"  ... {left_out} more changed row(s) not shown")
    return lines


def _change(before: int, after: int, unit: str = "FLOP") -> str:
    if before == after:
        return f"{after:,} (unchanged)"
    return f"{before:,} → {after:,} {unit} ({relative_text(before, after)})"
