"""The files written at session end: ``--flops-report-json``, ``-md`` and ``-html``.

The JSON export is also read back, by ``python -m pytest_flops merge``: each
measurement's JSON holds all of its :class:`~pytest_flops.measurement.Measurement`
(Global's row at the top, the other module rows under ``by_module``), so
:func:`read_export` rebuilds the records a session had, exactly.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_flops import __version__
from pytest_flops.measurement import (
    FLOP,
    GLOBAL,
    OPERATOR_UNITS,
    DiffRow,
    Measurement,
    is_precision,
    relative_change,
)
from pytest_flops.reports.records import (
    MeasurementRecord,
    Status,
    per_token_figures,
    with_per_token_figures,
)
from pytest_flops.reports.terminal import markdown, suite_sums, suite_unsupported
from pytest_flops.reports.times import gpu_from_json, roofline_json
from pytest_flops.snapshots.stale import SnapshotEvidence
from pytest_flops.validation import (
    SnapshotFormatError,
    expect_keys,
    expect_mapping,
    expect_string,
)

__all__ = ["SCHEMA_VERSION", "Export", "RunMetadata", "json_report", "read_export", "write_exports"]

SCHEMA_VERSION = 1
"""Version of the ``--flops-report-json`` layout; bumped on any incompatible change
(new keys are compatible)."""


@dataclass(frozen=True, kw_only=True)
class RunMetadata:
    """Where the numbers came from; written to the JSON export only."""

    plugin_version: str
    torch_version: str
    python_version: str
    platform: str
    devices: tuple[str, ...]

    @classmethod
    def collect(cls, devices: Iterable[str] = ()) -> RunMetadata:
        """This process's versions; ``devices`` are those the measured models were on.

        When none is known, torch's default device stands in. torch's version is
        its distribution's, read without importing torch (a session that measured
        nothing never does), so that every shard of a run says the same: an
        imported torch's ``__version__`` may add a local tag, ``2.14.1+cu130``.
        """
        torch = sys.modules.get("torch")
        known = tuple(sorted(set(devices)))
        if not known and torch is not None:
            known = (str(torch.get_default_device()),)
        return cls(
            plugin_version=__version__,
            torch_version=importlib.metadata.version("torch"),
            python_version=platform.python_version(),
            platform=sys.platform,
            devices=known,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "plugin_version": self.plugin_version,
            "torch_version": self.torch_version,
            "python_version": self.python_version,
            "platform": self.platform,
            "devices": list(self.devices),
        }


@dataclass(frozen=True, kw_only=True)
class Export:
    """A JSON export read back: what a session (or a merge of shards) reported."""

    records: tuple[MeasurementRecord, ...]
    metadata: Mapping[str, Any]
    snapshots: SnapshotEvidence = field(default_factory=SnapshotEvidence)
    gpu: str | None = None  # --flops-gpu: each measurement's roofline time on it


# -- writing ----------------------------------------------------------------------


def json_report(
    records: Sequence[MeasurementRecord],
    metadata: Mapping[str, Any],
    *,
    snapshots: SnapshotEvidence | None = None,
    gpu: str | None = None,
) -> dict[str, Any]:
    """The ``--flops-report-json`` document (its schema is in the documentation);
    each measurement has its ``roofline`` on ``gpu`` when one is named.

    Apart from ``metadata`` it depends only on the records and the evidence,
    never on the order in which they were gathered.
    """
    total, forward, backward = suite_sums(records)
    return {
        "schema_version": SCHEMA_VERSION,
        "metadata": {**metadata, "gpu": gpu},  # a shard that measured nothing says it too
        "summary": {
            "tests": len({record.nodeid for record in records}),
            "measurements": len(records),
            "total": total,
            "forward": forward,
            "backward": backward,
            "recompute": sum(r.measurement.recompute for r in records),
            "communication_bytes": sum(r.measurement.communication_bytes for r in records),
            "statuses": {
                status.value: sum(record.status is status for record in records)
                for status in Status
            },
            "unsupported": [
                {"op": op.op, "calls": op.calls, "tests": list(op.tests)}
                for op in suite_unsupported(records)
            ],
        },
        "snapshots": (snapshots or SnapshotEvidence()).to_dict(),
        "measurements": [
            _record_json(record, gpu)
            for record in sorted(records, key=lambda r: (r.nodeid, r.name))
        ],
    }


def _record_json(record: MeasurementRecord, gpu: str | None) -> dict[str, Any]:
    baseline = record.baseline
    roofline = {} if gpu is None else {"roofline": roofline_json(record.measurement, gpu)}
    return {
        "nodeid": record.nodeid,
        "name": record.name,
        "status": record.status.value,
        "budget": record.budget,
        **_measurement_json(record.measurement),
        "snapshot": None if baseline is None else _measurement_json(baseline),
        "delta": None if baseline is None else _delta_json(baseline, record.measurement),
        **roofline,
    }


def _measurement_json(measurement: Measurement) -> dict[str, Any]:
    data = measurement.to_dict()
    modules = data.pop("modules")
    return {
        "total": data["total"],
        "forward": data["forward"],
        "backward": data["backward"],
        "recompute": measurement.recompute,
        "by_op": modules[GLOBAL]["by_op"],
        "by_module": {path: counts for path, counts in modules.items() if path != GLOBAL},
        "unsupported": data["unsupported"],
        "communication": modules[GLOBAL].get("communication", {}),
        "world": data.get("world"),
        **_per_token_json(measurement),
        **{key: data[key] for key in ("bytes_accessed",) if key in data},
        **{key: modules[GLOBAL][key] for key in _GLOBAL_BYTE_KEYS if key in modules[GLOBAL]},
    }


def _per_token_json(measurement: Measurement) -> dict[str, Any]:
    """Tokens, the models' parameters, model FLOPs per token and 6·N, where known."""
    figures: dict[str, Any] = per_token_figures(measurement)
    if measurement.flops_per_token is not None:
        figures["flops_per_token"] = measurement.flops_per_token
        if measurement.parameters is not None:
            figures["flops_per_token_6n"] = 6 * measurement.parameters
    return figures


