"""``torch.utils.flop_counter``'s names, counted with pytest-flops' table.

For code written against torch's counter: replace
``import torch.utils.flop_counter as flop_counter`` with
``import pytest_flops.flop_counter as flop_counter``. Every formula here is
ours (docs/conventions.md), in torch's calling form: ``flop_registry[op]`` and
the ``*_flop`` functions take tensors or shapes and ``out_val=``; the
``*_count`` functions take shapes. Importing this module imports torch.
"""

from __future__ import annotations

import torch

from pytest_flops.counting.counter import FlopCounterMode
from pytest_flops.counting.formulas import (
    flop_registry,
    get_shape,
    register_flop_formula,
    scoped_flop_formula,
    shape_wrapper,
)
from pytest_flops.counting.formulas.attention import sdpa_backward_flop_count, sdpa_flop_count
from pytest_flops.counting.formulas.conv import conv_flop_count

aten = torch.ops.aten

# torch's public formula functions are its registry's entries: the same here
mm_flop = flop_registry[aten.mm]
addmm_flop = flop_registry[aten.addmm]
bmm_flop = flop_registry[aten.bmm]
baddbmm_flop = flop_registry[aten.baddbmm]
conv_flop = flop_registry[aten.convolution]
conv_backward_flop = flop_registry[aten.convolution_backward]
sdpa_flop = flop_registry[aten._scaled_dot_product_efficient_attention]
sdpa_backward_flop = flop_registry[aten._scaled_dot_product_efficient_attention_backward]

__all__ = [
    "FlopCounterMode",
    "addmm_flop",
    "baddbmm_flop",
    "bmm_flop",
    "conv_backward_flop",
    "conv_flop",
    "conv_flop_count",
    "flop_registry",
    "get_shape",
    "mm_flop",
    "register_flop_formula",
    "scoped_flop_formula",
    "sdpa_backward_flop",
    "sdpa_backward_flop_count",
    "sdpa_flop",
    "sdpa_flop_count",
    "shape_wrapper",
]
