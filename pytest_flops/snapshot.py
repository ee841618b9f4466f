"""Where FLOP snapshots live and what is in them: our syrupy extension.

One file per test, ``<test dir>/__flops__/<test module>/<test name>.flops.json``::

    {
      "version": 1,
      "test": "TestModel::test_forward[cpu]",
      "depth": 3,
      "measurements": {
        "default": {"total": ..., "forward": ..., "backward": ..., "modules": ..., ...}
      }
    }

The directory is not syrupy's ``__snapshots__``: syrupy's unused-snapshot scan
and ``--snapshot-update`` only look there, so they never see, report or delete
these files, and the plugin session (not syrupy's) decides when to read, write
and remove them. The format is JSON with a fixed key order, exact integers and
a trailing newline, so a file is byte-identical for identical counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syrupy.data import Snapshot, SnapshotCollection
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode
from syrupy.location import PyTestLocation

from pytest_flops.measurement import (
    Measurement,
    SnapshotFormatError,
    _expect_count,
    _expect_keys,
    _expect_mapping,
)

FORMAT_VERSION = 1
SNAPSHOT_DIRNAME = "__flops__"
FILE_SUFFIX = ".flops.json"

# Characters kept as they are in a file name; anything else makes the name get a hash.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.,=+\-]")
_MAX_STEM = 120


@dataclass(frozen=True, kw_only=True)
class FlopsSnapshot:
    """The stored counts of one test: one :class:`Measurement` per measurement name."""

    test: str  # the test's name inside its module, e.g. "TestModel::test_forward[cpu]"
    depth: int  # module rows deeper than this were left out
    measurements: Mapping[str, Measurement]

    def to_text(self) -> str:
        data = {
            "version": FORMAT_VERSION,
            "test": self.test,
            "depth": self.depth,
            "measurements": {
                name: self.measurements[name].to_dict() for name in sorted(self.measurements)
            },
        }
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_text(cls, text: str, *, where: str) -> FlopsSnapshot:
        """Parse :meth:`to_text` output; errors name ``where`` and what is wrong."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as error:
            # JSONDecodeError, and what json passes through: an integer longer than
            # Python converts (ValueError), nesting deeper than the recursion limit
            raise SnapshotFormatError(f"{where}: not valid JSON ({error})") from None
        data = _expect_mapping(data, where)
        version = data.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise SnapshotFormatError(
                f"{where}: snapshot format version {version} is newer than this pytest-flops "
                f"reads (version {FORMAT_VERSION}); upgrade pytest-flops"
            )
        if type(version) is not int or version != FORMAT_VERSION:
            raise SnapshotFormatError(
                f"{where}: expected snapshot format version {FORMAT_VERSION}, got {version!r}"
            )
        _expect_keys(data, {"version", "test", "depth", "measurements"}, where)
        test = data["test"]
        if not isinstance(test, str):
            raise SnapshotFormatError(f"{where}: test: expected a string, got {test!r}")
        depth = _expect_count(data["depth"], f"{where}: depth")
        measurements = _expect_mapping(data["measurements"], f"{where}: measurements")
        return cls(
            test=test,
            depth=depth,
            measurements={
                name: Measurement.from_dict(raw, where=f"{where}: measurements[{name!r}]")
                for name, raw in measurements.items()
            },
        )


def name_in_module(nodeid: str) -> str:
    """The part of a node id after the module: ``"TestModel::test_forward[cpu]"``."""
    return nodeid.split("::", 1)[1] if "::" in nodeid else nodeid


def snapshot_stem(test_name: str) -> str:
    """A file name for ``test_name`` that no other test name of the module maps to.

    ``Class::test[id]`` becomes ``Class.test[id]``. When the id holds characters
    that are unsafe in file names (``/``, spaces, unicode, brackets) or the name
    is very long, they are replaced and ``~`` plus a hash of the real name is
    appended, so two ids that sanitize alike still get two files. The real name
    is stored inside the file.
    """
    head, bracket, params = test_name.partition("[")
    head = head.replace("::", ".")  # identifiers hold no dots, so this stays unique
    params = params.removesuffix("]")
    safe_head, safe_params = _UNSAFE.sub("_", head), _UNSAFE.sub("_", params)
    stem = f"{safe_head}[{safe_params}]" if bracket else safe_head
    if (safe_head, safe_params) != (head, params) or len(stem) > _MAX_STEM:
        digest = hashlib.sha256(test_name.encode()).hexdigest()[:10]
        stem = f"{stem[:_MAX_STEM]}~{digest}"
    return stem


