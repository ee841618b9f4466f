"""pytest-xdist transport: workers ship their part of the session, the controller merges it.

Each worker runs its share of the tests as usual: it judges them and writes
their snapshot files (one file per test, so workers never write the same
file). What only the whole run can decide is left to the controller: at
session finish a worker puts its :func:`payload` (its tests' results and its
run record, as one JSON string with exact integers of any size) into
``config.workeroutput`` (xdist's documented channel), and the controller
merges each worker's in ``pytest_testnodedown``. Then the controller alone
finds stale snapshots, prints the report and writes the exports, exactly as a
serial run does.

Nothing here imports xdist: the plugin's ``pytest_testnodedown`` is an
optional hook (never called without xdist), and a worker is recognised by
``config.workerinput``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_flops.plugin.session import FlopsSession
from pytest_flops.snapshots.run_record import RunRecord

WORKEROUTPUT_KEY = "pytest_flops"


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def send(config: pytest.Config, session: FlopsSession) -> None:
    """On a worker: publish this worker's part of the session."""
    config.workeroutput[WORKEROUTPUT_KEY] = payload(session)  # type: ignore[attr-defined]


def receive(session: FlopsSession, node: Any, error: object) -> None:
    """On the controller: merge the payload of the worker ``node``.

    xdist may report a node down twice (finished, then errored on
    KeyboardInterrupt): the payload is taken out so it is merged once. A
    worker that crashed sent nothing, so the tests it ran are missing: no
    stale snapshot is judged in this run.
    """
    if error is not None:
        session.run.narrow("an xdist worker crashed")
    sent = getattr(node, "workeroutput", {}).pop(WORKEROUTPUT_KEY, None)
    if sent is not None:
        merge(session, sent)


def payload(session: FlopsSession) -> str:
    """A worker's part of the session, as one JSON string (exact integers of any size)."""
    return json.dumps(
        {
            "results": {nodeid: result.to_dict() for nodeid, result in session.results.items()},
            "run": session.run.to_dict(),
            "idle": sorted(session.idle),
        }
    )


def merge(session: FlopsSession, sent: str) -> None:
    """Add a worker's :func:`payload` to the controller's ``session``."""
    # the result layer (and the measurement layer under it) loads only here, at the end
    from pytest_flops.plugin.result import TestResult

    data = json.loads(sent)
    for nodeid, result in data["results"].items():
        session.results[nodeid] = TestResult.from_dict(result)
    session.run.merge(RunRecord.from_dict(data["run"]))
    session.idle |= set(data["idle"])
