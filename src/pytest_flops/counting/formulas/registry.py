"""The formula table and how formulas are registered in it.

A formula is a small pure function of shapes, registered on one or more
``torch.ops.<namespace>.<op>`` packets (or higher-order operators such as
``torch.ops.higher_order.flex_attention``) with :func:`register_flop_formula`.
Tensors in the op's arguments and output arrive as shape tuples (lists of
tensors as lists of shapes) and the output as ``out_shape=``; a formula
registered with ``get_raw=True`` gets the real arguments and ``out_val=``.

This table is ours on purpose: a snapshot must not change because torch's own
registry changed between releases. For ops outside ``aten`` and ``prims`` that
the table does not know, a formula the user registered with torch's
``torch.utils.flop_counter.register_flop_formula`` counts
(:func:`user_formula`): that is the user's formula, not torch's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import torch
from torch._ops import HigherOrderOperator, OpOverload, OpOverloadPacket

aten = torch.ops.aten

Shape: TypeAlias = Sequence[int]
FlopFormula: TypeAlias = Callable[..., int]
FlopTarget: TypeAlias = OpOverloadPacket | HigherOrderOperator
"""An aten (or custom) op packet, or a higher-order operator such as FlexAttention."""

FLOP_FORMULAS: dict[FlopTarget | str, FlopFormula] = {}
"""Registered formulas by op packet (or by qualified name, ``"namespace::op"``, for ops
defined only once their module is imported). Formulas here take ``(args, kwargs, out)``."""

# torch's own table has aten ops only; what else is in it the user registered
_OURS_ALONE = frozenset({"aten", "prims", "prim"})


Target: TypeAlias = FlopTarget | OpOverload | str


def register_flop_formula(
    targets: Target | Iterable[Target], *, get_raw: bool = False
) -> Callable[[FlopFormula], FlopFormula]:
    """Register ``formula`` for ``targets``; later registrations win.

    Use it for your own custom ops too::

        @register_flop_formula(torch.ops.mylib.fused_mlp)
        def fused_mlp_flop(x_shape, w1_shape, w2_shape, *, out_shape):
            ...

    An overload (``torch.ops.aten.mm.default``) registers its whole packet: the
    table counts by packet, as torch's does. A qualified name
    (``"mylib::fused_mlp"``) registers an op that is defined later. Counters
    read the table when an op first runs in a ``with`` block, so a
    registration counts from every counter's next block on, counters created
    before it too.
    """
    if isinstance(targets, (OpOverloadPacket, HigherOrderOperator, OpOverload, str)):
        targets = [targets]
    packets: list[FlopTarget | str] = []
    for target in targets:
        if isinstance(target, OpOverload):
            target = target._overloadpacket
        if not isinstance(target, (OpOverloadPacket, HigherOrderOperator, str)) or (
            isinstance(target, str) and "::" not in target
        ):
            raise TypeError(
                "register_flop_formula takes ops (torch.ops.ns.op, torch.ops.ns.op.overload or "
                f"'ns::op') or higher-order operators, got {target!r}"
            )
        packets.append(target)

    def register(formula: FlopFormula) -> FlopFormula:
        wrapped = as_table_formula(formula, get_raw=get_raw)
        for packet in packets:
            FLOP_FORMULAS[packet] = wrapped
        return formula

    return register


def as_table_formula(formula: FlopFormula, *, get_raw: bool) -> FlopFormula:
    """Adapt a user-facing formula to the ``(args, kwargs, out)`` table calling form."""
    if get_raw:

        def raw(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
            return formula(*args, out_val=out, **kwargs)

        return raw

    def shaped(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        shapes = [a.shape if isinstance(a, torch.Tensor) else _shape_of(a) for a in args]
        keywords = {k: _shape_of(v) for k, v in kwargs.items()} if kwargs else {}
        return formula(*shapes, out_shape=_shape_of(out), **keywords)

    return shaped


def table_formula(
    table: Mapping[FlopTarget | str, FlopFormula], packet: OpOverloadPacket
) -> FlopFormula | None:
    """``packet``'s formula in ``table``, registered by packet or by qualified name."""
    formula = table.get(packet)
    return formula if formula is not None else table.get(packet._qualified_op_name)


def user_formula(packet: OpOverloadPacket) -> FlopFormula | None:
    """The formula a user registered for ``packet`` with torch's own registry, if any.

    Only for ops of the user's namespaces: for ``aten`` and ``prims`` our table
    is the only source. torch's registry is read only once something imported
    it (a user registering a formula there did).
    """
    if packet._qualified_op_name.split("::")[0] in _OURS_ALONE:
        return None
    flop_counter = sys.modules.get("torch.utils.flop_counter")
    formula = None if flop_counter is None else flop_counter.flop_registry.get(packet)
    if formula is None:
        return None

    def theirs(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        return int(formula(*args, **kwargs, out_val=out))

    return theirs


def existing_packets(*names: str) -> list[OpOverloadPacket]:
    """The aten packets among ``names`` that this torch release has (newer kernels)."""
    return [getattr(aten, name) for name in names if hasattr(aten, name)]


def _shape_of(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.shape  # a torch.Size: a tuple already
    if isinstance(value, (list, tuple)):
        return type(value)(_shape_of(v) for v in value)
    return value
