"""``--flops-prune`` removes a snapshot on proof only: tests that this run collected under
another name, or could not collect at all, keep their baselines (real pytest sessions)."""

from __future__ import annotations

import pytest

from tests.forked_pytest import runpytest_forked
from tests.helpers import NET, flops_line

TWO_TESTS = """
{decorator}
def test_a(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()

def test_b(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()
"""

NOT_A_FUNCTION = """
class traced:
    def __init__(self, function):
        self.function = function

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)
"""

SWITCHED_OFF = """
def switched_off(function):
    function.__test__ = False
    return function
"""


@pytest.mark.parametrize(
    ("helper", "decorator"),
    [(NOT_A_FUNCTION, "@traced"), (SWITCHED_OFF, "@switched_off")],
    ids=["not a function", "__test__ = False"],
)
def test_a_test_function_pytest_gives_up_on_keeps_its_baseline(
    pytester: pytest.Pytester, helper: str, decorator: str
) -> None:
    pytester.makepyfile(test_m=NET + TWO_TESTS.format(decorator=""))
    runpytest_forked(pytester, "--flops-update").assert_outcomes(passed=2)
    baseline = pytester.path / "__flops__" / "test_m.py" / "test_a.flops.json"
    written = baseline.read_bytes()
    # a decorator now hides test_a from pytest: it is still in its file, not gone
    pytester.makepyfile(test_m=NET + helper + TWO_TESTS.format(decorator=decorator))
    for args in (("--flops-prune",), ("--flops-update", "--flops-prune")):
        result = runpytest_forked(pytester, *args)
        result.assert_outcomes(passed=1)
        assert flops_line(result) == "flops: 1 test passed, 0 failed, 0 written, 0 removed"
        assert baseline.read_bytes() == written
