"""Grouped and depthwise convolution backward: grad input and grad weight each cost a forward.

A convolution's forward is ``2 · B · output positions · C_out · (C_in / groups)
· kernel size``. torch's grad-weight formula treats the grouped conv as one
ungrouped conv and counts ``groups`` times too much; ours divides it back.

A backend's own convolution kernel, called directly or reached through a
composite op such as ``thnn_conv2d``, counts what ``F.conv*`` counts.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from pytest_flops import FlopCounterMode

ConvCall = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def conv1d(x: torch.Tensor, w: torch.Tensor, groups: int) -> torch.Tensor:
    return F.conv1d(x, w, padding=1, groups=groups)


def conv2d(x: torch.Tensor, w: torch.Tensor, groups: int) -> torch.Tensor:
    return F.conv2d(x, w, padding=1, groups=groups)


def conv3d(x: torch.Tensor, w: torch.Tensor, groups: int) -> torch.Tensor:
    return F.conv3d(x, w, padding=1, groups=groups)


def conv_transpose2d(x: torch.Tensor, w: torch.Tensor, groups: int) -> torch.Tensor:
    return F.conv_transpose2d(x, w, padding=1, groups=groups)


# (conv, x shape, weight shape given groups, groups, forward FLOPs)
Conv = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
CASES: dict[str, tuple[Conv, tuple[int, ...], Callable[[int], tuple[int, ...]], int, int]] = {
    # 2 * 2 batch * 36 positions * 8 out * 8 in * 9 = 82,944, divided by groups
    "conv2d_groups_1": (conv2d, (2, 8, 6, 6), lambda g: (8, 8 // g, 3, 3), 1, 82_944),
    "conv2d_groups_2": (conv2d, (2, 8, 6, 6), lambda g: (8, 8 // g, 3, 3), 2, 41_472),
    "conv2d_groups_4": (conv2d, (2, 8, 6, 6), lambda g: (8, 8 // g, 3, 3), 4, 20_736),
    "conv2d_depthwise": (conv2d, (2, 8, 6, 6), lambda g: (8, 8 // g, 3, 3), 8, 10_368),
    # 2*2*10 positions*6*6*3 = 4,320 / groups
    "conv1d_groups_3": (conv1d, (2, 6, 10), lambda g: (6, 6 // g, 3), 3, 1_440),
    "conv1d_depthwise": (conv1d, (2, 6, 10), lambda g: (6, 6 // g, 3), 6, 720),
    # 2*1*64 positions*4*1*27 = 13,824
    "conv3d_depthwise": (conv3d, (1, 4, 4, 4, 4), lambda g: (4, 4 // g, 3, 3, 3), 4, 13_824),
    # transposed: per input position, weight (C_in, C_out / groups, 3, 3):
    # 2*2*25*4*4*9 = 14,400 / groups
    "conv_transpose2d_groups_2": (
        conv_transpose2d,
        (2, 4, 5, 5),
        lambda g: (4, 4 // g, 3, 3),
        2,
        7_200,
    ),
    "conv_transpose2d_depthwise": (
        conv_transpose2d,
        (2, 4, 5, 5),
        lambda g: (4, 4 // g, 3, 3),
        4,
        3_600,
    ),
}


def forward_and_backward(
    conv: ConvCall, x: torch.Tensor, w: torch.Tensor, groups: int
) -> tuple[int, int]:
    with FlopCounterMode(display=False) as mode:
        conv(x, w, groups).sum().backward()
    measured = mode.to_measurement()
    return measured.forward, measured.backward


@pytest.mark.parametrize("case", CASES)
def test_backward_is_twice_forward_when_input_and_weight_need_grad(case: str) -> None:
    conv, x_shape, weight_shape, groups, forward = CASES[case]
    x = torch.randn(x_shape, requires_grad=True)
    w = torch.randn(weight_shape(groups), requires_grad=True)

    assert forward_and_backward(conv, x, w, groups) == (forward, 2 * forward)


@pytest.mark.parametrize("input_needs_grad", [True, False])
@pytest.mark.parametrize("case", ["conv2d_groups_4", "conv_transpose2d_groups_2"])
def test_each_gradient_alone_costs_one_forward(case: str, input_needs_grad: bool) -> None:
    conv, x_shape, weight_shape, groups, forward = CASES[case]
    x = torch.randn(x_shape, requires_grad=input_needs_grad)
    w = torch.randn(weight_shape(groups), requires_grad=not input_needs_grad)

    assert forward_and_backward(conv, x, w, groups) == (forward, forward)


aten = torch.ops.aten

# x: (2, 4, 6, 6), weight (8, 4, 3, 3); 3-D x: (1, 2, 4, 4, 4), weight (3, 2, 3, 3, 3).
# (kernel call, forward FLOPs)
BACKEND_KERNELS: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], int]] = {
    # 4x4 outputs: 2 * 2 batch * 16 * 8 C_out * 4 C_in * 9 = 18_432
    "thnn_conv2d": (lambda x, w: aten.thnn_conv2d(x, w, [3, 3]), 18_432),
    "mkldnn_convolution": (
        lambda x, w: aten.mkldnn_convolution(x, w, None, [0, 0], [1, 1], [1, 1], 1),
        18_432,
    ),
    # padding 1, dilation 2: still 4x4 outputs
    "slow_conv_dilated2d": (
        lambda x, w: aten.slow_conv_dilated2d(x, w, [3, 3], None, [1, 1], [1, 1], [2, 2]),
        18_432,
    ),
    # transposed, weight (C_in 4, C_out 8, 3, 3): per *input* position,
    # 2 * 2 batch * 36 * 4 * 8 * 9 = 41_472
    "slow_conv_transpose2d": (
        lambda x, w: aten.slow_conv_transpose2d(x, w.transpose(0, 1), [3, 3]),
        41_472,
    ),
    # 2x2x2 outputs: 2 * 1 * 8 * 3 C_out * 2 C_in * 27 = 2_592
    "slow_conv3d": (lambda x, w: aten.slow_conv3d(x, w, [3, 3, 3]), 2_592),
    # padding 1: 4x4x4 outputs, 2 * 1 * 64 * 3 * 2 * 27 = 20_736
    "slow_conv_dilated3d": (
        lambda x, w: aten.slow_conv_dilated3d(
            x, w, [3, 3, 3], None, [1, 1, 1], [1, 1, 1], [1, 1, 1]
        ),
        20_736,
    ),
    # transposed, weight (C_in 2, C_out 3, 3, 3, 3) over 64 input positions:
    # 2 * 1 * 64 * 2 * 3 * 27 = 20_736
    "slow_conv_transpose3d": (
        lambda x, w: aten.slow_conv_transpose3d(x, w.transpose(0, 1), [3, 3, 3]),
        20_736,
    ),
}


@pytest.mark.parametrize("kernel", BACKEND_KERNELS)
def test_backend_kernels_count_a_forward_and_two_gradients(kernel: str) -> None:
    call, forward = BACKEND_KERNELS[kernel]
    if kernel == "mkldnn_convolution" and not torch.backends.mkldnn.is_available():
        pytest.skip("torch built without oneDNN")
    three_d = kernel.endswith("3d")
    x = torch.randn((1, 2, 4, 4, 4) if three_d else (2, 4, 6, 6), requires_grad=True)
    w = torch.randn((3, 2, 3, 3, 3) if three_d else (8, 4, 3, 3), requires_grad=True)
    with FlopCounterMode(display=False) as mode:
        call(x, w).sum().backward()
    measured = mode.to_measurement()
    assert (measured.forward, measured.backward, measured.unsupported) == (forward, 2 * forward, {})
