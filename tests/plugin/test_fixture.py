"""The ``Flops`` object behind the fixture, used directly with real torch modules."""

import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from pytest_flops import Flops
from tests.forked_pytest import runpytest_forked
from tests.helpers import Net


@torch.library.custom_op("pytest_flops_tests::halve", mutates_args=())
def halve(x: torch.Tensor) -> torch.Tensor:
    return x / 2


def test_counts_forward_backward_by_op_and_by_module() -> None:
    flops = Flops()
    net = Net()
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()
    # forward addmm 2*4*9*10 = 720; backward: weight grad mm 2*10*4*9 = 720 (x needs no grad)
    assert (flops.total, flops.forward, flops.backward) == (1440, 720, 720)
    assert flops.by_op == {"aten.addmm": 720, "aten.mm": 720}
    assert flops.by_module == {
        "Net": {"aten.addmm": 720, "aten.mm": 720},
        "Net.fc": {"aten.addmm": 720, "aten.mm": 720},
    }
    assert flops.unsupported == {}


def test_without_a_model_only_the_global_row_is_kept() -> None:
    flops = Flops()
    net = Net()
    with flops():
        net(torch.randn(4, 9))
    assert flops.total == 720  # 2*4*9*10
    assert flops.by_module == {}
    assert list(flops.measurements["default"].modules) == ["Global"]


def test_model_rows_exclude_other_modules() -> None:
    flops = Flops()
    net, other = Net(), torch.nn.Linear(9, 3)
    with flops(net):
        net(torch.randn(4, 9))
        other(torch.randn(4, 9))
    assert flops.total == 720 + 216  # 2*4*9*10 + 2*4*9*3: Global holds both
    assert set(flops.by_module) == {"Net", "Net.fc"}


def test_blocks_accumulate_and_names_are_kept_apart() -> None:
    flops = Flops()
    net = Net()
    with torch.no_grad():
        for _ in range(2):
            with flops(net):
                net(torch.randn(4, 9))
        with flops(net, name="decode"):
            net(torch.randn(1, 9))
    assert flops["default"].total == 1440  # two blocks of 2*4*9*10
    assert flops["decode"].total == 180  # 2*1*9*10
    assert flops.total == 1620
    assert set(flops.measurements) == {"default", "decode"}
    with pytest.raises(KeyError, match="no measurement named 'prefill'"):
        flops["prefill"]


def test_operators_without_formula_are_listed() -> None:
    flops = Flops()
    with flops():
        halve(halve(torch.ones(3)))
    assert flops.unsupported == {"pytest_flops_tests.halve": 2}
    assert flops.total == 0


def test_nested_blocks_raise_instead_of_double_counting() -> None:
    flops = Flops()
    with pytest.raises(RuntimeError, match="cannot be nested"), flops(), flops():
        pass
    assert not flops.measured
    assert _get_current_dispatch_mode() is None


def test_a_block_that_raises_is_discarded_and_cleans_up() -> None:
    flops = Flops()
    net = Net()
    with pytest.raises(ValueError, match="boom"), flops(net):
        net(torch.randn(4, 9))
        raise ValueError("boom")
    assert not flops.measured and flops.total == 0
    assert _get_current_dispatch_mode() is None
    assert not torch.nn.modules.module._global_forward_pre_hooks
    assert not torch.nn.modules.module._global_forward_hooks
    with flops(net):  # usable again afterwards
        net(torch.randn(4, 9))
    assert flops.total == 720


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: f("not a module"), "expected a torch.nn.Module, got str"),
        (lambda f: f(name=""), "expected a non-empty string"),
    ],
)
def test_bad_arguments(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match=message):
        call(Flops())


# -- blocks that never count ---------------------------------------------------------------


