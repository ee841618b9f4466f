"""pytest hooks, markers and the ``flops`` fixture: each hook hands off to the session.

Importing this module (pytest does at start-up, through the ``pytest11``
entry point) imports no torch: a session whose tests use no FLOP feature
never does. When collection shows a test that does, torch and the counter
are imported and warmed up at the end of collection, before any test's time
starts (a timeout firing inside a half-done import would break every later
test).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_flops.plugin import marks, xdist
from pytest_flops.plugin.recording import FIXTURE_NAME
from pytest_flops.plugin.session import FlopsSession
from pytest_flops.plugin.settings import add_options
from pytest_flops.snapshots.store import SNAPSHOT_DIRNAME

if TYPE_CHECKING:
    from pytest_flops.counting.fixture import Flops

SESSION_KEY = pytest.StashKey[FlopsSession]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for marker in marks.MARKERS:
        config.addinivalue_line("markers", marker.help_line)
    config.stash[SESSION_KEY] = FlopsSession.start(config)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Snapshot directories hold no tests, whatever their files are named."""
    return True if collection_path.name == SNAPSHOT_DIRNAME else None


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    collector.config.stash[SESSION_KEY].collector_reported(collector, report)
    return report


def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    collector.config.stash[SESSION_KEY].python_object_seen(collector, name, obj)


def pytest_itemcollected(item: pytest.Item) -> None:
    item.config.stash[SESSION_KEY].item_collected(item)


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    flops_session = config.stash[SESSION_KEY]
    measures = flops_session.collection_finished(session, is_worker=xdist.is_worker(config))
    if measures and not config.option.collectonly:
        from pytest_flops.counting.counter import warm_up

        # what measures and judges the counts loads here too, before any test's time starts
        for module in ("pytest_flops.counting.fixture", "pytest_flops.plugin.result"):
            importlib.import_module(module)
        warm_up()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    flops_session = item.config.stash[SESSION_KEY]
    flops_session.attempt_started(item)
    yield
    # after the other plugins' setup, so that their teardown finds what it expects
    flops_session.check_marks(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    with item.config.stash[SESSION_KEY].calling(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.config.stash[SESSION_KEY].phase_report(item, report)
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    flops_session = config.stash[SESSION_KEY]
    if xdist.is_worker(config):
        # A worker sees only its share of the tests: stale snapshots and the
        # report are the controller's, once it has every worker's part.
        xdist.send(config, flops_session)
        return
    flops_session.finish(stopped=_stopped(session, exitstatus))
    flops_session.write_exports()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist (controller): a worker finished; merge what it measured."""
    xdist.receive(node.config.stash[SESSION_KEY], node, error)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if xdist.is_worker(config):
        return
    flops_session = config.stash[SESSION_KEY]
    if flops_session.settings.report:
        from pytest_flops.reports.terminal import terminal_lines

        terminalreporter.write_sep("=", "flops report")
        for line in terminal_lines(flops_session.records, gpu=flops_session.settings.gpu):
            terminalreporter.write_line(line)
    for line in flops_session.summary_lines():
        terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True)
def pytest_assertrepr_compare(
    op: str, left: object, right: object
) -> Generator[None, list[list[str]], list[list[str]]]:
    """A failed ``measurement == snapshot(extension_class=FlopsSnapshotExtension)`` shows the
    FLOP diagnosis first, whichever order the plugins that explain it too (syrupy's text
    diff of the JSON) were loaded in."""
    explanations = yield
    if not any(map(_is_syrupy_snapshot, (left, right))):
        return explanations  # any other failed assertion: nothing to import
    from pytest_flops.plugin.syrupy_extension import assertion_explanation

    ours = assertion_explanation(op, left, right)
    return explanations if ours is None else [ours, *explanations]


@pytest.fixture(name=FIXTURE_NAME)
def flops(request: pytest.FixtureRequest) -> Flops:
    """Count FLOPs with ``with flops(model):``; compared with the test's snapshot."""
    return request.config.stash[SESSION_KEY].fixture(request.node)


def _is_syrupy_snapshot(value: object) -> bool:
    assertion = sys.modules.get("syrupy.assertion")  # loaded wherever syrupy's fixture is
    return assertion is not None and isinstance(value, assertion.SnapshotAssertion)


def _stopped(session: pytest.Session, exitstatus: int) -> str | None:
    """Why the run ended before its last test, if it did."""
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        return "the run was interrupted"
    reason = session.shouldfail or session.shouldstop
    return f"the run stopped early ({reason})" if reason else None
