"""Counters nested in counters, torch's counter beside ours, threads: never a silent double count.

Counter level: each counter sees every op of its block once. Through the
``flops`` fixture:

* ``with flops(...)`` inside another block of the same test: RuntimeError, and
  neither block counts (both are discarded, so nothing reaches a snapshot).
* torch's ``FlopCounterMode`` (or our own) inside or around a block: each
  counter counts what ran inside it, once.
* Another thread: a block counts the thread that opened it. Work that other
  threads do meanwhile is not counted; a thread may open a block of its own
  once no other block of the test is open.
"""

from __future__ import annotations

import threading

import pytest
import torch
import torch.utils.flop_counter

from pytest_flops import FlopCounterMode
from tests.helpers import stored

MM = 2 * 4 * 5 * 6  # mm of (4, 5) @ (5, 6)


def mm() -> torch.Tensor:
    return torch.mm(torch.randn(4, 5), torch.randn(5, 6))


def test_same_instance_nested_counts_once() -> None:
    mode = FlopCounterMode(display=False)
    with mode:
        mm()
        with mode:
            mm()
        mm()
    assert mode.get_total_flops() == 3 * MM


def test_two_instances_nested_each_count_their_block_once() -> None:
    outer, inner = FlopCounterMode(display=False), FlopCounterMode(display=False)
    with outer:
        mm()
        with inner:
            mm()
    assert outer.get_total_flops() == 2 * MM
    assert inner.get_total_flops() == MM


def test_torch_counter_inside_ours() -> None:
    ours = FlopCounterMode(display=False)
    theirs = torch.utils.flop_counter.FlopCounterMode(display=False)
    model = torch.nn.Linear(5, 6, bias=False)
    with ours:
        with theirs:
            model(torch.randn(4, 5, requires_grad=True)).sum().backward()
        mm()
    # linear forward MM, backward grad_input + grad_weight 2 * MM, then one more mm
    assert theirs.get_total_flops() == 3 * MM
    assert ours.get_total_flops() == 4 * MM
    assert ours.flop_counts["Linear"][torch.ops.aten.mm] == 3 * MM
    assert len(torch.nn.modules.module._global_forward_hooks) == 0


def test_ours_inside_torch_counter() -> None:
    ours = FlopCounterMode(display=False)
    theirs = torch.utils.flop_counter.FlopCounterMode(display=False)
    with theirs:
        mm()
        with ours:
            mm()
    assert theirs.get_total_flops() == 2 * MM
    assert ours.get_total_flops() == MM


def test_work_in_another_thread_is_not_counted() -> None:
    # Dispatch modes are thread-local: a thread that did not enter the counter
    # runs uncounted, and its module calls leave the counter's stack alone.
    model = torch.nn.Linear(5, 6, bias=False)
    results: list[int] = []

    def other_thread() -> None:
        model(torch.randn(4, 5))
        with FlopCounterMode(display=False) as own:
            mm()
        results.append(own.get_total_flops())

    with FlopCounterMode(display=False) as mode:
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        model(torch.randn(4, 5))
    assert results == [MM]
    assert mode.get_total_flops() == MM
    assert mode.to_measurement().by_module == {"Linear": {"aten.mm": MM}}


def test_another_threads_forward_leaves_backward_attribution_alone() -> None:
    # Each thread numbers its autograd nodes from 0. Counting in a fresh thread
    # while another fresh thread runs a module forward makes the two numberings
    # overlap: that forward's module must not claim this thread's backward.
    results: list[dict[str, dict[str, int]]] = []

    def count() -> None:
        model = torch.nn.Sequential(torch.nn.Linear(5, 6, bias=False))
        other = torch.nn.Linear(5, 7, bias=False)
        with FlopCounterMode(display=False) as mode:
            worker = threading.Thread(target=lambda: other(torch.randn(4, 5, requires_grad=True)))
            worker.start()
            worker.join()
            model(torch.randn(4, 5, requires_grad=True)).sum().backward()
        results.append(mode.to_measurement().by_module)

    counting = threading.Thread(target=count)
    counting.start()
    counting.join()
    # forward MM, backward grad_input + grad_weight 2 * MM, all in Sequential.0
    assert results == [{"Sequential": {"aten.mm": 3 * MM}, "Sequential.0": {"aten.mm": 3 * MM}}]