def test_a_block_never_entered_fails_naming_its_line() -> None:
    flops = Flops()
    net = Net()
    flops(net)  # the mistake: no `with`
    line = sys._getframe().f_lineno - 1
    net(torch.randn(4, 9))
    with pytest.raises(RuntimeError) as raised:
        flops._close("the call phase ended")
    assert str(raised.value) == (
        "flops: 1 block(s) made but never entered with `with`, so nothing in them was "
        "measured:\n"
        f"  {Path(__file__).relative_to(Path.cwd())}:{line}: flops(net)  # the mistake: no `with`\n"
        "Write `with flops(model):` and put the code to count inside the block."
    )
    assert not flops.measured


def test_entered_blocks_and_failing_tests_close_quietly() -> None:
    flops = Flops()
    block = flops()
    with block:
        torch.ones(2, 2) @ torch.ones(2, 2)
    flops._close("the call phase ended")  # every block was entered
    assert flops.total == 16  # 2*2*2*2
    unentered = Flops()
    unentered()
    try:
        raise AssertionError("the test's own failure")
    except AssertionError:
        unentered._close("the call phase ended")  # its own error is the one to read


def test_with_flops_without_a_call_says_how_to_write_it() -> None:
    hint = r"`with flops:` is missing its call: write `with flops\(model\):`"
    with pytest.raises(TypeError, match=hint), Flops():
        pass


UNENTERED = """
import pytest
import torch


def test_unentered(flops):
    model = torch.nn.Linear(4, 4)
    flops(model)
    model(torch.randn(2, 4))


def test_asks_and_measures_nothing(flops):
    assert flops.total == 0


def test_measures(flops):
    with flops():
        torch.ones(2, 2) @ torch.ones(2, 2)


@pytest.mark.parametrize("flops", [1, 2])
def test_a_value_named_flops(flops):
    assert flops > 0  # a parametrized value, not the fixture: never named idle
"""


@pytest.mark.slow
def test_an_unentered_block_fails_even_under_update_and_idle_tests_are_named(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_u=UNENTERED)
    result = runpytest_forked(pytester, "--flops-update", "-W", "error")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.no_fnmatch_line("*test_a_value_named_flops*")
    result.stdout.fnmatch_lines(
        [
            "E*RuntimeError: flops: 1 block(s) made but never entered with `with`, so nothing "
            "in them was measured:",
            "E*  test_u.py:7: flops(model)",  # makepyfile drops the leading blank line
            "flops: 0 tests passed, 0 failed, 1 written, 0 removed",
            "flops: 2 test(s) asked for the flops fixture but measured nothing "
            "(no `with flops(...)` block finished):",
            "  test_u.py::test_asks_and_measures_nothing",
            "  test_u.py::test_unentered",
        ]
    )


STRADDLING = """
import os
import pytest
import torch

@pytest.fixture
def across(flops):
    model = torch.nn.Linear(3, int(os.environ.get("WIDTH", "4")))
    with flops(model):
        yield
        model(torch.randn(2, 3))

def test_across(across):
    pass
"""


@pytest.mark.slow
def test_a_block_left_open_across_the_call_fails_instead_of_passing_uncompared(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It counted in the fixture's teardown, after the test was compared: it used to
    # pass whatever it counted, and --flops-update wrote nothing.
    pytester.makepyfile(test_s=STRADDLING)
    for args, width in ((("--flops-update",), "4"), ((), "9")):
        monkeypatch.setenv("WIDTH", width)
        result = runpytest_forked(pytester, *args)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            ["E*RuntimeError: flops: a `with flops(...)` block was still open when the "
             "test's call ended (entered in a fixture and left in its teardown?)*"]
        )  # fmt: skip
    assert not (pytester.path / "__flops__").exists()


def test_a_block_left_open_when_the_call_ends_raises() -> None:
    flops = Flops()
    block = flops(Net())
    block.__enter__()
    with pytest.raises(RuntimeError, match="still open when the test's call ended"):
        flops._close("compared")
    block.__exit__(None, None, None)
