"""pytest-xdist transport: workers ship what they learned, the controller merges it.

Each worker runs its share of the tests as usual (it judges them and writes
their snapshot files, one file per test, so workers never write the same
file). What only the whole run can decide is left to the controller: at
session finish a worker puts its records, summary counts, per-file
collection data and measured devices into ``config.workeroutput`` (xdist's
documented channel), and the controller merges every worker's payload in
``pytest_testnodedown``.
Then the controller alone finds stale snapshots, prints the report and writes
the exports, exactly as a serial run does.

Nothing here imports xdist: the plugin's ``pytest_testnodedown`` is an
optional hook (never called without xdist), and a worker is recognised by
``config.workerinput``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_flops.records import MeasurementRecord
from pytest_flops.session import Counts, FlopsSession, ModuleRun

WORKEROUTPUT_KEY = "pytest_flops"


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def send(config: pytest.Config, session: FlopsSession) -> None:
    """On a worker: publish this worker's part of the session."""
    payload = {
        "records": [record.to_dict() for record in session.records],
        "counts": session.counts.to_dict(),
        "modules": {str(path): run.to_dict() for path, run in session.modules.items()},
        "devices": sorted(session.devices),
    }
    # One JSON string: exact integers of any size, whatever execnet can serialize.
    config.workeroutput[WORKEROUTPUT_KEY] = json.dumps(payload)  # type: ignore[attr-defined]


def receive(session: FlopsSession, node: Any) -> None:
    """On the controller: add the payload of the worker ``node`` to the session.

    xdist may report a node down twice (finished, then errored on
    KeyboardInterrupt): the payload is taken out so it is merged once.
    """
    text = getattr(node, "workeroutput", {}).pop(WORKEROUTPUT_KEY, None)
    if text is None:
        return
    payload: dict[str, Any] = json.loads(text)
    session.records += [MeasurementRecord.from_dict(data) for data in payload["records"]]
    session.counts.merge(Counts.from_dict(payload["counts"]))
    for path, data in payload["modules"].items():
        session.modules.setdefault(Path(path), ModuleRun()).merge(ModuleRun.from_dict(data))
    session.devices.update(payload["devices"])
