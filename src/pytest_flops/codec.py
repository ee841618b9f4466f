"""A :class:`~pytest_flops.Measurement`'s two flat forms: its dict and its numbers.

The dict is JSON-ready, byte-stable and checked on read. The numbers are every
count keyed by module row, operator and unit, so that two measurements line up:
:meth:`~pytest_flops.Measurement.diff`, the gate, the failures and every report
compare them, and nothing else.

Snapshots, records and exports all store a measurement through these two
functions. Communication (per module row), recompute (at the top and per
module row) and the world appear only where there are some, so a
single-device measurement without checkpoints reads as it always did.
Bytes accessed (a ``bytes`` entry per row and ``bytes_accessed`` at the top)
appear when they were recorded: a dict without them (snapshot format 3 and
older) reads as a measurement whose bytes are not known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from pytest_flops.measurement import (
    BYTES_ACCESSED,
    BYTES_PER_PHASE,
    CALLS,
    COMMUNICATED,
    FLOP,
    FLOP_PER_PHASE,
    GLOBAL,
    UNSUPPORTED_CALLS,
    WORLD,
    DiffRow,
    Measurement,
    MeasurementDiff,
    ModuleFlops,
    Traffic,
    World,
    is_precision,
    module_order,
    precision_unit,
)
from pytest_flops.roofline import PRECISIONS
from pytest_flops.validation import SnapshotFormatError, expect_count, expect_keys, expect_mapping

__all__ = [
    "Number", "Tolerance", "measurement_dict", "measurement_from_dict", "moved_numbers",
    "numbers", "own_numbers", "world_from_dict",
]  # fmt: skip

_TOP_KEYS = frozenset({"total", "forward", "backward", "modules", "unsupported"})
_TOP_OPTIONAL = frozenset({"world", "recompute", "bytes_accessed"})
_ROW_KEYS = frozenset({"forward", "backward", "by_op"})
_ROW_OPTIONAL = frozenset({"communication", "recompute", "bytes", "flops_by_precision"})


def measurement_dict(measurement: Measurement) -> dict[str, Any]:
    """``measurement`` as a dict with deterministic key order and exact integers.

    ``tokens`` and ``parameters`` are not counts and are left out: records carry them.
    """
    recorded = measurement.bytes_recorded
    data: dict[str, Any] = {
        "total": measurement.total,
        "forward": measurement.forward,
        "backward": measurement.backward,
        **({"recompute": measurement.recompute} if measurement.recompute else {}),
        **({"bytes_accessed": measurement.bytes_accessed} if recorded else {}),
        "modules": {
            path: _module_dict(counts, recorded)
            for path, counts in sorted(measurement.modules.items(), key=_module_sort_key)
        },
        "unsupported": dict(sorted(measurement.unsupported.items())),
    }
    world = measurement.world
    if world is not None:
        data["world"] = world.to_dict()
    return data


def measurement_from_dict(data: object, *, where: str) -> Measurement:
    """Parse :func:`measurement_dict` output; ``where`` names the source in errors."""
    obj = expect_mapping(data, where)
    expect_keys(obj, set(_TOP_KEYS), where, optional=_TOP_OPTIONAL)
    recorded = "bytes_accessed" in obj
    modules = {
        path: _module_from_dict(raw, f"{where}: modules[{path!r}]", recorded)
        for path, raw in expect_mapping(obj["modules"], f"{where}: modules").items()
    }
    if GLOBAL not in modules:
        raise SnapshotFormatError(f"{where}: modules has no {GLOBAL!r} entry")
    unsupported = {
        op: expect_count(v, f"{where}: unsupported[{op!r}]")
        for op, v in expect_mapping(obj["unsupported"], f"{where}: unsupported").items()
    }
    world = obj.get("world")
    measurement = Measurement(
        modules=modules,
        unsupported=unsupported,
        world=None if world is None else world_from_dict(world, where=f"{where}: world"),
        bytes_recorded=recorded,
    )
    for key in ("total", "forward", "backward", "recompute", "bytes_accessed"):
        stored = expect_count(obj.get(key, 0), f"{where}: {key}")
        if stored != getattr(measurement, key):
            raise SnapshotFormatError(
                f"{where}: {key} is {stored} but the Global module row says "
                f"{getattr(measurement, key)}"
            )
    return measurement


def _module_dict(counts: ModuleFlops, bytes_recorded: bool) -> dict[str, Any]:
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
    if bytes_recorded:
        data["bytes"] = {
            "forward": counts.bytes_forward,
            "backward": counts.bytes_backward,
            **({"recompute": counts.bytes_recompute} if counts.bytes_recompute else {}),
            "by_op": dict(sorted(counts.bytes_by_op.items())),
        }
    if counts.flops_by_precision:
        data["flops_by_precision"] = {
            op: dict(sorted(precisions.items()))
            for op, precisions in sorted(counts.flops_by_precision.items())
        }
    return data


def _module_from_dict(raw: object, at: str, bytes_recorded: bool) -> ModuleFlops:
    entry = expect_mapping(raw, at)
    expect_keys(entry, set(_ROW_KEYS), at, optional=_ROW_OPTIONAL)
    if ("bytes" in entry) != bytes_recorded:
        raise SnapshotFormatError(
            f"{at}: bytes must be in every module row when bytes_accessed is stored, "
            "and in none when it is not"
        )
    row = ModuleFlops(
        forward=expect_count(entry["forward"], f"{at}.forward"),
        backward=expect_count(entry["backward"], f"{at}.backward"),
        recompute=expect_count(entry.get("recompute", 0), f"{at}.recompute"),
        by_op=_counts(entry["by_op"], f"{at}.by_op"),
        communication={
            op: _traffic(raw_traffic, f"{at}.communication[{op!r}]")
            for op, raw_traffic in expect_mapping(
                entry.get("communication", {}), f"{at}.communication"
            ).items()
        },
        flops_by_precision={
            op: _counts(precisions, f"{at}.flops_by_precision[{op!r}]")
            for op, precisions in expect_mapping(
                entry.get("flops_by_precision", {}), f"{at}.flops_by_precision"
            ).items()
        },
        **(_bytes_fields(entry["bytes"], f"{at}.bytes") if bytes_recorded else {}),
    )
    _check_sums(row, at)
    return row


def _check_sums(row: ModuleFlops, at: str) -> None:
    """A row's parts add up as the counter wrote them: a hand edit (a conflict resolved
    on one number) is named as such, not compared as a change of counts."""
    sums = [
        ("forward + backward + recompute", row.total, "by_op", sum(row.by_op.values())),
        ("bytes forward + backward + recompute", row.bytes_accessed, "bytes.by_op",
         sum(row.bytes_by_op.values())),
    ]  # fmt: skip
    sums += [
        (f"by_op[{op!r}]", row.by_op.get(op, 0), f"flops_by_precision[{op!r}]", sum(split.values()))
        for op, split in row.flops_by_precision.items()
    ]
    for what, stated, parts, summed in sums:
        if stated != summed:
            raise SnapshotFormatError(
                f"{at}: {what} is {stated:,} but its {parts} add up to {summed:,}: "
                "the file was edited by hand?"
            )
    for op, by_precision in row.flops_by_precision.items():
        unknown = sorted(set(by_precision) - set(PRECISIONS))
        if unknown:
            raise SnapshotFormatError(
                f"{at}.flops_by_precision[{op!r}]: unknown precision {unknown[0]!r}; "
                f"expected one of {', '.join(PRECISIONS)}"
            )


def _bytes_fields(data: object, where: str) -> dict[str, Any]:
    """A row's ``bytes`` entry as :class:`ModuleFlops` keywords."""
    obj = expect_mapping(data, where)
    expect_keys(obj, {"forward", "backward", "by_op"}, where, optional=frozenset({"recompute"}))
    return {
        "bytes_forward": expect_count(obj["forward"], f"{where}.forward"),
        "bytes_backward": expect_count(obj["backward"], f"{where}.backward"),
        "bytes_recompute": expect_count(obj.get("recompute", 0), f"{where}.recompute"),
        "bytes_by_op": _counts(obj["by_op"], f"{where}.by_op"),
    }


