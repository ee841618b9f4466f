"""How the counter counts each op, worked out once per op and counting block: its kind,
its FLOP formula and its bytes rule."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from functools import partial
from typing import Any

import torch
from torch._ops import HigherOrderOperator, OpOverload, OpOverloadPacket

from pytest_flops.counting.bytes_accessed import (
    GENERIC,
    ByteRule,
    byte_rule,
    bytes_accessed,
    plain_bytes,
)
from pytest_flops.counting.distributed import is_collective
from pytest_flops.counting.formulas import FlopFormula, FlopTarget, is_uncounted
from pytest_flops.counting.indexed_bytes import indexed_bytes

__all__ = ["SUBCLASS_METADATA_OPS", "BytesOf", "OpKind", "OpPlan", "plan"]

# Metadata queries that tensor subclasses (nested jagged tensors) must answer
# themselves; a mode that handles them breaks the subclass.
SUBCLASS_METADATA_OPS = frozenset(
    getattr(packet, overload)
    for packet in (
        torch.ops.aten.is_contiguous,
        torch.ops.aten.is_strides_like_format,
        torch.ops.aten.is_non_overlapping_and_dense,
        torch.ops.aten.size,
        torch.ops.aten.sym_size,
        torch.ops.aten.stride,
        torch.ops.aten.sym_stride,
        torch.ops.aten.storage_offset,
        torch.ops.aten.sym_storage_offset,
        torch.ops.aten.numel,
        torch.ops.aten.sym_numel,
        torch.ops.aten.dim,
        torch.ops.prim.layout,
        # absent before torch 2.12
        *(
            [torch.ops.aten.sym_is_contiguous]
            if hasattr(torch.ops.aten, "sym_is_contiguous")
            else []
        ),
    )
    for overload in packet.overloads()
)


class OpKind(Enum):
    SUBCLASS_METADATA = "subclass metadata"
    HIGHER_ORDER = "higher order"
    COMMUNICATION = "communication"
    COUNTED = "counted"
    UNCOUNTED = "uncounted"  # no FLOPs, bytes only
    MOVES_NOTHING = "moves nothing"  # uncounted and a view or an allocation: no bytes either
    DECOMPOSED = "decomposed"
    UNSUPPORTED = "unsupported"


BytesOf = Callable[[tuple[Any, ...], dict[str, Any], Any], int]
"""The bytes one call of an op accesses, from its ``(args, kwargs, out)``."""

OpPlan = tuple[OpKind, FlopFormula | None, BytesOf, FlopTarget]
"""How the mode counts an op: its kind, its formula (counted ones), its bytes rule as a
function, and what its counts are listed under (its packet)."""


def plan(
    func: OpOverload | HigherOrderOperator,
    formula_of: Callable[[OpOverloadPacket], FlopFormula | None],
) -> OpPlan:
    """Everything the mode needs to count ``func``, worked out on its first call."""
    kind, formula = _classify(func, formula_of)
    rule = _byte_rule_of(func)
    indexed = None if isinstance(func, HigherOrderOperator) else indexed_bytes(func)
    if indexed is not None:  # a gather or a scatter
        bytes_of: BytesOf = indexed
    else:
        bytes_of = plain_bytes if rule.plain else partial(bytes_accessed, rule)
    listed = func if isinstance(func, HigherOrderOperator) else func._overloadpacket
    return kind, formula, bytes_of, listed


def _classify(
    func: OpOverload | HigherOrderOperator,
    formula_of: Callable[[OpOverloadPacket], FlopFormula | None],
) -> tuple[OpKind, FlopFormula | None]:
    """How to count ``func``, and its formula if it has one. A formula counts even an op
    that is free by convention (a ``custom_mapping`` may price ``add``). An op that
    decomposes counts as what it decomposes into, even where it has a formula: ``matmul``
    reaches the mode whole (below autograd) inside a higher-order operator's body, ``mm``
    everywhere else."""
    if func in SUBCLASS_METADATA_OPS:
        return OpKind.SUBCLASS_METADATA, None
    if isinstance(func, HigherOrderOperator):
        return OpKind.HIGHER_ORDER, None
    if is_collective(func):
        return OpKind.COMMUNICATION, None
    formula = formula_of(func._overloadpacket)
    if is_uncounted(func) and formula is None:
        return OpKind.MOVES_NOTHING if byte_rule(func).free else OpKind.UNCOUNTED, None
    if (
        torch._C._dispatch_has_kernel_for_dispatch_key(
            func.name(), torch._C.DispatchKey.CompositeImplicitAutograd
        )
        or torch._C.DispatchKey.CompositeImplicitAutograd in func.py_kernels
    ):
        return OpKind.DECOMPOSED, formula
    return (OpKind.UNSUPPORTED, None) if formula is None else (OpKind.COUNTED, formula)


def _byte_rule_of(func: OpOverload | HigherOrderOperator) -> ByteRule:
    return GENERIC if isinstance(func, HigherOrderOperator) else byte_rule(func)
