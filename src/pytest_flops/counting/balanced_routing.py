"""The routing convention of stand-in counts: indices picked from stand-ins are balanced.

A router's ``topk`` (or ``argmax``, ``sort``...) of stand-in scores has no
values to pick by, yet its indices decide which experts run, and on which
tokens. So they take balanced values: token t's k experts are t*k .. t*k+k-1
modulo the number of experts. :class:`BalancedRouting` applies the same
convention to real tensors, so a CPU run can be routed as a stand-in count is.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

BALANCED_ROUTING = (
    "balanced routing: indices computed from stand-ins (topk, sort, argmax, max, min) took "
    "balanced values (token t's k experts are t*k .. t*k+k-1 modulo the number of "
    "experts): totals are exact where a token's work does not depend on which experts it "
    "meets (no capacity limit), and every expert gets the same rows"
)

# ops whose index outputs may decide what work runs: their dim argument's position, default
_DIM_ARGUMENT: dict[Any, tuple[int, int | None]] = {
    aten.topk.default: (2, -1),
    aten.sort.default: (1, -1),
    aten.sort.stable: (2, -1),
    aten.argmax.default: (1, None),
    aten.argmin.default: (1, None),
    aten.max.dim: (1, None),
    aten.min.dim: (1, None),
}
INDEX_OUTPUTS = frozenset(_DIM_ARGUMENT)
_SPREAD = INDEX_OUTPUTS - {aten.sort.default, aten.sort.stable}  # a sort permutes its row


def balanced_indices(
    shape: tuple[int, ...], dim: int | None, size: int, *, spread: bool
) -> torch.Tensor:
    """Indices into ``size`` entries along ``dim``: with ``spread``, row r's j-th pick is
    ``(r * k + j) % size`` (k picks per row: distinct when k <= size, even over rows);
    else every row holds ``0, 1, ..., k-1`` (a sort's identity permutation)."""
    if dim is None or not shape:
        return torch.zeros(shape, dtype=torch.long)
    dim = dim % len(shape)
    picks = shape[dim]
    rows = math.prod(shape) // max(picks, 1)
    row = torch.arange(rows).unsqueeze(1) * (picks if spread else 0)
    grid = (row + torch.arange(picks)) % size
    moved = [n for i, n in enumerate(shape) if i != dim] + [picks]
    return grid.reshape(moved).movedim(-1, dim).contiguous()


def balanced_output(
    func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
) -> Any:
    """``out`` of ``func`` (one of ``INDEX_OUTPUTS``) with its indices balanced: real CPU
    tensors, made outside any dispatch mode by the caller."""
    source: torch.Tensor = args[0]
    indices = out[1] if isinstance(out, tuple) else out
    position, default = _DIM_ARGUMENT[func]
    dim = kwargs.get("dim", args[position] if len(args) > position else default)
    size = source.shape[dim] if dim is not None and source.dim() else max(source.numel(), 1)
    values = balanced_indices(tuple(indices.shape), dim, size, spread=func in _SPREAD)
    values = values.to(indices.dtype)
    return (out[0], values) if isinstance(out, tuple) else values


class BalancedRouting(TorchDispatchMode):
    """Real floating-point tensors routed by the convention: inside, every index output of
    ``INDEX_OUTPUTS`` on floating-point input is balanced, as a stand-in count's is.

    For checking a count of a model whose experts are modules of their own (their rows
    follow the routing) against a real run routed the same way.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in INDEX_OUTPUTS and args[0].is_floating_point():
            return balanced_output(func, args, kwargs, out)
        return out
