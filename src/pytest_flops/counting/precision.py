"""The precision an op computes in, for the roofline's peak: its inputs' dtype and TF32.

A float32 op runs on TF32 tensor cores when PyTorch allows it: the float32
matmul precision is below ``"highest"`` (``torch.backends.cuda.matmul.allow_tf32
= True`` sets it to ``"high"``). The setting is read when the op runs, as a GPU
would read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["PRECISIONS", "flop_precision"]

_NAMES = {
    torch.float64: "fp64",
    torch.float32: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.complex64: "fp32",
    torch.complex128: "fp64",
    **{
        dtype: "fp8"
        for dtype in (
            torch.float8_e4m3fn,
            torch.float8_e4m3fnuz,
            torch.float8_e5m2,
            torch.float8_e5m2fnuz,
        )
    },
    torch.int8: "int8",
    torch.uint8: "int8",
}

PRECISIONS = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")
"""Every precision :func:`flop_precision` names."""


def flop_precision(args: Sequence[Any]) -> str:
    """The precision of the op's first floating (or 8-bit) tensor argument; fp32 without one."""
    for arg in args:
        tensor = arg[0] if isinstance(arg, (list, tuple)) and arg else arg
        if isinstance(tensor, torch.Tensor) and tensor.dtype in _NAMES:
            name = _NAMES[tensor.dtype]
            if name == "fp32" and torch.get_float32_matmul_precision() != "highest":
                return "tf32"
            return name
    return "fp32"
