"""Fast Fourier transforms: the usual 5·N·log2(N) per complex transform of N points.

A real-input or real-output transform (``rfft``, ``irfft``) does half the work of
a complex one: 2.5·N·log2(N), N the real length. N is the product of the
transformed dimensions' sizes, and every other dimension is a batch of
transforms. Counts are rounded to the nearest integer (log2 of a size that is
not a power of two is irrational). A backward pass runs transforms of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import log2, prod
from typing import Any

import torch

from pytest_flops.counting.formulas.registry import Shape, register_flop_formula

aten = torch.ops.aten


def fft_flop_count(shape: Shape, dims: Sequence[int], *, per_point: float) -> int:
    """``per_point``·N·log2(N) for each of the transforms of ``dims`` in ``shape``."""
    points = prod(shape[d] for d in dims)
    transforms = prod(shape) // points if points else 0
    return round(transforms * per_point * points * log2(points)) if points > 1 else 0


@register_flop_formula(aten._fft_c2c)
def fft_c2c_flop(x_shape: Shape, dims: Sequence[int], *args: Any, **kwargs: Any) -> int:
    return fft_flop_count(x_shape, dims, per_point=5)


@register_flop_formula(aten._fft_r2c)
def fft_r2c_flop(x_shape: Shape, dims: Sequence[int], *args: Any, **kwargs: Any) -> int:
    return fft_flop_count(x_shape, dims, per_point=2.5)


@register_flop_formula(aten._fft_c2r)
def fft_c2r_flop(
    _x_shape: Shape, dims: Sequence[int], *args: Any, out_shape: Shape, **kwargs: Any
) -> int:
    return fft_flop_count(out_shape, dims, per_point=2.5)
