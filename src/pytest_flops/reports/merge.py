"""One report from the JSON exports of CI shards: ``python -m pytest_flops merge``.

A suite split over CI machines (pytest-split, pytest-shard, a ``-k`` or file
matrix) writes one ``--flops-report-json`` per shard. Merged, they give the
records, the report and the exports a single run of the whole suite would
have written; only the metadata differs, and lists every shard's. Stale
snapshots are judged across shards (:meth:`~pytest_flops.snapshots.stale.SnapshotEvidence.merged`).

Each export lists the measuring tests its run collected, the other shards'
too (pytest-split deselects them after collection), and those it ran: a
test that some shard collected and none ran means a shard is missing (its
job uploaded nothing), and the merge fails naming it rather than pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_flops.reports.export import Export, read_export
from pytest_flops.snapshots.stale import SnapshotEvidence
from pytest_flops.validation import SnapshotFormatError, expect_string

__all__ = ["MergeError", "merge_exports"]

_MUST_AGREE = ("plugin_version", "torch_version")
_MAX_LISTED = 10


class MergeError(ValueError):
    """The shards cannot be merged; the message names the files."""


@dataclass(frozen=True, kw_only=True)
class _Shard:
    path: Path
    export: Export


def merge_exports(paths: Sequence[Path]) -> Export:
    """Read and merge the shards' exports.

    Raises :class:`~pytest_flops.validation.SnapshotFormatError` for a file
    that is not an export, and :class:`MergeError` when the shards ran other
    versions of torch or pytest-flops, one test is in two of them, or a
    measuring test that a shard collected ran in none.
    """
    if not paths:
        raise MergeError("no export to merge")
    shards = [_Shard(path=path, export=_checked(read_export(path), path)) for path in paths]
    for key in _MUST_AGREE:
        values = {shard.path: shard.export.metadata.get(key) for shard in shards}
        if len(set(values.values())) > 1:
            listed = ", ".join(f"{path} has {value}" for path, value in values.items())
            raise MergeError(f"the shards disagree on {key}: {listed}")
    owner: dict[str, Path] = {}
    for shard in shards:
        for nodeid in sorted({record.nodeid for record in shard.export.records}):
            if nodeid in owner:
                raise MergeError(
                    f"{nodeid} is in two shards, {owner[nodeid]} and {shard.path}: "
                    "each test must run in one shard only"
                )
            owner[nodeid] = shard.path
    evidence = SnapshotEvidence.merged([shard.export.snapshots for shard in shards])
    unrun = sorted(set(evidence.measuring_tests) - set(evidence.ran))
    if unrun:
        shown = ", ".join(unrun[:_MAX_LISTED]) + (
            f" and {len(unrun) - _MAX_LISTED} more" if len(unrun) > _MAX_LISTED else ""
        )
        raise MergeError(
            f"{len(unrun)} measuring test(s) ran in no shard: {shown}. Is a shard's export "
            "missing? Merge the exports of every shard of the suite"
        )
    return Export(
        records=tuple(record for shard in shards for record in shard.export.records),
        metadata=_metadata(shards),
        snapshots=evidence,
        gpu=_gpu(shards),
    )


def _checked(export: Export, path: Path) -> Export:
    """``export``, once the metadata the merge compares and combines has the types to."""
    metadata = export.metadata
    for key in (*_MUST_AGREE, "python_version", "platform"):
        if key in metadata:
            expect_string(metadata[key], f"{path}: metadata.{key}")
    devices = metadata.get("devices", [])
    if not isinstance(devices, list) or not all(isinstance(device, str) for device in devices):
        raise SnapshotFormatError(
            f"{path}: metadata.devices: expected a list of strings, got {devices!r}"
        )
    return export


def _gpu(shards: Sequence[_Shard]) -> str | None:
    """The ``--flops-gpu`` of the shards, which must agree: a merged export is one run's.

    An export names its GPU in its metadata; one written before it did tells it by its
    measurements' roofline, so when it measured nothing it says nothing, and is not
    compared.
    """
    gpus = {
        str(shard.path): shard.export.gpu
        for shard in shards
        if "gpu" in shard.export.metadata or shard.export.records
    }
    if len(set(gpus.values())) > 1:
        shown = ", ".join(f"{path}: {gpu or 'none'}" for path, gpu in gpus.items())
        raise MergeError(f"the shards were run with different --flops-gpu ({shown})")
    return next(iter(gpus.values()), None)


def _metadata(shards: Sequence[_Shard]) -> dict[str, Any]:
    """The versions all shards agree on, the devices of any, and each shard's own."""
    first = shards[0].export.metadata
    devices = sorted(
        {device for shard in shards for device in shard.export.metadata.get("devices", [])}
    )
    return {
        **{key: first.get(key) for key in _MUST_AGREE},
        "devices": devices,
        "shards": [{"file": str(shard.path), **shard.export.metadata} for shard in shards],
    }
