"""Which phase an op runs in: forward, backward, or recompute.

An op runs in backward when an autograd node is executing. An activation
checkpoint's recomputation runs there too, but it is forward work run again:
it is the third phase, recompute.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch

from pytest_flops.counting.tally import BACKWARD, FORWARD, RECOMPUTE

__all__ = ["phase", "python_backward_nodes", "recomputing"]

_saved_tensors_hooks: Callable[[bool], Any] = torch._C._autograd._top_saved_tensors_default_hooks

_PYTHON_BACKWARD = torch.autograd.function.BackwardCFunction.apply.__code__
"""The frame in which autograd runs a custom Function's Python backward (its node is ``self``)."""


def phase(node: Any) -> int:
    """Forward outside backward (``node`` is the executing autograd node, or None); in
    backward, recompute while a checkpoint re-runs forward work."""
    if node is None:
        return FORWARD
    return RECOMPUTE if recomputing(node) else BACKWARD


def recomputing(node: Any) -> bool:
    """Whether an activation checkpoint is re-running forward work inside ``node``.

    A non-reentrant checkpoint (selective AC, ``checkpoint_wrapper``'s default)
    re-runs its function from the node that unpacks a saved tensor, under
    torch's recomputation saved-tensor hooks, or under a checkpoint's own hooks
    for a checkpoint nested in the function re-run. A reentrant one re-runs it
    in its own backward node (torch's ``CheckpointFunction``, and Megatron's of
    the same name).
    """
    hooks = _saved_tensors_hooks(False)
    if hooks is not None:
        kind = hooks[0].__qualname__.split(".", 1)[0]
        if kind == "_recomputation_hook":
            return True  # torch pushes them around the re-run only, whatever grad mode it sets
        if kind == "_checkpoint_hook" and torch.is_grad_enabled():
            # with grad disabled, a backward run inside the checkpoint's first forward
            return True
    if node.name() != "CheckpointFunctionBackward":
        return False
    # The re-run enables grad, but a reentrant checkpoint nested in it runs its first
    # forward without (as does a no_grad block of the function). Outside the node's
    # Python backward, autograd adds the gradients it returned: backward work.
    return torch.is_grad_enabled() or any(running is node for running in python_backward_nodes())


def python_backward_nodes() -> Iterator[Any]:
    """The nodes of custom autograd Functions whose Python backward is running on this
    thread, innermost first (reentrant backwards run inside one another)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is _PYTHON_BACKWARD:
            yield frame.f_locals["self"]
        frame = frame.f_back  # type: ignore[assignment]
