"""Shared set-up of the test suite."""

from collections.abc import Iterator

import hypothesis  # noqa: F401  (see _counted_once)
import pytest
import torch
import torch._dynamo

from pytest_flops import FlopCounterMode
from tests.helpers import precisions_restored


@pytest.fixture(scope="session", autouse=True)
def _counted_once() -> None:
    """Count once in this process before any in-process ``pytester`` run.

    The first count imports torch's dispatch-mode machinery (hundreds of
    modules). pytester unloads whatever an in-process run imported; importing
    them again per run is slow and re-registers torch libraries, which fails.
    torch._dynamo, which a counter imports only when compiled code runs in its
    block, is imported above for that reason, and hypothesis too: its pytest
    plugin imports it in every in-process run otherwise (seconds of assertion
    rewriting each time). Tests of what a fresh process imports run in a
    subprocess.
    """
    with FlopCounterMode(display=False):
        torch.nn.Linear(2, 2)(torch.ones(1, 2)).sum().backward()


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose runs do not think they are xdist workers.

    Under ``pytest -n 2`` this process is a worker, and its environment says so;
    the sessions it starts would inherit that (syrupy then writes lock files).
    """
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    # pytest-randomly (in the test extra for the workflow tests) reorders and
    # reseeds every session it is loaded in; the tests that want it ask for it.
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:randomly")
    return pytester


@pytest.fixture
def restored_precisions() -> Iterator[None]:
    """Every precision setting as it was, whatever the test sets (``precisions_restored``)."""
    with precisions_restored():
        yield
