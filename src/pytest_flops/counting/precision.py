"""The precision an op computes in, for the roofline's peak: its inputs' dtype and TF32.

A float32 matmul runs on TF32 tensor cores when PyTorch allows it: the float32
matmul precision is below ``"highest"`` (``torch.backends.cuda.matmul.allow_tf32
= True`` sets it to ``"high"``); a float32 convolution when
``torch.backends.cudnn.allow_tf32`` is True (its default). The settings are
read when the op runs, as a GPU would read them. Other float32 ops run at the
FP32 peak.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from pytest_flops.roofline import PRECISIONS

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


_aten = torch.ops.aten
# cuBLAS's GEMMs (TF32 by the float32 matmul precision) and cuDNN's convolutions (by
# torch.backends.cudnn.allow_tf32), as the counter names their ops
_MATMULS = frozenset(
    {
        _aten.mm,
        _aten.addmm,
        _aten.addmm_,
        _aten._addmm_activation,
        _aten.bmm,
        _aten.baddbmm,
        _aten.baddbmm_,
        _aten.addbmm,
        _aten.addbmm_,
        _aten.matmul,
        _aten.matmul_backward,
    }
)
_CONVOLUTIONS = frozenset({_aten.convolution, _aten._convolution, _aten.convolution_backward})


def flop_precision(op: object, args: Sequence[Any]) -> str:
    """The precision ``op`` computes in: that of its first floating (or 8-bit) tensor
    argument, fp32 without one; a float32 matmul or convolution in TF32 where allowed."""
    for arg in args:
        tensor = arg[0] if isinstance(arg, (list, tuple)) and arg else arg
        if isinstance(tensor, torch.Tensor):
            name = _NAMES.get(tensor.dtype)
            if name is not None:
                return "tf32" if name == "fp32" and _tf32_allowed(op) else name
    return "fp32"


# by id: an op's own __hash__ is Python code, and ops live as long as torch
_MATMUL_IDS = frozenset(map(id, _MATMULS))
_CONVOLUTION_IDS = frozenset(map(id, _CONVOLUTIONS))

# The fp32_precision settings, most specific first ("none" inherits the next), as
# (backend, op) keys of torch's getter: what torch.backends.cuda.matmul.fp32_precision,
# torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.fp32_precision and
# torch.backends.fp32_precision read (allow_tf32 and set_float32_matmul_precision set
# them too; reading those older ones raises once the newer ones were used). The
# attributes answer through a chain of Python branches, and a float32 matmul asks
# on every call: the getter is called directly.
_get_fp32_precision: Callable[[str, str], str] = torch._C._get_fp32_precision_getter
_MATMUL_SETTINGS = (("cuda", "matmul"), ("generic", "all"))
_CONVOLUTION_SETTINGS = (("cuda", "conv"), ("cuda", "all"), ("generic", "all"))


def _tf32_allowed(op: object) -> bool:
    if id(op) in _MATMUL_IDS:
        return _fp32_precision(_MATMUL_SETTINGS) == "tf32"
    return id(op) in _CONVOLUTION_IDS and _fp32_precision(_CONVOLUTION_SETTINGS) == "tf32"


def _fp32_precision(settings: Sequence[tuple[str, str]]) -> str:
    """The first of ``settings`` that is not "none"; "ieee" (full fp32) where all are."""
    for backend, op in settings:
        precision = _get_fp32_precision(backend, op)
        if precision != "none":
            return precision
    return "ieee"
