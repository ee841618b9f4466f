"""The ``--flops-gpu`` figures of the reports: each measurement's roofline time on one GPU.

Pure functions of a :class:`~pytest_flops.measurement.Measurement` and a GPU name
(:mod:`pytest_flops.roofline` does the estimate), shared by the terminal
report, the Markdown and JSON exports and the HTML page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_flops.measurement import GLOBAL, Measurement, module_order
from pytest_flops.reports.records import MeasurementRecord
from pytest_flops.roofline import GPUS, Roofline
from pytest_flops.units import format_seconds
from pytest_flops.validation import SnapshotFormatError

__all__ = [
    "MAX_MODULES",
    "TIME_HEADER",
    "TIME_RIGHT_ALIGNED",
    "gpu_from_json",
    "roofline_json",
    "time_cell",
    "time_header",
    "time_rows",
]

MAX_MODULES = 3
"""Modules listed under each test in the terminal and Markdown; the JSON has them all."""

TIME_HEADER = ("test", "module", "time", "memory-bound")
TIME_RIGHT_ALIGNED = (False, False, True, True)


def time_header(gpu: str) -> str:
    """The suite table's column: ``h100-sxm time``."""
    return f"{gpu} time"


def time_cell(gpu: str) -> Callable[[MeasurementRecord], str]:
    """The suite table's cell of a measurement: its estimated time on ``gpu``."""
    return lambda record: format_seconds(record.measurement.roofline(gpu).seconds)


def _share(estimate: Roofline) -> str:
    return f"{estimate.memory_bound_share:.0%}"


def module_times(measurement: Measurement, gpu: str) -> list[tuple[str, Roofline]]:
    """Every module row but Global's, the longest estimated time first."""
    rows = [
        (path, measurement.roofline(gpu, module=path))
        for path in measurement.modules
        if path != GLOBAL
    ]
    return sorted(rows, key=lambda row: (-row[1].seconds, module_order(row[0])))


def time_rows(
    records: Sequence[MeasurementRecord], gpu: str, style: Callable[[str], str]
) -> list[tuple[str, ...]]:
    """(test, module, time, memory-bound share): each measurement's whole time, then
    its :data:`MAX_MODULES` longest modules. ``style`` formats test ids and modules."""
    rows: list[tuple[str, ...]] = []
    for record in records:
        whole = record.measurement.roofline(gpu)
        rows.append((style(record.label), "(all)", format_seconds(whole.seconds), _share(whole)))
        for path, estimate in module_times(record.measurement, gpu)[:MAX_MODULES]:
            rows.append(("", style(path), format_seconds(estimate.seconds), _share(estimate)))
    return rows


def roofline_json(measurement: Measurement, gpu: str) -> dict[str, Any]:
    """A measurement's ``roofline`` in the JSON export: the whole, and every module row."""
    whole = measurement.roofline(gpu)
    return {
        "gpu": gpu,
        "seconds": whole.seconds,
        "compute_seconds": whole.compute_seconds,
        "memory_seconds": whole.memory_seconds,
        "communication_seconds": whole.communication_seconds,
        "memory_bound_share": whole.memory_bound_share,
        "by_module": {
            path: {"seconds": estimate.seconds, "memory_bound_share": estimate.memory_bound_share}
            for path, estimate in sorted(
                module_times(measurement, gpu), key=lambda row: module_order(row[0])
            )
        },
    }


def gpu_from_json(
    metadata: Mapping[str, Any], measurements: list[Any], *, where: str
) -> str | None:
    """The GPU of an export: its ``metadata.gpu``, where written (a run with no
    measurement still names the GPU it ran with); else, in an export written before
    the metadata named it, the GPU of the measurements' ``roofline`` (recomputed from
    the counts when written again): every measurement has one on the same known GPU,
    or none has."""
    guessed = _roofline_gpu(measurements, where=where)
    if "gpu" not in metadata:
        return guessed
    gpu = metadata["gpu"]
    if gpu is not None:
        _known(gpu, f"{where}: metadata.gpu: unknown GPU")
    if measurements and gpu != guessed:
        raise SnapshotFormatError(
            f"{where}: metadata.gpu is {gpu!r}, but the measurements' roofline is on {guessed!r}"
        )
    return gpu


def _roofline_gpu(measurements: list[Any], *, where: str) -> str | None:
    named = {
        _name(entry["roofline"].get("gpu") if isinstance(entry["roofline"], dict) else None)
        for entry in measurements
        if isinstance(entry, dict) and "roofline" in entry
    }
    partial = any(isinstance(entry, dict) and "roofline" not in entry for entry in measurements)
    if not named:
        return None
    if len(named) > 1 or partial:
        without = " and measurements without one" if partial else ""
        raise SnapshotFormatError(
            f"{where}: every measurement's roofline must be on one GPU (--flops-gpu); "
            f"found {', '.join(sorted(map(str, named)))}{without}"
        )
    (gpu,) = named
    _known(gpu, f"{where}: roofline on unknown GPU")
    return str(gpu)


def _name(gpu: object) -> str | None:
    """A GPU name as written, or the JSON that stands in its place (a list is no name)."""
    return gpu if gpu is None or isinstance(gpu, str) else json.dumps(gpu)


def _known(gpu: object, problem: str) -> None:
    if not isinstance(gpu, str) or gpu not in GPUS:
        raise SnapshotFormatError(f"{problem} {gpu!r}: expected one of {', '.join(GPUS)}")
