"""Convolutions, forward and backward, grouped and transposed, and the backends' own kernels."""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import Any

import torch

from pytest_flops.counting.formulas.registry import Shape, existing_packets, register_flop_formula

aten = torch.ops.aten


def conv_flop_count(
    x_shape: Shape, w_shape: Shape, out_shape: Shape, transposed: bool = False
) -> int:
    """FLOPs of a (possibly grouped) convolution.

    ``w_shape`` is ``(C_out, C_in / groups, *kernel)``, so groups are already
    accounted for: every output element takes ``C_in / groups * prod(kernel)``
    multiply-adds. A transposed conv does the same work per *input* position.
    """
    batch = x_shape[0]
    positions = prod((x_shape if transposed else out_shape)[2:])
    c_out, c_in_per_group, *kernel = w_shape
    return 2 * batch * positions * c_out * c_in_per_group * prod(kernel)


@register_flop_formula([aten.convolution, aten._convolution, aten.convolution_overrideable])
def conv_flop(
    x_shape: Shape,
    w_shape: Shape,
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    *args: Any,
    out_shape: Shape,
    **kwargs: Any,
) -> int:
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=transposed)


# A backend's own kernel, reached when called directly or through a composite
# op such as ``thnn_conv2d``. Their signatures differ after (input, weight) and
# carry no ``transposed`` flag: each kernel is one or the other.
@register_flop_formula(
    existing_packets(
        "cudnn_convolution",
        "_slow_conv2d_forward",
        "slow_conv3d_forward",
        "slow_conv_dilated2d",
        "slow_conv_dilated3d",
        "mkldnn_convolution",
        "_conv_depthwise2d",
        "miopen_convolution",
        "miopen_depthwise_convolution",
        "_nnpack_spatial_convolution",
        "_mps_convolution",
    )
)
def backend_conv_flop(
    x_shape: Shape, w_shape: Shape, *args: Any, out_shape: Shape, **kwargs: Any
) -> int:
    return conv_flop_count(x_shape, w_shape, out_shape)


@register_flop_formula(
    existing_packets(
        "slow_conv_transpose2d",
        "slow_conv_transpose3d",
        "cudnn_convolution_transpose",
        "miopen_convolution_transpose",
        "_mps_convolution_transpose",
    )
)
def backend_conv_transpose_flop(
    x_shape: Shape, w_shape: Shape, *args: Any, out_shape: Shape, **kwargs: Any
) -> int:
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=True)


def conv_backward_flop_count(
    grad_out_shape: Shape,
    x_shape: Shape,
    w_shape: Shape,
    *,
    transposed: bool,
    groups: int,
    output_mask: Sequence[bool],
    out_shape: Sequence[Shape | None],
) -> int:
    """grad_input costs what the forward costs; so does grad_weight.

    torch's formula treats grad_weight as one big ungrouped conv over
    ``(C_in, N, ...)`` and so counts every group against every other: ``groups``
    times too much. Each group only correlates its own channels, hence the
    division.
    """

    def swap_batch_and_channels(shape: Shape) -> list[int]:
        return [shape[1], shape[0], *shape[2:]]

    flops = 0
    if output_mask[0]:
        grad_input_shape = out_shape[0]
        assert grad_input_shape is not None
        flops += conv_flop_count(grad_out_shape, w_shape, grad_input_shape, not transposed)
    if output_mask[1]:
        grad_weight_shape = out_shape[1]
        assert grad_weight_shape is not None
        src, dst = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += (
            conv_flop_count(
                swap_batch_and_channels(src),
                swap_batch_and_channels(dst),
                swap_batch_and_channels(grad_weight_shape),
            )
            // groups
        )
    return flops


@register_flop_formula(aten.convolution_backward)
def conv_backward_flop(
    grad_out_shape: Shape,
    x_shape: Shape,
    w_shape: Shape,
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    groups: int,
    output_mask: Sequence[bool],
    out_shape: Sequence[Shape | None],
) -> int:
    return conv_backward_flop_count(
        grad_out_shape,
        x_shape,
        w_shape,
        transposed=transposed,
        groups=groups,
        output_mask=output_mask,
        out_shape=out_shape,
    )


@register_flop_formula(aten._slow_conv2d_backward)
def slow_conv2d_backward_flop(
    grad_out_shape: Shape,
    x_shape: Shape,
    w_shape: Shape,
    _kernel_size: Any,
    _stride: Any,
    _padding: Any,
    output_mask: Sequence[bool] = (True, True, True),
    *,
    out_shape: Sequence[Shape | None],
    **kwargs: Any,
) -> int:
    """The backward of ``thnn_conv2d``'s kernel: ungrouped and untransposed."""
    return conv_backward_flop_count(
        grad_out_shape,
        x_shape,
        w_shape,
        transposed=False,
        groups=1,
        output_mask=output_mask,
        out_shape=out_shape,
    )
