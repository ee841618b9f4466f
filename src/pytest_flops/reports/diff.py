"""``python -m pytest_flops diff``: the FLOP changes between two revisions' snapshots.

For review: per test and named measurement, the total before and after, its
parts (forward, backward, and whatever else the snapshot format holds), and
the *origin rows*, the modules where the change starts. A module's own FLOPs
are its FLOPs minus its children's, so a change in ``Net.block.fc`` shows
there alone, not again in ``Net.block`` and ``Net``. This module decides the
:class:`Comparison`; :mod:`pytest_flops.reports.diff_render` writes it as
terminal text, a Markdown pull-request comment and JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pytest_flops.codec import Number, Tolerance, moved_numbers, numbers, own_numbers
from pytest_flops.measurement import (
    BYTES_ACCESSED,
    FLOP,
    FLOP_PER_PHASE,
    GLOBAL,
    DiffRow,
    Measurement,
    is_precision,
    module_order,
    relative_change,
)
from pytest_flops.reports.git import WORKING_TREE, Repository, StoredSnapshot, is_legacy_path
from pytest_flops.snapshots.format import FlopsSnapshot, comparable

__all__ = [
    "Comparison",
    "MeasurementChange",
    "Present",
    "Revision",
    "compare",
    "file_and_test",
    "measurement_change",
    "one_precision",
    "quantities",
    "unit_of",
]

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
        return unit_of(self.name)


def unit_of(quantity: str) -> str:
    """``"B"`` for a quantity of bytes, ``"FLOP"`` for the others."""
    return "B" if "bytes" in quantity else "FLOP"


@dataclass(frozen=True, kw_only=True)
class Origin:
    """A module where a change starts: its own FLOPs (its FLOPs minus its children's)
    before and after, and the operators whose own numbers moved there, largest first.

    ``operators`` holds FLOP changes; ``precisions`` the FLOPs by precision of operators
    whose FLOPs held (the same work at another precision); ``bytes_accessed`` the bytes
    that moved, where no FLOPs moved anywhere in the measurement.
    """

    module: str
    before: int
    after: int
    operators: tuple[tuple[str, int], ...]  # (operator, change)
    precisions: tuple[tuple[str, str, int], ...] = ()  # (operator, precision, change)
    bytes_accessed: tuple[tuple[str, int], ...] = ()  # (operator, change)


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
        test_changed, test_added, test_removed, test_unchanged = _test_changes(
            label,
            None if old is None else old.snapshot,
            stored.snapshot,
            renamed_from=renamed_from.get(label),
        )
        changed += test_changed
        added += test_added
        removed += test_removed
        unchanged += test_unchanged
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


def _test_changes(
    label: str,
    old_snapshot: FlopsSnapshot | None,
    new_snapshot: FlopsSnapshot,
    *,
    renamed_from: str | None,
) -> tuple[list[MeasurementChange], list[Present], list[Present], int]:
    """One test's measurements changed, added and removed, and how many are unchanged."""
    changed: list[MeasurementChange] = []
    added: list[Present] = []
    unchanged = 0
    old_measurements: Mapping[str, Measurement] = {}
    if old_snapshot is not None:
        old_snapshot, new_snapshot = comparable(old_snapshot, new_snapshot)
        old_measurements = old_snapshot.measurements
    for name, measurement in new_snapshot.measurements.items():
        if name not in old_measurements:
            added.append(Present(test=label, name=name, quantities=quantities(measurement)))
            continue
        previous = old_measurements[name]
        if not previous.diff(measurement).moved:
            unchanged += 1
        else:
            changed.append(
                measurement_change(label, name, previous, measurement, renamed_from=renamed_from)
            )
    removed = [
        Present(test=label, name=name, quantities=quantities(measurement))
        for name, measurement in old_measurements.items()
        if name not in new_snapshot.measurements
    ]
    return changed, added, removed, unchanged


def quantities(measurement: Measurement) -> dict[str, int]:
    """The measurement's numbers as its snapshot stores them: total, forward, backward, and any
    count a newer format adds beside them (``{"bytes": {"read": 1}}`` gives ``bytes.read``),
    then its FLOPs at each precision (``FLOPs at tf32``)."""
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
    by_precision: dict[str, int] = {}
    for precisions in measurement.modules[GLOBAL].flops_by_precision.values():
        for precision, flops in precisions.items():
            by_precision[precision] = by_precision.get(precision, 0) + flops
    found.update({f"{AT_PRECISION}{p}": flops for p, flops in sorted(by_precision.items())})
    return found


AT_PRECISION = "FLOPs at "
"""How :func:`quantities` names the FLOPs at one precision: ``FLOPs at tf32``."""


def one_precision(names: Iterable[str]) -> str | None:
    """The quantity of FLOPs by precision among ``names``, where there is one only: it
    equals the total, and says nothing of its own."""
    found = [name for name in names if name.startswith(AT_PRECISION)]
    return found[0] if len(found) == 1 else None


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
    if (precision := one_precision(names)) is not None and precision in old and precision in new:
        names.remove(precision)
    return MeasurementChange(
        test=label,
        name=name,
        renamed_from=renamed_from,
        quantities=tuple(Quantity(name=q, before=old.get(q), after=new.get(q)) for q in names),
        origins=_origins(before, after),
        operators=tuple(row for row in before.diff(after).rows if row.module == GLOBAL),
    )


def _origins(before: Measurement, after: Measurement) -> tuple[Origin, ...]:
    """The modules whose own numbers moved, largest FLOP change first, each with the
    operators that moved there (see :class:`Origin`)."""
    own_before, own_after = (own_numbers(numbers(measurement)) for measurement in (before, after))
    moved = moved_numbers(own_before, own_after, tolerance=Tolerance()).moved
    flops_moved = {(row.module, row.op) for row in moved if row.unit == FLOP}
    operators: dict[str, list[tuple[str, int]]] = {}
    precisions: dict[str, list[tuple[str, str, int]]] = {}
    accessed: dict[str, list[tuple[str, int]]] = {}
    for row in moved:
        if row.unit == FLOP:
            operators.setdefault(row.module, []).append((row.op, row.delta))
        elif is_precision(row.unit) and (row.module, row.op) not in flops_moved:
            precision = row.unit.removesuffix(f" {FLOP}")
            precisions.setdefault(row.module, []).append((row.op, precision, row.delta))
        elif row.unit == BYTES_ACCESSED and not flops_moved:
            accessed.setdefault(row.module, []).append((row.op, row.delta))
    was, now = _own_totals(own_before), _own_totals(own_after)
    origins = [
        Origin(
            module=module,
            before=was.get(module, 0),
            after=now.get(module, 0),
            operators=_largest_first(operators.get(module, [])),
            precisions=tuple(
                sorted(precisions.get(module, []), key=lambda o: (-abs(o[2]), o[0], o[1]))
            ),
            bytes_accessed=_largest_first(accessed.get(module, [])),
        )
        for module in dict.fromkeys([*was, *now])
        if module in operators
        or module in precisions
        or module in accessed
        or was.get(module, 0) != now.get(module, 0)
    ]
    origins.sort(key=lambda o: (-abs(o.after - o.before), module_order(o.module)))
    return tuple(origins)


def _largest_first(changes: list[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(changes, key=lambda o: (-abs(o[1]), o[0])))


def _own_totals(own: Mapping[Number, int]) -> dict[str, int]:
    """Each row's own FLOPs, every phase: its total without its children's."""
    totals: dict[str, int] = {}
    for key, number in own.items():
        if key.module:
            totals[key.module] = totals.get(key.module, 0) + (
                number if key.unit == FLOP_PER_PHASE else 0
            )
    return totals


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
