"""Meta tensors take the attention kernel that CPU tensors would.

On the meta device ``F.scaled_dot_product_attention`` has no backend to choose
from and always runs the math decomposition (bmm, softmax, bmm), whose backward
recomputes nothing: 2x the forward where the fused CPU kernel counts 2.5x.
While a :class:`~pytest_flops.FlopCounterMode` counts, :class:`CpuAttentionOnMeta`
asks the CPU's own backend chooser which kernel the same call would take on CPU
and, when that is the fused flash kernel, runs that kernel's meta
implementation instead. Shapes, strides and counts then match a CPU run.
Calls on any other tensors pass through untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend
from torch.overrides import TorchFunctionMode

aten = torch.ops.aten

_CPU_KERNELS = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)


class CpuAttentionOnMeta(TorchFunctionMode):
    """Route meta-device SDPA calls to the fused CPU flash kernel where a CPU would."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            out = _cpu_flash_attention_on_meta(*args, **kwargs)
            if out is not None:
                return out
        return func(*args, **kwargs)


def _cpu_flash_attention_on_meta(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor | None:
    """The output of the CPU flash kernel, or None where a CPU would not take it."""
    if not all(type(t) is torch.Tensor and t.is_meta for t in (query, key, value)):
        return None
    # The CPU chooser reads only sizes, strides, dtypes and the global backend
    # switches, so it answers for meta tensors as it would for CPU ones.
    choice = aten._fused_sdp_choice.default.redispatch(
        _CPU_KERNELS,
        query,
        key,
        value,
        attn_mask,
        dropout_p,
        is_causal,
        scale=scale,
        enable_gqa=enable_gqa,
    )
    if choice != SDPBackend.FLASH_ATTENTION.value:
        return None
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        # as SDPA does before calling a fused kernel: True keeps, False masks out
        attn_mask = torch.zeros_like(attn_mask, dtype=query.dtype).masked_fill(
            attn_mask.logical_not(), float("-inf")
        )
    out, _logsumexp = aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale
    )
    return out
