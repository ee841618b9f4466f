"""Bytes accessed by gathers and scatters: the elements they index, not whole tensors.

A gather (``embedding``, ``index_select``, ``gather``, ``x[index]``, ``take``) reads
from its source the elements it gathers, at most the whole source once, and reads
its index; a scatter into ``self`` (``index_copy_``, ``index_put_``, ``scatter_``...)
writes the elements it indexes, and reads them first where it accumulates into them
(``index_add_``, ``scatter_add_``, ``accumulate=True``). Every other tensor follows
the general rules of :mod:`pytest_flops.counting.bytes_accessed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch._ops import OpOverload

from pytest_flops.counting.bytes_accessed import byte_rule, bytes_accessed, tensor_bytes

__all__ = ["indexed_bytes"]

_aten = torch.ops.aten

Elements = Callable[[Sequence[Any], Any], int]
"""The elements an op accesses of one of its tensors, from its ``(args, out)``."""


def _gathered(args: Sequence[Any], out: Any) -> int:
    return int(out.numel())


def _rows_looked_up(args: Sequence[Any], out: Any) -> int:
    """An embedding's: a row of its table (argument 0) per index (argument 1)."""
    table, indices = args[0], args[1]
    return int(indices.numel()) * math.prod(table.shape[1:])


def _source_elements(args: Sequence[Any], out: Any) -> int:
    return int(args[3].numel())


def _index_elements(args: Sequence[Any], out: Any) -> int:
    return int(args[2].numel())


def _filled_slices(args: Sequence[Any], out: Any) -> int:
    """``index_fill_``'s: a slice of ``self`` along ``dim`` per index."""
    target, dim, index = args[0], args[1], args[2]
    if target.dim() == 0:
        return int(index.numel() > 0)
    return int(index.numel()) * math.prod(
        size for d, size in enumerate(target.shape) if d != dim % target.dim()
    )


def _put_elements(args: Sequence[Any], out: Any) -> int:
    """``index_put_``'s: the elements of ``self[indices]``; a boolean mask picks a
    number only its values tell, so all of ``self`` then."""
    target, indices = args[0], args[1]
    index_shapes = []
    unindexed = list(target.shape)
    for d, index in enumerate(indices):
        if index is None:
            continue
        if index.dtype in (torch.bool, torch.uint8):
            return int(target.numel())
        index_shapes.append(index.shape)
        unindexed[d] = 1
    return math.prod(torch.broadcast_shapes(*index_shapes)) * math.prod(unindexed)


def _always(args: Sequence[Any]) -> bool:
    return True


def _never(args: Sequence[Any]) -> bool:
    return False


def _when_accumulating(args: Sequence[Any]) -> bool:
    """``index_put_``'s ``accumulate`` (argument 3, False when left out)."""
    return len(args) > 3 and bool(args[3])


# overload -> {position: elements accessed}, and whether self's are read before written
_RULES: dict[OpOverload, tuple[dict[int, Elements], Callable[[Sequence[Any]], bool]]] = {
    _aten.embedding.default: ({0: _rows_looked_up}, _never),
    _aten._embedding_bag.default: ({0: _rows_looked_up}, _never),
    _aten._embedding_bag_forward_only.default: ({0: _rows_looked_up}, _never),
    _aten.index_select.default: ({0: _gathered}, _never),
    _aten.gather.default: ({0: _gathered}, _never),
    _aten.index.Tensor: ({0: _gathered}, _never),
    _aten.take.default: ({0: _gathered}, _never),
    _aten.index_copy_.default: ({0: _source_elements}, _never),
    _aten.index_add_.default: ({0: _source_elements}, _always),
    _aten.index_fill_.int_Scalar: ({0: _filled_slices}, _never),
    _aten.index_fill_.int_Tensor: ({0: _filled_slices}, _never),
    _aten.scatter_.src: ({0: _index_elements, 3: _index_elements}, _never),
    _aten.scatter_.value: ({0: _index_elements}, _never),
    _aten.scatter_.reduce: ({0: _index_elements, 3: _index_elements}, _always),
    _aten.scatter_.value_reduce: ({0: _index_elements}, _always),
    _aten.scatter_add_.default: ({0: _index_elements, 3: _index_elements}, _always),
    _aten.scatter_reduce_.two: ({0: _index_elements, 3: _index_elements}, _always),
    _aten.index_put_.default: ({0: _put_elements}, _when_accumulating),
    _aten._index_put_impl_.default: ({0: _put_elements}, _when_accumulating),
}


def indexed_bytes(op: OpOverload) -> Callable[[tuple[Any, ...], dict[str, Any], Any], int] | None:
    """The bytes function of a gather or scatter (None for every other op)."""
    found = _RULES.get(op)
    if found is None:
        return None
    partial, reads_self = found
    rule = byte_rule(op)

    def bytes_of(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        rest = list(args)
        total = 0
        for position, elements in partial.items():
            tensor: Tensor = args[position]
            rest[position] = None  # counted here, not by the general rules
            size = min(elements(args, out) * tensor.element_size(), tensor_bytes(tensor))
            total += 2 * size if position == 0 and reads_self(args) else size
        return total + bytes_accessed(rule, rest, kwargs, out)

    return bytes_of
