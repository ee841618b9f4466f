"""Markers added after collection apply: by a conftest's hook, or by a fixture in setup."""

import fnmatch

import pytest

from tests.forked_pytest import runpytest_forked
from tests.helpers import NET

# Net(10): Linear(9, 10) on [4, 9], forward 2*4*9*10 = 720, weight grad 720: 1,440 FLOPs
TESTS = (
    NET
    + """

def test_bulk_fixture(flops):
    net = Net(10)
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()

def test_bulk_no_fixture():
    Net(10)(torch.randn(4, 9)).sum().backward()

def test_unmarked(flops):
    net = Net(10)
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()
"""
)

BULK_CONFTEST = """
import pytest

def pytest_collection_modifyitems(config, items):
    for item in items:
        if "bulk" in item.name:
            item.add_marker(pytest.mark.limit_flops({limit!r}))
"""


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_a_budget_added_by_a_collection_hook_fails_its_tests(
    pytester: pytest.Pytester, xdist: tuple[str, ...]
) -> None:
    pytester.makeconftest(BULK_CONFTEST.format(limit="1 KFLOP"))
    pytester.makepyfile(test_m=TESTS)
    result = runpytest_forked(pytester, "--flops-update", "-p", "no:randomly", *xdist)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "*FLOP budget exceeded by test_m.py::test_bulk_fixture: used 1.44 KFLOP*",
            "*FLOP budget exceeded by test_m.py::test_bulk_no_fixture: used 1.44 KFLOP*",
        ]
    )
    # over budget, nothing is written: only the unmarked test's snapshot
    assert sorted(p.name for p in (pytester.path / "__flops__" / "test_m.py").iterdir()) == [
        "test_unmarked.flops.json"
    ]


def test_a_bad_marker_added_by_a_collection_hook_is_a_usage_error_naming_the_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(BULK_CONFTEST.format(limit="many"))
    pytester.makepyfile(test_m=TESTS)
    result = runpytest_forked(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_m.py::test_bulk_fixture: bad @pytest.mark.limit_flops*"])


def test_a_budget_a_fixture_applies_in_setup_fails_its_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest

@pytest.fixture
def budget(request):
    request.applymarker(pytest.mark.limit_flops("1 KFLOP"))
"""
    )
    pytester.makepyfile(
        test_m=NET
        + """

def test_measured(flops, budget):
    net = Net(10)
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()

def test_whole_call(budget):
    Net(10)(torch.randn(4, 9)).sum().backward()
"""
    )
    result = runpytest_forked(pytester, "--flops-update", "-p", "no:randomly")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "*FLOP budget exceeded by test_m.py::test_measured: used 1.44 KFLOP*",
            "*FLOP budget exceeded by test_m.py::test_whole_call: used 1.44 KFLOP*",
        ]
    )
    assert not (pytester.path / "__flops__").exists()


def test_a_budget_the_test_applies_in_its_call_fails_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_m=NET
        + """

def test_measured(request, flops):
    request.applymarker(pytest.mark.limit_flops("1 KFLOP"))
    net = Net(10)
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()

def test_whole_call(request):
    request.applymarker(pytest.mark.limit_flops("1 KFLOP"))
    Net(10)(torch.randn(4, 9)).sum().backward()
"""
    )
    result = runpytest_forked(pytester, "--flops-update", "-p", "no:randomly")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "*FLOP budget exceeded by test_m.py::test_measured: used 1.44 KFLOP*",
            # nothing counted its call, which began before the budget was there
            "test_m.py::test_whole_call: @pytest.mark.limit_flops was added during the test's"
            " call, after counting would have started: add it in a fixture or on the test,"
            " or measure with the flops fixture",
        ]
    )
    assert not (pytester.path / "__flops__").exists()


@pytest.mark.parametrize(
    ("where", "xdist"),
    [("fixture", ()), ("decorator", ("-n", "2"))],
    ids=["a fixture's", "a decorator's under xdist"],
)
def test_a_bad_marker_errors_its_test_at_setup_with_the_message_alone(
    pytester: pytest.Pytester, where: str, xdist: tuple[str, ...]
) -> None:
    bad = "pytest.mark.limit_flops('4 GB')"
    pytester.makepyfile(
        test_m=NET
        + f"""
@pytest.fixture
def budget(request):
    {"request.applymarker(" + bad + ")" if where == "fixture" else "pass"}

{"@" + bad if where == "decorator" else ""}
def test_late(budget, flops):
    net = Net(10)
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()
"""
    )
    result = runpytest_forked(pytester, "-p", "no:randomly", *xdist)
    result.assert_outcomes(errors=1)
    message = (
        "test_m.py::test_late: bad @pytest.mark.limit_flops argument: limit: cannot read"
        " '4 GB' as a FLOP amount: *"
    )
    lines = [line for line in result.outlines if not line.startswith("[gw")]  # xdist's worker
    heading = next(i for i, line in enumerate(lines) if "ERROR at setup of test_late" in line)
    # the diagnosis first: no frame of the plugin's
    assert fnmatch.fnmatch(lines[heading + 1], message), lines[heading : heading + 3]
    assert not any("pytest_flops" in line for line in result.outlines)
    assert not any("measured nothing" in line for line in result.outlines)