# -- through the fixture ----------------------------------------------------------

TESTS = """
import threading

import pytest
import torch
import torch.utils.flop_counter

import pytest_flops

MM = 2 * 4 * 5 * 6  # mm of (4, 5) @ (5, 6) = 240


def mm():
    return torch.mm(torch.randn(4, 5), torch.randn(5, 6))


def in_a_thread(work):
    errors = []

    def run():
        try:
            work()
        except RuntimeError as error:
            errors.append(str(error))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return errors


def test_nested_blocks(flops):
    with flops(name="outer"):
        mm()
        with flops(name="inner"):
            mm()


def test_torch_counter_inside(flops):
    linear = torch.nn.Linear(5, 6, bias=False)
    theirs = torch.utils.flop_counter.FlopCounterMode(display=False)
    with flops(linear):
        with theirs:
            linear(torch.randn(4, 5))
        mm()
    assert theirs.get_total_flops() == MM
    assert flops.total == 2 * MM
    assert flops.by_module == {"Linear": {"aten.mm": MM}}


def test_torch_counter_around(flops):
    theirs = torch.utils.flop_counter.FlopCounterMode(display=False)
    with theirs:
        mm()
        with flops():
            mm()
    assert theirs.get_total_flops() == 2 * MM
    assert flops.total == MM


def test_our_counter_inside(flops):
    with flops():
        with pytest_flops.FlopCounterMode(display=False) as ours:
            mm()
        mm()
    assert ours.get_total_flops() == MM
    assert flops.total == 2 * MM


@pytest.mark.limit_flops(MM)
def test_whole_call_budget_with_torch_counter_inside():
    # Passes only if the call's one mm is counted once: the budget is exactly MM.
    with torch.utils.flop_counter.FlopCounterMode(display=False) as theirs:
        mm()
    assert theirs.get_total_flops() == MM


@pytest.mark.limit_flops(MM - 1)
def test_whole_call_budget_one_below():
    with torch.utils.flop_counter.FlopCounterMode(display=False):
        mm()


def test_work_in_another_thread(flops):
    linear = torch.nn.Linear(5, 6, bias=False)
    with flops(linear):
        assert in_a_thread(lambda: linear(torch.randn(4, 5))) == []
        linear(torch.randn(4, 5))
    assert flops.total == MM  # the main thread's call only
    assert flops.by_module == {"Linear": {"aten.mm": MM}}


def test_blocks_in_two_threads(flops):
    def block():
        with flops(name="thread"):
            mm()

    with flops(name="main"):
        mm()
        errors = in_a_thread(block)  # while main's block is open
    assert len(errors) == 1 and "nor open in two threads at once" in errors[0]
    assert in_a_thread(block) == []  # after it closed
    assert (flops["main"].total, flops["thread"].total) == (MM, MM)
"""


def test_nesting_and_threads_through_the_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_m=TESTS)
    result = pytester.runpytest("--flops-update")
    result.assert_outcomes(passed=6, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "E   *RuntimeError: flops: a `with flops(...)` block of this test is already open: "
            "blocks cannot be nested*",
            "FLOP budget exceeded by test_m.py::test_whole_call_budget_one_below: "
            "used 240 FLOP, limit 239 FLOP",
        ]
    )
    totals = {
        test: {name: m["total"] for name, m in document["measurements"].items()}
        for test, document in stored(pytester).items()
    }
    # Nested blocks store nothing; every other count is stored once.
    assert totals == {
        "test_torch_counter_inside": {"default": 480},  # 2 * 240
        "test_torch_counter_around": {"default": 240},
        "test_our_counter_inside": {"default": 480},
        "test_work_in_another_thread": {"default": 240},
        "test_blocks_in_two_threads": {"main": 240, "thread": 240},
    }
