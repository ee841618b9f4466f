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
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_flops import roofline as _roofline
from pytest_flops.validation import SnapshotFormatError, expect_count, expect_keys, expect_mapping

GLOBAL = "Global"
"""The row that holds everything a measurement counted, whatever module ran it."""

DEFAULT_NAME = "default"
"""The name of a measurement whose ``with flops(...)`` block gave none."""

BYTES_ACCESSED = "bytes accessed"
"""The unit of a :class:`DiffRow` of an op's memory traffic (communication's is "bytes")."""

__all__ = [
    "BYTES_ACCESSED",
    "DEFAULT_NAME",
    "GLOBAL",
    "DiffRow",
    "Measurement",
    "MeasurementDiff",
    "ModuleFlops",
    "SnapshotFormatError",
    "Traffic",
    "World",
    "module_order",
    "relative_change",
    "relative_text",
]


@dataclass(frozen=True, kw_only=True)
class Traffic:
    """What one communication op moved: how many times it ran, and its bytes in all."""

    calls: int = 0
    bytes: int = 0

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(calls=self.calls + other.calls, bytes=self.bytes + other.bytes)


@dataclass(frozen=True, kw_only=True)
class World:
    """The process group a measurement ran in: this rank of ``size``, on ``mesh``."""

    rank: int
    size: int
    mesh: Mapping[str, int] = field(default_factory=dict)  # dimension name -> size

    def __str__(self) -> str:
        mesh = " x ".join(f"{name} {size}" for name, size in self.mesh.items())
        return f"rank {self.rank} of {self.size}" + (f" (mesh {mesh})" if mesh else "")

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "size": self.size, "mesh": dict(self.mesh)}

    @classmethod
    def from_dict(cls, data: object, *, where: str) -> World:
        obj = expect_mapping(data, where)
        expect_keys(obj, {"rank", "size", "mesh"}, where)
        mesh = expect_mapping(obj["mesh"], f"{where}.mesh")
        return cls(
            rank=expect_count(obj["rank"], f"{where}.rank"),
            size=expect_count(obj["size"], f"{where}.size"),
            mesh={
                name: expect_count(size, f"{where}.mesh[{name!r}]") for name, size in mesh.items()
            },
        )