def _counts(data: object, where: str) -> dict[str, int]:
    return {
        key: expect_count(v, f"{where}[{key!r}]") for key, v in expect_mapping(data, where).items()
    }


def world_from_dict(data: object, *, where: str) -> World:
    obj = expect_mapping(data, where)
    expect_keys(obj, {"rank", "size", "mesh"}, where)
    return World(
        rank=expect_count(obj["rank"], f"{where}.rank"),
        size=expect_count(obj["size"], f"{where}.size"),
        mesh=_counts(obj["mesh"], f"{where}.mesh"),
    )


def _traffic(data: object, where: str) -> Traffic:
    obj = expect_mapping(data, where)
    expect_keys(obj, {"calls", "bytes"}, where)
    return Traffic(
        calls=expect_count(obj["calls"], f"{where}.calls"),
        bytes=expect_count(obj["bytes"], f"{where}.bytes"),
    )


def _module_sort_key(item: tuple[str, ModuleFlops]) -> tuple[int, str]:
    path = item[0]
    return (0, "") if path == GLOBAL else (1, path)


# -- the numbers --------------------------------------------------------------------------


class Number(NamedTuple):
    """Where one number of a measurement is: its module row ("" for the calls with no
    formula and the world), its operator (or phase, or part of the world) and its unit."""

    module: str
    op: str
    unit: str


