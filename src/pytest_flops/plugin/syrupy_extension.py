"""Measurements asserted against syrupy's own ``snapshot`` fixture.

::

    def test_linear(snapshot):
        model = torch.nn.Linear(4, 6)
        measurement = pytest_flops.count(model, torch.randn(3, 4))
        assert measurement == snapshot(extension_class=FlopsSnapshotExtension)

syrupy then owns these snapshots, under its rules: ``--snapshot-update`` writes
them into ``__snapshots__/``, a plain run compares them, syrupy's summary and
unused-snapshot check report them. A mismatch shows the FLOP diagnosis (totals
before → after, then the changed module and operator rows), not a text diff.
The ``flops`` fixture's own snapshots (``__flops__/``, ``--flops-update``) are
separate and keep pytest-flops' guarantees.

This is the one module that uses syrupy, and only through its public extension
API: a ``SingleFileSnapshotExtension`` in its default (binary) mode, with its
``file_extension``, ``serialize``, ``matches`` and ``diff_lines``, and a failed
assertion's result as ``SnapshotAssertion.executions`` gives it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import Any

from syrupy.extensions.single_file import SingleFileSnapshotExtension

from pytest_flops.measurement import DEFAULT_NAME, Measurement
from pytest_flops.plugin import diagnoses
from pytest_flops.snapshots.format import FlopsSnapshot, comparable, document_text, read_document
from pytest_flops.snapshots.store import FILE_SUFFIX
from pytest_flops.validation import SnapshotFormatError

__all__ = ["FlopsSnapshotExtension"]


class FlopsSnapshotExtension(SingleFileSnapshotExtension):
    """A syrupy extension for :class:`~pytest_flops.Measurement` and the ``flops`` fixture.

    Serializes a ``Measurement`` (stored as the ``"default"`` measurement), the
    ``flops`` fixture (each of its named measurements) or a ``{name:
    Measurement}`` mapping to one JSON file per assertion, in UTF-8 with ``\n``
    line ends on every system, as the ``flops`` fixture's files are.
    """

    file_extension = FILE_SUFFIX.removeprefix(".")

    def serialize(self, data: Any, **_: Any) -> bytes:
        return document_text({}, measurements=_measurements(data)).encode()

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        # The counts decide, not the text: a snapshot an earlier format wrote, or
        # one holding backend kernel names from before they were portable, still
        # matches equal counts, as the flops fixture's snapshots do.
        try:
            measured = _snapshot(serialized_data, where="measured")
            stored = _snapshot(snapshot_data, where="snapshot")
        except SnapshotFormatError:  # a snapshot of another kind or version: the bytes decide
            return bool(serialized_data == snapshot_data)
        if stored.missing_bytes_of(measured):
            # syrupy rewrites only a snapshot that does not match: matching on FLOPs
            # alone, a snapshot from before bytes were stored would never gate them
            return False
        stored, measured = comparable(stored, measured)
        return stored.measurements == measured.measurements

    def diff_lines(self, serialized_data: Any, snapshot_data: Any) -> Iterator[str]:
        try:
            measured = _snapshot(serialized_data, where="measured")
            stored = _snapshot(snapshot_data, where="snapshot")
        except SnapshotFormatError:  # a snapshot of another kind or version: plain text diff
            yield from super().diff_lines(_shown(serialized_data), _shown(snapshot_data))
            return
        if stored.missing_bytes_of(measured):
            yield (
                "The snapshot records no bytes accessed (an earlier pytest-flops wrote it): "
                "run `pytest --snapshot-update` to record them."
            )
        stored, measured = comparable(stored, measured)
        before, after = stored.measurements, measured.measurements
        moved = {
            name
            for name in before.keys() | after.keys()
            if name not in before or name not in after or before[name] != after[name]
        }
        for section in diagnoses.changes("the measurement", before, after, moved):
            yield from section.splitlines()


def _snapshot(stored: object, *, where: str) -> FlopsSnapshot:
    data, measurements = read_document(_text(stored, where=where), keys=set(), where=where)
    # syrupy's files keep every module row: no depth to cut them at
    return FlopsSnapshot(
        test="", depth=sys.maxsize, measurements=measurements, version=data["version"]
    )


def _text(stored: object, *, where: str) -> str:
    """A snapshot's text: syrupy hands over the bytes of the file (or of ``serialize``)."""
    if not isinstance(stored, bytes):
        return str(stored)
    try:
        return stored.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SnapshotFormatError(f"{where}: not UTF-8 text ({error})") from None


def _shown(stored: object) -> str:
    """What a plain diff shows of a snapshot that is not a FLOP snapshot."""
    return stored.decode("utf-8", "backslashreplace") if isinstance(stored, bytes) else str(stored)


def _measurements(data: Any) -> Mapping[str, Measurement]:
    if isinstance(data, Measurement):
        return {DEFAULT_NAME: data}
    measurements = getattr(data, "measurements", data)  # the flops fixture
    if isinstance(measurements, Mapping) and all(
        isinstance(name, str) and isinstance(m, Measurement) for name, m in measurements.items()
    ):
        return measurements
    raise TypeError(
        "FlopsSnapshotExtension stores a pytest_flops.Measurement, the flops fixture or a "
        f"{{name: Measurement}} mapping, got {type(data).__name__}"
    )


def assertion_explanation(op: str, left: object, right: object) -> list[str] | None:
    """The FLOP diagnosis of a failed ``measurement == snapshot(...)`` assertion.

    syrupy explains a failed assertion with the diff of the extension its
    ``snapshot`` fixture has by default, not the one a single assertion asked
    for (``snapshot(extension_class=FlopsSnapshotExtension)``): this explains
    every failed assertion whose snapshot is a FLOP snapshot.
    """
    from syrupy.assertion import SnapshotAssertion

    assertion = right if isinstance(right, SnapshotAssertion) else left
    if op != "==" or not isinstance(assertion, SnapshotAssertion) or not assertion.num_executions:
        return None
    result = assertion.executions[assertion.num_executions - 1]
    if result.success or result.recalled_data is None or result.exception is not None:
        return None  # passed, no snapshot yet, or raised: syrupy says it best
    if not str(result.snapshot_location).endswith(FILE_SUFFIX):
        return None
    diagnosis = FlopsSnapshotExtension().diff_lines(result.asserted_data, result.recalled_data)
    return [f"[+ received] == [- {assertion.name}]", *diagnosis]
