"""``--flops-prune``: the stale snapshot files removed, and the stale measurements dropped
from theirs (:mod:`pytest_flops.snapshots.stale` judges which), never a file that a
snapshot still in use links to."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from pytest_flops.snapshots.run_record import RunRecord
from pytest_flops.snapshots.stale import StaleSnapshot, in_use
from pytest_flops.snapshots.store import SnapshotStore
from pytest_flops.validation import SnapshotFormatError

__all__ = ["LinkedToError", "prune"]


class LinkedToError(Exception):
    """A stale snapshot file that a snapshot still in use is a symbolic link to, or a
    file whose stale measurements another snapshot in use reads through a link."""

    def __init__(self, link: str, *, shared: bool = False) -> None:
        how = "is the same file, through a symbolic link" if shared else "is a symbolic link to it"
        super().__init__(f"{link}, a snapshot still in use, {how}")


def prune(
    stale: Iterable[StaleSnapshot],
    store: SnapshotStore,
    run: RunRecord,
    *,
    shown: Callable[[Path], str],
) -> tuple[list[StaleSnapshot], list[tuple[Path, Exception]]]:
    """Remove stale snapshot files, and stale measurements from theirs (``--flops-prune``).

    What was removed, and each file that could not be, with the error. A file that a
    snapshot the run still uses links to is kept (a stale link is removed, not its
    target).
    """
    pruned: list[StaleSnapshot] = []
    failures: list[tuple[Path, Exception]] = []
    measurements: dict[Path, list[StaleSnapshot]] = {}
    used: dict[Path, list[Path]] | None = None  # by real path, read once if needed

    def other_reader(path: Path) -> Path | None:
        nonlocal used
        used = in_use(run) if used is None else used
        return next((other for other in used.get(path.resolve(), ()) if other != path), None)

    for entry in stale:
        if entry.measurement is not None:
            measurements.setdefault(entry.path, []).append(entry)
            continue
        if not entry.path.is_symlink():
            link = other_reader(entry.path)
            if link is not None:
                failures.append((entry.path, LinkedToError(shown(link))))
                continue
        try:
            store.remove(entry.path)
            pruned.append(entry)
        except OSError as error:
            failures.append((entry.path, error))
    for path, entries in measurements.items():
        names = frozenset(entry.measurement for entry in entries if entry.measurement)
        # another test that reads this file through a link may still take the measurement
        sharer = other_reader(path)
        if sharer is not None:
            failures.append((path, LinkedToError(shown(sharer), shared=True)))
            continue
        try:
            dropped = store.drop_measurements(path, names, where=shown(path))
            pruned += [entry for entry in entries if entry.measurement in dropped]
        except (OSError, SnapshotFormatError) as error:
            failures.append((path, error))
    return pruned, failures