def numbers(measurement: Measurement, *, with_bytes: bool = True) -> dict[Number, int]:
    """Every number of ``measurement``: per module row its FLOPs per phase and per op and
    its collectives' bytes and calls, and (``with_bytes``, where recorded) its bytes
    accessed per phase and per op and its ops' FLOPs per precision, which are stored with
    the bytes; then the calls with no formula and the world."""
    found: dict[Number, int] = {}
    for path, row in measurement.modules.items():
        phases = {"forward": row.forward, "backward": row.backward, "recompute": row.recompute}
        found |= {Number(path, phase, FLOP_PER_PHASE): n for phase, n in phases.items()}
        found |= {Number(path, op, FLOP): flops for op, flops in row.by_op.items()}
        for op, traffic in row.communication.items():
            found[Number(path, op, COMMUNICATED)] = traffic.bytes
            found[Number(path, op, CALLS)] = traffic.calls
        if with_bytes and measurement.bytes_recorded:
            phases = {
                "forward": row.bytes_forward,
                "backward": row.bytes_backward,
                "recompute": row.bytes_recompute,
            }
            found |= {Number(path, phase, BYTES_PER_PHASE): n for phase, n in phases.items()}
            found |= {Number(path, op, BYTES_ACCESSED): n for op, n in row.bytes_by_op.items()}
            found |= {
                Number(path, op, precision_unit(precision)): flops
                for op, precisions in row.flops_by_precision.items()
                for precision, flops in precisions.items()
            }
    found |= {Number("", op, UNSUPPORTED_CALLS): n for op, n in measurement.unsupported.items()}
    world = measurement.world
    if world is not None:
        found[Number("", "rank", WORLD)] = world.rank
        found[Number("", "size", WORLD)] = world.size
        found |= {Number("", f"mesh {dim}", WORLD): size for dim, size in world.mesh.items()}
    return found


def own_numbers(found: Mapping[Number, int]) -> dict[Number, int]:
    """Each module row's numbers minus those of the rows right under it, where a change
    starts (a row's parent is its longest prefix that is a row, the top rows' Global).
    An own count of 0 is left out where the rows under it hold the number: they ran it."""
    rows = {key.module for key in found if key.module}
    under: dict[Number, int] = {}
    for key, number in found.items():
        if key.module and key.module != GLOBAL:
            above = key._replace(module=_parent(key.module, rows))
            under[above] = under.get(above, 0) + number
    own: dict[Number, int] = {}
    for key in dict.fromkeys([*found, *under]):
        number = found.get(key, 0) - under.get(key, 0)
        if number or key not in under:
            own[key] = number
    return own


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    """How far a number may move relative to the baseline's: FLOPs (per op, phase and
    precision) by ``flops``, bytes (accessed and communicated) by ``bytes``; calls and
    the world not at all. A number only one side has (an op that ran, a rank) is a
    change whatever the tolerance (a row's phases are on both sides, if 0)."""

    flops: float = 0.0
    bytes: float = 0.0

    def allows(self, unit: str, before: int, after: int) -> bool:
        if unit in _FLOP_UNITS or is_precision(unit):
            rtol = self.flops
        else:
            rtol = self.bytes if unit in _BYTE_UNITS else 0.0
        return abs(after - before) <= rtol * before


def moved_numbers(
    before: Mapping[Number, int], after: Mapping[Number, int], *, tolerance: Tolerance
) -> MeasurementDiff:
    """The numbers that moved (beyond ``tolerance``) from ``before`` to ``after``."""
    rows = [
        DiffRow(module=key.module, op=key.op, unit=key.unit, before=old, after=new)
        for key in dict.fromkeys([*before, *after])
        if not tolerance.allows(key.unit, old := before.get(key, 0), new := after.get(key, 0))
        or ((key in before) != (key in after) and key.unit not in _PHASE_UNITS)
    ]
    rows.sort(
        key=lambda row: (
            _UNIT_ORDER.get(row.unit, len(_UNIT_ORDER)),
            -abs(row.delta),
            module_order(row.module),
            row.op,
            row.unit,
        )
    )
    return MeasurementDiff(moved=tuple(rows))


_UNIT_ORDER = {FLOP: 0, BYTES_ACCESSED: 1}  # then the others
_FLOP_UNITS = frozenset({FLOP, FLOP_PER_PHASE})  # and the FLOPs at a precision
_BYTE_UNITS = frozenset({BYTES_ACCESSED, BYTES_PER_PHASE, COMMUNICATED})
_PHASE_UNITS = frozenset({FLOP_PER_PHASE, BYTES_PER_PHASE})


def _parent(path: str, rows: set[str]) -> str:
    """The nearest row above ``path``: ``"A.b"`` for ``"A.b.c"``, Global for a top row."""
    while "." in path:
        path = path.rpartition(".")[0]
        if path in rows:
            return path
    return GLOBAL
