"""The counted data of one measurement, its diff, and its (de)serialization.

A :class:`Measurement` is what a ``with flops(...)`` block (or a whole
:class:`~pytest_flops.FlopCounterMode` session) produced: FLOPs per module path
and operator, split into forward, backward and recompute (forward work an
activation checkpoint re-ran during backward), plus the operators that ran
with no formula. It is immutable and holds plain ``str``/``int`` data only, so
it can be compared, serialized to a snapshot and shipped between xdist workers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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
    """FLOPs counted inside one module path (or ``"Global"`` for everything), and the
    communication ops that ran there.

    ``backward`` is gradient work only; ``recompute`` is the forward work an
    activation checkpoint re-ran during backward.
    """

    forward: int = 0
    backward: int = 0
    by_op: Mapping[str, int] = field(default_factory=dict)
    communication: Mapping[str, Traffic] = field(default_factory=dict)
    recompute: int = 0

    @property
    def total(self) -> int:
        return self.forward + self.backward + self.recompute


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """FLOPs per module and operator, forward/backward/recompute split, and blind spots.

    ``modules`` always holds ``"Global"``; the other keys are module paths such
    as ``"ResNet.layer1"``. ``unsupported`` maps an operator that ran with no
    formula to how many times it ran. ``world`` is the process group it ran in,
    if any: its FLOPs and communication are one rank's.

    ``tokens`` (from ``flops(model, tokens=N)``) and ``parameters`` (of the
    models passed) are what the step processed and with how many weights: the
    report reads FLOPs per token from them. ``notes`` name the conventions a
    count on stand-ins used (``pytest_flops.count``). None of the three is a
    count: snapshots do not store them and ``==`` ignores them.
    """

    modules: Mapping[str, ModuleFlops] = field(default_factory=lambda: {GLOBAL: ModuleFlops()})
    unsupported: Mapping[str, int] = field(default_factory=dict)
    world: World | None = None
    tokens: int | None = field(default=None, compare=False)
    parameters: int | None = field(default=None, compare=False)
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def total(self) -> int:
        return self.modules[GLOBAL].total

    @property
    def forward(self) -> int:
        return self.modules[GLOBAL].forward

    @property
    def backward(self) -> int:
        """Gradient work only: recomputed forward work is :attr:`recompute`."""
        return self.modules[GLOBAL].backward

    @property
    def recompute(self) -> int:
        """Forward work that activation checkpointing re-ran during backward."""
        return self.modules[GLOBAL].recompute

    @property
    def model_flops(self) -> int:
        """Forward plus backward: the FLOPs of the step itself, recompute left out (MFU's)."""
        return self.forward + self.backward

    @property
    def flops_per_token(self) -> float | None:
        """Model FLOPs (recompute left out) per token; None without ``tokens``."""
        return self.model_flops / self.tokens if self.tokens else None

    @property
    def by_op(self) -> dict[str, int]:
        return dict(self.modules[GLOBAL].by_op)

    @property
    def by_module(self) -> dict[str, dict[str, int]]:
        return {path: dict(m.by_op) for path, m in self.modules.items() if path != GLOBAL}

    @property
    def communication(self) -> dict[str, Traffic]:
        """``{"_c10d_functional.all_reduce": Traffic(calls=2, bytes=4096), ...}``"""
        return dict(self.modules[GLOBAL].communication)

    @property
    def communication_bytes(self) -> int:
        return sum(traffic.bytes for traffic in self.modules[GLOBAL].communication.values())

    def truncated(self, depth: int) -> Measurement:
        """Keep module paths at most ``depth`` levels deep (``"A.b"`` is depth 2)."""
        modules = {
            path: counts
            for path, counts in self.modules.items()
            if path == GLOBAL or path.count(".") + 1 <= depth
        }
        return replace(self, modules=modules)

    def without_communication(self) -> Measurement:
        """The same FLOPs, as a snapshot from before communication was recorded holds them."""
        modules = {
            path: ModuleFlops(
                forward=m.forward, backward=m.backward, by_op=m.by_op, recompute=m.recompute
            )
            for path, m in self.modules.items()
        }
        return replace(self, modules=modules, world=None)

    def with_recompute_in_backward(self) -> Measurement:
        """The same FLOPs, as a snapshot from before recompute was its own phase holds them."""
        modules = {
            path: replace(m, backward=m.backward + m.recompute, recompute=0)
            for path, m in self.modules.items()
        }
        return replace(self, modules=modules)

    def __add__(self, other: Measurement) -> Measurement:
        """Both counts, row by row; both must come from the same world (or none)."""
        if self.world is not None and other.world is not None and self.world != other.world:
            raise ValueError(
                f"cannot add measurements of two worlds ({self.world} and {other.world}): "
                "measure each under a name of its own"
            )
        modules: dict[str, ModuleFlops] = dict(self.modules)
        for path, theirs in other.modules.items():
            mine = modules.get(path, ModuleFlops())
            modules[path] = ModuleFlops(
                forward=mine.forward + theirs.forward,
                backward=mine.backward + theirs.backward,
                by_op=_summed(mine.by_op, theirs.by_op, 0),
                communication=_summed(mine.communication, theirs.communication, Traffic()),
                recompute=mine.recompute + theirs.recompute,
            )
        return Measurement(
            modules=modules,
            unsupported=_summed(self.unsupported, other.unsupported, 0),
            world=self.world or other.world,
            tokens=_summed_tokens(self.tokens, other.tokens),
            parameters=_same_parameters(self.parameters, other.parameters),
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
        rows.sort(
            key=lambda row: (row.unit != "FLOP", -abs(row.delta), module_order(row.module), row.op)
        )
        return MeasurementDiff(rows=tuple(rows))

    # -- (de)serialization ----------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with deterministic key order and exact integers.

        Communication (per module row), recompute (at the top and per module
        row) and the world appear only where there are some, so a single-device
        measurement without checkpoints reads as it always did. ``tokens`` and
        ``parameters`` are not counts and are left out: records carry them.
        """
        data: dict[str, Any] = {
            "total": self.total,
            "forward": self.forward,
            "backward": self.backward,
            **({"recompute": self.recompute} if self.recompute else {}),
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
            optional=frozenset({"world"}) | _RECOMPUTE_KEY,
        )
        modules: dict[str, ModuleFlops] = {}
        for path, raw in expect_mapping(obj["modules"], f"{where}: modules").items():
            at = f"{where}: modules[{path!r}]"
            entry = expect_mapping(raw, at)
            expect_keys(
                entry, {"forward", "backward", "by_op"}, at, optional=_TRAFFIC_KEY | _RECOMPUTE_KEY
            )
            modules[path] = ModuleFlops(
                forward=expect_count(entry["forward"], f"{at}.forward"),
                backward=expect_count(entry["backward"], f"{at}.backward"),
                recompute=expect_count(entry.get("recompute", 0), f"{at}.recompute"),
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
        for key in ("total", "forward", "backward", "recompute"):
            stored = expect_count(obj.get(key, 0), f"{where}: {key}")
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


_TRAFFIC_KEY = frozenset({"communication"})
_RECOMPUTE_KEY = frozenset({"recompute"})


def _module_dict(counts: ModuleFlops) -> dict[str, Any]:
    data: dict[str, Any] = {
        "forward": counts.forward,
        "backward": counts.backward,
        **({"recompute": counts.recompute} if counts.recompute else {}),
        "by_op": dict(sorted(counts.by_op.items())),
    }
    if counts.communication:
        data["communication"] = {
            op: {"calls": traffic.calls, "bytes": traffic.bytes}
            for op, traffic in sorted(counts.communication.items())
        }
    return data


def _traffic(data: object, where: str) -> Traffic:
    obj = expect_mapping(data, where)
    expect_keys(obj, {"calls", "bytes"}, where)
    return Traffic(
        calls=expect_count(obj["calls"], f"{where}.calls"),
        bytes=expect_count(obj["bytes"], f"{where}.bytes"),
    )


def _summed_tokens(a: int | None, b: int | None) -> int | None:
    """The tokens of the blocks that gave them; None if none did."""
    return None if a is None and b is None else (a or 0) + (b or 0)


def _same_parameters(a: int | None, b: int | None) -> int | None:
    """The parameter count both agree on (or the one given); None if they differ."""
    if a is None or b is None:
        return a if b is None else b
    return a if a == b else None


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
