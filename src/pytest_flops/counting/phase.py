"""Which phase an op runs in: forward, backward, or recompute.

An op runs in backward when an autograd node is executing. An activation
checkpoint's recomputation runs there too, but it is forward work run again:
it is the third phase, recompute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pytest_flops.counting.tally import BACKWARD, FORWARD, RECOMPUTE

__all__ = ["phase"]

_saved_tensors_hooks: Callable[[bool], Any] = torch._C._autograd._top_saved_tensors_default_hooks

_CHECKPOINT_HOOKS = frozenset({"_recomputation_hook", "_checkpoint_hook"})
"""torch.utils.checkpoint's saved-tensor hook classes (their pack hooks' qualified names)."""


def phase(node: Any) -> int:
    """Forward outside backward (``node`` is the executing autograd node, or None); in
    backward, recompute while a checkpoint re-runs forward work (grad enabled, as only
    checkpoints and ``create_graph=True`` enable it there)."""
    if node is None:
        return FORWARD
    return RECOMPUTE if torch.is_grad_enabled() and _recomputing(node) else BACKWARD


def _recomputing(node: Any) -> bool:
    """Whether an activation checkpoint is re-running forward work inside ``node``.

    A reentrant checkpoint re-runs its function in its own backward node
    (torch's ``CheckpointFunction``, and Megatron's of the same name); a
    non-reentrant one (selective AC, ``checkpoint_wrapper``'s default) from
    the node that unpacks a saved tensor, under torch's recomputation
    saved-tensor hooks, or under a checkpoint's own hooks for a checkpoint
    nested in the function re-run.
    """
    if node.name() == "CheckpointFunctionBackward":
        return True
    hooks = _saved_tensors_hooks(False)
    return hooks is not None and hooks[0].__qualname__.split(".", 1)[0] in _CHECKPOINT_HOOKS
