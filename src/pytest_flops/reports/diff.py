"""``python -m pytest_flops diff``: the FLOP changes between two revisions' snapshots.

For review: per test and named measurement, the total before and after, its
parts (forward, backward, and whatever else the snapshot format holds), and
the *origin rows*, the modules where the change starts. A module's own FLOPs
are its FLOPs minus its children's, so a change in ``Net.block.fc`` shows
there alone, not again in ``Net.block`` and ``Net``. Written as terminal
text, a Markdown pull-request comment and JSON, all of one :class:`Comparison`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_flops.measurement import (
    GLOBAL,
    DiffRow,
    Measurement,
    module_order,
    relative_change,
    relative_text,
)
from pytest_flops.reports.git import WORKING_TREE, Repository, StoredSnapshot, is_legacy_path
from pytest_flops.snapshots.format import comparable
from pytest_flops.tables import aligned
from pytest_flops.units import format_bytes, format_flops, format_pair

__all__ = [
    "Comparison",
    "MeasurementChange",
    "compare",
    "diff_json",
    "diff_lines",
    "diff_markdown",
    "measurement_change",
]

SCHEMA_VERSION = 1
ORIGINS_SHOWN = 10  # in the terminal and the Markdown; the JSON has them all
_NOT_QUANTITIES = frozenset({"modules", "unsupported", "world"})


@dataclass(frozen=True, kw_only=True)
class Revision:
    ref: str  # as the user gave it, or "working tree"
    commit: str | None  # its full hash; None for the working tree

    def __str__(self) -> str:
        if self.commit is None or self.ref == self.commit:
            return self.ref if self.commit is None else self.commit[:7]
        return f"{self.ref} ({self.commit[:7]})"


@dataclass(frozen=True, kw_only=True)
class Quantity:
    """One number of a measurement on both sides; None where that side does not hold it."""

    name: str
    before: int | None
    after: int | None

    @property
    def unit(self) -> str:
        return "B" if "bytes" in self.name else "FLOP"


@dataclass(frozen=True, kw_only=True)
class Origin:
    """A module whose own FLOPs (its FLOPs minus its children's) changed, and the operators
    whose own FLOPs moved there, largest first."""

    module: str
    before: int
    after: int
    operators: tuple[tuple[str, int], ...]  # (operator, change)


@dataclass(frozen=True, kw_only=True)
class MeasurementChange:
    test: str  # tests/test_x.py::test_a, as at the head
    name: str  # the measurement's name
    renamed_from: str | None  # the test's label at the base, where it moved
    quantities: tuple[Quantity, ...]  # total first
    origins: tuple[Origin, ...]
    operators: tuple[DiffRow, ...]  # of the Global row: every operator that moved

    @property
    def before(self) -> int:
        return self.quantities[0].before or 0

    @property
    def after(self) -> int:
        return self.quantities[0].after or 0

    @property
    def relative(self) -> float:
        return relative_change(self.before, self.after)


@dataclass(frozen=True, kw_only=True)
class Present:
    """A measurement only one side has: a test (or named measurement) added or removed."""

    test: str
    name: str
    quantities: Mapping[str, int]

    @property
    def total(self) -> int:
        return self.quantities["total"]


@dataclass(frozen=True, kw_only=True)
class Comparison:
    base: Revision
    head: Revision
    changed: tuple[MeasurementChange, ...]  # the biggest relative change first
    added: tuple[Present, ...]
    removed: tuple[Present, ...]
    unchanged: int  # measurements equal on both sides
    renamed: tuple[tuple[str, str], ...] = ()  # (before, after) of unchanged tests that moved

    @property
    def any_change(self) -> bool:
        """Whether some count changed or a measurement went away (new ones are no change)."""
        return bool(self.changed or self.removed)


def compare(repository: Repository, base: Revision, head: Revision) -> Comparison:
    """The snapshots at ``base`` against those at ``head``, tests matched by name across
    layouts and git renames."""
    base_revision = base.commit or WORKING_TREE
    head_revision = head.commit or WORKING_TREE
    before = _by_label(repository.snapshots(base_revision))
    after = _by_label(repository.snapshots(head_revision))
    renamed_from = _moves(before, after, repository.renames(base_revision, head_revision))

    changed: list[MeasurementChange] = []
    added: list[Present] = []
    removed: list[Present] = []
    unchanged = 0
    matched_base = set(renamed_from.values())
    for label, stored in after.items():
        old = before.get(renamed_from.get(label, label))
        new_snapshot = stored.snapshot
        old_measurements: Mapping[str, Measurement] = {}
        if old is not None:
            old_snapshot, new_snapshot = comparable(old.snapshot, new_snapshot)
            old_measurements = old_snapshot.measurements
        for name, measurement in new_snapshot.measurements.items():
            if name not in old_measurements:
                added.append(Present(test=label, name=name, quantities=quantities(measurement)))
                continue
            previous = old_measurements[name]
            if previous.to_dict() == measurement.to_dict():
                unchanged += 1
            else:
                changed.append(
                    measurement_change(
                        label, name, previous, measurement, renamed_from=renamed_from.get(label)
                    )
                )
        for name, measurement in old_measurements.items():
            if name not in new_snapshot.measurements:
                removed.append(Present(test=label, name=name, quantities=quantities(measurement)))
    for label, stored in before.items():
        if label not in after and label not in matched_base:
            removed.extend(
                Present(test=label, name=name, quantities=quantities(m))
                for name, m in stored.snapshot.measurements.items()
            )

    def biggest_first(change: MeasurementChange) -> tuple[float, int, str, str]:
        return (-abs(change.relative), -abs(change.after - change.before), change.test, change.name)

    def by_test(present: Present) -> tuple[str, str]:
        return (present.test, present.name)

    return Comparison(
        base=base,
        head=head,
        changed=tuple(sorted(changed, key=biggest_first)),
        added=tuple(sorted(added, key=by_test)),
        removed=tuple(sorted(removed, key=by_test)),
        unchanged=unchanged,
        renamed=tuple(
            sorted(
                (old, new)
                for new, old in renamed_from.items()
                if not any(change.test == new for change in changed)
            )
        ),
    )


def quantities(measurement: Measurement) -> dict[str, int]:
    """The measurement's numbers as its snapshot stores them: total, forward, backward, and any
    count a newer format adds beside them (``{"bytes": {"read": 1}}`` gives ``bytes.read``)."""
    found: dict[str, int] = {}
    for key, value in measurement.to_dict().items():
        if key in _NOT_QUANTITIES:
            continue
        if _is_count(value):
            found[key] = value
        elif isinstance(value, Mapping):
            found.update({f"{key}.{sub}": v for sub, v in value.items() if _is_count(v)})
    if measurement.communication_bytes:
        found["communication bytes"] = measurement.communication_bytes
    return found


def own_flops(measurement: Measurement) -> dict[str, dict[str, int]]:
    """Per module row, its FLOPs per operator minus its children's; ``"total"`` beside them."""
    paths = list(measurement.modules)
    own: dict[str, dict[str, int]] = {}
    for path in paths:
        row = measurement.modules[path]
        own[path] = {"total": row.total, **row.by_op}
    for path in paths:
        parent = _parent(path, measurement.modules)
        if parent is None:
            continue
        row = measurement.modules[path]
        for key, value in {"total": row.total, **row.by_op}.items():
            own[parent][key] = own[parent].get(key, 0) - value
    return own


def measurement_change(
    label: str,
    name: str,
    before: Measurement,
    after: Measurement,
    *,
    renamed_from: str | None = None,
) -> MeasurementChange:
    """The change of one measurement: its numbers, origins and the Global row's operators."""
    old, new = quantities(before), quantities(after)
    names = list(dict.fromkeys([*old, *new]))
    own_before, own_after = own_flops(before), own_flops(after)
    origins = []
    for module in dict.fromkeys([*own_before, *own_after]):
        was, now = own_before.get(module, {}), own_after.get(module, {})
        operators = tuple(
            sorted(
                (
                    (op, now.get(op, 0) - was.get(op, 0))
                    for op in dict.fromkeys([*was, *now])
                    if op != "total" and now.get(op, 0) != was.get(op, 0)
                ),
                key=lambda item: (-abs(item[1]), item[0]),
            )
        )
        if operators or was.get("total", 0) != now.get("total", 0):
            origins.append(
                Origin(
                    module=module,
                    before=was.get("total", 0),
                    after=now.get("total", 0),
                    operators=operators,
                )
            )
    origins.sort(key=lambda o: (-abs(o.after - o.before), module_order(o.module)))
    return MeasurementChange(
        test=label,
        name=name,
        renamed_from=renamed_from,
        quantities=tuple(Quantity(name=q, before=old.get(q), after=new.get(q)) for q in names),
        origins=tuple(origins),
        operators=tuple(row for row in before.diff(after).rows if row.module == GLOBAL),
    )


def _parent(path: str, modules: Mapping[str, object]) -> str | None:
    """The nearest row above ``path``: ``"A.b"`` for ``"A.b.c"``, Global for a top row."""
    if path == GLOBAL:
        return None
    while "." in path:
        path = path.rpartition(".")[0]
        if path in modules:
            return path
    return GLOBAL


def _moves(
    before: Mapping[str, StoredSnapshot],
    after: Mapping[str, StoredSnapshot],
    git_renames: Mapping[str, str],
) -> dict[str, str]:
    """Tests that moved, new label -> old label: the files git saw renamed, then a test of
    the same name in a test file of the same name that one side alone has (git pairs no
    files whose counts changed much)."""
    gone = {label: s for label, s in before.items() if label not in after}
    new = {label: s for label, s in after.items() if label not in before}
    moves = {}
    old_by_path = {s.path: label for label, s in gone.items()}
    for label, stored in new.items():
        if (old := old_by_path.get(git_renames.get(stored.path, ""))) is not None:
            moves[label] = old
    candidates: dict[str, list[str]] = {}
    for label in gone.keys() - set(moves.values()):
        candidates.setdefault(file_and_test(label), []).append(label)
    arrivals: dict[str, list[str]] = {}
    for label in new.keys() - moves.keys():
        arrivals.setdefault(file_and_test(label), []).append(label)
    for key, labels in arrivals.items():
        if len(labels) == 1 and len(candidates.get(key, [])) == 1:
            moves[labels[0]] = candidates[key][0]
    return moves


def file_and_test(label: str) -> str:
    """``tests/unit/test_x.py::test_a`` as ``test_x.py::test_a``."""
    test_file, _, test = label.partition("::")
    return f"{test_file.rpartition('/')[2]}::{test}"


def _by_label(stored: Iterable[StoredSnapshot]) -> dict[str, StoredSnapshot]:
    """Each test's snapshot; where a pre-0.2 file and a current one hold the same test, the
    current one (the plugin reads it first)."""
    found: dict[str, StoredSnapshot] = {}
    for snapshot in sorted(stored, key=lambda s: not is_legacy_path(s.path)):
        found[snapshot.label] = snapshot
    return found


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
    if before is None or after is None or unit != "FLOP" or before == after:
        return amount(before, unit), amount(after, unit)
    return format_pair(before, after)


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
        ops = ", ".join(f"{op} {signed(delta, 'FLOP')}" for op, delta in origin.operators[:3])
        if len(origin.operators) > 3:
            ops += f", {len(origin.operators) - 3} more"
        rows.append(
            [origin.module, before, after, signed(origin.after - origin.before, "FLOP"), ops]
        )
    return rows


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
    return f"`{_cell(text)}`" if "`" not in text else _cell(text)


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
        rows = []
        for change in comparison.changed:
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
        lines += [
            "",
            *_table(
                ["test", "before", "after", "change", "%"],
                rows,
                right=[False, True, True, True, True],
            ),
        ]
    for change in comparison.changed:
        lines += [
            "",
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
        lines += ["", "</details>"]
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