@dataclass(frozen=True, kw_only=True)
class ModuleFlops:
    """FLOPs counted inside one module path (or ``"Global"`` for everything), the
    communication ops that ran there, and the bytes its ops accessed in memory."""

    forward: int = 0
    backward: int = 0
    by_op: Mapping[str, int] = field(default_factory=dict)
    communication: Mapping[str, Traffic] = field(default_factory=dict)
    bytes_forward: int = 0
    bytes_backward: int = 0
    bytes_by_op: Mapping[str, int] = field(default_factory=dict)
    # {op: {precision: flops}}: which peak each op's FLOPs run at (the roofline's input)
    flops_by_precision: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.forward + self.backward

    @property
    def bytes_accessed(self) -> int:
        return self.bytes_forward + self.bytes_backward

    def __add__(self, other: ModuleFlops) -> ModuleFlops:
        return ModuleFlops(
            forward=self.forward + other.forward,
            backward=self.backward + other.backward,
            by_op=_summed(self.by_op, other.by_op, 0),
            communication=_summed(self.communication, other.communication, Traffic()),
            bytes_forward=self.bytes_forward + other.bytes_forward,
            bytes_backward=self.bytes_backward + other.bytes_backward,
            bytes_by_op=_summed(self.bytes_by_op, other.bytes_by_op, 0),
            flops_by_precision={
                op: _summed(
                    self.flops_by_precision.get(op, {}), other.flops_by_precision.get(op, {}), 0
                )
                for op in _ordered_union(self.flops_by_precision, other.flops_by_precision)
            },
        )


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """FLOPs per module and operator, forward/backward split, and blind spots.

    ``modules`` always holds ``"Global"``; the other keys are module paths such
    as ``"ResNet.layer1"``. ``unsupported`` maps an operator that ran with no
    formula to how many times it ran. ``world`` is the process group it ran in,
    if any: its FLOPs and communication are one rank's.
    """

    modules: Mapping[str, ModuleFlops] = field(default_factory=lambda: {GLOBAL: ModuleFlops()})
    unsupported: Mapping[str, int] = field(default_factory=dict)
    world: World | None = None

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
        """FLOPs by op of each module row that counted some (a row may hold bytes only)."""
        return {
            path: dict(m.by_op) for path, m in self.modules.items() if path != GLOBAL and m.by_op
        }

    @property
    def bytes_by_module(self) -> dict[str, dict[str, int]]:
        """Bytes accessed by op of each module row that moved memory."""
        return {
            path: dict(m.bytes_by_op)
            for path, m in self.modules.items()
            if path != GLOBAL and m.bytes_by_op
        }

    @property
    def bytes_accessed(self) -> int:
        """Bytes the ops read and wrote in memory, forward and backward (communication apart)."""
        return self.modules[GLOBAL].bytes_accessed

    @property
    def bytes_forward(self) -> int:
        return self.modules[GLOBAL].bytes_forward

    @property
    def bytes_backward(self) -> int:
        return self.modules[GLOBAL].bytes_backward

    @property
    def bytes_by_op(self) -> dict[str, int]:
        """``{"aten.mm": bytes, "aten.add": bytes, ...}``: every op that moved memory."""
        return dict(self.modules[GLOBAL].bytes_by_op)

    @property
    def communication(self) -> dict[str, Traffic]:
        """``{"_c10d_functional.all_reduce": Traffic(calls=2, bytes=4096), ...}``"""
        return dict(self.modules[GLOBAL].communication)

    @property
    def communication_bytes(self) -> int:
        return sum(traffic.bytes for traffic in self.modules[GLOBAL].communication.values())

    def roofline(self, gpu: str | _roofline.Gpu, *, module: str = GLOBAL) -> _roofline.Roofline:
        """The roofline time of this measurement (or of one ``module`` row) on ``gpu``.

        Each op's FLOPs at the peak of its precision or its bytes at the memory
        bandwidth, whichever is longer, summed; plus communication bytes at the link
        bandwidth. ``gpu`` is a name (``"h100-sxm"``...; see
        :data:`pytest_flops.roofline.GPUS`). An estimate of eager, unfused traffic:
        for comparing two versions of a step, not for predicting wall time.
        """
        on = gpu if isinstance(gpu, _roofline.Gpu) else _roofline.gpu(gpu)
        row = self.modules[module]
        ops = []
        for op in _ordered_union(row.by_op, row.bytes_by_op):
            precisions = dict(row.flops_by_precision.get(op, {}))
            unattributed = row.by_op.get(op, 0) - sum(precisions.values())
            if unattributed > 0:
                unknown = _roofline.UNKNOWN_PRECISION
                precisions[unknown] = precisions.get(unknown, 0) + unattributed
            ops.append(
                _roofline.OpCost(flops_by_precision=precisions, bytes=row.bytes_by_op.get(op, 0))
            )
        communication = sum(traffic.bytes for traffic in row.communication.values())
        return _roofline.estimate(ops, communication_bytes=communication, on=on)

    def truncated(self, depth: int) -> Measurement:
        """Keep module paths at most ``depth`` levels deep (``"A.b"`` is depth 2)."""
        modules = {
            path: counts
            for path, counts in self.modules.items()
            if path == GLOBAL or path.count(".") + 1 <= depth
        }
        return Measurement(modules=modules, unsupported=self.unsupported, world=self.world)

    def without_communication(self) -> Measurement:
        """The same FLOPs, as a snapshot from before communication was recorded holds them."""
        modules = {path: replace(m, communication={}) for path, m in self.modules.items()}
        return Measurement(modules=modules, unsupported=self.unsupported)

    def without_bytes(self) -> Measurement:
        """The same counts without bytes accessed and FLOPs by precision: as a version 2
        snapshot holds them, or compared with the bytes gate off."""
        modules = {
            path: replace(
                m, bytes_forward=0, bytes_backward=0, bytes_by_op={}, flops_by_precision={}
            )
            for path, m in self.modules.items()
        }
        return Measurement(modules=modules, unsupported=self.unsupported, world=self.world)

    def __add__(self, other: Measurement) -> Measurement:
        """Both counts, row by row; both must come from the same world (or none)."""
        if self.world is not None and other.world is not None and self.world != other.world:
            raise ValueError(
                f"cannot add measurements of two worlds ({self.world} and {other.world}): "
                "measure each under a name of its own"
            )
        modules: dict[str, ModuleFlops] = dict(self.modules)
        for path, theirs in other.modules.items():
            modules[path] = modules.get(path, ModuleFlops()) + theirs
        return Measurement(
            modules=modules,
            unsupported=_summed(self.unsupported, other.unsupported, 0),
            world=self.world or other.world,
        )

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
            for op in _ordered_union(before_mod.communication, after_mod.communication):
                old_traffic = before_mod.communication.get(op, Traffic())
                new_traffic = after_mod.communication.get(op, Traffic())
                for unit in ("bytes", "calls"):
                    old, new = getattr(old_traffic, unit), getattr(new_traffic, unit)
                    if old != new:
                        rows.append(DiffRow(module=path, op=op, before=old, after=new, unit=unit))
            for op in _ordered_union(before_mod.bytes_by_op, after_mod.bytes_by_op):
                old, new = before_mod.bytes_by_op.get(op, 0), after_mod.bytes_by_op.get(op, 0)
                if old != new:
                    rows.append(
                        DiffRow(module=path, op=op, before=old, after=new, unit=BYTES_ACCESSED)
                    )
        rows.sort(
            key=lambda row: (
                _UNIT_ORDER.get(row.unit, 1),
                -abs(row.delta),
                module_order(row.module),
                row.op,
            )
        )
        return MeasurementDiff(rows=tuple(rows))

    # -- (de)serialization ----------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with deterministic key order and exact integers.

        Communication (per module row) and the world appear only where there are
        some, so a single-device measurement reads as it always did.
        """
        data: dict[str, Any] = {
            "total": self.total,
            "forward": self.forward,
            "backward": self.backward,
            "bytes_accessed": self.bytes_accessed,
            "modules": {
                path: _module_dict(counts)
                for path, counts in sorted(self.modules.items(), key=_module_sort_key)
            },
            "unsupported": dict(sorted(self.unsupported.items())),
        }
        if self.world is not None:
            data["world"] = self.world.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: object, *, where: str) -> Measurement:
        """Parse :meth:`to_dict` output; ``where`` names the source in errors."""
        obj = expect_mapping(data, where)
        expect_keys(
            obj,
            {"total", "forward", "backward", "modules", "unsupported"},
            where,
            optional=frozenset({"world", "bytes_accessed"}),
        )
        modules: dict[str, ModuleFlops] = {}
        for path, raw in expect_mapping(obj["modules"], f"{where}: modules").items():
            at = f"{where}: modules[{path!r}]"
            entry = expect_mapping(raw, at)
            expect_keys(entry, {"forward", "backward", "by_op"}, at, optional=_OPTIONAL_ROW_KEYS)
            modules[path] = ModuleFlops(
                **_bytes_fields(entry, at),
                forward=expect_count(entry["forward"], f"{at}.forward"),
                backward=expect_count(entry["backward"], f"{at}.backward"),
                by_op={
                    op: expect_count(v, f"{at}.by_op[{op!r}]")
                    for op, v in expect_mapping(entry["by_op"], f"{at}.by_op").items()
                },
                communication={
                    op: _traffic(raw_traffic, f"{at}.communication[{op!r}]")
                    for op, raw_traffic in expect_mapping(
                        entry.get("communication", {}), f"{at}.communication"
                    ).items()
                },
            )
        if GLOBAL not in modules:
            raise SnapshotFormatError(f"{where}: modules has no {GLOBAL!r} entry")
        unsupported = {
            op: expect_count(v, f"{where}: unsupported[{op!r}]")
            for op, v in expect_mapping(obj["unsupported"], f"{where}: unsupported").items()
        }
        world = obj.get("world")
        measurement = cls(
            modules=modules,
            unsupported=unsupported,
            world=None if world is None else World.from_dict(world, where=f"{where}: world"),
        )
        for key in ("total", "forward", "backward", "bytes_accessed"):
            if key not in obj:
                continue  # bytes_accessed: before version 3
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
    unit: str = "FLOP"  # or, for a communication op, "bytes" or "calls"

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


_OPTIONAL_ROW_KEYS = frozenset({"communication", "bytes", "flops_by_precision"})

_UNIT_ORDER = {"FLOP": 0, BYTES_ACCESSED: 1}  # then communication's bytes and calls


def _module_dict(counts: ModuleFlops) -> dict[str, Any]:
    data: dict[str, Any] = {
        "forward": counts.forward,
        "backward": counts.backward,
        "by_op": dict(sorted(counts.by_op.items())),
    }
    if counts.communication:
        data["communication"] = {
            op: {"calls": traffic.calls, "bytes": traffic.bytes}
            for op, traffic in sorted(counts.communication.items())
        }
    data["bytes"] = {
        "forward": counts.bytes_forward,
        "backward": counts.bytes_backward,
        "by_op": dict(sorted(counts.bytes_by_op.items())),
    }
    if counts.flops_by_precision:
        data["flops_by_precision"] = {
            op: dict(sorted(precisions.items()))
            for op, precisions in sorted(counts.flops_by_precision.items())
        }
    return data


def _bytes_fields(entry: Mapping[str, Any], at: str) -> dict[str, Any]:
    """A row's ``bytes`` and ``flops_by_precision`` as :class:`ModuleFlops` keywords;
    none before version 3."""
    fields: dict[str, Any] = {}
    if "flops_by_precision" in entry:
        where = f"{at}.flops_by_precision"
        fields["flops_by_precision"] = {
            op: {
                precision: expect_count(v, f"{where}[{op!r}][{precision!r}]")
                for precision, v in expect_mapping(precisions, f"{where}[{op!r}]").items()
            }
            for op, precisions in expect_mapping(entry["flops_by_precision"], where).items()
        }
    if "bytes" not in entry:
        return fields
    where = f"{at}.bytes"
    obj = expect_mapping(entry["bytes"], where)
    expect_keys(obj, {"forward", "backward", "by_op"}, where)
    return {
        **fields,
        "bytes_forward": expect_count(obj["forward"], f"{where}.forward"),
        "bytes_backward": expect_count(obj["backward"], f"{where}.backward"),
        "bytes_by_op": {
            op: expect_count(v, f"{where}.by_op[{op!r}]")
            for op, v in expect_mapping(obj["by_op"], f"{where}.by_op").items()
        },
    }


def _traffic(data: object, where: str) -> Traffic:
    obj = expect_mapping(data, where)
    expect_keys(obj, {"calls", "bytes"}, where)
    return Traffic(
        calls=expect_count(obj["calls"], f"{where}.calls"),
        bytes=expect_count(obj["bytes"], f"{where}.bytes"),
    )


def _summed(a: Mapping[str, Any], b: Mapping[str, Any], zero: Any) -> dict[str, Any]:
    summed = dict(a)
    for key, value in b.items():
        summed[key] = summed.get(key, zero) + value
    return summed


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