def _delta_json(before: Measurement, after: Measurement) -> dict[str, Any]:
    relative = relative_change(before.total, after.total)
    both_bytes = before.bytes_recorded and after.bytes_recorded
    return {
        "total": after.total - before.total,
        "forward": after.forward - before.forward,
        "backward": after.backward - before.backward,
        "recompute": after.recompute - before.recompute,
        "communication_bytes": after.communication_bytes - before.communication_bytes,
        **({"bytes_accessed": after.bytes_accessed - before.bytes_accessed} if both_bytes else {}),
        "relative": None if relative == float("inf") else relative,
        "changes": [
            {
                "module": row.module,
                "op": row.op,
                "unit": row.unit,
                "before": row.before,
                "after": row.after,
                "delta": row.delta,
            }
            for row in _operator_changes(before, after)
        ],
    }


def _operator_changes(before: Measurement, after: Measurement) -> list[DiffRow]:
    """Each operator's count that moved, and its FLOPs by precision where its FLOPs held
    (TF32 where fp32 was): where they moved too, the FLOP row says it."""
    moved = before.diff(after).moved
    flops_moved = {(row.module, row.op) for row in moved if row.unit == FLOP}
    return [
        row
        for row in moved
        if row.unit in OPERATOR_UNITS
        or (is_precision(row.unit) and (row.module, row.op) not in flops_moved)
    ]


def write_exports(
    export: Export,
    *,
    json_path: Path | None,
    markdown_path: Path | None,
    html_path: Path | None,
    saved: Callable[[Path], object] | None = None,
) -> list[str]:
    """Write the exports that were asked for; what could not be written.

    One export failing never stops the others. ``saved`` is called with the
    path of each file written.
    """
    problems = []
    document = json_report(
        export.records, export.metadata, snapshots=export.snapshots, gpu=export.gpu
    )
    if json_path is not None:
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        problems += _write(json_path, text, saved)
    if markdown_path is not None:
        evidence = export.snapshots
        stale = sorted((*evidence.stale, *evidence.stale_measurements))
        text = markdown(export.records, stale=stale, reasons=evidence.reasons, gpu=export.gpu)
        problems += _write(markdown_path, text, saved)
    if html_path is not None:
        from pytest_flops.reports.html import html_report

        problems += _write(html_path, html_report(document, export.records), saved)
    return problems


