"""The one way torch is changed while counting: swapped attributes, held while any block is open."""

from __future__ import annotations

import subprocess
import sys
import threading
import types
from contextlib import ExitStack

import pytest
import torch

from pytest_flops import FlopCounterMode
from pytest_flops.counting import eager, meta_as_cpu
from pytest_flops.counting.patching import WhileCounting, swapped


def test_swapped_restores_on_error_and_removes_what_was_absent() -> None:
    owner = types.SimpleNamespace(kept=1)
    with pytest.raises(RuntimeError, match="boom"), swapped(owner, "kept", 2):
        assert owner.kept == 2
        with swapped(owner, "kept", 3), swapped(owner, "added", 4):
            assert (owner.kept, owner.added) == (3, 4)
        assert owner.kept == 2 and not hasattr(owner, "added")
        raise RuntimeError("boom")
    assert vars(owner) == {"kept": 1}


class Base:
    def method(self) -> str:
        return "base"


class Derived(Base):
    pass


def test_swapped_on_a_class_leaves_the_inherited_attribute_inherited() -> None:
    with swapped(Derived, "method", lambda self: "swapped"):
        assert Derived().method() == "swapped"
    assert "method" not in vars(Derived)
    assert Derived().method() == "base"


def owner_and_change() -> tuple[types.SimpleNamespace, list[str], WhileCounting]:
    owner = types.SimpleNamespace(value="torch's")
    made: list[str] = []

    def change(undo: ExitStack) -> None:
        made.append("made")
        undo.enter_context(swapped(owner, "value", "counting"))

    return owner, made, WhileCounting(change)


def test_the_change_is_made_by_the_first_block_and_undone_by_the_last_in_any_order() -> None:
    owner, made, patch = owner_and_change()
    outer, inner = patch.held(), patch.held()
    outer.__enter__()
    inner.__enter__()
    assert (owner.value, made) == ("counting", ["made"])  # made once
    outer.__exit__(None, None, None)  # the outer block closes first: the inner one still counts
    assert owner.value == "counting"
    inner.__exit__(None, None, None)
    assert owner.value == "torch's"
    with patch.held():  # and made again for the next block
        assert (owner.value, made) == ("counting", ["made", "made"])
    assert owner.value == "torch's"


def test_the_change_is_undone_when_a_block_raises() -> None:
    owner, _, patch = owner_and_change()
    with pytest.raises(RuntimeError, match="boom"), patch.held(), patch.held():
        raise RuntimeError("boom")
    assert owner.value == "torch's"
    with patch.held():
        assert owner.value == "counting"


def test_a_change_that_raises_half_way_is_undone_and_holds_nothing() -> None:
    owner = types.SimpleNamespace(first="torch's")
    calls: list[int] = []

    def change(undo: ExitStack) -> None:
        calls.append(1)
        undo.enter_context(swapped(owner, "first", "counting"))
        if len(calls) == 1:
            raise RuntimeError("half way")

    patch = WhileCounting(change)
    with pytest.raises(RuntimeError, match="half way"), patch.held():
        pass
    assert owner.first == "torch's"
    with patch.held():  # the failed block left no holder behind: the next one makes it
        assert (owner.first, len(calls)) == ("counting", 2)
    assert owner.first == "torch's"


def test_a_shared_change_outlives_the_thread_that_made_it() -> None:
    owner, made, patch = owner_and_change()
    opened, release, closed = threading.Event(), threading.Event(), threading.Event()

    def other_thread() -> None:
        with patch.held():
            opened.set()
            release.wait(timeout=30)
        closed.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    assert opened.wait(timeout=30)
    with patch.held():
        release.set()
        assert closed.wait(timeout=30)
        assert (owner.value, made) == ("counting", ["made"])  # the other thread closed first
    thread.join()
    assert owner.value == "torch's"


def test_a_per_thread_change_is_held_in_its_own_thread_only() -> None:
    local = threading.local()
    patch = WhileCounting(
        lambda undo: undo.enter_context(swapped(local, "on", True)), per_thread=True
    )
    seen: list[bool] = []

    def other_thread() -> None:
        seen.append(getattr(local, "on", False))
        with patch.held():
            seen.append(local.on)
        seen.append(getattr(local, "on", False))

    with patch.held():
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert local.on
    assert seen == [False, True, False]
    assert not hasattr(local, "on")


def test_extend_adds_to_a_held_change_only() -> None:
    owner, _, patch = owner_and_change()
    late = types.SimpleNamespace(value="before")

    def later(undo: ExitStack) -> None:
        undo.enter_context(swapped(late, "value", "after"))

    patch.extend(later)  # nothing held: nothing made
    assert late.value == "before"
    with patch.held():
        patch.extend(later)
        assert late.value == "after"
    assert (owner.value, late.value) == ("torch's", "before")


# -- the counter's own changes ------------------------------------------------------------


def test_nested_counters_that_raise_leave_torch_as_it_was() -> None:
    hooks_before = list(sys.meta_path)
    lstm = torch.nn.LSTM(3, 4, device="meta")
    with (
        pytest.raises(RuntimeError, match="boom"),
        FlopCounterMode(display=False) as outer,
        FlopCounterMode(display=False) as inner,  # a second counter, nested in the first
    ):
        assert meta_as_cpu._routes()
        # the stance waits for torch._dynamo's import, unless it was imported already
        assert (eager._HOOK in sys.meta_path) == ("torch._dynamo" not in sys.modules)
        lstm(torch.randn(2, 5, 3, device="meta"))
        raise RuntimeError("boom")
    assert not meta_as_cpu._routes()
    assert eager._HOOK not in sys.meta_path and sys.meta_path == hooks_before
    # LSTM(3, 4) over 5 steps of batch 2, one layer, as oneDNN runs it on the CPU:
    # per step 2*2*3*16 (input gates) + 2*2*4*16 (hidden gates) = 192 + 256 = 448,
    # so 5 * 448 = 2240 FLOP in each of the two nested counters
    assert outer.get_total_flops() == inner.get_total_flops() == 2240


@pytest.mark.slow
def test_the_stance_set_when_torch_dynamo_is_imported_inside_a_block_is_undone_after_it() -> None:
    script = """
import subprocess
import sys
import torch
from pytest_flops import FlopCounterMode
from pytest_flops.counting import eager

with FlopCounterMode(display=False):
    assert "torch._dynamo" not in sys.modules and eager._HOOK in sys.meta_path
    import torch._dynamo.eval_frame as frames
    assert frames._stance.stance == "force_eager" and eager._HOOK not in sys.meta_path
assert frames._stance.stance == "default"
with FlopCounterMode(display=False):
    assert frames._stance.stance == "force_eager"
assert frames._stance.stance == "default" and eager._HOOK not in sys.meta_path
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
