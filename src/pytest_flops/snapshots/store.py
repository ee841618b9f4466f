"""Where snapshot files live, and how they are read, written and removed.

One file per test, next to its test file::

    tests/__flops__/test_models.py/test_resnet18_train_step.flops.json
    tests/__flops__/test_models.py/TestLM.test_generate~5d1c0a6e2b.flops.json

The directory is named after the whole test file name, so ``test_model.py``
and a ``test_model.txt`` doctest file never share one. It is not syrupy's
``__snapshots__``: syrupy's unused-snapshot scan and ``--snapshot-update``
never see these files, and the pytest-flops session alone decides when to
read, write and remove them. This module is plain Python (no syrupy): files
are written atomically, through a temporary file and a rename.

Before version 0.2 the directory was named after the file's stem
(``__flops__/test_models/``) and test names with capitals got no hash:
:func:`legacy_snapshot_path` finds those files, which are read as baselines
and copied to the current layout by ``--flops-update`` (``--flops-prune``
removes the old copies).

A snapshot file that is a symbolic link is written through: the file it
points to gets the new text, and the link stays.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_flops.validation import SnapshotFormatError

if TYPE_CHECKING:
    from pytest_flops.snapshots.format import FlopsSnapshot

SNAPSHOT_DIRNAME = "__flops__"
FILE_SUFFIX = ".flops.json"

# Characters kept as they are in a file name; anything else makes the name get a hash.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.,=+\-]")
_MAX_STEM = 120


def snapshot_stem(test_name: str) -> str:
    """A file name for ``test_name`` that no other test name of its file maps to.

    ``Class::test[id]`` becomes ``Class.test[id]``. When the name holds
    characters that are unsafe in file names (``/``, spaces, unicode,
    brackets), capitals, or is very long, they are replaced and ``~`` plus a
    hash of the real name is appended: two ids that sanitize alike still get
    two files, also on a case-insensitive file system (macOS, Windows), where
    ``test_p[A]`` and ``test_p[a]`` would otherwise be one file. The real
    name is stored inside the file.
    """
    return _stem(test_name, hash_capitals=True)


def snapshot_path(test_file: Path, test_name: str) -> Path:
    return snapshot_dir(test_file) / f"{snapshot_stem(test_name)}{FILE_SUFFIX}"


def snapshot_dir(test_file: Path) -> Path:
    """Where the snapshots of the tests in ``test_file`` live."""
    return test_file.parent / SNAPSHOT_DIRNAME / test_file.name


def legacy_snapshot_path(test_file: Path, test_name: str) -> Path:
    """Where pytest-flops before 0.2 stored the snapshot of ``test_name``."""
    return legacy_snapshot_dir(test_file) / f"{_stem(test_name, hash_capitals=False)}{FILE_SUFFIX}"


def legacy_snapshot_dir(test_file: Path) -> Path:
    return test_file.parent / SNAPSHOT_DIRNAME / test_file.stem


def has_legacy_dir(test_file: Path) -> bool:
    """Whether the layout before 0.2 kept the file's snapshots in another folder: it named
    the folder after the file's stem, which only a file name without a dot is whole."""
    return legacy_snapshot_dir(test_file) != snapshot_dir(test_file)


def snapshot_files(directory: Path) -> list[Path]:
    """The snapshot files in ``directory``, whether or not their tests exist."""
    return sorted(directory.glob(f"*{FILE_SUFFIX}")) if directory.is_dir() else []


