"""The snapshot file format: one test's stored counts as versioned, byte-stable JSON.

::

    {
      "version": 4,
      "test": "TestModel::test_forward[cpu]",
      "depth": 3,
      "measurements": {
        "default": {"total": ..., "forward": ..., "backward": ..., "modules": ..., ...}
      }
    }

JSON with a fixed key order, exact integers and a trailing newline: identical
counts give identical bytes. Where the files live is :mod:`pytest_flops.snapshots.store`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pytest_flops.measurement import Measurement
from pytest_flops.portable import portable
from pytest_flops.validation import (
    NewerSnapshotFormatError,
    SnapshotFormatError,
    expect_count,
    expect_keys,
    expect_mapping,
    expect_string,
)

FORMAT_VERSION = 4
"""Written: version 2 added communication per module row and the world; version 3 made
recompute (forward work re-run by activation checkpoints) a phase of its own; version 4
added the bytes accessed per module row (and each op's FLOPs by precision). Older files
are read too: their communication (1) is "not recorded", which is not a change, their
backward (1, 2) holds recompute, and their bytes (1, 2, 3) are not recorded: they
compare on FLOPs until ``--flops-update`` rewrites them."""

READ_VERSIONS = frozenset({1, 2, 3, FORMAT_VERSION})

__all__ = ["FORMAT_VERSION", "FlopsSnapshot"]


@dataclass(frozen=True, kw_only=True)
class FlopsSnapshot:
    """The stored counts of one test: one :class:`Measurement` per measurement name."""

    test: str  # the test's name inside its file, e.g. "TestModel::test_forward[cpu]"
    depth: int  # module rows deeper than this were left out
    measurements: Mapping[str, Measurement]
    version: int = FORMAT_VERSION  # of the file it was read from

    @property
    def records_communication(self) -> bool:
        return self.version >= 2

    @property
    def records_recompute(self) -> bool:
        return self.version >= 3

    def at_depth(self, depth: int) -> FlopsSnapshot:
        """The same counts with module rows deeper than ``depth`` left out."""
        return FlopsSnapshot(
            test=self.test,
            depth=min(depth, self.depth),
            measurements={name: m.truncated(depth) for name, m in self.measurements.items()},
            version=self.version,
        )

    def without_communication(self) -> FlopsSnapshot:
        """The same counts as a file from before communication was recorded holds them."""
        return FlopsSnapshot(
            test=self.test,
            depth=self.depth,
            measurements={name: m.without_communication() for name, m in self.measurements.items()},
            version=self.version,
        )

    def with_portable_names(self) -> FlopsSnapshot:
        """The same counts with backend kernels under their portable names (a file
        written before they were portable holds the backend's)."""
        return replace(
            self, measurements={name: portable(m) for name, m in self.measurements.items()}
        )

    def with_recompute_in_backward(self) -> FlopsSnapshot:
        """The same counts as a file from before recompute was a phase holds them."""
        return FlopsSnapshot(
            test=self.test,
            depth=self.depth,
            measurements={
                name: m.with_recompute_in_backward() for name, m in self.measurements.items()
            },
            version=self.version,
        )

    def missing_bytes_of(self, measured: FlopsSnapshot) -> frozenset[str]:
        """The measurements whose bytes ``measured`` counted and this snapshot does not
        hold: written before bytes were stored (format 3 or older, or kept from such a
        file), or with the bytes keys deleted. They compare on FLOPs alone."""
        return frozenset(
            name
            for name, measurement in measured.measurements.items()
            if name in self.measurements
            and measurement.bytes_recorded
            and not self.measurements[name].bytes_recorded
        )

    def without_bytes(self, names: Collection[str]) -> FlopsSnapshot:
        """The same counts with the bytes of the measurements ``names`` not recorded."""
        return replace(
            self,
            measurements={
                name: m.without_bytes() if name in names else m
                for name, m in self.measurements.items()
            },
        )

    def to_text(self) -> str:
        return document_text(
            {"test": self.test, "depth": self.depth}, measurements=self.measurements
        )

    @classmethod
    def from_text(cls, text: str, *, where: str) -> FlopsSnapshot:
        """Parse :meth:`to_text` output; errors name ``where`` and what is wrong."""
        data, measurements = read_document(text, keys={"test", "depth"}, where=where)
        return cls(
            test=expect_string(data["test"], f"{where}: test"),
            depth=expect_count(data["depth"], f"{where}: depth"),
            measurements=measurements,
            version=data["version"],
        )


def document_text(fields: Mapping[str, Any], *, measurements: Mapping[str, Measurement]) -> str:
    """A versioned JSON document of ``fields`` and named measurements, byte-stable."""
    data = {
        "version": FORMAT_VERSION,
        **fields,
        "measurements": {name: measurements[name].to_dict() for name in sorted(measurements)},
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def read_document(
    text: str, *, keys: set[str], where: str
) -> tuple[Mapping[str, Any], dict[str, Measurement]]:
    """Parse :func:`document_text` output with these ``keys`` beside version and measurements."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        # JSONDecodeError, and what json passes through: an integer longer than
        # Python converts (ValueError), nesting deeper than the recursion limit
        raise SnapshotFormatError(f"{where}: not valid JSON ({error})") from None
    data = expect_mapping(data, where)
    version = data.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise NewerSnapshotFormatError(
            f"{where}: snapshot format version {version} is newer than this pytest-flops "
            f"reads (version {FORMAT_VERSION}); upgrade pytest-flops"
        )
    if type(version) is not int or version not in READ_VERSIONS:
        raise SnapshotFormatError(
            f"{where}: expected snapshot format version {FORMAT_VERSION}, got {version!r}"
        )
    expect_keys(data, {"version", "measurements", *keys}, where)
    measurements = expect_mapping(data["measurements"], f"{where}: measurements")
    parsed = {
        name: Measurement.from_dict(raw, where=f"{where}: measurements[{name!r}]")
        for name, raw in measurements.items()
    }
    for name, measurement in parsed.items():
        _expect_of_version(measurement, version, f"{where}: measurements[{name!r}]")
    return data, parsed


_INTRODUCED = (
    (2, "communication or a world", lambda m: bool(m.world or m.communication)),
    (3, "recompute", lambda m: any(row.recompute for row in m.modules.values())),
    (4, "bytes accessed", lambda m: m.bytes_recorded),
    (4, "FLOPs by precision", lambda m: any(row.flops_by_precision for row in m.modules.values())),
)
"""What each version added: an older file holding it had its version edited, and read
as that version would compare less than it holds (no communication before 2...)."""


def _expect_of_version(measurement: Measurement, version: int, where: str) -> None:
    for introduced, what, holds in _INTRODUCED:
        if version < introduced and holds(measurement):
            raise SnapshotFormatError(
                f"{where}: holds {what}, which format version {introduced} introduced, "
                f"but the file says version {version}: was its version edited?"
            )


def comparable(
    before: FlopsSnapshot, after: FlopsSnapshot, *, bytes_compared: bool = True
) -> tuple[FlopsSnapshot, FlopsSnapshot]:
    """Both as one comparison sees them: at the shallower depth, without communication when
    either file recorded none, with recompute in backward when either file's backward
    held it, and without the bytes of a measurement whose bytes either side did not
    record (or of every one, unless ``bytes_compared``). The plugin's verdict and
    ``python -m pytest_flops diff`` compare through this."""
    depth = min(before.depth, after.depth)
    before, after = before.with_portable_names(), after.with_portable_names()
    if not (before.records_communication and after.records_communication):
        before, after = before.without_communication(), after.without_communication()
    if not (before.records_recompute and after.records_recompute):
        before, after = before.with_recompute_in_backward(), after.with_recompute_in_backward()
    unrecorded = {
        name
        for snapshot in (before, after)
        for name, measurement in snapshot.measurements.items()
        if not (bytes_compared and measurement.bytes_recorded)
    }
    before, after = before.without_bytes(unrecorded), after.without_bytes(unrecorded)
    return before.at_depth(depth), after.at_depth(depth)
