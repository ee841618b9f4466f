"""Reading stored data: every error says where it was read from and what is wrong.

Snapshot files, xdist payloads and JSON exports are read through these checks,
so a hand-edited or damaged file fails with its path in the message instead of
a ``KeyError`` or ``TypeError`` from deep inside the plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SnapshotFormatError(ValueError):
    """Stored data could not be read; the message says where and why."""


class NewerSnapshotFormatError(SnapshotFormatError):
    """Stored data of a format newer than this pytest-flops reads: valid, and not ours to
    overwrite, so ``--flops-update`` leaves it as it is."""


def expect_mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise SnapshotFormatError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def expect_keys(
    obj: Mapping[str, Any], keys: set[str], where: str, *, optional: frozenset[str] = frozenset()
) -> None:
    missing = sorted(keys - obj.keys())
    if missing:
        raise SnapshotFormatError(f"{where}: missing key(s) {', '.join(missing)}")
    unknown = sorted(obj.keys() - keys - optional)
    if unknown:
        raise SnapshotFormatError(f"{where}: unknown key(s) {', '.join(unknown)}")


def expect_count(value: object, where: str) -> int:
    """A non-negative integer (never a bool, which JSON keeps apart)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SnapshotFormatError(
            f"{where}: expected a non-negative integer, got {type(value).__name__} {value!r}"
        )
    if value < 0:
        raise SnapshotFormatError(f"{where}: expected a non-negative integer, got {value}")
    return value


def expect_string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise SnapshotFormatError(f"{where}: expected a string, got {value!r}")
    return value