def _write(path: Path, text: str, saved: Callable[[Path], object] | None) -> list[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        return [f"flops: cannot write the report {path}: {error}"]
    if saved is not None:
        saved(path)
    return []


# -- reading ----------------------------------------------------------------------


def read_export(path: Path) -> Export:
    """Read a ``--flops-report-json`` file; a :class:`SnapshotFormatError` names it."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SnapshotFormatError(f"{where}: cannot read it ({error})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise SnapshotFormatError(f"{where}: not JSON ({error})") from None
    if not isinstance(document, dict) or "schema_version" not in document:
        raise SnapshotFormatError(
            f"{where}: not a pytest-flops JSON export (written by --flops-report-json)"
        )
    version = document["schema_version"]
    if version != SCHEMA_VERSION:
        raise SnapshotFormatError(
            f"{where}: schema_version {version!r}, but this pytest-flops ({__version__}) "
            f"reads version {SCHEMA_VERSION}; merge with the version that wrote it"
        )
    expect_keys(
        document,
        {"schema_version", "metadata", "summary", "measurements"},
        where,
        optional=frozenset({"snapshots"}),
    )
    measurements = document["measurements"]
    if not isinstance(measurements, list):
        raise SnapshotFormatError(f"{where}: measurements: expected a list")
    snapshots = document.get("snapshots")
    metadata = expect_mapping(document["metadata"], f"{where}: metadata")
    return Export(
        records=tuple(
            _record_from_json(entry, where=f"{where}: measurements[{index}]")
            for index, entry in enumerate(measurements)
        ),
        gpu=gpu_from_json(metadata, measurements, where=where),
        metadata=metadata,
        snapshots=SnapshotEvidence()
        if snapshots is None
        else SnapshotEvidence.from_dict(snapshots, where=f"{where}: snapshots"),
    )


_RECORD_KEYS = {"nodeid", "name", "status", "budget", "snapshot", "delta"}
_OPTIONAL_RECORD_KEYS = frozenset({"roofline"})  # written under --flops-gpu only
_MEASUREMENT_KEYS = {
    "total",
    "forward",
    "backward",
    "by_op",
    "by_module",
    "unsupported",
    "communication",
    "world",
}
# the Global row's bytes accessed and FLOPs by precision: in exports since snapshot format 4
_GLOBAL_BYTE_KEYS = ("bytes", "flops_by_precision")

_OPTIONAL_MEASUREMENT_KEYS = frozenset(
    {"recompute", "tokens", "parameters", "flops_per_token", "flops_per_token_6n"}
    | {"bytes_accessed", *_GLOBAL_BYTE_KEYS}
)  # absent from exports written before recompute was a phase or bytes were counted,
# or without tokens


def _record_from_json(data: object, *, where: str) -> MeasurementRecord:
    entry = expect_mapping(data, where)
    expect_keys(
        entry,
        _RECORD_KEYS | _MEASUREMENT_KEYS,
        where,
        optional=_OPTIONAL_MEASUREMENT_KEYS | _OPTIONAL_RECORD_KEYS,
    )
    nodeid = expect_string(entry["nodeid"], f"{where}: nodeid")
    at = f"{where} ({nodeid})"
    try:
        status = Status(entry["status"])
    except ValueError:
        raise SnapshotFormatError(f"{at}: unknown status {entry['status']!r}") from None
    budget, snapshot = entry["budget"], entry["snapshot"]
    return MeasurementRecord(
        nodeid=nodeid,
        name=expect_string(entry["name"], f"{at}: name"),
        status=status,
        budget=None if budget is None else expect_string(budget, f"{at}: budget"),
        measurement=_measurement_from_json(entry, where=at),
        baseline=None
        if snapshot is None
        else _measurement_from_json(snapshot, where=f"{at}: snapshot"),
    )


def _measurement_from_json(data: object, *, where: str) -> Measurement:
    obj = expect_mapping(data, where)
    missing = sorted(_MEASUREMENT_KEYS - obj.keys())
    if missing:
        raise SnapshotFormatError(f"{where}: missing key(s) {', '.join(missing)}")
    by_module = expect_mapping(obj["by_module"], f"{where}: by_module")
    if GLOBAL in by_module:
        raise SnapshotFormatError(f"{where}: by_module holds {GLOBAL!r}, the top row")
    top: dict[str, Any] = {"forward": obj["forward"], "backward": obj["backward"]}
    recompute = {"recompute": obj["recompute"]} if obj.get("recompute") else {}
    top |= recompute
    top["by_op"] = obj["by_op"]
    if obj["communication"]:
        top["communication"] = obj["communication"]
    top.update({key: obj[key] for key in _GLOBAL_BYTE_KEYS if key in obj})
    stored: dict[str, Any] = {
        "total": obj["total"],
        "forward": obj["forward"],
        "backward": obj["backward"],
        **recompute,
        "modules": {GLOBAL: top, **by_module},
        "unsupported": obj["unsupported"],
    }
    if obj["world"] is not None:
        stored["world"] = obj["world"]
    if "bytes_accessed" in obj:
        stored["bytes_accessed"] = obj["bytes_accessed"]
    if obj.get("tokens") == 0:  # as flops(model, tokens=0) is refused: no FLOPs per token
        raise SnapshotFormatError(f"{where}: tokens: expected a positive integer, got 0")
    return with_per_token_figures(Measurement.from_dict(stored, where=where), obj, where=where)
