"""An exception inside ``with flops(...)``: the test's own error, no trace of the counter left.

One pytester session whose tests raise inside the block (out of it, inside a
module's forward, pytest.skip, under ``limit_flops`` without the fixture), then check that
every global torch hook and mode is back, and count again. In-process, so the
outer process's own globals are checked too.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch.nn.modules.module as module_globals
from torch.overrides import _get_current_function_mode_stack
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from pytest_flops.counting import meta_as_cpu
from tests.helpers import recorded, snapshot_bytes


def global_state() -> dict[str, Any]:
    """Everything a counter touches while it counts, as comparable values."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    stance = getattr(getattr(eval_frame, "_stance", None), "stance", None)
    return {
        "module hooks": {
            name: dict(hooks)
            for name, hooks in sorted(vars(module_globals).items())
            if name.startswith("_global_") and isinstance(hooks, dict)
        },
        "dispatch modes": _get_current_dispatch_mode_stack(),
        "function modes": _get_current_function_mode_stack(),
        "compile stance": stance,
        "meta routing": getattr(meta_as_cpu._routing, "depth", 0),
    }


TESTS = """
import inspect

import pytest
import torch

from tests.reliability.test_exceptions import global_state

ERROR = {error}


class Net(torch.nn.Module):
    def __init__(self, fail=False):
        super().__init__()
        self.fc = torch.nn.Linear(9, 10)
        self.fail = fail

    def forward(self, x):
        out = self.fc(x)
        if self.fail:
            raise ValueError("raised inside Net.forward")
        return out


STATE = {{}}


@pytest.fixture(scope="module", autouse=True)
def users_own_global_hook():
    # Ours must go, the user's must stay.
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda *args: None, always_call=True
    )
    STATE["before"] = global_state()
    yield
    handle.remove()


def test_raises(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9))
        if ERROR:
            raise ERROR("the test's own error")


def test_exception_caught_inside_the_block(flops):
    net = Net(fail=True)
    with flops(net):
        with pytest.raises(ValueError, match="raised inside Net.forward"):
            net(torch.randn(4, 9))
        net.fail = False
        net(torch.randn(4, 9))
        torch.nn.Linear(9, 3)(torch.randn(4, 9))
    # fc ran in both Net calls: 2 * 2*4*9*10 = 1440; Linear(9, 3) 2*4*9*3 = 216
    assert flops.total == 1440 + 216
    # The failed call left no frame behind: the Linear after it is not a Net row.
    assert flops.by_module == {{"Net": {{"aten.addmm": 1440}}, "Net.fc": {{"aten.addmm": 1440}}}}


def test_skips_inside_the_block(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9))
        if ERROR:
            pytest.skip("skipped inside the block")


@pytest.mark.limit_flops("1 GFLOP")
def test_raises_under_a_budget():
    Net()(torch.randn(4, 9))
    if ERROR:
        raise ERROR("the budgeted test's own error")


def test_global_state_is_restored():
    assert global_state() == STATE["before"]


def test_counts_exactly_afterwards(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9))
    assert flops.total == 720  # 2*4*9*10
    assert flops.by_module == {{"Net": {{"aten.addmm": 720}}, "Net.fc": {{"aten.addmm": 720}}}}
"""


@pytest.fixture
def stored(pytester: pytest.Pytester) -> dict[str, bytes]:
    """Snapshots written by the tests when nothing raises."""
    pytester.syspathinsert(Path(__file__).parent)  # global_state() from this module
    files = recorded(pytester, TESTS.format(error=None), passed=6)
    assert set(files) == {
        "test_raises.flops.json",
        "test_exception_caught_inside_the_block.flops.json",
        "test_skips_inside_the_block.flops.json",
        "test_counts_exactly_afterwards.flops.json",
    }
    return files


def test_an_exception_in_the_block_shows_itself_and_leaves_no_trace(
    pytester: pytest.Pytester, stored: dict[str, bytes]
) -> None:
    before = global_state()
    pytester.makepyfile(test_m=TESTS.format(error="ValueError"))
    result = pytester.runpytest("--flops-update")  # the mode that writes

    result.assert_outcomes(passed=3, failed=2, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_raises _*",
            "E*ValueError: the test's own error",
            "*_ test_raises_under_a_budget _*",
            "E*ValueError: the budgeted test's own error",
            "flops: 2 tests passed, 0 failed, 0 written, 0 removed",
        ]
    )
    for ours in ("FLOP snapshot", "FLOP count changed", "FLOP budget", "not compared", "stale"):
        assert ours not in result.stdout.str()
    assert snapshot_bytes(pytester) == stored
    assert global_state() == before


def test_ctrl_c_in_the_block_leaves_no_trace(
    pytester: pytest.Pytester, stored: dict[str, bytes]
) -> None:
    before = global_state()
    pytester.makepyfile(test_m=TESTS.format(error="KeyboardInterrupt"))
    result = pytester.runpytest("--flops-update", no_reraise_ctrlc=True)

    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt: the test's own error*"])
    assert snapshot_bytes(pytester) == stored
    assert global_state() == before
    pytester.makepyfile(test_m=TESTS.format(error=None))
    pytester.runpytest().assert_outcomes(passed=6)  # and the next session counts as before
