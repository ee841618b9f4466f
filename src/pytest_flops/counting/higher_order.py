"""Higher-order operators under the counter: one with a formula counts whole, one that
runs user code (``cond``, ``while_loop``, ``scan``, ``map``...) counts its bodies' ops,
and a user's triton kernel counts with its formula without being launched.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from typing import TYPE_CHECKING, Any

import torch
from torch._ops import HigherOrderOperator, OpOverload, OpOverloadPacket
from torch._subclasses.fake_tensor import is_fake
from torch.utils._python_dispatch import _disable_current_modes
from torch.utils._pytree import tree_leaves

from pytest_flops.counting.formulas import is_triton_kernel
from pytest_flops.counting.tally import Tally, op_name

if TYPE_CHECKING:
    from pytest_flops.counting.counter import FlopCounterMode

__all__ = ["dispatch_higher_order"]

_EAGER_KERNEL = torch._C.DispatchKey.CompositeExplicitAutograd

_TRITON_KERNEL_WRAPPERS = frozenset(
    {"triton_kernel_wrapper_mutation", "triton_kernel_wrapper_functional"}
)


def dispatch_higher_order(
    mode: FlopCounterMode, hop: HigherOrderOperator, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Run a higher-order operator beneath ``mode``, counting what it runs.

    One with a formula (FlexAttention) counts as a whole. One that runs
    user code (``cond``, ``while_loop``, ``scan``, ``map``,
    ``invoke_subgraph``, checkpoint wrappers...) runs its eager kernel with
    the mode around each body call, so the body's ops count as many times
    as they run, in the module that called it. A ``cond`` whose predicate
    has no value (meta, fake) counts its larger branch: an upper bound.
    Only a HOP whose body cannot be seen is listed as unsupported.
    """
    if hop.name() in _TRITON_KERNEL_WRAPPERS:
        return _dispatch_triton_kernel(mode, hop, kwargs)
    formula = mode.formulas.get(hop)
    if formula is not None:
        out = hop(*args, **kwargs)
        mode._record(hop, formula(args, kwargs, out), args, kwargs, out)
        return out
    eager = hop.py_kernels.get(_EAGER_KERNEL)
    bodies = [i for i, arg in enumerate(args) if _is_body(arg)]
    if eager is None or not bodies or _unknown_iterations(hop, args):
        mode._tally.unsupported[op_name(hop)] += 1
        return hop(*args, **kwargs)
    if hop is torch.ops.higher_order.cond and _has_no_value(args[0]):
        return _larger_branch(mode, *args)
    counted = [_counting_body(mode, arg) if i in bodies else arg for i, arg in enumerate(args)]
    # Below the mode nothing else may run (the eager kernels check): a fake
    # tensor mode's own handler would run a body once, for its shapes only.
    with _disable_current_modes():
        return eager(*counted, **kwargs)


def _dispatch_triton_kernel(
    mode: FlopCounterMode, hop: HigherOrderOperator, kwargs: dict[str, Any]
) -> Any:
    """A user's triton kernel counts with its formula and, as in torch's counter, is
    not launched unless ``skip_unsupported``: counting then runs where triton cannot
    launch (CPU, meta, fake). One with no formula is listed as unsupported. Its bytes
    are not known: a kernel's arguments are not what it reads."""
    kernel = _jit_function(kwargs["kernel_idx"])
    formula = mode.formulas.get(kernel)
    if formula is None:
        mode._tally.unsupported[op_name(kernel)] += 1
    else:
        mode._record(kernel, formula((), kwargs, None), (), {}, None)
    if mode.skip_unsupported:
        return hop(**kwargs)
    if "tensors_to_clone" in kwargs:  # the functional form returns its outputs' copies
        return {name: kwargs["kwargs"][name].clone() for name in kwargs["tensors_to_clone"]}
    return None


def _counting_body(mode: FlopCounterMode, body: Callable[..., Any]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        with mode._counting_again():
            return body(*args, **kwargs)

    return update_wrapper(counted, body, updated=())


def _larger_branch(
    mode: FlopCounterMode,
    pred: Any,
    true_fn: Callable[..., Any],
    false_fn: Callable[..., Any],
    operands: Any,
) -> Any:
    """``cond`` with a predicate that has no value: the branch that counts more FLOPs."""
    branches: list[tuple[int, Any, Tally]] = []
    for branch in (true_fn, false_fn):
        kept, mode._tally = mode._tally, Tally()  # each branch counts apart
        try:
            with _disable_current_modes(), mode._counting_again():
                out = branch(*operands)
        finally:
            tally, mode._tally = mode._tally, kept
        branches.append((tally.total_flops(), out, tally))
    _, out, tally = max(branches, key=lambda b: b[0])
    mode._tally.add(tally)
    return out


def _jit_function(kernel_idx: int) -> Any:
    """The ``@triton.jit`` kernel a wrapper HOP launches, out of any autotune or
    heuristics wrapper (a formula is registered on the kernel itself)."""
    from torch._higher_order_ops.triton_kernel_wrap import kernel_side_table

    kernel: Any = kernel_side_table.get_kernel(kernel_idx)
    while not is_triton_kernel(kernel) and hasattr(kernel, "fn"):
        kernel = kernel.fn
    return kernel


def _is_body(arg: object) -> bool:
    """User code a higher-order operator runs: a function or a (graph) module."""
    return callable(arg) and not isinstance(
        arg, (torch.Tensor, OpOverload, OpOverloadPacket, HigherOrderOperator, type)
    )


def _has_no_value(value: object) -> bool:
    """A meta or fake tensor, or a symbolic bool: control flow cannot read it."""
    if isinstance(value, torch.Tensor):
        return value.device.type == "meta" or is_fake(value)
    return isinstance(value, torch.SymBool)


def _unknown_iterations(hop: HigherOrderOperator, args: tuple[Any, ...]) -> bool:
    """A ``while_loop`` on tensors with no values: how often its body runs is unknowable."""
    return hop.name().startswith("while_loop") and any(map(_has_no_value, tree_leaves(args)))