def snapshot_dir(module: Path) -> Path:
    """Where the snapshots of the tests in ``module`` (a test file) live."""
    return module.parent / SNAPSHOT_DIRNAME / module.stem


def snapshot_path(module: Path, test_name: str) -> Path:
    return snapshot_dir(module) / f"{snapshot_stem(test_name)}{FILE_SUFFIX}"


def snapshot_files(module: Path) -> list[Path]:
    """The snapshot files stored for ``module``, whether or not their tests exist."""
    directory = snapshot_dir(module)
    return sorted(directory.glob(f"*{FILE_SUFFIX}")) if directory.is_dir() else []


class FlopsSnapshotExtension(SingleFileSnapshotExtension):
    """Stores one :class:`FlopsSnapshot` per test file, atomically.

    Driven by the pytest-flops session, not by syrupy's ``snapshot`` fixture:
    syrupy never learns about these files, and they live outside its
    ``__snapshots__`` directory.
    """

    snapshot_dirname = SNAPSHOT_DIRNAME
    file_extension = FILE_SUFFIX.removeprefix(".")
    _write_mode = WriteMode.TEXT

    def serialize(self, data: Any, **_: Any) -> str:
        if not isinstance(data, FlopsSnapshot):
            raise TypeError(f"expected a FlopsSnapshot, got {type(data).__name__}")
        return data.to_text()

    @classmethod
    def get_location(cls, *, test_location: PyTestLocation, index: Any = 0) -> str:
        return str(
            snapshot_path(Path(test_location.filepath), name_in_module(test_location.nodeid))
        )

    def read(self, location: Path, *, where: str | None = None) -> FlopsSnapshot | None:
        """The snapshot at ``location``; None if there is none.

        Raises :class:`SnapshotFormatError` naming the file (as ``where``, if
        given) when it cannot be read.
        """
        where = str(location) if where is None else where
        try:
            text = self.read_snapshot_data_from_location(
                snapshot_location=str(location), snapshot_name=location.name, session_id=""
            )
        except (OSError, UnicodeDecodeError) as error:
            raise SnapshotFormatError(f"{where}: cannot read the file ({error})") from None
        if text is None:
            return None
        return FlopsSnapshot.from_text(str(text), where=where)

    def write(self, location: Path, snapshot: FlopsSnapshot) -> None:
        collection = SnapshotCollection(location=str(location))
        collection.add(Snapshot(name=location.name, data=self.serialize(snapshot)))
        self.write_snapshot_collection(snapshot_collection=collection)

    def remove(self, location: Path) -> None:
        self.delete_snapshots(snapshot_location=str(location), snapshot_names={location.name})
        # Leave no empty __flops__/<module>/ (or __flops__/) behind.
        for directory in (location.parent, location.parent.parent):
            try:
                directory.rmdir()
            except OSError:
                break

    @classmethod
    def write_snapshot_collection(
        cls, *, snapshot_collection: SnapshotCollection, **_: Any
    ) -> None:
        """Write through a temporary file in the same directory and ``os.replace``.

        A crash or a concurrent reader never sees a half-written snapshot. A
        killed process may leave the hidden ``.<name>.<random>.tmp`` behind;
        nothing reads it (only ``*.flops.json`` files are snapshots).
        """
        location = Path(snapshot_collection.location)
        text = str(next(iter(snapshot_collection)).data)
        location.parent.mkdir(parents=True, exist_ok=True)
        # Created by open() rather than tempfile.mkstemp, so the snapshot gets
        # the umask's permissions like any new file, not mkstemp's 0600.
        temporary = location.with_name(f".{location.name}.{secrets.token_hex(6)}.tmp")
        try:
            with open(temporary, "x", encoding="utf-8", newline="\n") as file:
                file.write(text)
            os.replace(temporary, location)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
