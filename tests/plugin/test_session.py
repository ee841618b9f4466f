"""The session reads each measured test's snapshot once per attempt, and judges it once."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from pytest_flops.plugin import baseline, verdict
from pytest_flops.snapshots.format import FlopsSnapshot
from pytest_flops.snapshots.store import SnapshotStore
from tests.helpers import NET, flops_line

SUITE = """
import os


def test_passes(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()


@pytest.mark.flops(depth=1)
def test_at_depth_one(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9))


def test_fails_by_itself(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9))
    assert "FAIL" not in os.environ


def test_new(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9))
"""


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[tuple[str, str]]:
    """Spies on the real parse, lookup and judgement, counting calls by what they name."""
    counted: Counter[tuple[str, str]] = Counter()
    parse = FlopsSnapshot.from_text.__func__  # type: ignore[attr-defined]
    lookup = SnapshotStore.lookup
    judge = verdict.judge

    def parsed(cls: type[FlopsSnapshot], text: str, *, where: str) -> FlopsSnapshot:
        counted["parsed", where] += 1
        return parse(cls, text, where=where)

    def looked_up(store: SnapshotStore, test_file: Any, test: str, **kwargs: Any) -> Any:
        counted["looked up", test] += 1
        return lookup(store, test_file, test, **kwargs)

    def judged(**kwargs: Any) -> Any:
        counted["judged", kwargs["nodeid"]] += 1
        return judge(**kwargs)

    monkeypatch.setattr(FlopsSnapshot, "from_text", classmethod(parsed))
    monkeypatch.setattr(SnapshotStore, "lookup", looked_up)
    monkeypatch.setattr(baseline, "judge", judged)
    return counted


def test_each_snapshot_is_read_parsed_and_judged_once(
    pytester: pytest.Pytester, calls: Counter[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_m=NET + SUITE)
    pytester.runpytest("--flops-update", "-k", "not new").assert_outcomes(passed=3, deselected=1)
    calls.clear()
    monkeypatch.setenv("FAIL", "1")
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=2)
    assert flops_line(result) == (
        "flops: 2 tests passed, 1 failed, 0 written, 0 removed, 1 not compared (test failed)"
    )
    folder = "__flops__/test_m.py"
    assert dict(calls) == {
        # every measured test is looked up once, whether judged or failed by itself
        **{
            ("looked up", test): 1
            for test in ("test_passes", "test_at_depth_one", "test_fails_by_itself", "test_new")
        },
        # each stored file is parsed once; the new test has none
        ("parsed", f"{folder}/test_passes.flops.json"): 1,
        ("parsed", f"{folder}/test_at_depth_one.flops.json"): 1,
        ("parsed", f"{folder}/test_fails_by_itself.flops.json"): 1,
        # the tests that passed by themselves are judged once; the one that failed is not
        ("judged", "test_m.py::test_passes"): 1,
        ("judged", "test_m.py::test_at_depth_one"): 1,
        ("judged", "test_m.py::test_new"): 1,
    }
