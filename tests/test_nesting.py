"""Counters nested in counters, torch's counter beside ours, and threads.

None of these may double count: each counter sees every op of its block once.
"""

from __future__ import annotations

import threading

import torch
import torch.utils.flop_counter

from pytest_flops import FlopCounterMode

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
