"""pytest-xdist transport: workers ship their part of the session, the controller merges it.

Each worker runs its share of the tests as usual: it judges them and writes
their snapshot files (one file per test, so workers never write the same
file). What only the whole run can decide is left to the controller: at
session finish a worker puts :meth:`~pytest_flops.plugin.session.FlopsSession.to_worker_payload`
into ``config.workeroutput`` (xdist's documented channel), and the controller
merges each worker's in ``pytest_testnodedown``. Then the controller alone
finds stale snapshots, prints the report and writes the exports, exactly as a
serial run does.

Nothing here imports xdist: the plugin's ``pytest_testnodedown`` is an
optional hook (never called without xdist), and a worker is recognised by
``config.workerinput``.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_flops.plugin.session import FlopsSession

WORKEROUTPUT_KEY = "pytest_flops"


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def send(config: pytest.Config, session: FlopsSession) -> None:
    """On a worker: publish this worker's part of the session."""
    config.workeroutput[WORKEROUTPUT_KEY] = session.to_worker_payload()  # type: ignore[attr-defined]


def receive(session: FlopsSession, node: Any, error: object) -> None:
    """On the controller: merge the payload of the worker ``node``.

    xdist may report a node down twice (finished, then errored on
    KeyboardInterrupt): the payload is taken out so it is merged once. A
    worker that crashed sent nothing, so the tests it ran are missing: no
    stale snapshot is judged in this run.
    """
    if error is not None:
        session.run.narrow("an xdist worker crashed")
    payload = getattr(node, "workeroutput", {}).pop(WORKEROUTPUT_KEY, None)
    if payload is not None:
        session.merge(payload)
