"""torchvision's operators (registered by name: torchvision may not be imported).

``deform_conv2d`` counts what a convolution of the same shapes counts: the
products of its im2col matrix with the weight, 2·N·H_out·W_out·C_out·(C_in /
groups)·kH·kW. The bilinear sampling at the offsets, and the mask's modulation,
are elementwise and count 0, as interpolation does elsewhere. Its backward
counts the input and weight gradients, twice the forward; the offset and mask
gradients are reductions of elementwise products and count 0.

``roi_align``, ``roi_pool`` (interpolation and pooling) and ``nms`` count 0:
see :mod:`pytest_flops.counting.formulas.uncounted`.
"""

from __future__ import annotations

from typing import Any

from pytest_flops.counting.formulas.conv import conv_flop_count
from pytest_flops.counting.formulas.registry import Shape, register_flop_formula


@register_flop_formula("torchvision::deform_conv2d")
def deform_conv2d_flop(
    x_shape: Shape, w_shape: Shape, *args: Any, out_shape: Shape, **kwargs: Any
) -> int:
    return conv_flop_count(x_shape, w_shape, out_shape)


@register_flop_formula("torchvision::_deform_conv2d_backward")
def deform_conv2d_backward_flop(
    grad_shape: Shape, x_shape: Shape, w_shape: Shape, *args: Any, **kwargs: Any
) -> int:
    return 2 * conv_flop_count(x_shape, w_shape, grad_shape)
