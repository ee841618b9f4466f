"""Bytes of ``pytest_flops.count(device="fake")`` against a real CPU run of the same step.

The zoo sweep found fake train steps moving other bytes than the CPU's, where meta
stand-ins count as the CPU does. Two causes, each reduced here to a few lines of
plain torch:

* A fake ``view`` took its strides from torch's Python reference, which gives a
  dimension of size 1 another stride than aten's ``view`` (every device's). That
  stride moves no data, but ``suggest_memory_format`` reads it, so a later kernel
  picked channels last and a copy disappeared (YOLOS, PVT, RADIO). Fixed: fake
  views take aten's strides (``counting/stand_ins.py``).
* Autograd rebuilds the ``grad_fn`` of a view modified in place by replaying its
  view ops when the tensor is a Python subclass, as a fake tensor is, and with
  ``as_strided`` on CPU and CUDA: ``AsStridedBackward0`` zero-fills the base's
  storage and copies the gradient into it, where the replayed ops' gradients move
  other bytes (a view's none, a slice's its own zero-fill): RoCBERT, LongT5, Funnel,
  LED, Longformer. A limit (docs/zoo.md); the fake side's bytes are pinned in
  ``test_stand_ins.py``, the CPU's and meta's here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import pytest_flops
from pytest_flops import FlopCounterMode, Measurement


def on_cpu(step: Callable[..., object], *args: Any) -> Measurement:
    with FlopCounterMode(display=False) as counter:
        step(*args)
    return counter.to_measurement()


# -- a view's strides in dimensions of size 1 ---------------------------------------


def upsampled_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """YOLOS's position embeddings, interpolated to the image's patches."""
    grid = tokens.transpose(1, 2).view(1, 4, 2, 3)
    upsampled = F.interpolate(grid, size=(4, 6), mode="nearest")
    return upsampled.flatten(2).transpose(1, 2).contiguous()


def test_a_fake_view_has_atens_strides_so_a_later_kernel_picks_the_same_layout() -> None:
    tokens = torch.randn(1, 6, 4)
    # aten's view gives the size-1 batch dimension stride 4; torch._refs gives 24, and
    # with 24 the grid reads as channels last to suggest_memory_format
    assert tokens.transpose(1, 2).view(1, 4, 2, 3).stride() == (4, 1, 12, 4)
    cpu = on_cpu(upsampled_tokens, tokens)
    # upsample_nearest2d reads the 1x4x2x3 grid (24 x 4 B) and writes 1x4x4x6 (96 x 4 B):
    # 96 + 384 = 480. Its output is contiguous (NCHW) on the CPU, so the transposed
    # tokens are not, and .contiguous() copies them: 384 read + 384 written = 768.
    assert dict(cpu.bytes_by_op) == {"aten.upsample_nearest2d": 480, "aten.clone": 768}
    assert pytest_flops.count(upsampled_tokens, tokens, device="meta") == cpu
    assert pytest_flops.count(upsampled_tokens, tokens, device="fake") == cpu


# -- the backward of a view modified in place ------------------------------------------


def add_into_a_view(weight: torch.Tensor, inputs: torch.Tensor) -> None:
    """RoCBERT's embeddings: an in-place add into a view of a linear layer's output."""
    hidden = torch.mm(inputs, weight).view(1, 2, 4)
    hidden.add_(inputs.view(1, 2, 4))
    hidden.sum().backward()


def test_a_view_modified_in_place_moves_as_strided_backwards_bytes_on_cpu_and_meta() -> None:
    weight, inputs = torch.randn(4, 4, requires_grad=True), torch.randn(2, 4)
    cpu = on_cpu(add_into_a_view, weight, inputs)
    # float32 throughout; the gradient of the sum is one number expanded (stride 0: 4 B).
    # mm: forward reads 2x4 and 4x4, writes 2x4: (8 + 16 + 8) x 4 = 128; backward (the
    #   weight's gradient) reads the 4x2 transposed inputs and the 2x4 gradient, writes
    #   4x4: (8 + 8 + 16) x 4 = 128. 256 in all.
    # add_: reads the view and the inputs, writes the view: 3 x 32 = 96.
    # sum: reads 32, writes 4: 36. ones_like (the seed): writes 4, reads nothing.
    # AsStridedBackward0: new_zeros of the base's 8 elements (writes 32; it takes only
    #   its argument's shape): 32; then copies the gradient into it: 4 + 32 = 36.
    # CopySlices: copies that 2x4 gradient into a fresh base: 32 + 32 = 64; clones the
    #   view's slice: 32 + 32 = 64; copies the add's gradient back into it: 64.
    # copy_: 36 + 64 + 64 = 164.
    assert dict(cpu.bytes_by_op) == {
        "aten.mm": 256, "aten.add_": 96, "aten.sum": 36, "aten.ones_like": 4,
        "aten.new_zeros": 32, "aten.copy_": 164, "aten.clone": 64,
    }  # fmt: skip
    assert cpu.bytes_accessed == 652
    assert pytest_flops.count(add_into_a_view, weight, inputs, device="meta") == cpu
