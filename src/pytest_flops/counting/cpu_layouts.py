"""The layouts the CPU's kernels give outputs that their meta kernels lay out otherwise.

Meta tensors (``meta_as_cpu``, while counting) and fake ones (their mode,
``stand_ins``) give these outputs the CPU's layout: ``CPU_LAYOUTS``' ops, and layer
norm's input gradient, which the CPU (and CUDA) allocate contiguous.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch._prims_common import suggest_memory_format

aten = torch.ops.aten

__all__ = ["CPU_LAYOUTS", "as_cpu_layout", "layer_norm_backward_as_cpu"]


def layer_norm_backward_as_cpu(
    grads: tuple[torch.Tensor | None, ...],
) -> tuple[torch.Tensor | None, ...]:
    """Layer norm's gradients (meta or fake) with the input's contiguous, as the CPU
    and CUDA kernels allocate it. Fake tensors run torch's decomposition, not the meta
    kernel: their mode calls this (``stand_ins``)."""
    grad_input, *rest = grads
    if grad_input is not None and not grad_input.is_contiguous():
        grad_input = grad_input.new_empty(grad_input.shape)
    return (grad_input, *rest)


def _contiguous(out: Any, args: Sequence[Any]) -> Any:
    """Every output contiguous: the CPU kernel allocates them so."""
    if isinstance(out, tuple):
        return tuple(_contiguous(tensor, args) for tensor in out)
    return out if out.is_contiguous() else out.new_empty(out.shape)


def _in_memory_format_of(position: int) -> Callable[[Any, Sequence[Any]], Any]:
    """The (first) output in the memory format ``args[position]`` suggests, as the CPU
    kernel allocates it: channels-last for a channels-last input."""

    def layout(out: Any, args: Sequence[Any]) -> Any:
        first, *rest = out if isinstance(out, tuple) else (out,)
        memory_format = suggest_memory_format(args[position])
        if not first.is_contiguous(memory_format=memory_format):
            first = torch.empty(
                first.shape, dtype=first.dtype, device=first.device, memory_format=memory_format
            )
        return (first, *rest) if isinstance(out, tuple) else first

    return layout


CPU_LAYOUTS: dict[torch._ops.OpOverload, Callable[[Any, Sequence[Any]], Any]] = {
    aten.native_group_norm.default: _in_memory_format_of(0),
    aten.native_group_norm_backward.default: _in_memory_format_of(1),  # grad_out, input
    aten.pixel_shuffle.default: _in_memory_format_of(0),
    aten.pixel_unshuffle.default: _in_memory_format_of(0),
    aten.log_sigmoid_forward.default: _contiguous,
    aten.rrelu_with_noise.default: _contiguous,
    aten.mse_loss_backward.default: _contiguous,
    aten.smooth_l1_loss_backward.default: _contiguous,
    aten.huber_loss_backward.default: _contiguous,
}
"""Ops whose meta kernel lays out their output unlike the CPU kernel, and the CPU's layout
of that output (from the output and the op's arguments)."""


def as_cpu_layout(op: torch._ops.OpOverload, out: Any, args: Sequence[Any]) -> Any:
    """``out`` of ``op`` (meta or fake) in the CPU kernel's layout. Fake tensors run
    some of these ops' decompositions, not the meta kernel: their mode calls this."""
    return CPU_LAYOUTS[op](out, args)
