"""The counted data of one measurement, its diff, and its (de)serialization.

A :class:`Measurement` is what a ``with flops(...)`` block (or a whole
:class:`~pytest_flops.FlopCounterMode` session) produced: FLOPs per module path
and operator, split into forward and backward, plus the operators that ran
with no formula. It is immutable and holds plain ``str``/``int`` data only, so
it can be compared, serialized to a snapshot and shipped between xdist workers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_flops.validation import SnapshotFormatError, expect_count, expect_keys, expect_mapping

GLOBAL = "Global"
"""The row that holds everything a measurement counted, whatever module ran it."""

DEFAULT_NAME = "default"
"""The name of a measurement whose ``with flops(...)`` block gave none."""

__all__ = [
    "DEFAULT_NAME",
    "GLOBAL",
    "DiffRow",
    "Measurement",
    "MeasurementDiff",
    "ModuleFlops",
    "SnapshotFormatError",
    "module_order",
    "relative_change",
    "relative_text",
]


@dataclass(frozen=True, kw_only=True)
class ModuleFlops:
    """FLOPs counted inside one module path (or ``"Global"`` for everything)."""

    forward: int = 0
    backward: int = 0
    by_op: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.forward + self.backward


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """FLOPs per module and operator, forward/backward split, and blind spots.

    ``modules`` always holds ``"Global"``; the other keys are module paths such
    as ``"ResNet.layer1"``. ``unsupported`` maps an operator that ran with no
    formula to how many times it ran.
    """

    modules: Mapping[str, ModuleFlops] = field(default_factory=lambda: {GLOBAL: ModuleFlops()})
    unsupported: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.modules[GLOBAL].total

    @property
    def forward(self) -> int:
        return self.modules[GLOBAL].forward

    @property
    def backward(self) -> int:
        return self.modules[GLOBAL].backward

    @property
    def by_op(self) -> dict[str, int]:
        return dict(self.modules[GLOBAL].by_op)

    @property
    def by_module(self) -> dict[str, dict[str, int]]:
        return {path: dict(m.by_op) for path, m in self.modules.items() if path != GLOBAL}

    def truncated(self, depth: int) -> Measurement:
        """Keep module paths at most ``depth`` levels deep (``"A.b"`` is depth 2)."""
        modules = {
            path: counts
            for path, counts in self.modules.items()
            if path == GLOBAL or path.count(".") + 1 <= depth
        }
        return Measurement(modules=modules, unsupported=self.unsupported)

    def __add__(self, other: Measurement) -> Measurement:
        modules: dict[str, ModuleFlops] = dict(self.modules)
        for path, theirs in other.modules.items():
            mine = modules.get(path, ModuleFlops())
            by_op = dict(mine.by_op)
            for op, flops in theirs.by_op.items():
                by_op[op] = by_op.get(op, 0) + flops
            modules[path] = ModuleFlops(
                forward=mine.forward + theirs.forward,
                backward=mine.backward + theirs.backward,
                by_op=by_op,
            )
        unsupported = dict(self.unsupported)
        for op, calls in other.unsupported.items():
            unsupported[op] = unsupported.get(op, 0) + calls
        return Measurement(modules=modules, unsupported=unsupported)

    # -- diff -----------------------------------------------------------------

    def diff(self, after: Measurement) -> MeasurementDiff:
        """What changed going from ``self`` (the stored baseline) to ``after``."""
        rows: list[DiffRow] = []
        for path in _ordered_union(self.modules, after.modules):
            before_mod = self.modules.get(path, ModuleFlops())
            after_mod = after.modules.get(path, ModuleFlops())
            for op in _ordered_union(before_mod.by_op, after_mod.by_op):
                old, new = before_mod.by_op.get(op, 0), after_mod.by_op.get(op, 0)
                if old != new:
                    rows.append(DiffRow(module=path, op=op, before=old, after=new))
        rows.sort(key=lambda row: (-abs(row.delta), module_order(row.module), row.op))
        return MeasurementDiff(rows=tuple(rows))

    # -- (de)serialization ----------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with deterministic key order and exact integers."""
        return {
            "total": self.total,
            "forward": self.forward,
            "backward": self.backward,
            "modules": {
                path: {
                    "forward": counts.forward,
                    "backward": counts.backward,
                    "by_op": dict(sorted(counts.by_op.items())),
                }
                for path, counts in sorted(self.modules.items(), key=_module_sort_key)
            },
            "unsupported": dict(sorted(self.unsupported.items())),
        }

    @classmethod
    def from_dict(cls, data: object, *, where: str) -> Measurement:
        """Parse :meth:`to_dict` output; ``where`` names the source in errors."""
        obj = expect_mapping(data, where)
        expect_keys(obj, {"total", "forward", "backward", "modules", "unsupported"}, where)
        modules: dict[str, ModuleFlops] = {}
        for path, raw in expect_mapping(obj["modules"], f"{where}: modules").items():
            at = f"{where}: modules[{path!r}]"
            entry = expect_mapping(raw, at)
            expect_keys(entry, {"forward", "backward", "by_op"}, at)
            modules[path] = ModuleFlops(
                forward=expect_count(entry["forward"], f"{at}.forward"),
                backward=expect_count(entry["backward"], f"{at}.backward"),
                by_op={
                    op: expect_count(v, f"{at}.by_op[{op!r}]")
                    for op, v in expect_mapping(entry["by_op"], f"{at}.by_op").items()
                },
            )
        if GLOBAL not in modules:
            raise SnapshotFormatError(f"{where}: modules has no {GLOBAL!r} entry")
        unsupported = {
            op: expect_count(v, f"{where}: unsupported[{op!r}]")
            for op, v in expect_mapping(obj["unsupported"], f"{where}: unsupported").items()
        }
        measurement = cls(modules=modules, unsupported=unsupported)
        for key in ("total", "forward", "backward"):
            stored = expect_count(obj[key], f"{where}: {key}")
            if stored != getattr(measurement, key):
                raise SnapshotFormatError(
                    f"{where}: {key} is {stored} but the Global module row says "
                    f"{getattr(measurement, key)}"
                )
        return measurement


@dataclass(frozen=True, kw_only=True)
class DiffRow:
    module: str
    op: str
    before: int
    after: int

    @property
    def delta(self) -> int:
        return self.after - self.before


@dataclass(frozen=True, kw_only=True)
class MeasurementDiff:
    """Each (module, operator) count that moved, largest change first."""

    rows: tuple[DiffRow, ...]


def relative_change(before: int, after: int) -> float:
    """``(after - before) / before``; infinite when growing from zero."""
    if before == 0:
        return 0.0 if after == 0 else float("inf")
    return (after - before) / before


def relative_text(before: int, after: int) -> str:
    """The relative change as people read it: ``+10.00%``, ``0%``, or ``from 0``."""
    if before == after:
        return "0%"
    ratio = relative_change(before, after)
    return "from 0" if ratio == float("inf") else f"{ratio:+.2%}"


def _module_sort_key(item: tuple[str, ModuleFlops]) -> tuple[int, str]:
    path = item[0]
    return (0, "") if path == GLOBAL else (1, path)


def module_order(path: str) -> tuple[bool, list[str | int]]:
    """``"Global"`` first, then paths with their numbers compared as numbers.

    A change repeated in every block of a 12-layer model then lists
    ``blocks.2`` before ``blocks.10``.
    """
    parts = re.split(r"(\d+)", path)  # text, number, text, ...: alike types line up
    return path != GLOBAL, [int(part) if i % 2 else part for i, part in enumerate(parts)]


def _ordered_union(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return list(dict.fromkeys([*a, *b]))
