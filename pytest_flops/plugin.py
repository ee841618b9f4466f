"""pytest hooks, options, markers and the ``flops`` fixture.

Each hook is a few lines that hand off to the :class:`~pytest_flops.session.FlopsSession`
kept in ``config.stash``. Snapshot comparison happens in the call phase's
``pytest_runtest_makereport``: a failed check turns the passing call report
into a failure, so the test itself fails (an error would point at teardown).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pytest_flops import marks, xdist
from pytest_flops.fixture import Flops
from pytest_flops.report import terminal_lines, write_exports
from pytest_flops.session import DEFAULT_DEPTH, DEFAULT_RTOL, FlopsSession, Settings

SESSION_KEY = pytest.StashKey[FlopsSession]()

T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flops", "FLOP-count snapshots (pytest-flops)")
    group.addoption(
        "--flops-update",
        action="store_true",
        default=False,
        help="Write missing FLOP snapshots, rewrite changed ones and remove stale ones "
        "(only in test files that ran whole). Never touches syrupy's snapshots.",
    )
    group.addoption(
        "--flops-rtol",
        type=_cli_value(marks.parse_rtol, "--flops-rtol"),
        default=None,
        help=f"Relative tolerance of FLOP snapshot comparisons (ini: flops_rtol; "
        f"default {DEFAULT_RTOL:g}, exact).",
    )
    group.addoption(
        "--flops-depth",
        type=_cli_value(marks.parse_depth, "--flops-depth"),
        default=None,
        help=f"Deepest module level kept in FLOP snapshots (ini: flops_depth; "
        f"default {DEFAULT_DEPTH}).",
    )
    group.addoption(
        "--flops-report",
        action="store_true",
        default=False,
        help="Print a table of every measured test's FLOPs and change at the end of the session.",
    )
    group.addoption(
        "--flops-report-json",
        metavar="PATH",
        default=None,
        help="Write every measurement, its snapshot and the deltas to PATH as JSON.",
    )
    group.addoption(
        "--flops-report-md",
        metavar="PATH",
        default=None,
        help="Write the FLOPs report to PATH as Markdown (e.g. for $GITHUB_STEP_SUMMARY).",
    )
    parser.addini(
        "flops_rtol", f"Relative tolerance of FLOP snapshot comparisons (default {DEFAULT_RTOL:g})."
    )
    parser.addini(
        "flops_depth", f"Deepest module level kept in FLOP snapshots (default {DEFAULT_DEPTH})."
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "limit_flops(limit=None, *, forward=None, backward=None): fail the test when it "
        "counts more FLOPs than the limit, e.g. limit_flops('4 GFLOP').",
    )
    config.addinivalue_line(
        "markers",
        "flops(*, rtol=None, depth=None): tolerance and module depth of this test's FLOP "
        "snapshot comparison.",
    )
    session = FlopsSession(settings=_settings(config), rootpath=config.rootpath)
    session.narrow(args=config.args, invocation_dir=config.invocation_params.dir)
    config.stash[SESSION_KEY] = session


def pytest_collectstart(collector: pytest.Collector) -> None:
    if isinstance(collector, pytest.Module):
        collector.config.stash[SESSION_KEY].collect_module(collector.path)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    # A collector that failed or was skipped (importorskip at module level) hid
    # tests: their snapshots are not stale.
    if not report.passed:
        collector.config.stash[SESSION_KEY].collect_incomplete(collector.path)
    return report


def pytest_itemcollected(item: pytest.Item) -> None:
    item.config.stash[SESSION_KEY].collect_item(item)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A usage error in an xdist worker crashes it without a word: there the test
    # errors at setup with the same message instead.
    config.stash[SESSION_KEY].check_marks(items, stop=not xdist.is_worker(config))


def pytest_runtest_setup(item: pytest.Item) -> None:
    item.config.stash[SESSION_KEY].check_setup(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    with item.config.stash[SESSION_KEY].counting_call(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.config.stash[SESSION_KEY].report(item, report)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    flops_session = config.stash[SESSION_KEY]
    if xdist.is_worker(config):
        # A worker sees only its share of the tests: stale snapshots and the
        # report are the controller's, once it has every worker's part.
        xdist.send(config, flops_session)
        return
    flops_session.finish(remove=not config.option.collectonly)
    write_exports(
        flops_session.records,
        devices=flops_session.devices,
        json_path=_path_option(config, "flops_report_json"),
        markdown_path=_path_option(config, "flops_report_md"),
    )


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist (controller): a worker finished; merge what it measured."""
    xdist.receive(node.config.stash[SESSION_KEY], node)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if xdist.is_worker(config):
        return
    flops_session = config.stash[SESSION_KEY]
    if config.getoption("flops_report"):
        terminalreporter.write_sep("=", "flops report")
        for line in terminal_lines(flops_session.records):
            terminalreporter.write_line(line)
    for line in flops_session.summary_lines():
        terminalreporter.write_line(line)


@pytest.fixture
def flops(request: pytest.FixtureRequest) -> Flops:
    """Count FLOPs with ``with flops(model):``; compared with the test's snapshot."""
    return request.config.stash[SESSION_KEY].fixture(request.node)


def _settings(config: pytest.Config) -> Settings:
    """CLI over ini over the defaults."""
    return Settings(
        update=config.getoption("flops_update"),
        rtol=_option_or_ini(config, "flops_rtol", marks.parse_rtol, DEFAULT_RTOL),
        depth=_option_or_ini(config, "flops_depth", marks.parse_depth, DEFAULT_DEPTH),
    )


def _option_or_ini(config: pytest.Config, name: str, parse: Callable[..., T], default: T) -> T:
    value = config.getoption(name)
    if value is not None:
        return value
    text = config.getini(name)
    if not text:
        return default
    try:
        return parse(text, source=f"ini option {name}")
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


def _cli_value(parse: Callable[..., T], option: str) -> Callable[[str], T]:
    def read(text: str) -> T:
        try:
            return parse(text, source=option)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    read.__name__ = option  # argparse names the type in some messages
    return read


def _path_option(config: pytest.Config, name: str) -> Path | None:
    """A path option, relative to where pytest was invoked (a test may chdir)."""
    value = config.getoption(name)
    return None if value is None else config.invocation_params.dir / value
