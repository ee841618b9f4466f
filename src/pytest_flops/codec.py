"""A :class:`~pytest_flops.Measurement`'s dict form: JSON-ready, byte-stable, checked on read.

Snapshots, records and exports all store a measurement through these two
functions. Communication (per module row), recompute (at the top and per
module row) and the world appear only where there are some, so a
single-device measurement without checkpoints reads as it always did.
Bytes accessed (a ``bytes`` entry per row and ``bytes_accessed`` at the top)
appear when they were recorded: a dict without them (snapshot format 3 and
older) reads as a measurement whose bytes are not known.
"""

from __future__ import annotations

from typing import Any

from pytest_flops.measurement import GLOBAL, Measurement, ModuleFlops, Traffic, World
from pytest_flops.roofline import PRECISIONS
from pytest_flops.validation import SnapshotFormatError, expect_count, expect_keys, expect_mapping

__all__ = ["measurement_dict", "measurement_from_dict", "world_from_dict"]

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
