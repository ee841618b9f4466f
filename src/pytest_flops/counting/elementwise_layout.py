"""The layout of a pointwise op's output, as the CPU's and CUDA's kernels give it.

Both run pointwise ops through TensorIterator, which lays the output out as its
operands are, the first one's first. Some ops' meta kernel is a decomposition
whose last op (a ``where``, a product) follows another operand: a softplus
backward of a transposed gradient was contiguous on meta, transposed on the
CPU. Meta tensors (``meta_as_cpu``) and fake ones (their mode, ``stand_ins``)
give these ops' outputs TensorIterator's layout while counting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch._prims_common import compute_elementwise_output_strides

__all__ = ["ELEMENTWISE_LAYOUT_OPS", "elementwise_as_cpu"]

_aten = torch.ops.aten

ELEMENTWISE_LAYOUT_OPS = frozenset(
    {
        _aten.softplus_backward.default,
        _aten.hardsigmoid_backward.default,
        _aten.logit_backward.default,
        _aten.xlogy.Tensor,
        _aten.copysign.Tensor,
        _aten.special_xlog1py.default,
    }
)
"""The pointwise ops whose meta kernel lays their output out unlike TensorIterator."""


def elementwise_as_cpu(out: torch.Tensor, args: Sequence[Any]) -> torch.Tensor:
    """``out`` (meta or fake) in the layout TensorIterator gives a pointwise op's output
    of the tensors among ``args``: their common layout, the first one's first."""
    operands = [arg.expand(out.shape) for arg in args if isinstance(arg, torch.Tensor)]
    strides = compute_elementwise_output_strides(*operands)
    if out.stride() == tuple(strides):
        return out
    return out.new_empty_strided(out.shape, strides)
