"""Recurrent layers: oneDNN (CPU LSTM) and cuDNN kernels.

An RNN step multiplies the input by W_ih (G*H, I) and the hidden state by
W_hh (G*H, H) (or (G*H, P) with proj_size P, plus W_hr (P, H)), with G gates:
4 for LSTM, 3 for GRU, 1 for RNN. Every 2-D weight of a layer therefore
multiplies each (time step, batch element) once: 2 * tokens * weight.numel().
The fused backward computes the gradients of the inputs and hidden states (the
initial state included) and of the weights, needed or not: twice the forward.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from math import prod
from typing import Any

import torch

from pytest_flops.counting.formulas.registry import Shape, register_flop_formula

aten = torch.ops.aten


def _rnn_flop(x_shape: Shape, weight_shapes: Iterable[Shape]) -> int:
    tokens = prod(x_shape[:-1])  # (T, B), (B, T), or packed (sum of lengths,)
    return 2 * tokens * sum(prod(shape) for shape in weight_shapes if len(shape) == 2)


@register_flop_formula(aten.mkldnn_rnn_layer)
def mkldnn_rnn_layer_flop(
    x_shape: Shape, w_ih_shape: Shape, w_hh_shape: Shape, *args: Any, **kwargs: Any
) -> int:
    """One layer in one direction (CPU LSTM)."""
    return _rnn_flop(x_shape, [w_ih_shape, w_hh_shape])


@register_flop_formula(aten.mkldnn_rnn_layer_backward)
def mkldnn_rnn_layer_backward_flop(
    x_shape: Shape, w_ih_shape: Shape, w_hh_shape: Shape, *args: Any, **kwargs: Any
) -> int:
    return 2 * _rnn_flop(x_shape, [w_ih_shape, w_hh_shape])


@register_flop_formula(aten._cudnn_rnn)
def cudnn_rnn_flop(
    x_shape: Shape, weight_shapes: Sequence[Shape], *args: Any, **kwargs: Any
) -> int:
    """All layers and directions at once; ``weight_shapes`` lists every layer's weights."""
    return _rnn_flop(x_shape, weight_shapes)


@register_flop_formula(aten._cudnn_rnn_backward)
def cudnn_rnn_backward_flop(
    x_shape: Shape, weight_shapes: Sequence[Shape], *args: Any, **kwargs: Any
) -> int:
    """Input and hidden-state gradients always; weight gradients when asked for."""
    output_mask = args[-1]  # the last argument: (input, hx, cx, weights) wanted
    return _rnn_flop(x_shape, weight_shapes) * (2 if output_mask[3] else 1)