def stored_test_name(location: Path) -> str | None:
    """The name of the test whose snapshot ``location`` holds; None if it cannot be read."""
    try:
        data = json.loads(location.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    test = data.get("test") if isinstance(data, dict) else None
    return test if isinstance(test, str) else None


def doctest_name_in(test_file: Path, name: str, names: Iterable[str]) -> str | None:
    """The name among ``names`` of the same doctest of ``test_file`` as ``name``, if any.

    pytest names a Python file's doctest ``<module>.<qualname>``, and the module's
    name depends on how the file was imported (``test_d`` by default, ``tests.test_d``
    under ``--import-mode=importlib``): one name of the doctest is the other's dotted
    suffix, from a module name that ends with the file's stem.
    """
    if test_file.suffix != ".py" or not _is_doctest_name(name):
        return None
    stem = test_file.stem
    for other in names:
        if other == name or not _is_doctest_name(other):
            continue
        short, long = sorted((name, other), key=len)
        if long.endswith(f".{short}") and (short.startswith(f"{stem}.") or f".{stem}." in short):
            return other
    return None


def _is_doctest_name(test_name: str) -> bool:
    """``module.function`` (Python names hold no dots), not ``Class::test`` or ``test[id]``."""
    return "::" not in test_name and "[" not in test_name and "." in test_name


def _stem(test_name: str, *, hash_capitals: bool) -> str:
    head, bracket, params = test_name.partition("[")
    head = head.replace("::", ".")  # identifiers hold no dots, so this stays unique
    params = params.removesuffix("]")
    safe_head, safe_params = _UNSAFE.sub("_", head), _UNSAFE.sub("_", params)
    stem = f"{safe_head}[{safe_params}]" if bracket else safe_head
    if (
        (safe_head, safe_params) != (head, params)
        or len(stem) > _MAX_STEM
        or (hash_capitals and stem != stem.lower())
    ):
        digest = hashlib.sha256(test_name.encode()).hexdigest()[:10]
        stem = f"{stem[:_MAX_STEM]}~{digest}"
    return stem


@dataclass(frozen=True, kw_only=True)
class SnapshotLookup:
    """Where a test's snapshot is, and what reading it gave."""

    location: Path
    # the snapshot, why it is unreadable, or None when there is no file
    stored: FlopsSnapshot | SnapshotFormatError | None
    legacy: bool = False  # it was read from the layout before 0.2


class SnapshotStore:
    """Reads, writes (atomically) and removes :class:`FlopsSnapshot` files.

    Driven by the pytest-flops session at the paths above; syrupy never sees them.
    """

    def read(self, location: Path, *, where: str) -> FlopsSnapshot | None:
        """The snapshot at ``location`` (through a link); None if there is no file.

        Raises :class:`SnapshotFormatError` naming the file (as ``where``)
        when it cannot be read.
        """
        try:
            with open(location, encoding="utf-8") as file:
                text = file.read()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise SnapshotFormatError(f"{where}: cannot read the file ({error})") from None
        # the format (and the measurement layer under it) loads with the first file read:
        # a session that measures nothing and has no snapshot never imports it
        from pytest_flops.snapshots.format import FlopsSnapshot

        return FlopsSnapshot.from_text(text, where=where)

    def write(self, location: Path, snapshot: FlopsSnapshot) -> None:
        """Write through a temporary file in the same directory and ``os.replace``.

        A crash or a concurrent reader never sees a half-written snapshot. A
        killed process may leave the hidden ``.<name>.<random>.tmp`` behind;
        nothing reads it (only ``*.flops.json`` files are snapshots). Raises
        :class:`OSError` when the location cannot be written.
        """
        # a symbolic link (a snapshot shared between two tests' names) is written
        # through: os.replace on the link itself would make it a regular file
        target = Path(os.path.realpath(location))
        target.parent.mkdir(parents=True, exist_ok=True)
        # Created by open() rather than tempfile.mkstemp, so the snapshot gets
        # the umask's permissions like any new file, not mkstemp's 0600.
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            with open(temporary, "x", encoding="utf-8", newline="\n") as file:
                file.write(snapshot.to_text())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def lookup(self, test_file: Path, test: str, *, shown: Callable[[Path], str]) -> SnapshotLookup:
        """The snapshot of ``test``; in the layout before 0.2 when the current one has
        no file for it. ``shown`` turns a path into what error messages name."""
        location = snapshot_path(test_file, test)
        stored = self._read_of(location, test=test, where=shown(location))
        if stored is not None:
            return SnapshotLookup(location=location, stored=stored)
        if has_legacy_dir(test_file):
            legacy = legacy_snapshot_path(test_file, test)
            stored = self._read_of(legacy, test=test, where=shown(legacy))
            if stored is not None:
                return SnapshotLookup(location=legacy, stored=stored, legacy=True)
        # a doctest's snapshot written under another import mode, in another name: its
        # baseline (an update that changes it writes this name's file)
        for other in snapshot_files(location.parent) if _is_doctest_name(test) else ():
            name = stored_test_name(other)
            if name is not None and doctest_name_in(test_file, test, [name]):
                stored = self._read_of(other, test=name, where=shown(other))
                if stored is not None and not isinstance(stored, SnapshotFormatError):
                    stored = replace(stored, test=test)
                return SnapshotLookup(location=other, stored=stored)
        return SnapshotLookup(location=location, stored=None)

    def _read_of(
        self, location: Path, *, test: str, where: str
    ) -> FlopsSnapshot | SnapshotFormatError | None:
        """The snapshot at ``location`` if it is ``test``'s; the error if it is not."""
        try:
            stored = self.read(location, where=where)
        except SnapshotFormatError as error:
            return error
        if stored is not None and stored.test != test:
            return SnapshotFormatError(
                f"{where}: holds the snapshot of test {stored.test!r}, not of {test!r}"
            )
        return stored

    def drop_measurements(
        self, location: Path, names: frozenset[str], *, where: str
    ) -> frozenset[str]:
        """Rewrite the snapshot at ``location`` without the measurements ``names``; the
        ones it held and dropped.

        Raises :class:`OSError` or :class:`SnapshotFormatError` (naming ``where``).
        """
        stored = self.read(location, where=where)
        dropped = names & stored.measurements.keys() if stored is not None else frozenset()
        if stored is not None and dropped:
            kept = {name: m for name, m in stored.measurements.items() if name not in names}
            self.write(location, replace(stored, measurements=kept))
        return dropped

    def remove(self, location: Path) -> None:
        """Raises :class:`OSError` when the file cannot be removed."""
        location.unlink(missing_ok=True)
        # Leave no empty __flops__/<file>/ (or __flops__/) behind.
        for directory in (location.parent, location.parent.parent):
            try:
                directory.rmdir()
            except OSError:
                break
