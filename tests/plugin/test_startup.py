"""What pytest-flops imports, and when: nothing heavy at start-up, the counter before any test.

Each session runs in a fresh process (imports are process state). A
``conftest.py`` there writes what ``sys.modules`` held at two points: when the
first test is about to start (``pytest_runtest_logstart``, before any fixture
is set up) and at session finish.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # starts pytest in subprocesses

CONFTEST = """
import json
import sys
from pathlib import Path

WATCHED = {watched!r}
seen = {{}}


def pytest_runtest_logstart(nodeid, location):
    seen.setdefault("first test", {{name: name in sys.modules for name in WATCHED}})


def pytest_sessionfinish(session):
    seen["finish"] = {{name: name in sys.modules for name in WATCHED}}
    Path("modules.json").write_text(json.dumps(seen))
"""

TORCH_AND_COUNTER = ("torch", "torch._dynamo", "pytest_flops.counting.counter")

# What measures, judges and reports tests: a session that measures nothing never needs it.
MEASUREMENT_LAYER = (
    "pytest_flops.counting.fixture",
    "pytest_flops.measurement",
    "pytest_flops.snapshots.format",
    "pytest_flops.plugin.verdict",
    "pytest_flops.plugin.diagnoses",
    "pytest_flops.plugin.result",
    "pytest_flops.reports.records",
)

PLAIN = """
def test_plain():
    assert 1 + 1 == 2
"""

MEASURING = """
import torch


def test_plain():
    pass


def test_measured(flops):
    model = torch.nn.Linear(3, 2)
    with flops(model):
        model(torch.ones(1, 3))
"""

BUDGET_ONLY = """
import pytest
import torch


def test_plain():
    pass


@pytest.mark.limit_flops("1 KFLOP")
def test_budget():
    torch.ones(2, 3) @ torch.ones(3, 4)
"""


def imported(
    pytester: pytest.Pytester,
    suite: str,
    *args: str,
    watched: tuple[str, ...] = TORCH_AND_COUNTER,
    exit_code: pytest.ExitCode = pytest.ExitCode.OK,
) -> dict[str, dict[str, bool]]:
    pytester.makeconftest(CONFTEST.format(watched=watched))
    pytester.makepyfile(test_suite=suite)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == exit_code, result.outlines
    seen: dict[str, dict[str, bool]] = json.loads((pytester.path / "modules.json").read_text())
    return seen


def test_a_suite_that_uses_no_flop_feature_never_imports_torch(pytester: pytest.Pytester) -> None:
    seen = imported(
        pytester,
        PLAIN,
        "--flops-report",
        "--flops-report-json=flops.json",
        "--flops-report-md=flops.md",
        "--flops-report-html=flops.html",
    )
    assert seen["finish"] == {
        "torch": False,
        "torch._dynamo": False,
        "pytest_flops.counting.counter": False,
    }
    # the exports are written all the same
    assert json.loads((pytester.path / "flops.json").read_text())["measurements"] == []


@pytest.mark.parametrize("suite", [MEASURING, BUDGET_ONLY], ids=["fixture", "limit_flops"])
def test_the_counter_is_imported_at_the_end_of_collection(
    pytester: pytest.Pytester, suite: str
) -> None:
    """Before the first test's setup, whichever test comes first; never torch._dynamo."""
    seen = imported(pytester, suite, "--flops-update")
    assert seen["first test"] == {
        "torch": True,
        "torch._dynamo": False,
        "pytest_flops.counting.counter": True,
    }
    assert seen["finish"]["torch._dynamo"] is False


def test_collect_only_imports_no_counter(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.format(watched=TORCH_AND_COUNTER))
    pytester.makepyfile(test_suite=MEASURING)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only")
    assert result.ret == 0, result.outlines
    seen = json.loads((pytester.path / "modules.json").read_text())
    # the test file imports torch itself; the counter waits for a run
    assert seen["finish"]["pytest_flops.counting.counter"] is False


def test_deselecting_every_measuring_test_imports_no_counter(pytester: pytest.Pytester) -> None:
    seen = imported(pytester, MEASURING, "-k", "test_plain")
    assert seen["finish"]["pytest_flops.counting.counter"] is False


def test_a_suite_that_uses_no_flop_feature_loads_no_measurement_layer(
    pytester: pytest.Pytester,
) -> None:
    """Start-up is every pytest session's cost: the verdicts, the snapshot format and the
    records load with the first measured test, or with an export that needs them."""
    seen = imported(pytester, PLAIN, watched=MEASUREMENT_LAYER)
    assert seen["finish"] == dict.fromkeys(MEASUREMENT_LAYER, False)


@pytest.mark.parametrize("suite", [MEASURING, BUDGET_ONLY], ids=["fixture", "limit_flops"])
def test_a_measuring_suite_loads_the_measurement_layer_before_its_first_test(
    pytester: pytest.Pytester, suite: str
) -> None:
    """At the end of collection, with the counter: never inside a test's time."""
    seen = imported(pytester, suite, "--flops-update", watched=MEASUREMENT_LAYER)
    assert seen["first test"] == dict.fromkeys(MEASUREMENT_LAYER, True)


def test_a_failed_assertion_loads_no_measurement_layer(pytester: pytest.Pytester) -> None:
    """pytest asks every plugin to explain a failed ``==``; ours explains FLOP snapshots only."""
    watched = (*MEASUREMENT_LAYER, "pytest_flops.plugin.syrupy_extension")
    failing = "def test_lists():\n    assert [1, 2] == [1, 3]\n"
    seen = imported(pytester, failing, watched=watched, exit_code=pytest.ExitCode.TESTS_FAILED)
    assert seen["finish"] == dict.fromkeys(watched, False)


def test_the_package_lists_every_public_name_and_imports_none_of_them() -> None:
    code = (
        "import json, sys, pytest_flops\n"
        "print(json.dumps([\n"
        "    sorted(set(pytest_flops.__all__) - set(dir(pytest_flops))),\n"
        "    sorted(m for m in sys.modules if m == 'torch' or m.startswith('pytest_flops.')),\n"
        "]))\n"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    not_listed, imported_with_it = json.loads(shown.stdout)
    assert not_listed == []
    assert imported_with_it == []
